//! Signed commands: the broker signs every grant and revoke command with its
//! Ed25519 key; an agent acts only on a command that verifies against the
//! broker key it pinned at enrollment, is for its own configuration, and is
//! within its validity window.
//!
//! The signature covers the exact bytes of the command body as sent (like a
//! JWS payload), never a re-serialisation, so there is no canonicalisation
//! to get wrong.

use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use base64::Engine;
use chrono::{DateTime, Utc};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use super::api::CommandOp;
use super::entitlement::Entitlement;
use super::ids::{ConfigId, GrantId};

/// Domain separation: a signature over a command can never be mistaken for
/// a signature over anything else the broker key signs.
const CONTEXT: &[u8] = b"jitgate command v1\n";

/// How far an agent's clock may run behind the broker's before a freshly
/// issued command looks like it comes from the future.
pub const CLOCK_SKEW: chrono::Duration = chrono::Duration::seconds(30);

/// What the agent is told to do. Also what the outbox holds and the admin
/// outbox endpoint shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandBody {
    /// Idempotency key: a replayed id returns the stored result.
    pub id: String,
    pub op: CommandOp,
    pub grant: GrantId,
    pub entitlement: Entitlement,
    pub not_before: DateTime<Utc>,
    /// Grant: the deadline the agent enforces by itself. Revoke: when the
    /// command goes stale.
    pub not_after: DateTime<Utc>,
    pub issued_at: DateTime<Utc>,
    /// Grant: keep sessions issued from the entitlement no longer than the
    /// window where the cloud allows it (the workflow's
    /// `cap_session_duration`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cap_session_duration: bool,
    /// Grant and revoke: on removal, also end the principal's sign-in
    /// sessions where the cloud allows it (the workflow's
    /// `end_sign_in_sessions`; Entra ID: `revokeSignInSessions`). On the
    /// grant too, so the agent's own revoke at the deadline does the same.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub end_sign_in_sessions: bool,
    /// Grant of a federated resource: ask the directory to provision the
    /// change to the federated tenant at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provision_on_demand: Option<ProvisionOnDemand>,
}

/// Entra provisioning to run at once after a grant (Graph
/// `provisionOnDemand` on the enterprise app that provisions the federated
/// tenant), so the elevation reaches it without waiting for the next sync
/// cycle (about 40 minutes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProvisionOnDemand {
    /// The provisioning enterprise app's service principal object id.
    pub service_principal_id: String,
    /// Its synchronization job id.
    pub job_id: String,
    /// The synchronization rule to apply (from the job's schema).
    pub rule_id: String,
}

/// A command as it travels: the body's exact JSON text and its signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedCommand {
    /// Identifies the broker key (its fingerprint), for key rotation.
    pub key_id: String,
    /// The command body, JSON, exactly as signed.
    pub body: String,
    /// Ed25519 signature over `CONTEXT || body`, base64 without padding.
    pub signature: String,
}

/// Why an agent refuses a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandRejected {
    #[error("command is signed by key `{key_id}`, not the broker key `{expected}` this agent trusts")]
    UnknownKey { key_id: String, expected: String },
    #[error("command signature is malformed")]
    MalformedSignature,
    #[error("command signature does not verify (tampered or signed by another key)")]
    BadSignature,
    #[error("command body is malformed: {0}")]
    MalformedBody(String),
    #[error("command {id} is for configuration `{got}`, this agent serves `{expected}`")]
    WrongConfiguration {
        id: String,
        expected: ConfigId,
        got: ConfigId,
    },
    #[error("command {id} expired at {not_after}")]
    Expired { id: String, not_after: DateTime<Utc> },
    #[error("command {id} was issued at {issued_at}, in the future")]
    FromTheFuture { id: String, issued_at: DateTime<Utc> },
    #[error("command {id} is not valid before {not_before}")]
    NotYetValid { id: String, not_before: DateTime<Utc> },
}

/// The broker's signing key.
#[derive(Debug)]
pub struct CommandSigner {
    key: SigningKey,
    key_id: String,
}

impl CommandSigner {
    /// A signer from 32 secret bytes (made from a CSPRNG by the caller).
    pub fn from_secret(secret: &[u8; 32]) -> Self {
        let key = SigningKey::from_bytes(secret);
        let key_id = key_id(&key.verifying_key());
        Self { key, key_id }
    }

