//! The audit log: append-only, each record carrying the hash of the one
//! before it, so any edit or deletion breaks the chain at a findable record.

pub mod anchor;
pub mod query;
pub mod verify;

use chrono::{DateTime, Utc};
use jitgate_shared::v1::api::{CommandOp, Decision, EndReason};
use jitgate_shared::v1::protocol::Outcome;
use jitgate_shared::v1::{AgentId, ConfigId, GrantId, RequestId, ResourceId, UserId};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Who caused an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum Actor {
    User(UserId),
    /// The broker itself (scheduler, start-up).
    System,
    /// A directory, through its SCIM provisioning connection.
    Directory(String),
}

/// What happened. The serialized `type` is the record's kind
/// ([`AuditEvent::kind`]; every kind in [`AuditEvent::KINDS`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, strum::IntoStaticStr, strum::VariantNames)]
#[serde(tag = "type", rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum AuditEvent {
    RequestCreated {
        request: RequestId,
        resource: ResourceId,
        duration_seconds: u64,
        justification: Option<String>,
        ticket: Option<String>,
        break_glass: bool,
        /// The requester was on call on the workflow's schedule (absent:
        /// not, or no schedule).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        on_call: bool,
    },
    RequestReviewed {
        request: RequestId,
        decision: Decision,
        comment: Option<String>,
    },
    RequestApproved {
        request: RequestId,
    },
    RequestDenied {
        request: RequestId,
    },
    RequestCancelled {
        request: RequestId,
    },
    RequestPendingExpired {
        request: RequestId,
    },
    /// Approval skipped under a break-glass policy; to be reviewed afterwards.
    BreakGlassUsed {
        request: RequestId,
        resource: ResourceId,
    },
    GrantScheduled {
        grant: GrantId,
        request: RequestId,
        starts_at: DateTime<Utc>,
        ends_at: DateTime<Utc>,
    },
    /// The window opened. `command` is the grant command queued for the
    /// configuration's agent, absent when another grant already held the
    /// entitlement for longer.
    GrantActivated {
        grant: GrantId,
        configuration: ConfigId,
        entitlement: String,
        principal: String,
        ends_at: DateTime<Utc>,
        command: Option<String>,
    },
    GrantExtended {
        grant: GrantId,
        ends_at: DateTime<Utc>,
        command: Option<String>,
    },
    /// The window closed. `command` is the revoke queued when this was the
    /// last grant holding the entitlement.
    GrantEnded {
        grant: GrantId,
        configuration: ConfigId,
        reason: EndReason,
        /// Other grants still hold the entitlement, so it stays applied.
        lease_still_held: bool,
        command: Option<String>,
    },
    ConfigurationSaved {
        configuration: ConfigId,
    },
    ResourceSaved {
        resource: ResourceId,
    },
    UserSaved {
        user: UserId,
    },
    /// A directory created a user through SCIM.
    UserProvisioned {
        user: UserId,
        connection: String,
        scim_id: String,
    },
    /// A user lost access at once: every active or scheduled grant ended
    /// (revokes queued), every open request cancelled, every token and
    /// session ended.
    UserDeprovisioned {
        user: UserId,
        /// `deactivated` (`active: false`) or `deleted`.
        how: String,
        grants_ended: Vec<GrantId>,
        requests_cancelled: Vec<RequestId>,
        tokens_revoked: usize,
    },
    /// A deactivated user made active again (grants do not come back).
    UserReactivated {
        user: UserId,
    },
    ScimConnectionCreated {
        connection: String,
    },
    /// A person signed in through an identity provider.
    SignedIn {
        user: UserId,
        provider: String,
        session: String,
        /// The user was created just in time.
        created: bool,
        roles: Vec<String>,
    },
    /// A one-time sign-in link was made for a local account (the link
    /// itself is never recorded).
    SignInLinkIssued {
        user: UserId,
        expires_at: DateTime<Utc>,
    },
    /// A sign-in that reached a provider was refused.
    SignInRefused {
        provider: String,
        reason: String,
    },
    /// A sign-in session ended (signed out, revoked by an admin, refused
    /// by its provider at refresh, or deprovisioned).
    SessionEnded {
        session: String,
        user: UserId,
    },
    ScimConnectionDeleted {
        connection: String,
    },
    TokenIssued {
        user: UserId,
        expires_at: DateTime<Utc>,
    },
    /// An admin revoked an API token (named by its id, never the token).
    TokenRevoked {
        user: UserId,
        token: String,
    },
    JoinTokenCreated {
        configuration: ConfigId,
        expires_at: DateTime<Utc>,
    },
    AgentEnrolled {
        agent: AgentId,
        configuration: ConfigId,
        certificate_not_after: DateTime<Utc>,
    },
    AgentRevoked {
        agent: AgentId,
        configuration: ConfigId,
    },
    /// An admin let a pending agent connect.
    AgentApproved {
        agent: AgentId,
        configuration: ConfigId,
    },
    AgentCertificateRenewed {
        agent: AgentId,
        certificate_not_after: DateTime<Utc>,
    },
    /// An agent answered a command for good (success or a failure not worth
    /// retrying).
    CommandSettled {
        command: String,
        agent: AgentId,
        grant: GrantId,
        op: CommandOp,
        outcome: Outcome,
    },
    /// A revoke was refused or failed for good. It stays queued and is
    /// tried again; recorded at its first failure (and again if it fails
    /// after being force-closed and re-queued).
    RevokeFailed {
        command: String,
        agent: AgentId,
        grant: GrantId,
        entitlement: String,
        principal: String,
        outcome: Outcome,
    },
    /// A revoke that kept failing was replaced by a new grant of the same
    /// entitlement: it is held again, so nothing is left to remove.
    RevokeSuperseded {
        command: String,
        grant: GrantId,
        by: GrantId,
    },
    /// An admin closed a queued revoke, saying the entitlement was removed
    /// by hand.
    RevokeForceClosed {
        command: String,
        grant: GrantId,
        entitlement: String,
        principal: String,
        reason: String,
    },
    /// An agent of the configuration where a federated resource is used
    /// confirmed the elevation in effect there (the directory had synced).
    GrantEffective {
        grant: GrantId,
        agent: AgentId,
        configuration: ConfigId,
    },
    /// That agent confirmed the elevation gone there after the revoke.
    GrantRemovalConfirmed {
        grant: GrantId,
        agent: AgentId,
        configuration: ConfigId,
    },
    /// An agent removed an entitlement on its own at the deadline.
    AgentSelfRevoked {
        agent: AgentId,
        command: String,
        grant: GrantId,
        entitlement: String,
        principal: String,
        deadline: DateTime<Utc>,
        at: DateTime<Utc>,
        outcome: Outcome,
    },
    /// Reconciliation found the tenant differs from the leases.
    DriftFound {
        agent: AgentId,
        configuration: ConfigId,
        unexpected: Vec<String>,
        missing: Vec<String>,
        removing_unexpected: bool,
    },
    PoliciesLoaded {
        files: Vec<String>,
        policies: usize,
    },
    PoliciesRejected {
        error: String,
    },
    /// Something done in a chat (a Slack button, the deny modal) was
    /// refused: a bad or old signature, a replay, a chat user jitgate
    /// cannot map to a person by verified email, or what the review or
    /// extension service refused (a self-approval, a second vote of one
    /// person). `user` is the jitgate account when the chat user mapped.
    ChatActionRefused {
        channel: String,
        /// The chat's own user id, when the request could be read.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        chat_user: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user: Option<UserId>,
        /// `approve`, `deny`, `extend`, or `unread` (the request itself
        /// was refused).
        action: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request: Option<RequestId>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        grant: Option<GrantId>,
        reason: String,
    },
}

