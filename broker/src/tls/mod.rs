//! The broker CA, TLS for the API, agent certificates ([`agent`]), and the
//! HTTPS client for calling out ([`client`]).
//!
//! On first start the broker creates its own CA in the data directory (the
//! key readable by the owner only). The API's server certificate is issued
//! from it at every start, so clients trust the CA, never a leaf. Agents'
//! client certificates come from the same CA.

pub mod agent;
pub mod client;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyPair, KeyUsagePurpose, SanType,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

pub const CA_CERT_FILE: &str = "ca.pem";
/// How long the API's and the hub's server certificates are valid; the
/// broker issues new ones every day.
pub const SERVER_CERT_VALIDITY_DAYS: i64 = 90;

/// When a server certificate issued at `now` stops being valid.
pub fn server_cert_not_after(now: DateTime<Utc>) -> DateTime<Utc> {
    now + chrono::Duration::days(SERVER_CERT_VALIDITY_DAYS)
}
pub const CA_KEY_FILE: &str = "ca.key";
/// The broker's Ed25519 command-signing key (32 secret bytes, owner-only).
pub const COMMAND_KEY_FILE: &str = "command.key";
/// The broker's Ed25519 key for signing audit anchors (32 secret bytes,
/// owner-only); not the one agents trust.
pub const AUDIT_KEY_FILE: &str = "audit.key";

/// Loads the command-signing key from `dir`, creating it on first start.
pub fn load_or_create_command_key(
    dir: &Path,
) -> Result<jitgate_shared::v1::signing::CommandSigner, TlsError> {
    let secret = load_or_create_secret(&dir.join(COMMAND_KEY_FILE))?;
    Ok(jitgate_shared::v1::signing::CommandSigner::from_secret(&secret))
}

/// Loads the audit-anchor key from `dir`, creating it on first start.
pub fn load_or_create_audit_key(dir: &Path) -> Result<crate::audit::anchor::AnchorSigner, TlsError> {
    let secret = load_or_create_secret(&dir.join(AUDIT_KEY_FILE))?;
    Ok(crate::audit::anchor::AnchorSigner::from_secret(&secret))
}

/// The audit-anchor key of `dir`, which must exist (for `audit verify`).
pub fn load_audit_key(dir: &Path) -> Result<crate::audit::anchor::AnchorSigner, TlsError> {
    let path = dir.join(AUDIT_KEY_FILE);
    check_private(&path)?;
    let secret = read_secret(&path)?;
    Ok(crate::audit::anchor::AnchorSigner::from_secret(&secret))
}

fn read_secret(path: &Path) -> Result<[u8; 32], TlsError> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    bytes.try_into().map_err(|b: Vec<u8>| TlsError::Cert {
        what: path.display().to_string(),
        error: format!("expected 32 bytes, found {}", b.len()),
    })
}

/// 32 secret bytes from `path` (owner-only), made on first use.
fn load_or_create_secret(path: &Path) -> Result<[u8; 32], TlsError> {
    use rand::RngCore;
    let secret: [u8; 32] = if path.exists() {
        check_private(path)?;
        read_secret(path)?
    } else {
        let mut secret = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut secret);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
        }
        write_private_bytes(path, &secret)?;
        secret
    };
    Ok(secret)
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: std::io::Error },
    #[error("{what}: {error}")]
    Cert { what: String, error: String },
    #[error("{} holds a private key and others may read it (mode {mode:04o}); make it owner-only: chmod 600 {}", path.display(), path.display())]
    LoosePermissions { path: PathBuf, mode: u32 },
}

/// A private key file must be owner-only: refuses one that group or others
/// may read or write, naming it, before its key is used.
pub fn check_private(path: &Path) -> Result<(), TlsError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).map_err(io(path))?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(TlsError::LoosePermissions {
                path: path.to_owned(),
                mode,
            });
        }
    }
    Ok(())
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |error| TlsError::Io {
        path: path.to_owned(),
        error,
    }
}

fn cert_err(what: impl Into<String>) -> impl FnOnce(rcgen::Error) -> TlsError {
    let what = what.into();
    move |e| TlsError::Cert {
        what,
        error: e.to_string(),
    }
}

