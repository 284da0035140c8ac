//! A fault-injecting HTTP proxy for cloud APIs (moto): it forwards each
//! request to the upstream, except a share it answers itself as AWS does
//! when it is overloaded — `ThrottlingException` (JSON protocol, HTTP 400)
//! or a 5xx — and records when every request arrived, so a test can check
//! that a client kept to its rate budget.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::Response;

/// What the proxy does; change it while it runs.
#[derive(Debug, Default)]
pub struct HttpFaults {
    /// Share (per mille) of requests answered `ThrottlingException`.
    pub throttle_permille: AtomicU64,
    /// Share (per mille) of requests answered 503.
    pub error_permille: AtomicU64,
}

#[derive(Debug)]
struct Shared {
    upstream: String,
    client: reqwest::Client,
    faults: Arc<HttpFaults>,
    arrivals: Mutex<Vec<Instant>>,
    throttled: AtomicU64,
    failed: AtomicU64,
}

#[derive(Debug)]
pub struct HttpFaultProxy {
    pub url: String,
    pub faults: Arc<HttpFaults>,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl HttpFaultProxy {
    pub async fn start(upstream: &str) -> Self {
        let faults = Arc::new(HttpFaults::default());
        let shared = Arc::new(Shared {
            upstream: upstream.trim_end_matches('/').to_owned(),
            client: reqwest::Client::new(),
            faults: faults.clone(),
            arrivals: Mutex::new(Vec::new()),
            throttled: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        });
        let app = axum::Router::new().fallback(forward).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            url: format!("http://{addr}"),
            faults,
            shared,
            task,
        }
    }

    /// Requests seen, answered `ThrottlingException`, answered 503.
    pub fn counts(&self) -> (usize, u64, u64) {
        (
            self.shared.arrivals.lock().unwrap().len(),
            self.shared.throttled.load(Ordering::Relaxed),
            self.shared.failed.load(Ordering::Relaxed),
        )
    }

    /// Forgets the arrivals so far (between phases of a run).
    pub fn reset(&self) {
        self.shared.arrivals.lock().unwrap().clear();
    }

    /// The most requests that arrived within any `window`.
    pub fn peak(&self, window: Duration) -> usize {
        let mut at = self.shared.arrivals.lock().unwrap().clone();
        at.sort();
        let mut peak = 0;
        let mut start = 0;
        for end in 0..at.len() {
            while at[end] - at[start] >= window {
                start += 1;
            }
            peak = peak.max(end - start + 1);
        }
        peak
    }
}

impl Drop for HttpFaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn roll(permille: &AtomicU64) -> bool {
    let p = permille.load(Ordering::Relaxed);
    p > 0 && rand::random::<u64>() % 1000 < p
}

fn aws_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({ "__type": code, "message": message }).to_string();
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        HeaderName::from_static("x-amzn-errortype"),
        HeaderValue::from_str(code).unwrap(),
    );
    r.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-amz-json-1.1"),
    );
    r
}

async fn forward(State(s): State<Arc<Shared>>, request: Request) -> Response {
    s.arrivals.lock().unwrap().push(Instant::now());
    if roll(&s.faults.throttle_permille) {
        s.throttled.fetch_add(1, Ordering::Relaxed);
        return aws_error(StatusCode::BAD_REQUEST, "ThrottlingException", "Rate exceeded");
    }
    if roll(&s.faults.error_permille) {
        s.failed.fetch_add(1, Ordering::Relaxed);
        return aws_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailableException",
            "Service is unavailable",
        );
    }
    let (parts, body) = request.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let bytes = to_bytes(body, 16 << 20).await.unwrap_or_default();
    let mut upstream = s
        .client
        .request(parts.method.clone(), format!("{}{path}", s.upstream))
        .body(bytes);
    for (name, value) in &parts.headers {
        if name != axum::http::header::HOST && name != axum::http::header::CONTENT_LENGTH {
            upstream = upstream.header(name, value);
        }
    }
    match upstream.send().await {
        Ok(r) => {
            let status = r.status();
            let headers = r.headers().clone();
            let body = r.bytes().await.unwrap_or_default();
            let mut out = Response::new(Body::from(body));
            *out.status_mut() = status;
            for (name, value) in &headers {
                if name != axum::http::header::CONTENT_LENGTH && name != axum::http::header::TRANSFER_ENCODING
                {
                    out.headers_mut().append(name, value.clone());
                }
            }
            out
        }
        Err(e) => aws_error(StatusCode::BAD_GATEWAY, "ProxyError", &e.to_string()),
    }
}
