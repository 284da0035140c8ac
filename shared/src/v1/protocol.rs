//! The agent ⇄ broker protocol, version 1: JSON text frames over a mutually
//! authenticated websocket. The agent's identity comes from its client
//! certificate, never from a message.
//!
//! Frames are size-limited; a frame of an unknown kind is answered with an
//! error, never a crash; unknown fields are refused.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use chrono::{DateTime, Utc};

use super::entitlement::{Entitlement, Target};
use super::ids::{ConfigId, GrantId};
use super::signing::SignedCommand;

/// The protocol version this crate speaks.
pub const VERSION: u16 = 1;

/// Largest frame either side accepts.
pub const MAX_FRAME_BYTES: usize = 256 * 1024;

/// Where agents open their websocket on the hub.
pub const PATH: &str = "/v1/agent";

/// Entitlements in one `Inventory` page: well inside [`MAX_FRAME_BYTES`]
/// (an entitlement is a few hundred bytes of JSON).
pub const INVENTORY_PAGE: usize = 256;

/// The most entitlements one reconciliation takes in (all pages): past it
/// the broker skips that reconciliation rather than hold it all.
pub const MAX_INVENTORY: usize = 1_000_000;

/// Socket read buffer either side keeps per session. Frames are small (a
/// signed command is under 1 KiB); larger ones still arrive, in several
/// reads. Kept small because a broker holds one per agent.
pub const READ_BUFFER_BYTES: usize = 8 * 1024;

/// What an agent can do, by entitlement kind (`aws_account_assignment`,
/// `entra_group_membership`, ...), plus `list` for reconciliation.
pub type Capabilities = BTreeSet<String>;

/// Agent → broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum AgentMessage {
    /// First frame on a connection.
    Hello {
        version: u16,
        configuration: ConfigId,
        capabilities: Capabilities,
        agent_version: String,
    },
    /// The outcome of a command, by its id.
    Result {
        command: String,
        outcome: Outcome,
    },
    /// What jitgate manages in the tenant now, answering `List`: every
    /// principal holding one of the listed targets, in pages of at most
    /// [`INVENTORY_PAGE`]; all but the last say `more`.
    Inventory {
        request: u64,
        entitlements: Vec<Entitlement>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        more: bool,
    },
    /// Answers `Check`: which of the entitlements are held now and which
    /// are not. One the tenant could not answer for is in neither.
    Holdings {
        request: u64,
        held: Vec<Entitlement>,
        absent: Vec<Entitlement>,
    },
    /// The agent removed an entitlement by itself at its deadline (the
    /// broker's revoke had not come). Sent until the broker acknowledges it.
    SelfRevoked {
        /// The grant command whose deadline passed.
        command: String,
        grant: GrantId,
        entitlement: Entitlement,
        deadline: DateTime<Utc>,
        at: DateTime<Utc>,
        outcome: Outcome,
    },
    /// A new client certificate, asked for before the current one expires.
    /// The key pair is new too; the private key never leaves the agent.
    RenewCertificate {
        csr_pem: String,
    },
    Heartbeat {
        seq: u64,
    },
    /// The agent could not make sense of a broker frame.
    Error {
        message: String,
    },
}

/// Broker → agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum BrokerMessage {
    Welcome {
        version: u16,
        heartbeat_seconds: u32,
    },
    Command {
        command: SignedCommand,
    },
    /// Asks for an `Inventory` of these targets.
    List {
        request: u64,
        targets: Vec<Target>,
    },
    /// Asks whether each principal holds these entitlements now, by any
    /// route the tenant offers (a federated elevation confirmed
    /// downstream, or its removal). Answered with `Holdings`.
    Check {
        request: u64,
        entitlements: Vec<Entitlement>,
    },
    /// A `SelfRevoked` report is stored; the agent may forget it.
    Acknowledged {
        command: String,
    },
    /// Answers `RenewCertificate`.
    Certificate {
        certificate_pem: String,
        not_after: DateTime<Utc>,
    },
    Heartbeat {
        seq: u64,
    },
    Error {
        code: ErrorKind,
        message: String,
    },
}

/// The result of applying a command. "Already" outcomes are successes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case", deny_unknown_fields)]
pub enum Outcome {
    Applied,
    AlreadyPresent,
    Revoked,
    AlreadyAbsent,
    /// The agent would not act: bad signature, expired, other configuration.
    Refused {
        reason: String,
    },
    /// The cloud said no or could not be reached. Build one with
    /// [`Outcome::failed`]; read its kind with [`Outcome::failure`].
    Failed {
        reason: String,
        /// Whether trying again can help: `kind.retryable()`. Kept beside
        /// the kind for answers (and audit records) from before kinds.
        retryable: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_seconds: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        kind: Option<FailureKind>,
    },
}