    pub fn verifier(&self) -> CommandVerifier {
        CommandVerifier::new(self.key.verifying_key())
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    pub fn sign(&self, body: &CommandBody) -> SignedCommand {
        // Serialising plain data to JSON cannot fail; an empty body would
        // fail verification rather than panic.
        let body = serde_json::to_string(body).unwrap_or_default();
        let mut message = Vec::with_capacity(CONTEXT.len() + body.len());
        message.extend_from_slice(CONTEXT);
        message.extend_from_slice(body.as_bytes());
        let signature: Signature = self.key.sign(&message);
        SignedCommand {
            key_id: self.key_id.clone(),
            body,
            signature: B64.encode(signature.to_bytes()),
        }
    }
}

/// The public half an agent pins.
#[derive(Debug, Clone)]
pub struct CommandVerifier {
    key: VerifyingKey,
    key_id: String,
}

/// Short fingerprint of a public key: hex of its first 8 bytes.
fn key_id(key: &VerifyingKey) -> String {
    key.to_bytes()[..8].iter().map(|b| format!("{b:02x}")).collect()
}

impl CommandVerifier {
    pub fn new(key: VerifyingKey) -> Self {
        let key_id = key_id(&key);
        Self { key, key_id }
    }

    pub fn from_public(bytes: &[u8; 32]) -> Result<Self, CommandRejected> {
        VerifyingKey::from_bytes(bytes)
            .map(Self::new)
            .map_err(|_| CommandRejected::MalformedSignature)
    }