/// An event before the store places it in the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub at: DateTime<Utc>,
    pub actor: Actor,
    pub event: AuditEvent,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub seq: u64,
    pub at: DateTime<Utc>,
    pub actor: Actor,
    pub event: AuditEvent,
    pub prev_hash: String,
    pub hash: String,
}

/// The last record's sequence number and hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditHead {
    pub seq: u64,
    pub hash: String,
}

impl Default for AuditHead {
    fn default() -> Self {
        AuditHead {
            seq: 0,
            hash: GENESIS.to_owned(),
        }
    }
}

/// The `prev_hash` of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

fn hash_of(seq: u64, at: &DateTime<Utc>, actor: &Actor, event: &AuditEvent, prev_hash: &str) -> String {
    #[derive(Serialize)]
    struct Body<'a> {
        seq: u64,
        at: &'a DateTime<Utc>,
        actor: &'a Actor,
        event: &'a AuditEvent,
    }
    let body = serde_json::to_vec(&Body {
        seq,
        at,
        actor,
        event,
    })
    .unwrap_or_default();
    let mut h = Sha256::new();
    h.update(prev_hash.as_bytes());
    h.update(&body);
    hex::encode(h.finalize())
}

impl AuditHead {
    /// Chains `entry` after this head, returning the record and the new head.
    pub fn append(&self, entry: AuditEntry) -> (AuditRecord, AuditHead) {
        let seq = self.seq + 1;
        let hash = hash_of(seq, &entry.at, &entry.actor, &entry.event, &self.hash);
        let record = AuditRecord {
            seq,
            at: entry.at,
            actor: entry.actor,
            event: entry.event,
            prev_hash: self.hash.clone(),
            hash: hash.clone(),
        };
        (record, AuditHead { seq, hash })
    }
}

