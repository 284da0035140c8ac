//! Signed anchors of the audit chain. The chain itself shows an edited or
//! removed record, but not a tail cut off (or rewritten from some record
//! on, hashes and all). So the broker signs the chain's head with its
//! audit key every little while and at shutdown; `audit verify` checks
//! that the chain still reaches the signed head and holds the record it
//! vouches for.
//!
//! The key (`audit.key` in the data directory, owner-only) is the broker's
//! own: separate from the command-signing key agents trust.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use chrono::{DateTime, Utc};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

use super::{AuditHead, AuditRecord};

/// What is signed: a fixed context, then the head and when it was signed.
const CONTEXT: &[u8] = b"jitgate audit anchor v1\n";

/// The chain's head at `at`, signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditAnchor {
    pub seq: u64,
    pub hash: String,
    pub at: DateTime<Utc>,
    /// Hex of the first 8 bytes of the public key.
    pub key_id: String,
    /// Ed25519, base64.
    pub signature: String,
}

fn message(seq: u64, hash: &str, at: DateTime<Utc>) -> Vec<u8> {
    let mut m = CONTEXT.to_vec();
    m.extend_from_slice(format!("{seq}\n{hash}\n{}", at.to_rfc3339()).as_bytes());
    m
}

fn key_id(key: &VerifyingKey) -> String {
    key.to_bytes()[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// The broker's audit key.
#[derive(Debug)]
pub struct AnchorSigner {
    key: SigningKey,
}

impl AnchorSigner {
    pub fn from_secret(secret: &[u8; 32]) -> Self {
        Self {
            key: SigningKey::from_bytes(secret),
        }
    }

    pub fn sign(&self, head: &AuditHead, at: DateTime<Utc>) -> AuditAnchor {
        let signature: Signature = self.key.sign(&message(head.seq, &head.hash, at));
        AuditAnchor {
            seq: head.seq,
            hash: head.hash.clone(),
            at,
            key_id: key_id(&self.key.verifying_key()),
            signature: B64.encode(signature.to_bytes()),
        }
    }

    pub fn verifier(&self) -> AnchorVerifier {
        AnchorVerifier {
            key: self.key.verifying_key(),
        }
    }
}

/// Checks anchors against the audit key's public half.
#[derive(Debug, Clone)]
pub struct AnchorVerifier {
    key: VerifyingKey,
}

/// Why the chain does not match its signed anchor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnchorBreak {
    #[error("the signed anchor of {at} is not signed by this broker's audit key (key {found}, expected {expected})")]
    OtherKey {
        at: DateTime<Utc>,
        found: String,
        expected: String,
    },
    #[error("the signed anchor of {at} does not verify: it was altered")]
    BadSignature { at: DateTime<Utc> },
    #[error("the log was cut short: the signed anchor of {at} vouches for {anchored} records, the log has {found} (records {} to {anchored} are missing)", found + 1)]
    Truncated {
        at: DateTime<Utc>,
        anchored: u64,
        found: u64,
    },
    #[error("the log was rewritten: record {seq} is not the one the signed anchor of {at} vouches for")]
    Rewritten { at: DateTime<Utc>, seq: u64 },
}

impl AnchorVerifier {
    /// Checks that `anchor` is this key's, and that a chain of `last_seq`
    /// records (already verified as a chain) whose record at the anchor's
    /// sequence number is `anchored` still holds what was signed.
    pub fn check(
        &self,
        anchor: &AuditAnchor,
        anchored: Option<&AuditRecord>,
        last_seq: u64,
    ) -> Result<(), AnchorBreak> {
        let at = anchor.at;
        let expected = key_id(&self.key);
        if anchor.key_id != expected {
            return Err(AnchorBreak::OtherKey {
                at,
                found: anchor.key_id.clone(),
                expected,
            });
        }
        let signature = B64
            .decode(anchor.signature.as_bytes())
            .ok()
            .and_then(|raw| <[u8; 64]>::try_from(raw).ok())
            .map(|raw| Signature::from_bytes(&raw))
            .ok_or(AnchorBreak::BadSignature { at })?;
        self.key
            .verify(&message(anchor.seq, &anchor.hash, at), &signature)
            .map_err(|_| AnchorBreak::BadSignature { at })?;
        if last_seq < anchor.seq {
            return Err(AnchorBreak::Truncated {
                at,
                anchored: anchor.seq,
                found: last_seq,
            });
        }
        match anchored {
            Some(r) if r.seq == anchor.seq && r.hash == anchor.hash => Ok(()),
            _ => Err(AnchorBreak::Rewritten { at, seq: anchor.seq }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::chain;
    use super::*;

    fn head_of(r: &AuditRecord) -> AuditHead {
        AuditHead {
            seq: r.seq,
            hash: r.hash.clone(),
        }
    }

    #[test]
    fn an_anchor_finds_a_cut_tail_a_rewrite_and_a_forgery() {
        let at = DateTime::from_timestamp(1_800_000_100, 0).unwrap();
        let signer = AnchorSigner::from_secret(&[3; 32]);
        let v = signer.verifier();
        let records = chain(10);
        let anchor = signer.sign(&head_of(&records[7]), at);
        // Intact, and intact with more records after the anchor.
        v.check(&anchor, Some(&records[7]), 8).unwrap();
        v.check(&anchor, Some(&records[7]), 10).unwrap();
        // Cut short before the anchored record.
        assert_eq!(
            v.check(&anchor, None, 5).unwrap_err(),
            AnchorBreak::Truncated {
                at,
                anchored: 8,
                found: 5
            }
        );
        // The tail rewritten (a consistent chain, but another record 8).
        let other = chain(10);
        assert!(matches!(
            v.check(&anchor, Some(&other[7]), 10),
            Err(AnchorBreak::Rewritten { seq: 8, .. })
        ));
        // An anchor moved forward by hand, or signed by another key.
        let mut moved = anchor.clone();
        moved.seq = 10;
        moved.hash = records[9].hash.clone();
        assert!(matches!(
            v.check(&moved, Some(&records[9]), 10),
            Err(AnchorBreak::BadSignature { .. })
        ));
        let forged = AnchorSigner::from_secret(&[4; 32]).sign(&head_of(&records[9]), at);
        assert!(matches!(
            v.check(&forged, Some(&records[9]), 10),
            Err(AnchorBreak::OtherKey { .. })
        ));
    }
}
