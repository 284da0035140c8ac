//! A throwaway CA and a server certificate it signed for `127.0.0.1` and
//! `localhost`: what the HTTPS and SMTP test peers serve, and what the
//! broker is told to trust for them.

/// The CA and one server certificate, in PEM and DER.
#[derive(Debug)]
pub struct TestCa {
    /// The CA's certificate: what a client trusts.
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_der: rustls_pki_types::CertificateDer<'static>,
    key_der: Vec<u8>,
}

impl TestCa {
    /// `name` goes into the CA's common name (which peer it is for).
    pub fn new(name: &str) -> TestCa {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::default();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, format!("jitgate test CA ({name})"));
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::from_ca_cert_der(ca_cert.der(), ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::default();
        params.subject_alt_names = vec![
            rcgen::SanType::IpAddress([127, 0, 0, 1].into()),
            rcgen::SanType::DnsName("localhost".try_into().unwrap()),
        ];
        let cert = params.signed_by(&key, &issuer).unwrap();
        TestCa {
            ca_pem: ca_cert.pem(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().clone(),
            key_der: key.serialize_der(),
        }
    }

    /// A rustls server configuration serving the certificate.
    pub fn server_config(&self) -> rustls::ServerConfig {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(
                vec![self.cert_der.clone()],
                rustls_pki_types::PrivateKeyDer::try_from(self.key_der.clone()).unwrap(),
            )
            .unwrap()
    }

    /// Serves `router` over HTTPS with the certificate on a free loopback
    /// port: its `https://127.0.0.1:PORT` URL, and the task serving it.
    pub async fn serve(&self, router: axum::Router) -> (String, tokio::task::JoinHandle<()>) {
        use hyper_util::rt::{TokioExecutor, TokioIo};
        use hyper_util::service::TowerToHyperService;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("https://{}", listener.local_addr().unwrap());
        let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(self.server_config()));
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, router) = (acceptor.clone(), router.clone());
                tokio::spawn(async move {
                    let Ok(stream) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(router))
                        .await;
                });
            }
        });
        (url, task)
    }

    /// Writes `ca.pem`, `cert.pem` and `key.pem` into `dir`.
    pub fn write(&self, dir: &std::path::Path) {
        std::fs::write(dir.join("ca.pem"), &self.ca_pem).unwrap();
        std::fs::write(dir.join("cert.pem"), &self.cert_pem).unwrap();
        std::fs::write(dir.join("key.pem"), &self.key_pem).unwrap();
    }
}
