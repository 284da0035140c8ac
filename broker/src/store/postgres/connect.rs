//! From settings to a pool of connections: the database URL, a password
//! kept out of it, TLS verified against a CA file or the system's roots.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use rustls_pki_types::pem::PemObject;
use tokio_postgres::config::SslMode;

use crate::store::StoreError;

/// How to reach the database.
#[derive(Clone)]
pub struct PgSettings {
    /// A libpq-style URL (`postgres://user@host:5432/db?sslmode=require`)
    /// or key=value string.
    pub url: String,
    /// The password, when it is not in the URL (read from a file).
    pub password: Option<String>,
    /// Connections the pool opens at most.
    pub pool_size: usize,
    /// CA certificates (PEM) the server's certificate must chain to;
    /// without it, the system's roots.
    pub ca_file: Option<PathBuf>,
    /// How long connecting (and waiting for a free connection) may take.
    pub connect_timeout: Duration,
}

impl std::fmt::Debug for PgSettings {
    // The URL may carry a password: only where it points is shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgSettings")
            .field("database", &describe(&self.url))
            .field("pool_size", &self.pool_size)
            .field("ca_file", &self.ca_file)
            .finish_non_exhaustive()
    }
}

/// Where `url` points (`user@host:port/db`), without any password: for
/// messages and logs.
pub fn describe(url: &str) -> String {
    let Ok(config) = parse(url) else {
        return "(unparsable database URL)".to_owned();
    };
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .zip(config.get_ports().iter().chain(std::iter::repeat(&5432)))
        .map(|(host, port)| match host {
            tokio_postgres::config::Host::Tcp(h) => format!("{h}:{port}"),
            tokio_postgres::config::Host::Unix(p) => format!("{}:{port}", p.display()),
        })
        .collect();
    format!(
        "{}@{}/{}",
        config.get_user().unwrap_or(""),
        hosts.join(","),
        config.get_dbname().unwrap_or("")
    )
}

/// libpq's `verify-ca` and `verify-full` are what `require` does here (the
/// certificate and the host name are always verified); the driver knows
/// only `disable`, `prefer` and `require`.
pub(super) fn parse(url: &str) -> Result<tokio_postgres::Config, tokio_postgres::Error> {
    let url = url
        .replace("sslmode=verify-full", "sslmode=require")
        .replace("sslmode=verify-ca", "sslmode=require");
    tokio_postgres::Config::from_str(&url)
}

fn invalid(url: &str, reason: impl Into<String>) -> StoreError {
    StoreError::Open {
        path: describe(url),
        reason: reason.into(),
        source: Arc::new(std::io::Error::other("invalid database settings")),
    }
}

/// The driver's settings and, with `sslmode=require`, the TLS to connect
/// with.
fn driver_config(
    settings: &PgSettings,
) -> Result<(tokio_postgres::Config, Option<rustls::ClientConfig>), StoreError> {
    let mut config =
        parse(&settings.url).map_err(|e| invalid(&settings.url, format!("database URL: {e}")))?;
    if let Some(password) = &settings.password {
        config.password(password.trim_end_matches(['\r', '\n']));
    }
    config.connect_timeout(settings.connect_timeout);
    config.application_name("jitgate-broker");
    if config.get_ssl_mode() == SslMode::Require {
        return Ok((config, Some(tls_config(settings)?)));
    }
    // `prefer` (the driver's default) without a verified certificate would
    // be encryption anyone could intercept: plain it is, and the
    // documentation says to use `sslmode=require` across a network.
    config.ssl_mode(SslMode::Disable);
    Ok((config, None))
}

/// What a connection of its own (not the pool's) says besides answers:
/// notifications, notices, and its end.
pub type Messages = std::pin::Pin<
    Box<dyn futures_util::Stream<Item = Result<tokio_postgres::AsyncMessage, tokio_postgres::Error>> + Send>,
>;

/// One connection outside the pool (for `LISTEN`): the client, and its
/// messages, which must be polled for the connection to make progress.
pub async fn connect_one(settings: &PgSettings) -> Result<(tokio_postgres::Client, Messages), StoreError> {
    let (config, tls) = driver_config(settings)?;
    Ok(match tls {
        Some(tls) => {
            let (client, mut connection) = config
                .connect(tokio_postgres_rustls::MakeRustlsConnect::new(tls))
                .await
                .map_err(super::pg_error)?;
            let messages: Messages = Box::pin(futures_util::stream::poll_fn(move |cx| {
                connection.poll_message(cx)
            }));
            (client, messages)
        }
        None => {
            let (client, mut connection) = config
                .connect(tokio_postgres::NoTls)
                .await
                .map_err(super::pg_error)?;
            let messages: Messages = Box::pin(futures_util::stream::poll_fn(move |cx| {
                connection.poll_message(cx)
            }));
            (client, messages)
        }
    })
}

/// A pool over `settings`. Connects lazily: the first use says whether the
/// database is reachable.
pub fn pool(settings: &PgSettings) -> Result<Pool, StoreError> {
    let (config, tls) = driver_config(settings)?;
    let manager_config = ManagerConfig {
        recycling_method: RecyclingMethod::Fast,
    };
    let manager = match tls {
        Some(tls) => Manager::from_config(
            config,
            tokio_postgres_rustls::MakeRustlsConnect::new(tls),
            manager_config,
        ),
        None => Manager::from_config(config, tokio_postgres::NoTls, manager_config),
    };
    Pool::builder(manager)
        .max_size(settings.pool_size.max(1))
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(settings.connect_timeout))
        .create_timeout(Some(settings.connect_timeout))
        .build()
        .map_err(|e| invalid(&settings.url, e.to_string()))
}

fn tls_config(settings: &PgSettings) -> Result<rustls::ClientConfig, StoreError> {
    crate::tls::install_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    match &settings.ca_file {
        Some(path) => {
            let pem = std::fs::read(path)
                .map_err(|e| invalid(&settings.url, format!("database CA file {}: {e}", path.display())))?;
            let mut found = 0;
            for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| {
                    invalid(&settings.url, format!("database CA file {}: {e}", path.display()))
                })?;
                roots.add(cert).map_err(|e| {
                    invalid(&settings.url, format!("database CA file {}: {e}", path.display()))
                })?;
                found += 1;
            }
            if found == 0 {
                return Err(invalid(
                    &settings.url,
                    format!("database CA file {} holds no certificate", path.display()),
                ));
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            for cert in native.certs {
                // One unreadable system certificate does not stop the rest.
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                return Err(invalid(
                    &settings.url,
                    "sslmode=require but no CA file and no system roots: set database.ca_file",
                ));
            }
        }
    }
    Ok(rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth())
}
