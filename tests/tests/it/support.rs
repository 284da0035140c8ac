//! Helpers shared by the test modules.

use std::time::Duration;

use jitgate_broker::cli::client::{ApiClient, ClientError};
use jitgate_shared::v1::api::{CreateRequestBody, RequestView};
use jitgate_shared::v1::signing::CommandBody;
use jitgate_shared::v1::ResourceId;
use reqwest::StatusCode;

pub fn ask(resource: &str, seconds: u64) -> CreateRequestBody {
    CreateRequestBody {
        resource: ResourceId::new(resource).unwrap(),
        duration_seconds: Some(seconds),
        justification: Some("integration test".into()),
        ticket: None,
        starts_at: None,
        break_glass: false,
    }
}

/// What a finished process said, stdout then stderr.
pub fn said(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub async fn request(client: &ApiClient, resource: &str, seconds: u64) -> RequestView {
    client.create_request(&ask(resource, seconds)).await.unwrap()
}

/// The status of a failed call; panics if it succeeded.
pub fn status<T: std::fmt::Debug>(r: Result<T, ClientError>) -> (StatusCode, String) {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => (
            e.status().unwrap_or_else(|| panic!("no status: {e}")),
            e.to_string(),
        ),
    }
}

/// Polls `check` every 50 ms until it returns `Some`, for at most `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the wall clock is past `instant` (an expiry the broker
/// stated), so a test asserts what happens after it without guessing how
/// long that is.
pub async fn past(instant: chrono::DateTime<chrono::Utc>) {
    let left = (instant - chrono::Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(left + Duration::from_millis(1)).await;
    assert!(chrono::Utc::now() > instant);
}

pub async fn outbox(admin: &ApiClient) -> Vec<CommandBody> {
    admin.outbox("aws-test", 100_000).await.unwrap()
}

pub use jitgate_tests::broker::all_grants;
pub use jitgate_tests::fixtures::{bulk_catalog, BULK_POLICY, BULK_WORKFLOWS};

/// A broker on `catalog` whose policy directory holds the fixtures'
/// policies with `policy` and `workflows` appended, and whose
/// configuration file is `config` (written into `dir`).
pub async fn broker_with(
    dir: &std::path::Path,
    catalog: &str,
    policy: &str,
    workflows: &str,
    config: &str,
) -> jitgate_tests::broker::TestBroker {
    use jitgate_tests::fixtures::{POLICY, WORKFLOWS};
    let path = dir.join("broker.toml");
    std::fs::write(&path, config).unwrap();
    let policy = format!("{POLICY}\n{policy}");
    let workflows = format!("{WORKFLOWS}\n{workflows}");
    jitgate_tests::broker::TestBroker::start_with(
        catalog,
        &[("access.cedar", &policy), ("workflows.toml", &workflows)],
        &["--config", path.to_str().unwrap()],
    )
    .await
}
