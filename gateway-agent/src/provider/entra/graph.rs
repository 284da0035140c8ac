//! A Microsoft Graph client for one tenant: bearer tokens from the
//! `azure_identity` credential, every call within the tenant's [`Budget`]
//! (writes take a turn at its rate; reads wait out its pauses), 429 and
//! 5xx retried a bounded number of times honouring `Retry-After`, and
//! failures carried with their OData error code.

use std::sync::Arc;
use std::time::Duration;

use azure_core::credentials::TokenCredential;
use reqwest::header::RETRY_AFTER;
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::models::{ErrorBody, Page};
use crate::provider::budget::{Budget, Priority};
use crate::provider::ProviderError;
use jitgate_shared::v1::protocol::FailureKind;

/// A failed Graph call: its status and OData code, for callers that take
/// one answer as normal ("already a member", "not found"), and the error
/// as the broker will see it.
#[derive(Debug)]
pub struct GraphFailure {
    pub status: Option<StatusCode>,
    pub code: Option<String>,
    pub message: String,
    pub error: ProviderError,
}

impl GraphFailure {
    pub fn is(&self, status: StatusCode, code: &str) -> bool {
        self.status == Some(status) && self.code.as_deref() == Some(code)
    }

    pub fn not_found(&self) -> bool {
        self.status == Some(StatusCode::NOT_FOUND)
    }

    /// Graph's answer to adding a member a group already has: 400
    /// `Request_BadRequest` "One or more added object references already
    /// exist for the following modified properties: 'members'." The code
    /// is shared with every other bad request, so the message tells.
    pub fn member_already_present(&self) -> bool {
        self.status == Some(StatusCode::BAD_REQUEST) && self.message.contains("already exist")
    }
}

impl From<GraphFailure> for ProviderError {
    fn from(f: GraphFailure) -> Self {
        f.error
    }
}

#[derive(Debug, Clone)]
pub struct GraphSettings {
    /// `https://graph.microsoft.com` (sovereign clouds:
    /// `https://graph.microsoft.us`, `https://microsoftgraph.chinacloudapi.cn`).
    pub graph_url: String,
    /// Attempts per call when Graph answers 429 or 5xx, or the connection
    /// fails.
    pub max_attempts: u32,
    /// Per-request timeout.
    pub timeout: Duration,
}

pub struct Graph {
    /// `{graph_url}/v1.0/`.
    base: Url,
    scope: String,
    http: reqwest::Client,
    credential: Arc<dyn TokenCredential>,
    budget: Arc<Budget>,
    max_attempts: u32,
}

impl std::fmt::Debug for Graph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Graph")
            .field("base", &self.base.as_str())
            .finish()
    }
}

impl Graph {
    pub fn new(
        settings: &GraphSettings,
        http: reqwest::Client,
        credential: Arc<dyn TokenCredential>,
        budget: Arc<Budget>,
    ) -> Result<Self, ProviderError> {
        let root = settings.graph_url.trim_end_matches('/');
        let base = Url::parse(&format!("{root}/v1.0/"))
            .map_err(|e| ProviderError::rejected(format!("Graph URL `{}`: {e}", settings.graph_url)))?;
        if base.scheme() != "https" {
            return Err(ProviderError::rejected(format!(
                "Graph URL `{}` must be https",
                settings.graph_url
            )));
        }
        Ok(Self {
            base,
            scope: format!("{root}/.default"),
            http,
            credential,
            budget,
            max_attempts: settings.max_attempts.max(1),
        })
    }

    pub fn budget(&self) -> &Budget {
        &self.budget
    }

    /// The scope tokens are requested for: `{graph_url}/.default`.
    pub fn scope(&self) -> &str {
        &self.scope
    }

    /// `{base}/{segments...}`, each segment percent-encoded.
    pub fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// The `@odata.id` of a directory object, for `$ref` bodies.
    pub fn directory_object(&self, id: &str) -> String {
        self.url(&["directoryObjects", id]).to_string()
    }

    pub async fn get<T: DeserializeOwned>(
        &self,
        priority: Priority,
        what: &str,
        url: Url,
    ) -> Result<T, GraphFailure> {
        let response = self.send(priority, what, Method::GET, url, None::<&()>).await?;
        decode(what, response).await
    }

    /// Every item of a collection, following `@odata.nextLink`.
    pub async fn all_pages<T: DeserializeOwned>(
        &self,
        priority: Priority,
        what: &str,
        first: Url,
    ) -> Result<Vec<T>, GraphFailure> {
        let mut items = Vec::new();
        let mut next = Some(first);
        while let Some(url) = next.take() {
            let page: Page<T> = self.get(priority, what, url).await?;
            items.extend(page.value);
            next = match page.next_link {
                Some(link) => Some(Url::parse(&link).map_err(|e| {
                    failure(
                        None,
                        None,
                        format!("{what}: bad @odata.nextLink `{link}`: {e}"),
                        FailureKind::Rejected,
                    )
                })?),
                None => None,
            };
        }
        Ok(items)
    }

