//! The agent channel: frames both ways, and the signed commands in them.

use std::fmt::Debug;
use std::sync::LazyLock;

use jitgate_shared::v1::protocol::{self, AgentMessage, BrokerMessage};
use jitgate_shared::v1::signing::{
    CommandBody, CommandRejected, CommandSigner, CommandVerifier, SignedCommand,
};
use jitgate_shared::v1::ConfigId;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// The broker's command key in these targets (fixed, so inputs replay).
static SIGNER: LazyLock<CommandSigner> = LazyLock::new(|| CommandSigner::from_secret(&[7; 32]));
/// Another broker's key.
static STRANGER: LazyLock<CommandSigner> = LazyLock::new(|| CommandSigner::from_secret(&[8; 32]));
static VERIFIER: LazyLock<CommandVerifier> = LazyLock::new(|| SIGNER.verifier());

/// What the hub does with a frame from an agent: decode it. A decoded
/// frame encodes to one that decodes to the same message.
pub fn agent_frame(data: &[u8]) {
    if let Ok(message) = protocol::decode::<AgentMessage>(data) {
        round_trip(&message);
    }
}

/// What an agent does with a frame from the broker: decode it and, for a
/// command, verify it before believing anything in it.
pub fn broker_frame(data: &[u8]) {
    let _ = agent_believes(data);
}

/// Whether the agent (of configuration `aws-main`) decodes this frame and
/// believes the command in it.
pub fn agent_believes(data: &[u8]) -> bool {
    let Ok(message) = protocol::decode::<BrokerMessage>(data) else {
        return false;
    };
    round_trip(&message);
    if let BrokerMessage::Command { command } = &message {
        let configuration = ConfigId::new("aws-main").expect("a valid id");
        if let Ok(body) = VERIFIER.verify(command, &configuration, crate::now()) {
            // Only what the broker's key signed, byte for byte, is believed
            // (signatures are deterministic, the seeds' commands come from
            // `sign`).
            assert_eq!(
                &SIGNER.sign(&body),
                command,
                "a command verified that the broker's key did not sign as sent"
            );
            return true;
        }
    }
    false
}

/// A command body the broker signs verifies at the agent as that body;
/// any change to the body, the signature or the key is refused.
pub fn signed_command(data: &[u8]) {
    let Ok(body) = serde_json::from_slice::<CommandBody>(data) else {
        return;
    };
    let signed = SIGNER.sign(&body);
    let configuration = &body.entitlement.configuration;
    match VERIFIER.verify(&signed, configuration, crate::now()) {
        Ok(verified) => assert_eq!(verified, body, "the agent read another body than was signed"),
        Err(
            CommandRejected::Expired { .. }
            | CommandRejected::NotYetValid { .. }
            | CommandRejected::FromTheFuture { .. },
        ) => {}
        Err(e) => panic!("a command signed by the broker's key was refused: {e}"),
    }

    let refused = |tampered: &SignedCommand, what: &str| {
        if let Ok(b) = VERIFIER.verify(tampered, configuration, crate::now()) {
            panic!("{what} verified: {b:?}");
        }
    };
    let mut longer = signed.clone();
    longer.body.push(' ');
    refused(&longer, "a body with a byte added");
    if !signed.body.is_empty() {
        let mut shorter = signed.clone();
        shorter.body.pop();
        refused(&shorter, "a body with a byte removed");
    }
    let mut flipped = signed.clone();
    flipped.signature = flip_signature(&signed.signature);
    refused(&flipped, "a flipped signature");
    refused(&STRANGER.sign(&body), "a command signed by another key");
    let mut posing = STRANGER.sign(&body);
    posing.key_id = signed.key_id.clone();
    refused(&posing, "another key's signature under the broker's key id");
    let mut wrong = signed.clone();
    wrong.signature.clear();
    refused(&wrong, "an empty signature");
}

fn flip_signature(signature: &str) -> String {
    use base64::Engine;
    // As the signer writes it.
    let b64 = base64::engine::general_purpose::STANDARD_NO_PAD;
    let mut raw = b64.decode(signature).expect("the signer's own base64");
    raw[0] ^= 1;
    b64.encode(raw)
}

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(message: &T) {
    let frame = protocol::encode(message);
    let again: T = protocol::decode(frame.as_bytes())
        .unwrap_or_else(|e| panic!("an encoded frame does not decode ({e}): {frame}"));
    assert_eq!(&again, message, "a frame changed through encode and decode");
}
