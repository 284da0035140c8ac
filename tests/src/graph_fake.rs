//! A contract fake of Microsoft's identity platform and of the Graph
//! endpoints jitgate uses, served over HTTPS with a test CA. It is a test
//! peer, kept faithful to Microsoft's documented request and response
//! shapes; it is not a cloud.
//!
//! So far: the v2.0 token endpoint for the client-credentials grant
//! (`POST /{tenant}/oauth2/v2.0/token`), answering as Entra does — a bearer
//! token with `expires_in` and `ext_expires_in`, or an OAuth error body
//! with its AADSTS code (`invalid_client` 7000215 for a wrong secret,
//! `unauthorized_client` 700016 for an unknown app, `invalid_request` 90002
//! for an unknown tenant).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Json;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use serde::Deserialize;
use serde_json::json;

/// An app registration the fake knows.
#[derive(Debug, Clone)]
pub struct App {
    pub tenant: String,
    pub client_id: String,
    pub secret: String,
}

#[derive(Debug, Default)]
struct Directory {
    apps: Vec<App>,
    /// Issued tokens → (tenant, client id).
    tokens: HashMap<String, (String, String)>,
}

#[derive(Debug)]
struct Shared {
    directory: Mutex<Directory>,
    token_requests: AtomicU64,
}

#[derive(Debug)]
pub struct GraphFake {
    /// `https://127.0.0.1:PORT`: both authority host and Graph base.
    pub url: String,
    /// PEM of the test CA that signed the server certificate.
    pub ca_pem: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl GraphFake {
    pub async fn start(apps: Vec<App>) -> Self {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::default();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, "jitgate test CA (Graph fake)");
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::from_ca_cert_der(ca_cert.der(), ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::default();
        params.subject_alt_names = vec![
            rcgen::SanType::IpAddress([127, 0, 0, 1].into()),
            rcgen::SanType::DnsName("localhost".try_into().unwrap()),
        ];
        let cert = params.signed_by(&key, &issuer).unwrap();
        let tls = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls_pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
            )
            .unwrap();

        let shared = Arc::new(Shared {
            directory: Mutex::new(Directory {
                apps,
                tokens: HashMap::new(),
            }),
            token_requests: AtomicU64::new(0),
        });
        let router = axum::Router::new()
            .route("/{tenant}/oauth2/v2.0/token", post(token))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
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
        Self {
            url: format!("https://{addr}"),
            ca_pem: ca_cert.pem(),
            shared,
            task,
        }
    }

    /// Token requests answered so far (granted or not).
    pub fn token_requests(&self) -> u64 {
        self.shared.token_requests.load(Ordering::Relaxed)
    }
}

impl Drop for GraphFake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The form of a client-credentials token request.
#[derive(Debug, Deserialize)]
struct TokenForm {
    grant_type: String,
    client_id: String,
    client_secret: Option<String>,
    scope: String,
}

/// An OAuth 2.0 error as the identity platform writes it.
fn oauth_error(status: StatusCode, error: &str, code: u32, description: &str) -> Response {
    let trace = uuid_like();
    (
        status,
        Json(json!({
            "error": error,
            "error_description": format!("AADSTS{code}: {description} Trace ID: {trace} Correlation ID: {trace} Timestamp: 2026-01-01 00:00:00Z"),
            "error_codes": [code],
            "timestamp": "2026-01-01 00:00:00Z",
            "trace_id": trace,
            "correlation_id": trace,
        })),
    )
        .into_response()
}

fn uuid_like() -> String {
    let b: [u8; 16] = rand::random();
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

async fn token(
    State(s): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    Form(form): Form<TokenForm>,
) -> Response {
    s.token_requests.fetch_add(1, Ordering::Relaxed);
    if form.grant_type != "client_credentials" {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70003,
            "The app requested an unsupported grant type.",
        );
    }
    if !form.scope.ends_with("/.default") {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            1002012,
            "The provided value for scope is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier.",
        );
    }
    let mut dir = s.directory.lock().unwrap();
    if !dir.apps.iter().any(|a| a.tenant == tenant) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            90002,
            &format!("Tenant '{tenant}' not found."),
        );
    }
    let Some(app) = dir
        .apps
        .iter()
        .find(|a| a.tenant == tenant && a.client_id == form.client_id)
        .cloned()
    else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700016,
            &format!(
                "Application with identifier '{}' was not found in the directory '{tenant}'.",
                form.client_id
            ),
        );
    };
    if form.client_secret.as_deref() != Some(app.secret.as_str()) {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000215,
            "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app.",
        );
    }
    let token = format!("fake.{}", uuid_like());
    dir.tokens.insert(token.clone(), (tenant, app.client_id));
    Json(json!({
        "token_type": "Bearer",
        "expires_in": 3599,
        "ext_expires_in": 3599,
        "access_token": token,
    }))
    .into_response()
}
