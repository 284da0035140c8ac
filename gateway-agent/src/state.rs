//! The agent's state directory: who it is (written at enrollment), its key
//! and certificate (replaced together on renewal), the broker CA it trusts,
//! and the journal.
//!
//! ```text
//! <state-dir>/agent.json        identity, hub URL, pinned command key
//! <state-dir>/credentials.pem   client certificate + private key (0600)
//! <state-dir>/ca.pem            the broker CA
//! <state-dir>/journal/          what was applied, until when (sled)
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use chrono::{DateTime, Utc};
use jitgate_shared::v1::signing::CommandVerifier;
use jitgate_shared::v1::{AgentId, ConfigId};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use x509_parser::prelude::FromDer;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: std::io::Error },
    #[error("{path}: {error}")]
    Invalid { path: PathBuf, error: String },
    #[error("{path} is missing: enroll first with `jitgate-agent enroll`")]
    NotEnrolled { path: PathBuf },
    #[error("{} holds the agent's private key and others may read it (mode {mode:04o}); make it owner-only: chmod 600 {}", path.display(), path.display())]
    LoosePermissions { path: PathBuf, mode: u32 },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
    move |error| StateError::Io {
        path: path.to_owned(),
        error,
    }
}

/// What enrollment tells the agent about itself, kept in `agent.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    pub agent: AgentId,
    pub configuration: ConfigId,
    /// `wss://host:port` of the broker's agent hub; with several brokers,
    /// each one's, comma-separated (the agent fails over between them).
    pub hub_url: String,
    /// The broker's Ed25519 command key, base64; commands must verify against it.
    pub command_public_key: String,
    pub command_key_id: String,
}

impl Identity {
    /// The hub URLs to connect to, in the order they are tried.
    pub fn hub_urls(&self) -> Vec<&str> {
        self.hub_url
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .collect()
    }

    pub fn verifier(&self, path: &Path) -> Result<CommandVerifier, StateError> {
        let invalid = |error: String| StateError::Invalid {
            path: path.to_owned(),
            error,
        };
        let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(&self.command_public_key)
            .map_err(|e| invalid(format!("command_public_key: {e}")))?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|_| invalid("command_public_key is not 32 bytes".into()))?;
        let verifier =
            CommandVerifier::from_public(&bytes).map_err(|e| invalid(format!("command_public_key: {e}")))?;
        if verifier.key_id() != self.command_key_id {
            return Err(invalid(format!(
                "command_key_id `{}` does not match the key (`{}`)",
                self.command_key_id,
                verifier.key_id()
            )));
        }
        Ok(verifier)
    }
}

/// The state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    pub dir: PathBuf,
}

impl StateDir {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn identity_path(&self) -> PathBuf {
        self.dir.join("agent.json")
    }

    pub fn credentials_path(&self) -> PathBuf {
        self.dir.join("credentials.pem")
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    pub fn journal_path(&self) -> PathBuf {
        self.dir.join("journal")
    }

    /// When the agent last heard from a broker on a live session.
    pub fn contact_path(&self) -> PathBuf {
        self.dir.join("contact")
    }

    /// Records that a broker was heard from at `at`: at each heartbeat of
    /// a live session, replaced whole, not flushed (losing one to a crash
    /// only makes `jitgate-agent health` see an older contact).
    pub fn record_contact(&self, at: DateTime<Utc>) -> Result<(), StateError> {
        let path = self.contact_path();
        let partial = self.dir.join("contact.partial");
        std::fs::write(&partial, at.to_rfc3339()).map_err(io(&partial))?;
        std::fs::rename(&partial, &path).map_err(io(&path))
    }

    /// The last contact recorded, `None` before the first.
    pub fn last_contact(&self) -> Result<Option<DateTime<Utc>>, StateError> {
        let path = self.contact_path();
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(&path)(e)),
        };
        DateTime::parse_from_rfc3339(text.trim())
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|e| StateError::Invalid {
                path,
                error: e.to_string(),
            })
    }

    /// Creates the directory, owner-only.
    pub fn create(&self) -> Result<(), StateError> {
        std::fs::create_dir_all(&self.dir).map_err(io(&self.dir))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700))
                .map_err(io(&self.dir))?;
        }
        Ok(())
    }

    pub fn is_enrolled(&self) -> bool {
        self.identity_path().exists()
    }

    pub fn identity(&self) -> Result<Identity, StateError> {
        let path = self.identity_path();
        if !path.exists() {
            return Err(StateError::NotEnrolled { path });
        }
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        serde_json::from_str(&text).map_err(|e| StateError::Invalid {
            path,
            error: e.to_string(),
        })
    }

    pub fn save_identity(&self, identity: &Identity) -> Result<(), StateError> {
        let text = serde_json::to_string_pretty(identity).map_err(|e| StateError::Invalid {
            path: self.identity_path(),
            error: e.to_string(),
        })?;
        write_atomic(&self.identity_path(), text.as_bytes())
    }

    pub fn save_ca(&self, pem: &str) -> Result<(), StateError> {
        write_atomic(&self.ca_path(), pem.as_bytes())
    }

    /// Replaces certificate and key together.
    pub fn save_credentials(&self, cert_pem: &str, key_pem: &str) -> Result<(), StateError> {
        write_atomic(
            &self.credentials_path(),
            format!("{cert_pem}\n{key_pem}").as_bytes(),
        )
    }

    pub fn credentials(&self) -> Result<Credentials, StateError> {
        let path = self.credentials_path();
        if !path.exists() {
            return Err(StateError::NotEnrolled { path });
        }
        let invalid = |error: String| StateError::Invalid {
            path: path.clone(),
            error,
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).map_err(io(&path))?.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(StateError::LoosePermissions { path, mode });
            }
        }
        let bytes = std::fs::read(&path).map_err(io(&path))?;
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&bytes)
            .collect::<Result<_, _>>()
            .map_err(|e| invalid(e.to_string()))?;
        let key = PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
        let leaf = chain.first().ok_or_else(|| invalid("no certificate".into()))?;
        let (not_before, not_after) = validity(leaf).map_err(invalid)?;
        Ok(Credentials {
            chain,
            key,
            not_before,
            not_after,
        })
    }

    pub fn ca(&self) -> Result<CertificateDer<'static>, StateError> {
        let path = self.ca_path();
        let bytes = std::fs::read(&path).map_err(io(&path))?;
        CertificateDer::from_pem_slice(&bytes).map_err(|e| StateError::Invalid {
            path,
            error: e.to_string(),
        })
    }

    /// TLS for the hub: the broker CA as the only root, the agent's
    /// certificate as client authentication.
    pub fn hub_tls(&self) -> Result<(Arc<rustls::ClientConfig>, Credentials), StateError> {
        let creds = self.credentials()?;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca()?).map_err(|e| StateError::Invalid {
            path: self.ca_path(),
            error: e.to_string(),
        })?;
        let config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_client_auth_cert(creds.chain.clone(), creds.key.clone_key())
            .map_err(|e| StateError::Invalid {
                path: self.credentials_path(),
                error: e.to_string(),
            })?;
        Ok((Arc::new(config), creds))
    }
}

