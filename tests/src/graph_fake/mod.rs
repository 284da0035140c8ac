//! A contract fake of Microsoft's identity platform and of the Graph
//! endpoints jitgate uses, served over HTTPS with a test CA. It is a test
//! peer, kept faithful to Microsoft's documented request and response
//! shapes; it is not a cloud.
//!
//! - [`token`]: the v2.0 token endpoint (client credentials, with a secret
//!   or a client assertion);
//! - [`graph`]: users (by id, user principal name, mail), group members
//!   (`members/$ref`), directory-role and PIM for Groups schedule requests
//!   and instances, `revokeSignInSessions`;
//! - [`directory`]: the tenant's state behind them.
//!
//! Switches: server errors (503), throttling of writes (a per-second limit
//! for the app, or the next N forced, 429 + `Retry-After`), replication
//! delay (new objects 404 for a while), token lifetime and revocation of
//! issued tokens, page size.

// The fake is a peer with its own wall clock, as Graph has.
#![allow(clippy::disallowed_methods)]

pub mod directory;
mod graph;
mod token;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::routing::{get, post};
use chrono::Utc;

use directory::{Assignment, Directory, GraphError, Group, User};

/// An app registration the fake knows.
#[derive(Debug, Clone, Default)]
pub struct App {
    pub tenant: String,
    pub client_id: String,
    pub secret: String,
    /// A federated credential: the external token (a Kubernetes service
    /// account token, say) this app accepts as client assertion. The fake
    /// matches it exactly instead of checking the issuer's signature.
    pub federated_token: Option<String>,
    /// A certificate credential (PEM): client assertions signed with its
    /// key are accepted, as Entra checks them (signature, thumbprint,
    /// audience, issuer and subject, lifetime).
    pub certificate_pem: Option<String>,
}

impl App {
    fn check_assertion(&self, assertion: &str, audience: &str) -> Result<(), (u32, String)> {
        if self.federated_token.as_deref() == Some(assertion) {
            return Ok(());
        }
        let Some(pem) = &self.certificate_pem else {
            return Err((
                700213,
                format!(
                    "No matching federated identity record found for presented assertion subject of app '{}'.",
                    self.client_id
                ),
            ));
        };
        let invalid = |code: u32, what: &str| (code, format!("Client assertion {what}."));
        let header =
            jsonwebtoken::decode_header(assertion).map_err(|_| invalid(50027, "is not a valid JWT"))?;
        let der = rustls_pki_types::pem::PemObject::from_pem_slice(pem.as_bytes())
            .map(|c: rustls_pki_types::CertificateDer<'static>| c.to_vec())
            .map_err(|_| invalid(50027, "cannot be checked: bad certificate"))?;
        use base64::Engine as _;
        use sha2::Digest as _;
        let thumbprint = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(&der));
        if header.x5t_s256.as_deref() != Some(thumbprint.as_str()) {
            return Err((
                700027,
                "The certificate with identifier used to sign the client assertion is not registered on application."
                    .into(),
            ));
        }
        let (_, cert) =
            x509_parser::parse_x509_certificate(&der).map_err(|_| invalid(50027, "bad certificate"))?;
        let key = jsonwebtoken::DecodingKey::from_rsa_der(&cert.public_key().subject_public_key.data);
        let mut validation = jsonwebtoken::Validation::new(header.alg);
        validation.set_audience(&[audience]);
        validation.set_issuer(&[&self.client_id]);
        validation.sub = Some(self.client_id.clone());
        validation.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
        jsonwebtoken::decode::<serde_json::Value>(assertion, &key, &validation).map_err(|e| {
            match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => {
                    invalid(700027, "contains an invalid signature")
                }
                jsonwebtoken::errors::ErrorKind::ExpiredSignature
                | jsonwebtoken::errors::ErrorKind::ImmatureSignature => {
                    invalid(700024, "is not within its valid time range")
                }
                other => (50027, format!("JWT token is invalid or malformed: {other:?}.")),
            }
        })?;
        Ok(())
    }
}

/// The fake's switches; see the module docs.
#[derive(Debug, Clone)]
pub struct Switches {
    /// Lifetime of issued tokens (`expires_in`), enforced by Graph calls.
    pub token_lifetime: Duration,
    /// Writes per second the app may make; more are answered 429.
    pub write_limit: Option<u32>,
    /// Answer the next N writes 429 with this `Retry-After` (seconds).
    pub throttle_next: u32,
    pub retry_after_secs: u64,
    /// Answer the next N calls 503.
    pub fail_next: u32,
    /// Objects added from now on stay invisible (404) for this long.
    pub replication_delay: Duration,
    /// Most members in one page.
    pub page_size: usize,
}

