//! A contract fake of the Slack Web API, from Slack's published shapes,
//! over HTTPS with a test CA: `chat.postMessage`, `chat.update`,
//! `users.info`, `users.lookupByEmail`, `views.open`, and the
//! `response_url` of interactions. Every call is recorded; the bot token
//! is checked (`invalid_auth` otherwise); Block Kit is checked for the
//! limits Slack enforces (`invalid_blocks`); it can answer HTTP 429 with
//! `Retry-After` (rate limits) or 503 (down). It also plays Slack's other
//! side: button clicks and modal submissions, signed with the app's
//! signing secret, sent to the broker.
// Slack stamps requests with the wall clock; so does the fake.
#![allow(clippy::disallowed_methods)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use serde_json::{json, Value};

use crate::test_ca::TestCa;

/// The bot token the fake accepts.
pub const BOT_TOKEN: &str = "xoxb-jitgate-test-token";
/// The app's signing secret.
pub const SIGNING_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";

/// A member of the fake workspace.
#[derive(Debug, Clone)]
pub struct Member {
    pub id: String,
    pub email: String,
    pub confirmed: bool,
}

/// One message as the workspace holds it: what was posted, and every
/// version `chat.update` made of it.
#[derive(Debug, Clone)]
pub struct Posted {
    pub channel: String,
    pub ts: String,
    /// The posted body, then each update's, in order.
    pub versions: Vec<Value>,
}

impl Posted {
    pub fn latest(&self) -> &Value {
        self.versions.last().unwrap()
    }

    /// The action ids of the latest version's buttons.
    pub fn buttons(&self) -> Vec<String> {
        buttons(self.latest())
    }
}

/// The action ids of a message body's buttons.
pub fn buttons(body: &Value) -> Vec<String> {
    body["blocks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|b| b["type"] == "actions")
        .flat_map(|b| b["elements"].as_array().cloned().unwrap_or_default())
        .filter_map(|e| e["action_id"].as_str().map(str::to_owned))
        .collect()
}

#[derive(Default)]
struct Workspace {
    members: Vec<Member>,
    messages: Vec<Posted>,
    calls: Vec<(String, Value)>,
    views: Vec<Value>,
    responses: Vec<Value>,
}

struct Shared {
    workspace: Mutex<Workspace>,
    ts: AtomicU64,
    /// Calls still to answer 429.
    rate_limited: AtomicU32,
    down: AtomicBool,
    url: Mutex<String>,
}

#[derive(Clone)]
pub struct SlackFake {
    pub url: String,
    pub ca_pem: String,
    shared: Arc<Shared>,
    _task: Arc<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for SlackFake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackFake").field("url", &self.url).finish()
    }
}

fn slack_error(code: &str) -> Response {
    Json(json!({"ok": false, "error": code})).into_response()
}

/// Why Slack would refuse these blocks, checking the limits it
/// documents for what jitgate sends.
fn invalid_blocks(body: &Value) -> Option<String> {
    let blocks = body["blocks"].as_array()?;
    if blocks.len() > 50 {
        return Some("more than 50 blocks".into());
    }
    for b in blocks {
        match b["type"].as_str() {
            Some("header") => {
                if b["text"]["type"] != "plain_text" || b["text"]["text"].as_str()?.chars().count() > 150 {
                    return Some("header text must be plain_text of at most 150 characters".into());
                }
            }
            Some("section") => {
                let fields = b["fields"].as_array().map_or(0, Vec::len);
                if fields > 10 || (b.get("text").is_none() && fields == 0) {
                    return Some("a section has text or 1 to 10 fields".into());
                }
            }
            Some("actions") => {
                let elements = b["elements"].as_array()?;
                if elements.is_empty() || elements.len() > 25 {
                    return Some("actions hold 1 to 25 elements".into());
                }
                for e in elements {
                    let text = e["text"]["text"].as_str().unwrap_or("");
                    if e["type"] != "button" || text.chars().count() > 75 || e["text"]["type"] != "plain_text"
                    {
                        return Some("a button has plain_text of at most 75 characters".into());
                    }
                    if e.get("value").is_none() && e.get("url").is_none() {
                        return Some("a button carries a value or a url".into());
                    }
                }
            }
            Some("context") | Some("divider") | Some("input") => {}
            other => return Some(format!("unknown block type {other:?}")),
        }
    }
    None
}

impl SlackFake {
    pub async fn start(members: Vec<Member>) -> SlackFake {
        let ca = TestCa::new("Slack fake");
        let shared = Arc::new(Shared {
            workspace: Mutex::new(Workspace {
                members,
                ..Workspace::default()
            }),
            ts: AtomicU64::new(1_700_000_000_000_100),
            rate_limited: AtomicU32::new(0),
            down: AtomicBool::new(false),
            url: Mutex::new(String::new()),
        });
        let api = axum::Router::new()
            .route("/chat.postMessage", post(post_message))
            .route("/chat.update", post(update))
            .route("/users.info", get(users_info))
            .route("/users.lookupByEmail", get(lookup_by_email))
            .route("/views.open", post(views_open))
            .layer(axum::middleware::from_fn_with_state(shared.clone(), gate));
        let router = axum::Router::new()
            .nest("/api", api)
            .route("/response/{id}", post(respond))
            .with_state(shared.clone());
        let (url, task) = ca.serve(router).await;
        *shared.url.lock().unwrap() = url.clone();
        SlackFake {
            url,
            ca_pem: ca.ca_pem.clone(),
            shared,
            _task: Arc::new(task),
        }
    }

