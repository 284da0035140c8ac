//! Enrolling gateway agents: an admin makes a one-time join token bound to a
//! configuration; an agent spends it with a CSR and gets a short-lived client
//! certificate naming itself and that configuration.

use base64::Engine;
use jitgate_shared::v1::api::{
    AgentState, AgentView, CreateJoinTokenBody, EnrollBody, Enrolled, JoinTokenIssued, Role,
};
use jitgate_shared::v1::AgentId;

use super::auth::{hash_token, random_token};
use super::{require_role, retry_conflicts, Broker, ServiceError};
use crate::audit::{Actor, AuditEntry, AuditEvent};
use crate::domain::agent::{Agent, JoinToken, Presence};
use crate::domain::user::User;
use crate::store::Change;
use crate::tls::agent::AgentIdentity;

/// Prefix of join tokens, distinct from API tokens.
pub const JOIN_TOKEN_PREFIX: &str = "jgj_";
const DEFAULT_JOIN_TTL: u64 = 3600;
const MAX_JOIN_TTL: u64 = 7 * 24 * 3600;

impl Broker {
    #[tracing::instrument(skip(self, actor, body), fields(user = %actor.id, configuration = %body.configuration))]
    pub async fn create_join_token(
        &self,
        actor: &User,
        body: CreateJoinTokenBody,
    ) -> Result<JoinTokenIssued, ServiceError> {
        require_role(actor, Role::Admin)?;
        let ca = &self.keys()?.ca;
        let config = self
            .store
            .configuration(&body.configuration)
            .await?
            .ok_or_else(|| {
                ServiceError::invalid(
                    "configuration",
                    format!("unknown configuration `{}`", body.configuration),
                )
            })?;
        if !config.config.enabled {
            return Err(ServiceError::invalid(
                "configuration",
                format!("configuration `{}` is disabled", body.configuration),
            ));
        }
        let ttl = body.ttl_seconds.unwrap_or(DEFAULT_JOIN_TTL);
        if ttl == 0 || ttl > MAX_JOIN_TTL {
            return Err(ServiceError::invalid(
                "ttl_seconds",
                format!("ttl_seconds {ttl} must be between 1 and {MAX_JOIN_TTL} (a week)"),
            ));
        }
        let now = self.clock.now();
        let token = random_token(JOIN_TOKEN_PREFIX);
        let expires_at = now + chrono::Duration::seconds(i64::try_from(ttl).unwrap_or(3600));
        let mut change = Change::default();
        change.join_tokens.push(JoinToken {
            hash: hash_token(&token),
            version: 0,
            configuration: body.configuration.clone(),
            created_by: actor.id.clone(),
            created_at: now,
            expires_at,
            used_at: None,
            used_by: None,
        });
        change.audit.push(AuditEntry {
            at: now,
            actor: Actor::User(actor.id.clone()),
            event: AuditEvent::JoinTokenCreated {
                configuration: body.configuration.clone(),
                expires_at,
            },
        });
        self.commit(change).await?;
        Ok(JoinTokenIssued {
            token,
            configuration: body.configuration,
            expires_at,
            ca_fingerprint: ca.fingerprint(),
        })
    }

    /// Spends a join token and signs the agent's CSR. Of racing enrollments
    /// with one token, exactly one gets a certificate.
    #[tracing::instrument(skip_all)]
    pub async fn enroll(&self, body: EnrollBody) -> Result<Enrolled, ServiceError> {
        let keys = self.keys()?;
        let ca = &keys.ca;
        let refuse = || ServiceError::Unauthenticated("unknown join token".into());
        if !body.token.starts_with(JOIN_TOKEN_PREFIX) {
            return Err(refuse());
        }
        let hash = hash_token(&body.token);
        retry_conflicts(|| async {
            let token = self.store.join_token(&hash).await?.ok_or_else(refuse)?;
            let now = self.clock.now();
            let id = AgentId::generate();
            let used = token
                .redeem(id, now)
                .map_err(|e| ServiceError::Unauthenticated(e.to_string()))?;
            let identity = AgentIdentity {
                agent: id,
                configuration: token.configuration.clone(),
            };
            let ttl = self.settings.agent_cert_ttl;
            let certificate_pem = ca
                .issue_agent_cert(&body.csr_pem, &identity, now, ttl)
                .map_err(|e| ServiceError::invalid("csr_pem", e.to_string()))?;
            let agent = Agent {
                id,
                version: 0,
                configuration: token.configuration.clone(),
                state: if self.settings.agent_approval {
                    AgentState::Pending
                } else {
                    AgentState::Active
                },
                enrolled_at: now,
                certificate_not_after: now + ttl,
            };
            let mut change = Change::default();
            change.join_tokens.push(used);
            change.audit.push(AuditEntry {
                at: now,
                actor: Actor::System,
                event: AuditEvent::AgentEnrolled {
                    agent: id,
                    configuration: token.configuration.clone(),
                    certificate_not_after: agent.certificate_not_after,
                },
            });
            let view = agent.view(Presence::default());
            change.agents.push(agent);
            self.commit(change).await?;
            tracing::info!(agent = %id, configuration = %view.configuration, state = ?view.state, "agent enrolled");
            Ok(Enrolled {
                agent: view,
                certificate_pem,
                ca_pem: ca.cert_pem().to_owned(),
                command_public_key: base64::engine::general_purpose::STANDARD_NO_PAD
                    .encode(keys.commands.verifier().public_bytes()),
                command_key_id: keys.commands.key_id().to_owned(),
                hub_url: self.settings.hub_url.clone(),
            })
        })
        .await
    }