impl Default for Switches {
    fn default() -> Self {
        Self {
            token_lifetime: Duration::from_secs(3599),
            write_limit: None,
            throttle_next: 0,
            retry_after_secs: 1,
            fail_next: 0,
            replication_delay: Duration::ZERO,
            page_size: 100,
        }
    }
}

/// What the fake saw.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub requests: u64,
    pub writes: u64,
    pub throttled: u64,
    pub server_errors: u64,
    pub unauthorized: u64,
    /// Most writes admitted within any one second.
    pub peak_writes_per_second: usize,
}

struct IssuedToken {
    expires: Instant,
    revoked: bool,
}

pub(crate) struct Shared {
    apps: Vec<App>,
    directory: Mutex<Directory>,
    tokens: Mutex<HashMap<String, IssuedToken>>,
    switches: Mutex<Switches>,
    stats: Mutex<Stats>,
    /// Admission times of writes within the last second.
    recent_writes: Mutex<VecDeque<Instant>>,
    token_requests: AtomicU64,
    base_url: Mutex<String>,
    managed_identity: Mutex<Option<ManagedIdentity>>,
    /// Provisioning jobs (service principal id, job id) and the on-demand
    /// requests each received.
    provisioning: Mutex<HashMap<(String, String), Vec<ProvisionRequest>>>,
}

/// One group and its members asked of `provisionOnDemand`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvisionRequest {
    pub rule_id: String,
    pub group: String,
    pub members: Vec<String>,
}

/// An App Service style managed identity endpoint (`IDENTITY_ENDPOINT`,
/// secret header `X-IDENTITY-HEADER`).
#[derive(Debug, Clone)]
pub struct ManagedIdentity {
    /// The value of `IDENTITY_HEADER`.
    pub header: String,
    /// The identity's client id (user-assigned identities are asked for by it).
    pub client_id: String,
    pub user_assigned: bool,
}

impl Shared {
    fn switch<T>(&self, f: impl FnOnce(&mut Switches) -> T) -> T {
        f(&mut self.switches.lock().unwrap())
    }

    fn count(&self, f: impl FnOnce(&mut Stats)) {
        f(&mut self.stats.lock().unwrap())
    }

    fn base_url(&self) -> String {
        self.base_url.lock().unwrap().clone()
    }

    fn url_for_audience(&self, tenant: &str) -> String {
        format!("{}/{tenant}/oauth2/v2.0/token", self.base_url())
    }

    fn issue_token(&self, lifetime: Duration) -> String {
        let token = format!("fake.{}", uuid_like());
        self.tokens.lock().unwrap().insert(
            token.clone(),
            IssuedToken {
                expires: Instant::now() + lifetime,
                revoked: false,
            },
        );
        token
    }

    fn check_token(&self, token: Option<&str>) -> Result<(), GraphError> {
        let tokens = self.tokens.lock().unwrap();
        let problem = match token.map(|t| tokens.get(t)) {
            None => Some("Access token is empty."),
            Some(None) => Some("Access token validation failure. Invalid audience."),
            Some(Some(t)) if t.revoked || t.expires <= Instant::now() => {
                Some("Lifetime validation failed, the token is expired.")
            }
            Some(Some(_)) => None,
        };
        match problem {
            None => Ok(()),
            Some(message) => {
                drop(tokens);
                self.count(|s| s.unauthorized += 1);
                Err(GraphError::new(
                    axum::http::StatusCode::UNAUTHORIZED,
                    "InvalidAuthenticationToken",
                    message,
                ))
            }
        }
    }

    /// Admits a write, or returns the `Retry-After` seconds of a 429.
    fn admit_write(&self) -> Option<u64> {
        let (forced, limit, retry_after) = self.switch(|sw| {
            let forced = sw.throttle_next > 0;
            sw.throttle_next = sw.throttle_next.saturating_sub(1);
            (forced, sw.write_limit, sw.retry_after_secs)
        });
        if forced {
            return Some(retry_after);
        }
        let now = Instant::now();
        let mut recent = self.recent_writes.lock().unwrap();
        while recent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
        {
            recent.pop_front();
        }
        if limit.is_some_and(|l| recent.len() >= l as usize) {
            return Some(1);
        }
        recent.push_back(now);
        let in_window = recent.len();
        drop(recent);
        self.count(|s| {
            s.writes += 1;
            s.peak_writes_per_second = s.peak_writes_per_second.max(in_window);
        });
        None
    }
}

