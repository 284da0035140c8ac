//! Fuzzing the API's untrusted-input surface in process: arbitrary bytes,
//! JSON of the right shape with wrong values, odd path ids and query
//! strings, sent through the real router with a valid token. The API may
//! refuse, but never with a 5xx, never without a JSON error body, and never
//! by panicking.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use jitgate_shared::v1::ErrorBody;
use proptest::prelude::*;
use serde_json::{json, Value};
use tower::ServiceExt;

use super::{router, AppState, DEFAULT_MAX_BODY};
use crate::audit::Actor;
use crate::testing::{body, harness};

/// JSON values of every kind, nested a little.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        ".{0,40}".prop_map(Value::String),
        Just(json!(u64::MAX)),
        Just(json!("dev")),
        Just(json!("aws")),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map(field(), inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Field names the API knows, and some it does not.
fn field() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("resource".to_owned()),
        Just("duration_seconds".to_owned()),
        Just("justification".to_owned()),
        Just("ticket".to_owned()),
        Just("starts_at".to_owned()),
        Just("break_glass".to_owned()),
        Just("comment".to_owned()),
        Just("reason".to_owned()),
        Just("id".to_owned()),
        Just("kind".to_owned()),
        Just("target".to_owned()),
        Just("identity_mode".to_owned()),
        Just("roles".to_owned()),
        Just("configuration".to_owned()),
        Just("token".to_owned()),
        Just("csr_pem".to_owned()),
        Just("ttl_seconds".to_owned()),
        "[a-z_]{1,12}",
    ]
}

/// A request body: raw bytes, or JSON objects of roughly the right shape.
fn request_body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..200),
        proptest::collection::btree_map(field(), json_value(), 0..7)
            .prop_map(|m| serde_json::to_vec(&Value::Object(m.into_iter().collect())).unwrap_or_default()),
        json_value().prop_map(|v| serde_json::to_vec(&v).unwrap_or_default()),
    ]
}

/// Path segments and query strings made of URI-safe characters and escapes.
fn uri_part() -> impl Strategy<Value = String> {
    "([a-zA-Z0-9._~=&-]|%[0-9A-F]{2}){0,40}"
}