    /// Revokes an agent: its certificate is refused at every later handshake
    /// (and the hub drops its session).
    #[tracing::instrument(skip(self, actor), fields(user = %actor.id, agent = %id))]
    pub async fn revoke_agent(&self, actor: &User, id: AgentId) -> Result<AgentView, ServiceError> {
        let view = self
            .move_agent(actor, id, AgentState::Revoked, |state| {
                (state == AgentState::Revoked).then(|| format!("agent {id} is already revoked"))
            })
            .await?;
        self.live.kick(id);
        tracing::warn!(agent = %id, "agent revoked; its session is closed");
        Ok(view)
    }

    /// Lets a pending agent connect.
    #[tracing::instrument(skip(self, actor), fields(user = %actor.id, agent = %id))]
    pub async fn approve_agent(&self, actor: &User, id: AgentId) -> Result<AgentView, ServiceError> {
        let view = self
            .move_agent(actor, id, AgentState::Active, |state| {
                (state != AgentState::Pending)
                    .then(|| format!("agent {id} is {state:?}, not pending approval"))
            })
            .await?;
        tracing::info!(agent = %id, "agent approved");
        Ok(view)
    }

    /// An admin moves an agent to `to`, unless `refuse` names a reason in
    /// its current state; audited as revoked or approved.
    async fn move_agent(
        &self,
        actor: &User,
        id: AgentId,
        to: AgentState,
        refuse: impl Fn(AgentState) -> Option<String>,
    ) -> Result<AgentView, ServiceError> {
        require_role(actor, Role::Admin)?;
        retry_conflicts(|| async {
            let mut agent = self
                .store
                .agent(id)
                .await?
                .ok_or_else(|| ServiceError::not_found("agent", id))?;
            if let Some(why) = refuse(agent.state) {
                return Err(ServiceError::Conflict(why));
            }
            agent.state = to;
            let configuration = agent.configuration.clone();
            let event = match to {
                AgentState::Revoked => AuditEvent::AgentRevoked {
                    agent: id,
                    configuration,
                },
                _ => AuditEvent::AgentApproved {
                    agent: id,
                    configuration,
                },
            };
            let mut change = Change::default();
            change.audit.push(AuditEntry {
                at: self.clock.now(),
                actor: Actor::User(actor.id.clone()),
                event,
            });
            let view = agent.view(self.live.presence(id));
            change.agents.push(agent);
            self.commit(change).await?;
            Ok(view)
        })
        .await
    }

    /// Whether an agent whose certificate verified may connect: it must be
    /// enrolled, not revoked, and for the configuration its certificate
    /// names. The hub asks at every handshake.
    pub async fn admit_agent(&self, identity: &AgentIdentity) -> Result<Agent, ServiceError> {
        let refuse = |why: &str| ServiceError::Forbidden(format!("agent {}: {why}", identity.agent));
        let agent = self
            .store
            .agent(identity.agent)
            .await?
            .ok_or_else(|| refuse("not enrolled"))?;
        match agent.state {
            AgentState::Revoked => return Err(refuse("revoked")),
            AgentState::Pending => return Err(refuse("awaiting an admin's approval")),
            AgentState::Active => {}
        }
        if agent.configuration != identity.configuration {
            return Err(refuse("certificate names another configuration"));
        }
        Ok(agent)
    }

    pub async fn list_agents(&self, actor: &User) -> Result<Vec<AgentView>, ServiceError> {
        super::admin::require_privileged(actor)?;
        Ok(self
            .store
            .agents()
            .await?
            .iter()
            .map(|a| a.view(self.live.presence(a.id)))
            .collect())
    }

    pub(crate) fn keys(&self) -> Result<&super::BrokerKeys, ServiceError> {
        self.keys.as_ref().ok_or_else(|| {
            ServiceError::Unavailable("this broker has no keys loaded; agents cannot enroll".into())
        })
    }
}