pub struct GraphFake {
    /// `https://127.0.0.1:PORT`: both authority host and Graph base.
    pub url: String,
    /// PEM of the test CA that signed the server certificate.
    pub ca_pem: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for GraphFake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphFake").field("url", &self.url).finish()
    }
}

impl GraphFake {
    pub async fn start(apps: Vec<App>) -> Self {
        let ca = crate::test_ca::TestCa::new("Graph fake");

        let shared = Arc::new(Shared {
            apps,
            directory: Mutex::new(Directory::default()),
            tokens: Mutex::new(HashMap::new()),
            switches: Mutex::new(Switches::default()),
            stats: Mutex::new(Stats::default()),
            recent_writes: Mutex::new(VecDeque::new()),
            token_requests: AtomicU64::new(0),
            base_url: Mutex::new(String::new()),
            managed_identity: Mutex::new(None),
            provisioning: Mutex::new(HashMap::new()),
        });
        let graph = axum::Router::new()
            .route("/users", get(graph::list_users))
            .route("/users/{id}", get(graph::get_user))
            .route(
                "/users/{id}/revokeSignInSessions",
                post(graph::revoke_sign_in_sessions),
            )
            .route("/groups/{id}/members", get(graph::members))
            .route("/groups/{id}/members/$ref", post(graph::add_member))
            .route(
                "/groups/{id}/members/{member}/$ref",
                axum::routing::delete(graph::remove_member),
            )
            .route(
                "/roleManagement/directory/roleAssignmentScheduleRequests",
                post(graph::role_request),
            )
            .route(
                "/roleManagement/directory/roleAssignmentScheduleInstances",
                get(graph::role_instances),
            )
            .route(
                "/identityGovernance/privilegedAccess/group/assignmentScheduleRequests",
                post(graph::pim_group_request),
            )
            .route(
                "/identityGovernance/privilegedAccess/group/assignmentScheduleInstances",
                get(graph::pim_group_instances),
            )
            .route(
                "/servicePrincipals/{sp}/synchronization/jobs/{job}/provisionOnDemand",
                post(graph::provision_on_demand),
            )
            .fallback(graph::unknown)
            .layer(axum::middleware::from_fn_with_state(shared.clone(), graph::gate));
        let router = axum::Router::new()
            .route("/{tenant}/oauth2/v2.0/token", post(token::token))
            .route("/msi/token", get(token::managed_identity))
            .nest("/v1.0", graph)
            .with_state(shared.clone());
        let (url, task) = ca.serve(router).await;
        *shared.base_url.lock().unwrap() = url.clone();
        Self {
            url,
            ca_pem: ca.ca_pem.clone(),
            shared,
            task,
        }
    }

    /// Settings for the `entra` provider to work against this fake as the
    /// app `client_id` with `secret`: the fake's CA trusted, token retries
    /// off, `rate` Graph writes per second, 4 attempts per call.
    pub fn provider_settings(
        &self,
        tenant: &str,
        client_id: &str,
        secret: &str,
        rate: u32,
    ) -> jitgate_agent::provider::entra::EntraSettings {
        use jitgate_agent::provider::entra::credential::{EntraAuth, EntraCredentialSettings};
        jitgate_agent::provider::entra::EntraSettings {
            credential: EntraCredentialSettings {
                tenant_id: tenant.into(),
                auth: EntraAuth::ClientSecret {
                    client_id: client_id.into(),
                    secret: secret.into(),
                },
                authority_host: Some(self.url.clone()),
                extra_ca_pem: Some(self.ca_pem.clone().into_bytes()),
                retries: false,
            },
            graph: jitgate_agent::provider::entra::graph::GraphSettings {
                graph_url: self.url.clone(),
                max_attempts: 4,
                timeout: Duration::from_secs(10),
            },
            budget: jitgate_agent::provider::budget::BudgetSettings {
                rate: std::num::NonZeroU32::new(rate).unwrap(),
                operations: 8,
                throttle_pause: Duration::from_millis(100),
                throttle_pause_max: Duration::from_secs(2),
            },
            replication_wait: Duration::from_secs(5),
        }
    }

    /// Token requests answered so far (granted or not).
    pub fn token_requests(&self) -> u64 {
        self.shared.token_requests.load(Ordering::Relaxed)
    }

