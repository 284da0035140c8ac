//! A typed client for REST API v1.

use std::path::Path;
use std::time::Duration;

use jitgate_shared::error_chain;
use jitgate_shared::v1::api::{
    AgentView, Configuration, CreateJoinTokenBody, CreateRequestBody, DeviceLoginBody, DevicePoll,
    DevicePollBody, DeviceStarted, EnrollBody, Enrolled, ExtendBody, ExtendOutcome, GrantView, Identified,
    IssuedToken, JoinTokenIssued, LoginBody, LoginStarted, Page, PolicyStatus, RefreshBody, RequestView,
    Resource, ReviewBody, RevokeBody, ScimConnectionBody, ScimConnectionCreated, ScimConnectionView,
    SessionView, SsoProviderView, TokenExchangeBody, TokenSet, UserBody, UserView,
};
use jitgate_shared::v1::{ErrorBody, GrantId, RequestId};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The broker answered with an error body.
    #[error("{}{}", .body.message, .body.field.as_ref().map(|f| format!(" (field `{f}`)")).unwrap_or_default())]
    Api { status: StatusCode, body: ErrorBody },
    #[error("cannot reach the broker at {url}: {error}")]
    Transport { url: String, error: String },
    #[error("unexpected answer from {url} ({status}): {body}")]
    Unexpected {
        url: String,
        status: StatusCode,
        body: String,
    },
    #[error("CA certificate {path}: {error}")]
    Ca { path: String, error: String },
}