    /// `[notify.slack]` for a broker talking to this fake; secrets and the
    /// CA are written into `dir`.
    pub fn config(&self, dir: &std::path::Path) -> String {
        std::fs::write(dir.join("slack-ca.pem"), &self.ca_pem).unwrap();
        std::fs::write(dir.join("slack-token"), BOT_TOKEN).unwrap();
        std::fs::write(dir.join("slack-signing"), SIGNING_SECRET).unwrap();
        format!(
            "[notify.slack]\napi_url = \"{}/api\"\nbot_token_file = \"{}\"\nsigning_secret_file = \"{}\"\nca_file = \"{}\"\ntimeout = \"5s\"\n",
            self.url,
            dir.join("slack-token").display(),
            dir.join("slack-signing").display(),
            dir.join("slack-ca.pem").display()
        )
    }

    pub fn messages(&self) -> Vec<Posted> {
        self.shared.workspace.lock().unwrap().messages.clone()
    }

    /// Messages in a channel (a DM's channel is `D` and the member id).
    pub fn messages_in(&self, channel: &str) -> Vec<Posted> {
        self.messages()
            .into_iter()
            .filter(|m| m.channel == channel)
            .collect()
    }

    /// Every API call, by method, with its body or query.
    pub fn calls(&self, method: &str) -> Vec<Value> {
        let ws = self.shared.workspace.lock().unwrap();
        ws.calls
            .iter()
            .filter(|(m, _)| m == method)
            .map(|(_, v)| v.clone())
            .collect()
    }

    pub fn views(&self) -> Vec<Value> {
        self.shared.workspace.lock().unwrap().views.clone()
    }

    /// What the broker told people privately, through `response_url`.
    pub fn responses(&self) -> Vec<Value> {
        self.shared.workspace.lock().unwrap().responses.clone()
    }

    /// The next `n` API calls answer 429 with `Retry-After: 1`.
    pub fn rate_limit(&self, n: u32) {
        self.shared.rate_limited.store(n, Ordering::SeqCst);
    }

    /// While down, every API call answers 503.
    pub fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::SeqCst);
    }

    /// The body of a click on `action` (with `value`) by `member`, as
    /// Slack sends it (form-encoded `payload`).
    pub fn click_body(&self, member: &str, action: &str, value: &str) -> String {
        let n = self.shared.ts.fetch_add(1, Ordering::SeqCst);
        let payload = json!({
            "type": "block_actions",
            "user": {"id": member, "username": member, "team_id": "T0JITGATE"},
            "api_app_id": "A0JITGATE",
            "team": {"id": "T0JITGATE", "domain": "jitgate-test"},
            "trigger_id": format!("trigger-{n}"),
            "response_url": format!("{}/response/{n}", self.url),
            "container": {"type": "message", "message_ts": "1.1", "channel_id": "C0"},
            "actions": [{"action_id": action, "block_id": "jitgate", "type": "button", "value": value, "action_ts": "1.2"}],
        });
        serde_urlencoded::to_string([("payload", payload.to_string())]).unwrap()
    }

    /// The body of the deny modal submitted by `member` with `reason`.
    pub fn deny_submission_body(&self, member: &str, request: &str, reason: &str) -> String {
        let payload = json!({
            "type": "view_submission",
            "user": {"id": member, "username": member, "team_id": "T0JITGATE"},
            "view": {
                "id": "V0", "type": "modal", "callback_id": "jitgate_deny", "private_metadata": request,
                "state": {"values": {"reason": {"reason": {"type": "plain_text_input", "value": reason}}}},
            },
        });
        serde_urlencoded::to_string([("payload", payload.to_string())]).unwrap()
    }

    /// Slack's signature of `body` at `timestamp` (seconds).
    pub fn sign(body: &str, timestamp: i64) -> String {
        jitgate_broker::notify::slack::verify::sign(SIGNING_SECRET.as_bytes(), timestamp, body.as_bytes())
    }

    /// Sends `body` to the broker's interactions endpoint as Slack would,
    /// with these headers; its status.
    pub async fn deliver(
        broker_url: &str,
        broker_ca: &std::path::Path,
        body: &str,
        timestamp: i64,
        signature: &str,
    ) -> StatusCode {
        let ca = reqwest::Certificate::from_pem(&std::fs::read(broker_ca).unwrap()).unwrap();
        let client = reqwest::Client::builder().tls_certs_only([ca]).build().unwrap();
        let answer = client
            .post(format!("{broker_url}/integrations/slack/interactions"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-slack-request-timestamp", timestamp.to_string())
            .header("x-slack-signature", signature)
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        answer.status()
    }

    /// Sends `body` signed now; its status.
    pub async fn send_signed(broker_url: &str, broker_ca: &std::path::Path, body: &str) -> StatusCode {
        let now = chrono::Utc::now().timestamp();
        Self::deliver(broker_url, broker_ca, body, now, &Self::sign(body, now)).await
    }
}

async fn gate(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if s.down.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let limited = s
        .rate_limited
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if limited {
        return (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "1")]).into_response();
    }
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if token != Some(BOT_TOKEN) {
        return slack_error("invalid_auth");
    }
    next.run(request).await
}

