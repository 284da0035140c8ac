//! Gateway agents and the one-time join tokens that enroll them.

use chrono::{DateTime, Utc};
use jitgate_shared::v1::api::{AgentState, AgentView};
use jitgate_shared::v1::{AgentId, ConfigId, UserId};
use serde::{Deserialize, Serialize};

/// A join token as stored: only its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinToken {
    pub hash: String,
    pub version: u64,
    pub configuration: ConfigId,
    pub created_by: UserId,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub used_at: Option<DateTime<Utc>>,
    pub used_by: Option<AgentId>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    #[error("join token expired at {at}; ask an admin for a new one")]
    Expired { at: DateTime<Utc> },
    #[error("join token was already used at {at}; each token enrolls one agent")]
    Used { at: DateTime<Utc> },
}

impl JoinToken {
    /// Spends the token for `agent`. A token works once, before it expires.
    pub fn redeem(&self, agent: AgentId, now: DateTime<Utc>) -> Result<JoinToken, JoinError> {
        if let Some(at) = self.used_at {
            return Err(JoinError::Used { at });
        }
        if now >= self.expires_at {
            return Err(JoinError::Expired { at: self.expires_at });
        }
        let mut next = self.clone();
        next.used_at = Some(now);
        next.used_by = Some(agent);
        Ok(next)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Agent {
    pub id: AgentId,
    pub version: u64,
    pub configuration: ConfigId,
    pub state: AgentState,
    pub enrolled_at: DateTime<Utc>,
    pub certificate_not_after: DateTime<Utc>,
}

impl Agent {
    /// The API's view, with what the hub knows of its connection.
    pub fn view(&self, presence: Presence) -> AgentView {
        AgentView {
            id: self.id,
            configuration: self.configuration.clone(),
            state: self.state,
            enrolled_at: self.enrolled_at,
            certificate_not_after: self.certificate_not_after,
            online: presence.online,
            last_seen_at: presence.last_seen,
            agent_version: presence.agent_version,
            drift: presence.drift,
        }
    }
}

/// What the hub knows of an agent's connection (in memory).
#[derive(Debug, Clone, Default)]
pub struct Presence {
    pub online: bool,
    pub last_seen: Option<DateTime<Utc>>,
    pub agent_version: Option<String>,
    pub drift: Option<jitgate_shared::v1::api::DriftReport>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_works_once_and_only_before_it_expires() {
        let t = |s: i64| DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap();
        let token = JoinToken {
            hash: "h".into(),
            version: 0,
            configuration: ConfigId::new("entra").unwrap(),
            created_by: UserId::new("admin").unwrap(),
            created_at: t(0),
            expires_at: t(3600),
            used_at: None,
            used_by: None,
        };
        let agent = AgentId::generate();
        let used = token.redeem(agent, t(10)).unwrap();
        assert_eq!(used.used_by, Some(agent));
        assert_eq!(
            used.redeem(AgentId::generate(), t(11)),
            Err(JoinError::Used { at: t(10) })
        );
        assert_eq!(
            token.redeem(agent, t(3600)),
            Err(JoinError::Expired { at: t(3600) })
        );
    }
}