impl ClientError {
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            ClientError::Api { status, .. } | ClientError::Unexpected { status, .. } => Some(*status),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl ApiClient {
    /// A client for the broker at `base` (like `https://127.0.0.1:8443`),
    /// trusting only the CA in `ca_cert` when given.
    pub fn new(base: &str, token: Option<String>, ca_cert: Option<&Path>) -> Result<Self, ClientError> {
        let mut builder = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(5));
        if let Some(path) = ca_cert {
            let ca_err = |error: String| ClientError::Ca {
                path: path.display().to_string(),
                error,
            };
            let pem = std::fs::read(path).map_err(|e| ca_err(e.to_string()))?;
            let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| ca_err(e.to_string()))?;
            builder = builder.tls_certs_only([cert]);
        }
        let http = builder.build().map_err(|e| ClientError::Transport {
            url: base.to_owned(),
            error: e.to_string(),
        })?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            token,
        })
    }

    pub fn with_token(&self, token: &str) -> Self {
        Self {
            token: Some(token.to_owned()),
            ..self.clone()
        }
    }

    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method, &url).query(query);
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req.send().await.map_err(|e| ClientError::Transport {
            url: url.clone(),
            error: error_chain(&e),
        })?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| ClientError::Transport {
            url: url.clone(),
            error: e.to_string(),
        })?;
        if status.is_success() {
            // 204 No Content reads as `null` (for `()`).
            let json: &[u8] = if bytes.is_empty() { b"null" } else { &bytes };
            return serde_json::from_slice(json).map_err(|e| ClientError::Unexpected {
                url,
                status,
                body: format!("{e}: {}", String::from_utf8_lossy(&bytes)),
            });
        }
        match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(body) => Err(ClientError::Api { status, body }),
            Err(_) => Err(ClientError::Unexpected {
                url,
                status,
                body: String::from_utf8_lossy(&bytes).into_owned(),
            }),
        }
    }

    async fn get<T: DeserializeOwned>(&self, path: &str, query: &[(&str, String)]) -> Result<T, ClientError> {
        self.call::<(), T>(Method::GET, path, query, None).await
    }

    async fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T, ClientError> {
        self.call(Method::POST, path, &[], Some(body)).await
    }

    async fn put<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T, ClientError> {
        self.call(Method::PUT, path, &[], Some(body)).await
    }

    async fn delete(&self, path: &str) -> Result<(), ClientError> {
        self.call::<(), ()>(Method::DELETE, path, &[], None).await
    }

    pub async fn create_scim_connection(
        &self,
        body: &ScimConnectionBody,
    ) -> Result<ScimConnectionCreated, ClientError> {
        self.post("/api/v1/admin/scim/connections", body).await
    }

    pub async fn scim_connections(&self) -> Result<Vec<ScimConnectionView>, ClientError> {
        self.get("/api/v1/admin/scim/connections", &[]).await
    }

    pub async fn delete_scim_connection(&self, name: &str) -> Result<(), ClientError> {
        self.delete(&format!("/api/v1/admin/scim/connections/{name}"))
            .await
    }

    pub async fn login(&self, body: &LoginBody) -> Result<LoginStarted, ClientError> {
        self.post("/api/v1/auth/login", body).await
    }

    pub async fn exchange_code(
        &self,
        state: &str,
        code: &str,
        verifier: &str,
    ) -> Result<TokenSet, ClientError> {
        let body = TokenExchangeBody {
            state: state.to_owned(),
            code: code.to_owned(),
            code_verifier: verifier.to_owned(),
        };
        self.post("/api/v1/auth/token", &body).await
    }

    pub async fn start_device_login(&self, body: &DeviceLoginBody) -> Result<DeviceStarted, ClientError> {
        self.post("/api/v1/auth/device", body).await
    }

    pub async fn poll_device_login(&self, handle: &str) -> Result<DevicePoll, ClientError> {
        let body = DevicePollBody {
            handle: handle.to_owned(),
        };
        self.post("/api/v1/auth/device/token", &body).await
    }

    pub async fn refresh(&self, refresh_token: &str) -> Result<TokenSet, ClientError> {
        let body = RefreshBody {
            refresh_token: refresh_token.to_owned(),
        };
        self.post("/api/v1/auth/refresh", &body).await
    }

    pub async fn logout(&self) -> Result<(), ClientError> {
        self.call::<serde_json::Value, ()>(
            Method::POST,
            "/api/v1/auth/logout",
            &[],
            Some(&serde_json::json!({})),
        )
        .await
    }

    pub async fn sessions(&self, user: Option<&str>, all: bool) -> Result<Vec<SessionView>, ClientError> {
        let mut query = vec![("all", all.to_string())];
        if let Some(u) = user {
            query.push(("user", u.to_owned()));
        }
        self.get("/api/v1/admin/sessions", &query).await
    }

    pub async fn revoke_session(&self, id: &str) -> Result<SessionView, ClientError> {
        self.post(
            &format!("/api/v1/admin/sessions/{id}/revoke"),
            &serde_json::json!({}),
        )
        .await
    }

    pub async fn sso_providers(&self) -> Result<Vec<SsoProviderView>, ClientError> {
        self.get("/api/v1/admin/sso", &[]).await
    }

    pub async fn users(&self) -> Result<Vec<UserView>, ClientError> {
        self.get("/api/v1/admin/users", &[]).await
    }

    /// Live API tokens (admins), a user's or everyone's.
    pub async fn tokens(
        &self,
        user: Option<&str>,
    ) -> Result<Vec<jitgate_shared::v1::api::TokenView>, ClientError> {
        let query: Vec<(&str, String)> = user.map(|u| ("user", u.to_owned())).into_iter().collect();
        self.get("/api/v1/admin/tokens", &query).await
    }

    /// Revokes an API token by its id.
    pub async fn revoke_token(&self, id: &str) -> Result<jitgate_shared::v1::api::TokenView, ClientError> {
        self.call::<(), _>(Method::DELETE, &format!("/api/v1/admin/tokens/{id}"), &[], None)
            .await
    }

    /// A new token for `user` (admins).
    pub async fn issue_token(&self, user: &jitgate_shared::v1::UserId) -> Result<IssuedToken, ClientError> {
        self.post(
            &format!("/api/v1/admin/users/{user}/tokens"),
            &serde_json::json!({}),
        )
        .await
    }

    /// A one-time console sign-in link for a local account (admins).
    pub async fn sign_in_link(
        &self,
        user: &jitgate_shared::v1::UserId,
    ) -> Result<jitgate_shared::v1::api::SignInLinkIssued, ClientError> {
        self.post(
            &format!("/api/v1/admin/users/{user}/sign-in-link"),
            &serde_json::json!({}),
        )
        .await
    }

    pub async fn whoami(&self) -> Result<UserView, ClientError> {
        self.get("/api/v1/whoami", &[]).await
    }

    pub async fn create_request(&self, body: &CreateRequestBody) -> Result<RequestView, ClientError> {
        self.post("/api/v1/requests", body).await
    }

    pub async fn request(&self, id: RequestId) -> Result<RequestView, ClientError> {
        self.get(&format!("/api/v1/requests/{id}"), &[]).await
    }

    pub async fn requests(&self, query: &[(&str, String)]) -> Result<Page<RequestView>, ClientError> {
        self.get("/api/v1/requests", query).await
    }

    pub async fn approve(&self, id: RequestId, comment: Option<String>) -> Result<RequestView, ClientError> {
        self.post(&format!("/api/v1/requests/{id}/approve"), &ReviewBody { comment })
            .await
    }

    pub async fn deny(&self, id: RequestId, comment: Option<String>) -> Result<RequestView, ClientError> {
        self.post(&format!("/api/v1/requests/{id}/deny"), &ReviewBody { comment })
            .await
    }

    pub async fn cancel(&self, id: RequestId) -> Result<RequestView, ClientError> {
        self.post(&format!("/api/v1/requests/{id}/cancel"), &serde_json::json!({}))
            .await
    }

    /// What an id names: a request or a grant.
    pub async fn identify(&self, id: uuid::Uuid) -> Result<Identified, ClientError> {
        self.get(&format!("/api/v1/ids/{id}"), &[]).await
    }

    pub async fn grant(&self, id: GrantId) -> Result<GrantView, ClientError> {
        self.get(&format!("/api/v1/grants/{id}"), &[]).await
    }

    pub async fn grants(&self, query: &[(&str, String)]) -> Result<Page<GrantView>, ClientError> {
        self.get("/api/v1/grants", query).await
    }

    pub async fn revoke(&self, id: GrantId, reason: Option<String>) -> Result<GrantView, ClientError> {
        self.post(&format!("/api/v1/grants/{id}/revoke"), &RevokeBody { reason })
            .await
    }

    pub async fn extend(&self, id: GrantId, body: &ExtendBody) -> Result<ExtendOutcome, ClientError> {
        self.post(&format!("/api/v1/grants/{id}/extend"), body).await
    }

    pub async fn configurations(&self) -> Result<Vec<Configuration>, ClientError> {
        self.get("/api/v1/admin/configurations", &[]).await
    }

    pub async fn put_configuration(&self, c: &Configuration) -> Result<Configuration, ClientError> {
        self.put(&format!("/api/v1/admin/configurations/{}", c.id), c)
            .await
    }

    pub async fn list_resources(&self) -> Result<Vec<Resource>, ClientError> {
        self.get("/api/v1/admin/resources", &[]).await
    }

    pub async fn put_resource(&self, r: &Resource) -> Result<Resource, ClientError> {
        self.put(&format!("/api/v1/admin/resources/{}", r.id), r).await
    }

    /// Creates a user (returning its first token) or updates one.
    pub async fn create_user(&self, u: &UserBody) -> Result<IssuedToken, ClientError> {
        self.put(&format!("/api/v1/admin/users/{}", u.id), u).await
    }

    /// Updates an existing user.
    pub async fn update_user(&self, u: &UserBody) -> Result<UserView, ClientError> {
        self.put(&format!("/api/v1/admin/users/{}", u.id), u).await
    }

    /// Disables an account: its grants end (revokes queued), its requests,
    /// sessions and tokens with them.
    pub async fn disable_user(&self, id: &jitgate_shared::v1::UserId) -> Result<UserView, ClientError> {
        self.post(
            &format!("/api/v1/admin/users/{id}/disable"),
            &serde_json::json!({}),
        )
        .await
    }

    pub async fn create_join_token(
        &self,
        body: &CreateJoinTokenBody,
    ) -> Result<JoinTokenIssued, ClientError> {
        self.post("/api/v1/admin/join-tokens", body).await
    }

    pub async fn enroll(&self, body: &EnrollBody) -> Result<Enrolled, ClientError> {
        self.post("/api/v1/agents/enroll", body).await
    }

    pub async fn revoke_agent(&self, id: jitgate_shared::v1::AgentId) -> Result<AgentView, ClientError> {
        self.post(
            &format!("/api/v1/admin/agents/{id}/revoke"),
            &serde_json::json!({}),
        )
        .await
    }

    pub async fn approve_agent(&self, id: jitgate_shared::v1::AgentId) -> Result<AgentView, ClientError> {
        self.post(
            &format!("/api/v1/admin/agents/{id}/approve"),
            &serde_json::json!({}),
        )
        .await
    }

    pub async fn agents(&self) -> Result<Vec<AgentView>, ClientError> {
        self.get("/api/v1/admin/agents", &[]).await
    }

    pub async fn reload_policies(&self) -> Result<PolicyStatus, ClientError> {
        self.post("/api/v1/admin/policies/reload", &serde_json::json!({}))
            .await
    }

    pub async fn explain(
        &self,
        resource: &jitgate_shared::v1::ResourceId,
        user: &jitgate_shared::v1::UserId,
    ) -> Result<jitgate_shared::v1::api::ExplainView, ClientError> {
        self.get(
            "/api/v1/admin/explain",
            &[("resource", resource.to_string()), ("user", user.to_string())],
        )
        .await
    }

    /// Closes a queued revoke: the entitlement was removed by hand.
    pub async fn force_close_revoke(
        &self,
        command: &str,
        reason: &str,
    ) -> Result<Option<jitgate_shared::v1::api::GrantView>, ClientError> {
        self.post(
            &format!("/api/v1/admin/revokes/{command}/force-close"),
            &jitgate_shared::v1::api::ForceCloseBody {
                reason: reason.to_owned(),
            },
        )
        .await
    }

    /// The audit log, newest first, filtered as the API's query says
    /// (`kind`, `person`, `resource`, `since`, `until`, `before`, `limit`).
    pub async fn audit_log(
        &self,
        query: &[(&str, String)],
    ) -> Result<jitgate_shared::v1::api::AuditLogPage, ClientError> {
        self.get("/api/v1/admin/audit", query).await
    }

    /// Notification delivery per address.
    pub async fn notification_status(
        &self,
    ) -> Result<Vec<jitgate_shared::v1::api::NotificationEndpointView>, ClientError> {
        self.get("/api/v1/admin/notifications", &[]).await
    }

    pub async fn outbox(
        &self,
        configuration: &str,
        limit: usize,
    ) -> Result<Vec<jitgate_shared::v1::signing::CommandBody>, ClientError> {
        self.get(
            &format!("/api/v1/admin/outbox/{configuration}"),
            &[("limit", limit.to_string())],
        )
        .await
    }
}
