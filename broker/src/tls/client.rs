//! The HTTPS client jitgate uses to call out (webhooks, Slack, Teams,
//! on-call providers): no redirects followed, a time limit, and the
//! system's roots plus any CA an operator names for that peer.

use std::path::Path;
use std::time::Duration;

/// A client for one peer; the error names the CA file at fault.
pub fn https_client(timeout: Duration, ca_file: Option<&Path>) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout);
    if let Some(path) = ca_file {
        let pem = std::fs::read(path).map_err(|e| format!("ca_file {}: {e}", path.display()))?;
        for cert in reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("ca_file {}: {e}", path.display()))?
        {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder.build().map_err(|e| e.to_string())
}