    /// A write answered with a body.
    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        priority: Priority,
        what: &str,
        url: Url,
        body: &B,
    ) -> Result<T, GraphFailure> {
        let response = self.send(priority, what, Method::POST, url, Some(body)).await?;
        decode(what, response).await
    }

    /// A write answered with no content.
    pub async fn post_no_content<B: Serialize>(
        &self,
        priority: Priority,
        what: &str,
        url: Url,
        body: &B,
    ) -> Result<(), GraphFailure> {
        self.send(priority, what, Method::POST, url, Some(body))
            .await
            .map(drop)
    }

    pub async fn delete(&self, priority: Priority, what: &str, url: Url) -> Result<(), GraphFailure> {
        self.send(priority, what, Method::DELETE, url, None::<&()>)
            .await
            .map(drop)
    }

    async fn send<B: Serialize>(
        &self,
        priority: Priority,
        what: &str,
        method: Method,
        url: Url,
        body: Option<&B>,
    ) -> Result<reqwest::Response, GraphFailure> {
        let write = method != Method::GET;
        let mut attempt = 0;
        loop {
            attempt += 1;
            if write {
                self.budget.call(priority).await;
            } else {
                self.budget.read(priority).await;
            }
            let token = self
                .credential
                .get_token(&[self.scope.as_str()], None)
                .await
                .map_err(|e| {
                    let first = super::credential::first_line(&e);
                    failure(
                        None,
                        None,
                        format!("{what}: no Graph token: {first}"),
                        FailureKind::Unauthorised,
                    )
                })?;
            let mut request = self
                .http
                .request(method.clone(), url.clone())
                .bearer_auth(token.token.secret());
            if let Some(body) = body {
                request = request.json(body);
            }
            let last = attempt >= self.max_attempts;
            let response = match request.send().await {
                Ok(r) => r,
                Err(e) if last => {
                    return Err(failure(
                        None,
                        None,
                        format!("{what}: {e}"),
                        FailureKind::Transport,
                    ))
                }
                Err(e) => {
                    tracing::debug!(%what, error = %e, attempt, "Graph call failed; retrying");
                    tokio::time::sleep(backoff(attempt)).await;
                    continue;
                }
            };
            let status = response.status();
            if status.is_success() {
                self.budget.succeeded();
                return Ok(response);
            }
            let retry_after = retry_after(&response);
            if status == StatusCode::TOO_MANY_REQUESTS {
                let pause = self.budget.throttled(retry_after);
                tracing::warn!(%what, ?retry_after, ?pause, "Graph throttled the agent; pausing calls to this tenant");
                if last {
                    let mut f = failed(what, response).await;
                    f.error = ProviderError::throttled(f.error.reason(), Some(pause));
                    return Err(f);
                }
                continue;
            }
            if status.is_server_error() && !last {
                tracing::debug!(%what, %status, attempt, "Graph answered a server error; retrying");
                tokio::time::sleep(retry_after.unwrap_or_else(|| backoff(attempt))).await;
                continue;
            }
            return Err(failed(what, response).await);
        }
    }
}

fn failure(
    status: Option<StatusCode>,
    code: Option<String>,
    reason: String,
    kind: FailureKind,
) -> GraphFailure {
    GraphFailure {
        status,
        code,
        message: reason.clone(),
        error: ProviderError::new(kind, reason),
    }
}

/// The kind of a non-success status: 429 throttled, 5xx transport, 401 (a
/// token Graph no longer takes; the credential gets a new one as it nears
/// expiry) unauthorised, 404 not found; the rest (400, 403, 409) rejected.
fn kind_of(status: StatusCode) -> FailureKind {
    match status {
        StatusCode::TOO_MANY_REQUESTS => FailureKind::Throttled,
        StatusCode::UNAUTHORIZED => FailureKind::Unauthorised,
        StatusCode::NOT_FOUND => FailureKind::NotFound,
        s if s.is_server_error() => FailureKind::Transport,
        _ => FailureKind::Rejected,
    }
}

/// A non-success answer, with Graph's OData error code and message when it
/// sent them.
async fn failed(what: &str, response: reqwest::Response) -> GraphFailure {
    let status = response.status();
    let kind = kind_of(status);
    let text = response.text().await.unwrap_or_default();
    match serde_json::from_str::<ErrorBody>(&text) {
        Ok(body) => {
            let reason = format!(
                "{what}: {} {}: {}",
                status.as_u16(),
                body.error.code,
                body.error.message
            );
            let mut f = failure(Some(status), Some(body.error.code), reason, kind);
            f.message = body.error.message;
            f
        }
        Err(_) => {
            let snippet: String = text.chars().take(200).collect();
            failure(Some(status), None, format!("{what}: {status}: {snippet}"), kind)
        }
    }
}

async fn decode<T: DeserializeOwned>(what: &str, response: reqwest::Response) -> Result<T, GraphFailure> {
    let bytes = response.bytes().await.map_err(|e| {
        failure(
            None,
            None,
            format!("{what}: reading the answer: {e}"),
            FailureKind::Transport,
        )
    })?;
    serde_json::from_slice(&bytes).map_err(|e| {
        failure(
            None,
            None,
            format!("{what}: unexpected answer from Graph: {e}"),
            FailureKind::Rejected,
        )
    })
}

/// `Retry-After` in seconds (Graph sends seconds).
fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    jitgate_shared::backoff::retry_after(response.headers().get(RETRY_AFTER)?.to_str().ok()?)
}

/// 200 ms doubling to 5 s, between attempts after failures Graph gave no
/// pause for.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(200u64.saturating_mul(1 << attempt.min(5))).min(Duration::from_secs(5))
}
