//! Health, readiness and metrics for operators.

use std::sync::atomic::Ordering;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;

/// The process is up.
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// Start-up finished and the store answers.
pub async fn readyz(State(s): State<AppState>) -> Response {
    if !s.ready.load(Ordering::Acquire) {
        return (StatusCode::SERVICE_UNAVAILABLE, "starting\n").into_response();
    }
    match s.broker.store().next_due().await {
        Ok(_) => "ready\n".into_response(),
        Err(e) => {
            tracing::error!(error = %e, "readiness check: store unreadable");
            (StatusCode::SERVICE_UNAVAILABLE, "store unavailable\n").into_response()
        }
    }
}

/// Prometheus metrics; the store-wide gauges are read from the store
/// first (if it cannot be read, they keep their last values and the error
/// is logged: the counters are worth having in an outage).
pub async fn metrics(State(s): State<AppState>) -> Response {
    if let Err(e) = s.broker.observe().await {
        tracing::warn!(error = %e, "reading the store-wide gauges failed; showing their last values");
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.broker.metrics().render(),
    )
        .into_response()
}

/// Counts responses by status class.
pub async fn count_requests(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let class = format!("{}xx", response.status().as_u16() / 100);
    s.broker
        .metrics()
        .http_requests
        .get_or_create(&vec![("status", class)])
        .inc();
    response
}