fn record(s: &Shared, method: &str, body: &Value) {
    s.workspace
        .lock()
        .unwrap()
        .calls
        .push((method.into(), body.clone()));
}

async fn post_message(State(s): State<Arc<Shared>>, Json(body): Json<Value>) -> Response {
    record(&s, "chat.postMessage", &body);
    let Some(channel) = body["channel"].as_str().filter(|c| !c.is_empty()) else {
        return slack_error("channel_not_found");
    };
    if body["text"].as_str().unwrap_or("").is_empty() && body.get("blocks").is_none() {
        return slack_error("no_text");
    }
    if invalid_blocks(&body).is_some() {
        return slack_error("invalid_blocks");
    }
    let mut ws = s.workspace.lock().unwrap();
    // A member id opens (or reuses) the app's direct message with them.
    let channel = if channel.starts_with('U') {
        if !ws.members.iter().any(|m| m.id == channel) {
            return slack_error("channel_not_found");
        }
        format!("D{channel}")
    } else {
        channel.to_owned()
    };
    let n = s.ts.fetch_add(1, Ordering::SeqCst);
    let ts = format!("{}.{:06}", n / 1_000_000, n % 1_000_000);
    ws.messages.push(Posted {
        channel: channel.clone(),
        ts: ts.clone(),
        versions: vec![body.clone()],
    });
    Json(json!({"ok": true, "channel": channel, "ts": ts, "message": {"text": body["text"], "ts": ts}}))
        .into_response()
}

async fn update(State(s): State<Arc<Shared>>, Json(body): Json<Value>) -> Response {
    record(&s, "chat.update", &body);
    if invalid_blocks(&body).is_some() {
        return slack_error("invalid_blocks");
    }
    let mut ws = s.workspace.lock().unwrap();
    let found = ws.messages.iter_mut().find(|m| {
        Some(m.channel.as_str()) == body["channel"].as_str() && Some(m.ts.as_str()) == body["ts"].as_str()
    });
    match found {
        Some(m) => {
            m.versions.push(body.clone());
            Json(json!({"ok": true, "channel": m.channel, "ts": m.ts})).into_response()
        }
        None => slack_error("message_not_found"),
    }
}

fn member_json(m: &Member) -> Value {
    json!({
        "id": m.id, "team_id": "T0JITGATE", "name": m.id.to_lowercase(), "deleted": false,
        "is_bot": false, "is_email_confirmed": m.confirmed,
        "profile": {"email": m.email, "real_name": m.id, "display_name": m.id},
    })
}

async fn users_info(State(s): State<Arc<Shared>>, Query(q): Query<HashMap<String, String>>) -> Response {
    record(&s, "users.info", &json!(q));
    let ws = s.workspace.lock().unwrap();
    match ws.members.iter().find(|m| Some(&m.id) == q.get("user")) {
        Some(m) => Json(json!({"ok": true, "user": member_json(m)})).into_response(),
        None => slack_error("user_not_found"),
    }
}

async fn lookup_by_email(State(s): State<Arc<Shared>>, Query(q): Query<HashMap<String, String>>) -> Response {
    record(&s, "users.lookupByEmail", &json!(q));
    let ws = s.workspace.lock().unwrap();
    let wanted = q.get("email").map(|e| e.to_lowercase());
    match ws.members.iter().find(|m| Some(m.email.to_lowercase()) == wanted) {
        Some(m) => Json(json!({"ok": true, "user": member_json(m)})).into_response(),
        None => slack_error("users_not_found"),
    }
}

async fn views_open(State(s): State<Arc<Shared>>, Json(body): Json<Value>) -> Response {
    record(&s, "views.open", &body);
    if !body["trigger_id"].as_str().unwrap_or("").starts_with("trigger-") {
        return slack_error("expired_trigger_id");
    }
    if body["view"]["type"] != "modal" || invalid_blocks(&body["view"]).is_some() {
        return slack_error("invalid_arguments");
    }
    s.workspace.lock().unwrap().views.push(body.clone());
    Json(json!({"ok": true, "view": body["view"]})).into_response()
}

async fn respond(State(s): State<Arc<Shared>>, Json(body): Json<Value>) -> StatusCode {
    s.workspace.lock().unwrap().responses.push(body);
    StatusCode::OK
}