    pub fn public_bytes(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Checks signature, configuration and validity window, in that order:
    /// nothing in an unverified body is believed.
    pub fn verify(
        &self,
        command: &SignedCommand,
        configuration: &ConfigId,
        now: DateTime<Utc>,
    ) -> Result<CommandBody, CommandRejected> {
        if command.key_id != self.key_id {
            return Err(CommandRejected::UnknownKey {
                key_id: command.key_id.clone(),
                expected: self.key_id.clone(),
            });
        }
        let raw = B64
            .decode(command.signature.as_bytes())
            .map_err(|_| CommandRejected::MalformedSignature)?;
        let raw: [u8; 64] = raw.try_into().map_err(|_| CommandRejected::MalformedSignature)?;
        let signature = Signature::from_bytes(&raw);
        let mut message = Vec::with_capacity(CONTEXT.len() + command.body.len());
        message.extend_from_slice(CONTEXT);
        message.extend_from_slice(command.body.as_bytes());
        self.key
            .verify_strict(&message, &signature)
            .map_err(|_| CommandRejected::BadSignature)?;
        let body: CommandBody =
            serde_json::from_str(&command.body).map_err(|e| CommandRejected::MalformedBody(e.to_string()))?;
        if &body.entitlement.configuration != configuration {
            return Err(CommandRejected::WrongConfiguration {
                id: body.id,
                expected: configuration.clone(),
                got: body.entitlement.configuration,
            });
        }
        if body.issued_at > now + CLOCK_SKEW {
            return Err(CommandRejected::FromTheFuture {
                id: body.id,
                issued_at: body.issued_at,
            });
        }
        if body.not_before > now + CLOCK_SKEW {
            return Err(CommandRejected::NotYetValid {
                id: body.id,
                not_before: body.not_before,
            });
        }
        // A grant past its deadline must not be applied; a stale revoke is
        // refused too (the broker re-issues one), so nothing old is replayed
        // into a tenant.
        if now >= body.not_after {
            return Err(CommandRejected::Expired {
                id: body.id,
                not_after: body.not_after,
            });
        }
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::Target;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    fn body(config: &str) -> CommandBody {
        CommandBody {
            id: "k-1-grant".into(),
            op: CommandOp::Grant,
            grant: GrantId::generate(),
            entitlement: Entitlement {
                configuration: ConfigId::new(config).unwrap(),
                target: Target::EntraGroupMembership { group_id: "g".into() },
                principal: "alice@example.com".into(),
            },
            not_before: t(0),
            not_after: t(600),
            issued_at: t(0),
            cap_session_duration: false,
            end_sign_in_sessions: false,
            provision_on_demand: None,
        }
    }

    fn signer(seed: u8) -> CommandSigner {
        CommandSigner::from_secret(&[seed; 32])
    }

    fn entra() -> ConfigId {
        ConfigId::new("entra").unwrap()
    }

    #[test]
    fn a_signed_command_verifies_for_its_configuration() {
        let s = signer(1);
        let signed = s.sign(&body("entra"));
        assert_eq!(
            s.verifier().verify(&signed, &entra(), t(1)).unwrap(),
            body_with_grant(&signed)
        );
    }

    fn body_with_grant(signed: &SignedCommand) -> CommandBody {
        serde_json::from_str(&signed.body).unwrap()
    }

    #[test]
    fn tampering_anywhere_is_refused() {
        let s = signer(1);
        let v = s.verifier();
        let signed = s.sign(&body("entra"));
        let mut tampered = signed.clone();
        tampered.body = tampered.body.replace("alice@example.com", "mallory@example.com");
        assert_eq!(
            v.verify(&tampered, &entra(), t(1)),
            Err(CommandRejected::BadSignature)
        );
        let mut tampered = signed.clone();
        tampered.body = tampered.body.replace("grant\"", "revoke\"");
        assert_eq!(
            v.verify(&tampered, &entra(), t(1)),
            Err(CommandRejected::BadSignature)
        );
        let mut flipped = signed.clone();
        let mut raw = B64.decode(&flipped.signature).unwrap();
        raw[10] ^= 1;
        flipped.signature = B64.encode(raw);
        assert_eq!(
            v.verify(&flipped, &entra(), t(1)),
            Err(CommandRejected::BadSignature)
        );
        let mut unsigned = signed;
        unsigned.signature = String::new();
        assert_eq!(
            v.verify(&unsigned, &entra(), t(1)),
            Err(CommandRejected::MalformedSignature)
        );
    }

    #[test]
    fn another_key_is_refused_even_with_a_matching_key_id() {
        let trusted = signer(1).verifier();
        let mut forged = signer(2).sign(&body("entra"));
        assert!(matches!(
            trusted.verify(&forged, &entra(), t(1)),
            Err(CommandRejected::UnknownKey { .. })
        ));
        forged.key_id = signer(1).key_id().to_owned();
        assert_eq!(
            trusted.verify(&forged, &entra(), t(1)),
            Err(CommandRejected::BadSignature)
        );
    }

    #[test]
    fn other_configurations_expired_and_future_commands_are_refused() {
        let s = signer(1);
        let v = s.verifier();
        let aws = s.sign(&body("aws"));
        assert!(matches!(
            v.verify(&aws, &entra(), t(1)),
            Err(CommandRejected::WrongConfiguration { .. })
        ));
        let signed = s.sign(&body("entra"));
        assert!(matches!(
            v.verify(&signed, &entra(), t(600)),
            Err(CommandRejected::Expired { .. })
        ));
        assert!(
            v.verify(&signed, &entra(), t(-29)).is_ok(),
            "small clock skew is tolerated"
        );
        assert!(matches!(
            v.verify(&signed, &entra(), t(-31)),
            Err(CommandRejected::FromTheFuture { .. })
        ));
        // Issued now, but not valid for another minute.
        let mut later = body("entra");
        later.not_before = t(60);
        let signed = s.sign(&later);
        assert!(matches!(
            v.verify(&signed, &entra(), t(0)),
            Err(CommandRejected::NotYetValid { .. })
        ));
        assert!(
            v.verify(&signed, &entra(), t(31)).is_ok(),
            "within the clock skew"
        );
    }

    #[test]
    fn a_body_with_unknown_fields_is_refused_even_if_signed() {
        let s = signer(1);
        let mut b = serde_json::to_value(body("entra")).unwrap();
        b["extra"] = serde_json::json!(true);
        let text = b.to_string();
        let mut message = CONTEXT.to_vec();
        message.extend_from_slice(text.as_bytes());
        let sig = s.key.sign(&message);
        let signed = SignedCommand {
            key_id: s.key_id().to_owned(),
            body: text,
            signature: B64.encode(sig.to_bytes()),
        };
        assert!(matches!(
            s.verifier().verify(&signed, &entra(), t(1)),
            Err(CommandRejected::MalformedBody(_))
        ));
    }
}
