//! Contract fakes of the on-call endpoints of PagerDuty (`GET /oncalls`,
//! `include[]=users`) and Opsgenie (`GET /v2/schedules/{id}/on-calls`,
//! `flat=true`), from their published shapes, over HTTPS with a test CA:
//! each schedule's on-call people by email, the API token checked, every
//! call counted, and a switch that makes them fail (500).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Json;
use serde_json::json;

use crate::test_ca::TestCa;

pub const PAGERDUTY_TOKEN: &str = "u+pagerduty-test-token";
pub const OPSGENIE_KEY: &str = "opsgenie-test-key";

#[derive(Default)]
struct Shared {
    /// Schedule id → emails on call.
    schedules: Mutex<HashMap<String, Vec<String>>>,
    failing: AtomicBool,
    calls: AtomicU64,
}

#[derive(Clone)]
pub struct OnCallFake {
    pub url: String,
    pub ca_pem: String,
    shared: Arc<Shared>,
    _task: Arc<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for OnCallFake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnCallFake").field("url", &self.url).finish()
    }
}

async fn pagerduty(State(s): State<Arc<Shared>>, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    s.calls.fetch_add(1, Ordering::SeqCst);
    if s.failing.load(Ordering::SeqCst) {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
    if auth != Some(&format!("Token token={PAGERDUTY_TOKEN}")) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": {"message": "Unauthorized", "code": 2006}})),
        )
            .into_response();
    }
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(&query.unwrap_or_default()).unwrap_or_default();
    let wants_users = pairs.iter().any(|(k, v)| k == "include[]" && v == "users");
    let schedules = s.schedules.lock().unwrap();
    let mut oncalls = Vec::new();
    for (_, id) in pairs.iter().filter(|(k, _)| k == "schedule_ids[]") {
        for (n, email) in schedules.get(id).into_iter().flatten().enumerate() {
            let user = if wants_users {
                json!({"id": format!("PU{n}"), "type": "user", "name": email, "email": email, "summary": email})
            } else {
                json!({"id": format!("PU{n}"), "type": "user_reference", "summary": email})
            };
            oncalls.push(json!({
                "escalation_policy": {"id": "PEP1", "type": "escalation_policy_reference"},
                "escalation_level": 1,
                "schedule": {"id": id, "type": "schedule_reference"},
                "user": user,
                "start": "2026-11-29T00:00:00Z", "end": "2026-11-30T00:00:00Z",
            }));
        }
    }
    Json(json!({"oncalls": oncalls, "limit": 25, "offset": 0, "more": false, "total": null})).into_response()
}

async fn opsgenie(State(s): State<Arc<Shared>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    s.calls.fetch_add(1, Ordering::SeqCst);
    if s.failing.load(Ordering::SeqCst) {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
    if auth != Some(&format!("GenieKey {OPSGENIE_KEY}")) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"message": "Could not authenticate", "took": 0.0})),
        )
            .into_response();
    }
    let schedules = s.schedules.lock().unwrap();
    let Some(emails) = schedules.get(&id) else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"message": "Schedule not found", "took": 0.0})),
        )
            .into_response();
    };
    Json(json!({
        "data": {"_parent": {"id": id, "name": id, "enabled": true}, "onCallRecipients": emails},
        "took": 0.1, "requestId": "r-1",
    }))
    .into_response()
}

impl OnCallFake {
    pub async fn start() -> OnCallFake {
        let ca = TestCa::new("on-call fake");
        let shared = Arc::new(Shared::default());
        let router = axum::Router::new()
            .route("/pagerduty/oncalls", get(pagerduty))
            .route("/opsgenie/v2/schedules/{id}/on-calls", get(opsgenie))
            .with_state(shared.clone());
        let (url, task) = ca.serve(router).await;
        OnCallFake {
            url,
            ca_pem: ca.ca_pem.clone(),
            shared,
            _task: Arc::new(task),
        }
    }

    pub fn set_on_call(&self, schedule: &str, emails: &[&str]) {
        self.shared
            .schedules
            .lock()
            .unwrap()
            .insert(schedule.into(), emails.iter().map(|e| (*e).to_owned()).collect());
    }

    pub fn set_failing(&self, failing: bool) {
        self.shared.failing.store(failing, Ordering::SeqCst);
    }

    pub fn calls(&self) -> u64 {
        self.shared.calls.load(Ordering::SeqCst)
    }

    /// `[[on_call]]` tables `pd` (PagerDuty) and `og` (Opsgenie) against
    /// this fake, answers cached for `cache`; tokens and CA into `dir`.
    pub fn config(&self, dir: &std::path::Path, cache: &str) -> String {
        std::fs::write(dir.join("on-call-ca.pem"), &self.ca_pem).unwrap();
        std::fs::write(dir.join("pd.token"), PAGERDUTY_TOKEN).unwrap();
        std::fs::write(dir.join("og.token"), OPSGENIE_KEY).unwrap();
        let ca = dir.join("on-call-ca.pem");
        let table = |name: &str, provider: &str, path: &str| {
            format!(
                "[[on_call]]\nname = \"{name}\"\nprovider = \"{provider}\"\napi_url = \"{}/{path}\"\ntoken_file = \"{}\"\nca_file = \"{}\"\ncache = \"{cache}\"\n",
                self.url,
                dir.join(format!("{name}.token")).display(),
                ca.display()
            )
        };
        format!(
            "{}{}",
            table("pd", "pagerduty", "pagerduty"),
            table("og", "opsgenie", "opsgenie")
        )
    }
}