impl Outcome {
    /// A failure of `kind`; `retry_after` is the pause the tenant asked
    /// for, rounded up to whole seconds (at least one).
    pub fn failed(kind: FailureKind, reason: impl Into<String>, retry_after: Option<Duration>) -> Self {
        Outcome::Failed {
            reason: reason.into(),
            retryable: kind.retryable(),
            retry_after_seconds: retry_after.map(|d| (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)),
            kind: Some(kind),
        }
    }

    /// The kind of a failure, `None` for any other outcome. An answer from
    /// an agent that predates kinds counts as `Transport` when it said
    /// retryable and `Rejected` when not, which is how it was treated.
    pub fn failure(&self) -> Option<FailureKind> {
        match self {
            Outcome::Failed { kind: Some(kind), .. } => Some(*kind),
            Outcome::Failed { retryable: true, .. } => Some(FailureKind::Transport),
            Outcome::Failed { retryable: false, .. } => Some(FailureKind::Rejected),
            _ => None,
        }
    }
}

/// Why a provider call failed, as DESIGN's provider contract names it; the
/// kind alone decides whether trying again can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The call did not get through: the connection failed or timed out,
    /// the tenant answered with a server error, or the agent could not
    /// journal the command before acting.
    Transport,
    /// The tenant did not take the agent's credential (an expired or
    /// revoked token); a credential that renews itself may be taken on the
    /// next try.
    Unauthorised,
    /// The tenant asked the agent to slow down.
    Throttled,
    /// The tenant is still carrying out an earlier change to the same
    /// thing (Identity Center's `ConflictException`, an operation still in
    /// progress).
    Busy,
    /// A user, group, role, permission set or account the entitlement
    /// names is not in the tenant.
    NotFound,
    /// The tenant or the agent refused the request as it stands: bad
    /// input, a permission the agent lacks, another configuration's
    /// entitlement. Asking again will not help.
    Rejected,
}