fn offset(t: DateTime<Utc>) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(t.timestamp()).unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

/// The broker's certificate authority.
#[derive(Debug)]
pub struct BrokerCa {
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    key: KeyPair,
}

impl BrokerCa {
    /// Loads the CA from `dir`, creating it on first start.
    pub fn load_or_create(dir: &Path, now: DateTime<Utc>) -> Result<Self, TlsError> {
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        if cert_path.exists() {
            let cert_pem = std::fs::read_to_string(&cert_path).map_err(io(&cert_path))?;
            check_private(&key_path)?;
            let key_pem = std::fs::read_to_string(&key_path).map_err(io(&key_path))?;
            let key = KeyPair::from_pem(&key_pem).map_err(cert_err(key_path.display().to_string()))?;
            return Self::from_pem(cert_pem, key, &cert_path);
        }
        let ca = Self::generate(now)?;
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        write_private(&key_path, &ca.key.serialize_pem())?;
        std::fs::write(&cert_path, &ca.cert_pem).map_err(io(&cert_path))?;
        tracing::info!(path = %cert_path.display(), fingerprint = %ca.fingerprint(), "created the broker CA");
        Ok(ca)
    }

    fn from_pem(cert_pem: String, key: KeyPair, path: &Path) -> Result<Self, TlsError> {
        let cert_der = CertificateDer::from_pem_slice(cert_pem.as_bytes()).map_err(|e| TlsError::Cert {
            what: path.display().to_string(),
            error: e.to_string(),
        })?;
        Ok(Self {
            cert_pem,
            cert_der,
            key,
        })
    }

    /// A new CA valid for ten years.
    pub fn generate(now: DateTime<Utc>) -> Result<Self, TlsError> {
        let key = KeyPair::generate().map_err(cert_err("generating the CA key"))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "jitgate broker CA");
        params
            .distinguished_name
            .push(DnType::OrganizationName, "jitgate");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = offset(now - chrono::Duration::hours(1));
        params.not_after = offset(now + chrono::Duration::days(3650));
        let cert = params
            .self_signed(&key)
            .map_err(cert_err("signing the CA certificate"))?;
        Ok(Self {
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            key,
        })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// SHA-256 of the CA certificate, hex: what agents pin when enrolling.
    pub fn fingerprint(&self) -> String {
        hex::encode(Sha256::digest(self.cert_der.as_ref()))
    }

    fn issuer(&self) -> Result<Issuer<'static, &KeyPair>, TlsError> {
        Issuer::from_ca_cert_der(&self.cert_der, &self.key).map_err(cert_err("reading the CA certificate"))
    }

    /// When the CA certificate stops being valid.
    pub fn not_after(&self) -> Result<DateTime<Utc>, TlsError> {
        use x509_parser::prelude::FromDer;
        let (_, parsed) = x509_parser::certificate::X509Certificate::from_der(self.cert_der.as_ref())
            .map_err(|e| TlsError::Cert {
                what: "the CA certificate".into(),
                error: e.to_string(),
            })?;
        DateTime::from_timestamp(parsed.validity().not_after.timestamp(), 0).ok_or_else(|| TlsError::Cert {
            what: "the CA certificate".into(),
            error: "its expiry is out of range".into(),
        })
    }

    /// A server certificate for `names` (DNS names or IP addresses), valid
    /// for [`SERVER_CERT_VALIDITY_DAYS`].
    pub fn issue_server_cert(
        &self,
        names: &[String],
        now: DateTime<Utc>,
    ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
        let key = KeyPair::generate().map_err(cert_err("generating the server key"))?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(cert_err("server names"))?;
        for name in names {
            let san = match name.parse::<std::net::IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(
                    name.clone()
                        .try_into()
                        .map_err(cert_err(format!("server name `{name}`")))?,
                ),
            };
            params.subject_alt_names.push(san);
        }
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "jitgate broker");
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.not_before = offset(now - chrono::Duration::hours(1));
        params.not_after = offset(server_cert_not_after(now));
        let cert = params
            .signed_by(&key, &self.issuer()?)
            .map_err(cert_err("signing the server certificate"))?;
        let key_der = PrivateKeyDer::try_from(key.serialize_der()).map_err(|e| TlsError::Cert {
            what: "server key".into(),
            error: e.to_string(),
        })?;
        Ok((vec![cert.der().clone(), self.cert_der.clone()], key_der))
    }

    /// rustls configuration for the API: server-authenticated TLS 1.2/1.3.
    pub fn api_server_config(
        &self,
        names: &[String],
        now: DateTime<Utc>,
    ) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let (chain, key) = self.issue_server_cert(names, now)?;
        let mut config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| TlsError::Cert {
                what: "server TLS configuration".into(),
                error: e.to_string(),
            })?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// Writes a secret file readable by its owner only.