    pub fn stats(&self) -> Stats {
        self.shared.stats.lock().unwrap().clone()
    }

    /// Changes the switches.
    pub fn set(&self, f: impl FnOnce(&mut Switches)) {
        self.shared.switch(f)
    }

    /// Serves a managed identity at `{url}/msi/token`, the value for
    /// `IDENTITY_ENDPOINT`.
    pub fn enable_managed_identity(&self, identity: ManagedIdentity) -> String {
        *self.shared.managed_identity.lock().unwrap() = Some(identity);
        format!("{}/msi/token", self.url)
    }

    /// A provisioning job of the enterprise app `service_principal`.
    pub fn add_provisioning_job(&self, service_principal: &str, job: &str) {
        self.shared
            .provisioning
            .lock()
            .unwrap()
            .insert((service_principal.into(), job.into()), Vec::new());
    }

    /// The on-demand requests a provisioning job received.
    pub fn provision_requests(&self, service_principal: &str, job: &str) -> Vec<ProvisionRequest> {
        let jobs = self.shared.provisioning.lock().unwrap();
        jobs.get(&(service_principal.to_owned(), job.to_owned()))
            .cloned()
            .unwrap_or_default()
    }

    /// Every token issued so far stops working (as after a key rollover
    /// or a revoked app); new ones are issued normally.
    pub fn revoke_tokens(&self) {
        for t in self.shared.tokens.lock().unwrap().values_mut() {
            t.revoked = true;
        }
    }

    fn visible_from(&self) -> chrono::DateTime<Utc> {
        let delay = self.shared.switch(|sw| sw.replication_delay);
        Utc::now() + chrono::Duration::from_std(delay).unwrap()
    }

    /// Adds a user; returns its object id.
    pub fn add_user(&self, user_principal_name: &str, mail: Option<&str>) -> String {
        let id = uuid_like();
        let visible_from = self.visible_from();
        self.shared.directory.lock().unwrap().users.insert(
            id.clone(),
            User {
                id: id.clone(),
                user_principal_name: user_principal_name.into(),
                mail: mail.map(Into::into),
                display_name: user_principal_name.split('@').next().unwrap_or_default().into(),
                visible_from,
                sessions_revoked: 0,
                sign_in_sessions_valid_from: None,
            },
        );
        id
    }

    /// Adds a security group; returns its object id.
    pub fn add_group(&self, display_name: &str) -> String {
        let id = uuid_like();
        let visible_from = self.visible_from();
        self.shared.directory.lock().unwrap().groups.insert(
            id.clone(),
            Group {
                id: id.clone(),
                display_name: display_name.into(),
                visible_from,
                members: Default::default(),
            },
        );
        id
    }

    /// Makes a role definition id known (built-in roles use their template id).
    pub fn add_role_definition(&self, id: &str) {
        self.shared
            .directory
            .lock()
            .unwrap()
            .role_definitions
            .insert(id.into());
    }

    /// Direct members of a group (object ids), replicated or not.
    pub fn members(&self, group: &str) -> Vec<String> {
        let dir = self.shared.directory.lock().unwrap();
        dir.groups
            .get(group)
            .map(|g| g.members.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Adds a member directly, as an administrator would.
    pub fn add_member(&self, group: &str, user: &str) {
        let mut dir = self.shared.directory.lock().unwrap();
        dir.groups.get_mut(group).unwrap().members.insert(user.into());
    }

    /// Directory-role assignments active now.
    pub fn role_assignments(&self) -> Vec<Assignment> {
        let now = Utc::now();
        let dir = self.shared.directory.lock().unwrap();
        dir.roles.iter().filter(|a| a.active_at(now)).cloned().collect()
    }

    /// PIM for Groups assignments active now.
    pub fn pim_group_assignments(&self) -> Vec<Assignment> {
        let now = Utc::now();
        let dir = self.shared.directory.lock().unwrap();
        dir.pim_groups
            .iter()
            .filter(|a| a.active_at(now))
            .cloned()
            .collect()
    }

    /// How often the user's sign-in sessions were revoked.
    pub fn sessions_revoked(&self, user: &str) -> u32 {
        let dir = self.shared.directory.lock().unwrap();
        dir.users.get(user).map_or(0, |u| u.sessions_revoked)
    }
}

impl Drop for GraphFake {
    fn drop(&mut self) {
        self.task.abort();
    }
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