/// What is wrong at the first broken record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainBreak {
    #[error("record {seq}: expected sequence number {expected}")]
    Gap { seq: u64, expected: u64 },
    #[error("record {seq}: prev_hash does not match the hash of record {}", seq - 1)]
    Unlinked { seq: u64 },
    #[error("record {seq}: content does not match its hash (edited)")]
    Tampered { seq: u64 },
    #[error("record {seq}: unreadable: {error}")]
    Unreadable { seq: u64, error: String },
}

/// Checks records in order; returns how many verified or the first break.
#[derive(Debug, Default)]
pub struct ChainVerifier {
    head: AuditHead,
}

impl ChainVerifier {
    pub fn check(&mut self, record: &AuditRecord) -> Result<(), ChainBreak> {
        let expected = self.head.seq + 1;
        if record.seq != expected {
            return Err(ChainBreak::Gap {
                seq: record.seq,
                expected,
            });
        }
        if record.prev_hash != self.head.hash {
            return Err(ChainBreak::Unlinked { seq: record.seq });
        }
        let hash = hash_of(
            record.seq,
            &record.at,
            &record.actor,
            &record.event,
            &record.prev_hash,
        );
        if hash != record.hash {
            return Err(ChainBreak::Tampered { seq: record.seq });
        }
        self.head = AuditHead {
            seq: record.seq,
            hash,
        };
        Ok(())
    }

    pub fn verified(&self) -> u64 {
        self.head.seq
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// `n` chained records, for tests of the chain and its anchors.
    pub(crate) fn chain(n: usize) -> Vec<AuditRecord> {
        let mut head = AuditHead::default();
        (0..n)
            .map(|i| {
                let (r, h) = head.append(AuditEntry {
                    at: DateTime::from_timestamp(1_800_000_000 + i as i64, 0).unwrap(),
                    actor: Actor::System,
                    event: AuditEvent::RequestApproved {
                        request: RequestId::generate(),
                    },
                });
                head = h;
                r
            })
            .collect()
    }

    fn verify(records: &[AuditRecord]) -> Result<u64, ChainBreak> {
        let mut v = ChainVerifier::default();
        for r in records {
            v.check(r)?;
        }
        Ok(v.verified())
    }

    #[test]
    fn an_intact_chain_verifies() {
        assert_eq!(verify(&chain(5)), Ok(5));
    }

    #[test]
    fn edits_deletions_and_relinks_are_found_at_the_right_record() {
        let mut c = chain(5);
        c[2].actor = Actor::User(UserId::new("mallory").unwrap());
        assert_eq!(verify(&c), Err(ChainBreak::Tampered { seq: 3 }));

        let mut c = chain(5);
        c.remove(1);
        assert_eq!(verify(&c), Err(ChainBreak::Gap { seq: 3, expected: 2 }));

        // Rewriting a record and its hash still breaks the link to the next.
        let mut c = chain(5);
        c[1].at += chrono::Duration::seconds(1);
        c[1].hash = hash_of(c[1].seq, &c[1].at, &c[1].actor, &c[1].event, &c[1].prev_hash);
        assert_eq!(verify(&c), Err(ChainBreak::Unlinked { seq: 3 }));
    }
}