impl FailureKind {
    /// Whether the same call may succeed later without anyone changing
    /// anything.
    pub fn retryable(self) -> bool {
        match self {
            FailureKind::Transport
            | FailureKind::Unauthorised
            | FailureKind::Throttled
            | FailureKind::Busy => true,
            FailureKind::NotFound | FailureKind::Rejected => false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    UnsupportedVersion,
    TooLarge,
    UnknownKind,
    Malformed,
    /// The hello names a configuration the certificate is not for.
    WrongConfiguration,
    /// The first frame was not a hello.
    HelloExpected,
    /// The request could not be served (a CSR the broker would not sign).
    Refused,
}

/// Why a frame was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {size} bytes is larger than {max}")]
    TooLarge { size: usize, max: usize },
    #[error("frame kind `{kind}` is unknown")]
    UnknownKind { kind: String },
    #[error("frame is malformed: {0}")]
    Malformed(String),
    #[error("protocol version {got} is not supported (this side speaks {VERSION})")]
    UnsupportedVersion { got: u16 },
}

impl FrameError {
    /// The error frame to answer with.
    pub fn kind(&self) -> ErrorKind {
        match self {
            FrameError::TooLarge { .. } => ErrorKind::TooLarge,
            FrameError::UnknownKind { .. } => ErrorKind::UnknownKind,
            FrameError::Malformed(_) => ErrorKind::Malformed,
            FrameError::UnsupportedVersion { .. } => ErrorKind::UnsupportedVersion,
        }
    }
}

/// Decodes one frame, checking its size first.
pub fn decode<T: DeserializeOwned>(frame: &[u8]) -> Result<T, FrameError> {
    if frame.len() > MAX_FRAME_BYTES {
        return Err(FrameError::TooLarge {
            size: frame.len(),
            max: MAX_FRAME_BYTES,
        });
    }
    let value: serde_json::Value =
        serde_json::from_slice(frame).map_err(|e| FrameError::Malformed(e.to_string()))?;
    let kind = value
        .get("type")
        .and_then(|t| t.as_str())
        .ok_or_else(|| FrameError::Malformed("no `type` field".into()))?
        .to_owned();
    T::deserialize(value).map_err(|e| {
        let message = e.to_string();
        if message.starts_with("unknown variant") {
            FrameError::UnknownKind { kind }
        } else {
            FrameError::Malformed(message)
        }
    })
}

/// Encodes one frame.
pub fn encode<T: Serialize>(message: &T) -> String {
    // Plain data always serialises; an empty frame is refused by the peer.
    serde_json::to_string(message).unwrap_or_default()
}

/// Checks the version an agent says it speaks.
pub fn check_version(got: u16) -> Result<(), FrameError> {
    if got == VERSION {
        Ok(())
    } else {
        Err(FrameError::UnsupportedVersion { got })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn messages_round_trip() {
        let hello = AgentMessage::Hello {
            version: VERSION,
            configuration: ConfigId::new("entra").unwrap(),
            capabilities: ["entra_group_membership".to_owned(), "list".to_owned()].into(),
            agent_version: "0.1.0".into(),
        };
        let frame = encode(&hello);
        assert_eq!(decode::<AgentMessage>(frame.as_bytes()).unwrap(), hello);
        let result = AgentMessage::Result {
            command: "k-1-grant".into(),
            outcome: Outcome::failed(
                FailureKind::Throttled,
                "throttled",
                Some(Duration::from_millis(2_500)),
            ),
        };
        assert_eq!(
            decode::<AgentMessage>(encode(&result).as_bytes()).unwrap(),
            result
        );
        assert!(
            encode(&result).contains(r#""retry_after_seconds":3"#),
            "rounded up"
        );
    }

    #[test]
    fn answers_from_before_kinds_keep_their_meaning_and_their_bytes() {
        for (frame, kind) in [
            (
                r#"{"outcome":"failed","reason":"503","retryable":true}"#,
                FailureKind::Transport,
            ),
            (
                r#"{"outcome":"failed","reason":"denied","retryable":false}"#,
                FailureKind::Rejected,
            ),
        ] {
            let outcome: Outcome = serde_json::from_str(frame).unwrap();
            assert_eq!(outcome.failure(), Some(kind));
            // Audit records hash the re-encoded outcome: it must not change.
            assert_eq!(serde_json::to_string(&outcome).unwrap(), frame);
        }
        assert_eq!(Outcome::Applied.failure(), None);
        // The kind decides, whatever `retryable` says.
        let lying: Outcome =
            serde_json::from_str(r#"{"outcome":"failed","reason":"x","retryable":true,"kind":"not_found"}"#)
                .unwrap();
        assert_eq!(lying.failure(), Some(FailureKind::NotFound));
    }

    #[test]
    fn bad_frames_are_named_not_fatal() {
        assert_eq!(
            decode::<AgentMessage>(br#"{"type":"self_destruct"}"#),
            Err(FrameError::UnknownKind {
                kind: "self_destruct".into()
            })
        );
        assert!(matches!(
            decode::<AgentMessage>(b"{not json"),
            Err(FrameError::Malformed(_))
        ));
        assert!(matches!(
            decode::<AgentMessage>(br#"{"seq":1}"#),
            Err(FrameError::Malformed(_))
        ));
        assert!(matches!(
            decode::<AgentMessage>(br#"{"type":"heartbeat","seq":1,"extra":2}"#),
            Err(FrameError::Malformed(_))
        ));
        let big = format!(
            r#"{{"type":"error","message":"{}"}}"#,
            "x".repeat(MAX_FRAME_BYTES)
        );
        assert!(matches!(
            decode::<AgentMessage>(big.as_bytes()),
            Err(FrameError::TooLarge { .. })
        ));
        assert_eq!(check_version(2), Err(FrameError::UnsupportedVersion { got: 2 }));
        assert_eq!(
            FrameError::UnknownKind { kind: "x".into() }.kind(),
            ErrorKind::UnknownKind
        );
    }

    proptest! {
        /// Arbitrary bytes and arbitrary JSON never panic the decoder.
        #[test]
        fn decoding_untrusted_frames_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode::<AgentMessage>(&bytes);
            let _ = decode::<BrokerMessage>(&bytes);
        }

        #[test]
        fn typed_garbage_is_an_error_not_a_panic(kind in "[a-z_]{0,12}", seq in any::<i64>(), text in ".{0,30}") {
            let frame = serde_json::json!({"type": kind, "seq": seq, "message": text, "outcome": {"outcome": text}}).to_string();
            let _ = decode::<AgentMessage>(frame.as_bytes());
            let _ = decode::<BrokerMessage>(frame.as_bytes());
        }
    }
}