#[derive(Debug, Clone)]
enum Target {
    Post(&'static str),
    PostWithId(&'static str),
    Put(&'static str),
    Get(&'static str),
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![
        Just(Target::Post("/api/v1/requests")),
        Just(Target::Post("/api/v1/agents/enroll")),
        Just(Target::Post("/api/v1/admin/join-tokens")),
        Just(Target::PostWithId("/api/v1/requests/{}/approve")),
        Just(Target::PostWithId("/api/v1/requests/{}/deny")),
        Just(Target::PostWithId("/api/v1/requests/{}/cancel")),
        Just(Target::PostWithId("/api/v1/grants/{}/revoke")),
        Just(Target::PostWithId("/api/v1/grants/{}/extend")),
        Just(Target::Put("/api/v1/admin/configurations/{}")),
        Just(Target::Put("/api/v1/admin/resources/{}")),
        Just(Target::Put("/api/v1/admin/users/{}")),
        Just(Target::Get("/api/v1/requests?{}")),
        Just(Target::Get("/api/v1/grants?{}")),
        Just(Target::Get("/api/v1/requests/{}")),
        Just(Target::Get("/api/v1/admin/outbox/{}?{}")),
        Just(Target::Get("/api/v1/admin/audit?kind={}&{}")),
        Just(Target::Get("/api/v1/admin/audit/export?since={}&{}")),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn untrusted_input_never_yields_a_server_error(
        inputs in proptest::collection::vec((target(), request_body(), uri_part(), any::<bool>()), 1..24)
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let h = harness().await;
            let token = h.broker.issue_token_as(Actor::System, &h.users[0].id).await.unwrap().token;
            // Real ids too, so ids that parse reach the services.
            let request = h.broker.create_request(&h.users[1], body("dev", 60)).await.unwrap();
            let grant = h.broker.create_request(&h.users[0], body("auto", 60)).await.unwrap().grant.unwrap();
            let app = router(
                AppState { broker: h.broker.clone(), ready: Arc::new(AtomicBool::new(true)), limits: Arc::new(crate::api::limits::ClientLimits::new(Default::default())) },
                DEFAULT_MAX_BODY,
            );
            for (target, bytes, part, real_id) in inputs {
                let id = if real_id {
                    if matches!(target, Target::PostWithId(p) if p.contains("grants")) {
                        grant.to_string()
                    } else {
                        request.id.to_string()
                    }
                } else {
                    part.clone()
                };
                let (method, uri, send_body) = match &target {
                    Target::Post(p) => (Method::POST, p.to_string(), true),
                    Target::PostWithId(p) => (Method::POST, p.replace("{}", &id), true),
                    Target::Put(p) => (Method::PUT, p.replace("{}", &part), true),
                    Target::Get(p) => (Method::GET, p.replacen("{}", &id, 1).replacen("{}", &part, 1), false),
                };
                let Ok(req) = Request::builder()
                    .method(method)
                    .uri(&uri)
                    .header("authorization", format!("Bearer {token}"))
                    .header("content-type", "application/json")
                    .body(if send_body { Body::from(bytes.clone()) } else { Body::empty() })
                else {
                    continue; // not a valid HTTP request at all; hyper would refuse it first
                };
                let resp = app.clone().oneshot(req).await.unwrap();
                let status = resp.status();
                let bytes_out = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
                prop_assert!(
                    !status.is_server_error(),
                    "{} {} with {:?} → {}: {}",
                    uri, status, String::from_utf8_lossy(&bytes), status, String::from_utf8_lossy(&bytes_out)
                );
                if status.is_client_error() && status != StatusCode::METHOD_NOT_ALLOWED {
                    let parsed: Result<ErrorBody, _> = serde_json::from_slice(&bytes_out);
                    prop_assert!(parsed.is_ok(), "{} {}: not a JSON error: {}", uri, status, String::from_utf8_lossy(&bytes_out));
                    prop_assert!(!parsed.unwrap().message.is_empty());
                }
            }
            Ok(())
        })?;
    }
}

/// `GET path` with `token`: the status and the body.
async fn get(app: &axum::Router, path: &str, token: &str) -> (StatusCode, Vec<u8>) {
    let req = Request::get(path)
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    (
        status,
        axum::body::to_bytes(resp.into_body(), 1 << 24)
            .await
            .unwrap()
            .to_vec(),
    )
}

#[tokio::test]
async fn auditors_read_the_log_a_page_at_a_time_and_others_are_refused() {
    use jitgate_shared::v1::api::{AuditChainView, AuditLogPage, Role, UserBody};
    let h = harness().await;
    h.broker
        .create_request(&h.users[0], body("auto", 60))
        .await
        .unwrap();
    h.broker
        .create_request(&h.users[1], body("auto", 60))
        .await
        .unwrap();
    h.broker
        .save_user(
            Actor::System,
            UserBody {
                id: "audrey".parse().unwrap(),
                display_name: String::new(),
                email: None,
                roles: [Role::Auditor].into(),
                groups: Default::default(),
                person: None,
            },
        )
        .await
        .unwrap();
    let auditor = h
        .broker
        .issue_token_as(Actor::System, &"audrey".parse().unwrap())
        .await
        .unwrap()
        .token;
    let ann = h
        .broker
        .issue_token_as(Actor::System, &h.users[0].id)
        .await
        .unwrap()
        .token;
    let app = router(
        AppState {
            broker: h.broker.clone(),
            ready: Arc::new(AtomicBool::new(true)),
            limits: Arc::new(crate::api::limits::ClientLimits::new(Default::default())),
        },
        DEFAULT_MAX_BODY,
    );
    let (status, bytes) = get(&app, "/api/v1/admin/audit?kind=request_created&limit=1", &auditor).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&bytes));
    let first: AuditLogPage = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(first.records.len(), 1);
    assert_eq!(first.records[0]["event"]["type"], "request_created");
    let next = first.next_before.expect("one more");
    let (_, bytes) = get(
        &app,
        &format!("/api/v1/admin/audit?kind=request_created&before={next}"),
        &auditor,
    )
    .await;
    let second: AuditLogPage = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(second.records.len(), 1);
    assert!(second.records[0]["seq"].as_u64() < first.records[0]["seq"].as_u64());

    let (status, bytes) = get(&app, "/api/v1/admin/audit/export", &auditor).await;
    assert_eq!(status, StatusCode::OK);
    let lines = String::from_utf8(bytes).unwrap();
    assert_eq!(lines.lines().count() as u64, first.head);

    let (status, bytes) = get(&app, "/api/v1/admin/audit/chain", &auditor).await;
    assert_eq!(status, StatusCode::OK);
    let chain: AuditChainView = serde_json::from_slice(&bytes).unwrap();
    assert!(chain.broken.is_none());

    let (status, bytes) = get(&app, "/api/v1/admin/audit?kind=grant_over", &auditor).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let e: ErrorBody = serde_json::from_slice(&bytes).unwrap();
    assert!(e.message.contains("`grant_over`"), "{}", e.message);
    for path in [
        "/api/v1/admin/audit",
        "/api/v1/admin/audit/export",
        "/api/v1/admin/audit/chain",
    ] {
        assert_eq!(get(&app, path, &ann).await.0, StatusCode::FORBIDDEN, "{path}");
    }
}