pub fn write_private(path: &Path, contents: &str) -> Result<(), TlsError> {
    write_private_bytes(path, contents.as_bytes())
}

/// Writes `contents` to `path`, readable by its owner only, durably.
pub fn write_private_bytes(path: &Path, contents: &[u8]) -> Result<(), TlsError> {
    use std::io::Write;
    #[cfg(unix)]
    let file = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
    };
    #[cfg(not(unix))]
    let file = std::fs::File::create(path);
    let mut file = file.map_err(io(path))?;
    file.write_all(contents).map_err(io(path))?;
    file.sync_all().map_err(io(path))
}

/// Installs the process-wide rustls crypto provider; safe to call twice.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn key_files_others_may_read_stop_the_start_naming_them() {
        use std::os::unix::fs::PermissionsExt;
        install_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        BrokerCa::load_or_create(dir.path(), now).unwrap();
        load_or_create_command_key(dir.path()).unwrap();
        let loosen = |file: &str, mode: u32| {
            std::fs::set_permissions(dir.path().join(file), std::fs::Permissions::from_mode(mode)).unwrap();
        };
        for mode in [0o640, 0o604, 0o660] {
            loosen(CA_KEY_FILE, mode);
            let err = BrokerCa::load_or_create(dir.path(), now).err().unwrap();
            assert!(matches!(err, TlsError::LoosePermissions { .. }), "{err}");
            assert!(
                err.to_string().contains("ca.key") && err.to_string().contains("chmod 600"),
                "{err}"
            );
        }
        loosen(CA_KEY_FILE, 0o600);
        loosen(COMMAND_KEY_FILE, 0o644);
        let err = load_or_create_command_key(dir.path()).err().unwrap();
        assert!(err.to_string().contains("command.key"), "{err}");
        loosen(COMMAND_KEY_FILE, 0o400);
        assert!(
            load_or_create_command_key(dir.path()).is_ok(),
            "read-only for the owner is fine"
        );
        assert!(BrokerCa::load_or_create(dir.path(), now).is_ok());
    }

    #[test]
    fn the_ca_is_created_once_and_reloaded() {
        use rustls::client::danger::ServerCertVerifier;
        install_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let a = BrokerCa::load_or_create(dir.path(), now).unwrap();
        let b = BrokerCa::load_or_create(dir.path(), now).unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(CA_KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (chain, _) = b
            .issue_server_cert(&["localhost".into(), "127.0.0.1".into()], now)
            .unwrap();
        assert_eq!(chain.len(), 2);
        // The leaf verifies against the CA as a root.
        let mut roots = rustls::RootCertStore::empty();
        roots.add(a.cert_der().clone()).unwrap();
        let verifier = rustls::client::WebPkiServerVerifier::builder(Arc::new(roots))
            .build()
            .unwrap();
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let at = rustls_pki_types::UnixTime::since_unix_epoch(std::time::Duration::from_secs(1_800_000_100));
        verifier
            .verify_server_cert(&chain[0], &chain[1..], &name, &[], at)
            .unwrap();
        // A CA made elsewhere does not vouch for it.
        let other = BrokerCa::generate(now).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(other.cert_der().clone()).unwrap();
        let verifier = rustls::client::WebPkiServerVerifier::builder(Arc::new(roots))
            .build()
            .unwrap();
        assert!(verifier
            .verify_server_cert(&chain[0], &chain[1..], &name, &[], at)
            .is_err());
    }
}
