//! Endpoints chat platforms call: `/integrations/slack/interactions`
//! (button clicks, the deny modal). Slack waits three seconds for an
//! answer: the request is checked (signature, age, replay) and answered
//! at once, and what it asks is done after, on its own task.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};

use super::error::ApiError;
use super::AppState;

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// `POST /integrations/slack/interactions`.
pub async fn slack_interactions(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let read = s
        .broker
        .slack_interaction(
            header(&headers, "x-slack-request-timestamp"),
            header(&headers, "x-slack-signature"),
            &body,
        )
        .await?;
    if let Some(interaction) = read {
        let broker = s.broker.clone();
        tokio::spawn(async move { broker.act_in_slack(interaction).await });
    }
    Ok(StatusCode::OK)
}