/// The agent's client certificate and key.
#[derive(Debug)]
pub struct Credentials {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
}

impl Credentials {
    /// When to ask for a new certificate: two thirds into its life.
    pub fn renew_at(&self) -> DateTime<Utc> {
        self.not_before + (self.not_after - self.not_before) * 2 / 3
    }
}

fn validity(cert: &CertificateDer<'_>) -> Result<(DateTime<Utc>, DateTime<Utc>), String> {
    let (_, parsed) =
        x509_parser::certificate::X509Certificate::from_der(cert.as_ref()).map_err(|e| e.to_string())?;
    let v = parsed.validity();
    let at = |t: x509_parser::time::ASN1Time| {
        DateTime::from_timestamp(t.timestamp(), 0).ok_or_else(|| "certificate date out of range".to_owned())
    };
    Ok((at(v.not_before)?, at(v.not_after)?))
}

/// Writes a file owner-only via a temporary file and a rename, so a crash
/// leaves the old or the new contents, never half of either.
pub fn write_atomic(path: &Path, contents: &[u8]) -> Result<(), StateError> {
    let tmp = path.with_extension("tmp");
    {
        #[cfg(unix)]
        let file = {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)
        };
        #[cfg(not(unix))]
        let file = std::fs::File::create(&tmp);
        let mut file = file.map_err(io(&tmp))?;
        file.write_all(contents).map_err(io(&tmp))?;
        file.sync_all().map_err(io(&tmp))?;
    }
    std::fs::rename(&tmp, path).map_err(io(path))?;
    if let Some(parent) = path.parent() {
        if let Ok(dir) = std::fs::File::open(parent) {
            let _ = dir.sync_all();
        }
    }
    Ok(())
}

/// A new key pair and a CSR for it. The CSR's names do not matter: the
/// broker decides what the certificate says.
pub fn new_key_and_csr() -> Result<(String, String), rcgen::Error> {
    let key = rcgen::KeyPair::generate()?;
    let params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    let csr = params.serialize_request(&key)?.pem()?;
    Ok((key.serialize_pem(), csr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_hub_urls_are_tried_in_the_order_given() {
        let identity = |hub_url: &str| Identity {
            agent: AgentId::generate(),
            configuration: ConfigId::new("aws").unwrap(),
            hub_url: hub_url.into(),
            command_public_key: String::new(),
            command_key_id: String::new(),
        };
        assert_eq!(identity("wss://a:1").hub_urls(), ["wss://a:1"]);
        assert_eq!(
            identity("wss://a:1, wss://b:2,,wss://c:3 ").hub_urls(),
            ["wss://a:1", "wss://b:2", "wss://c:3"]
        );
    }

    #[cfg(unix)]
    #[test]
    fn credentials_others_may_read_are_refused_naming_the_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        state.create().unwrap();
        let (key_pem, _) = new_key_and_csr().unwrap();
        state.save_credentials("", &key_pem).unwrap();
        std::fs::set_permissions(state.credentials_path(), std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = state.credentials().err().unwrap();
        assert!(
            matches!(err, StateError::LoosePermissions { mode: 0o644, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }
}
