//! Outbound webhooks: a CloudEvents 1.0 JSON body (structured mode),
//! signed per the Standard Webhooks specification: `webhook-id` (the
//! event id, the same on every retry, for receivers to deduplicate),
//! `webhook-timestamp` (seconds), and `webhook-signature`, one `v1,`
//! HMAC-SHA256 over `{id}.{timestamp}.{body}` per secret, so a receiver
//! rotating its secret accepts the message with either.

use std::time::Duration;

use base64::Engine;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

use super::event::Event;
use super::queue::DeliveryError;
use crate::config::WebhookConfig;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The prefix of a Standard Webhooks secret.
const SECRET_PREFIX: &str = "whsec_";

/// Signs messages with every secret of an endpoint.
#[derive(Clone)]
pub struct Signer {
    /// One keyed MAC per secret, cloned for each message.
    keys: Vec<Hmac<Sha256>>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signer({} secrets)", self.keys.len())
    }
}

impl Signer {
    /// Reads secrets as the Standard Webhooks tools write them:
    /// `whsec_` and the key in base64 (the prefix may be left off).
    pub fn new(secrets: &[String]) -> Result<Signer, String> {
        if secrets.is_empty() {
            return Err("no signing secret".into());
        }
        let keys = secrets
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let s = s.trim();
                let key = B64
                    .decode(s.strip_prefix(SECRET_PREFIX).unwrap_or(s))
                    .map_err(|e| format!("secret {} is not `whsec_` and base64: {e}", i + 1))?;
                if key.len() < 24 {
                    return Err(format!(
                        "secret {} is {} bytes; use at least 24 (`whsec_` and 32 random bytes in base64)",
                        i + 1,
                        key.len()
                    ));
                }
                Hmac::<Sha256>::new_from_slice(&key).map_err(|e| format!("secret {}: {e}", i + 1))
            })
            .collect::<Result<_, String>>()?;
        Ok(Signer { keys })
    }

    /// The `webhook-signature` header's value.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        self.keys
            .iter()
            .map(|key| {
                let mut mac = key.clone();
                mac.update(id.as_bytes());
                mac.update(b".");
                mac.update(timestamp.to_string().as_bytes());
                mac.update(b".");
                mac.update(body);
                format!("v1,{}", B64.encode(mac.finalize().into_bytes()))
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// The CloudEvents type of an event: `jitgate.{kind}`.
pub fn event_type(event: &Event) -> String {
    format!("jitgate.{}", event.kind)
}

/// The event as a CloudEvents 1.0 structured-mode JSON body. `source` is
/// the broker's public URL.
pub fn cloud_event(event: &Event, source: &str) -> serde_json::Value {
    json!({
        "specversion": "1.0",
        "id": event.id,
        "source": source,
        "type": event_type(event),
        "subject": event.subject(),
        "time": event.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "datacontenttype": "application/json",
        "data": event,
    })
}

/// One endpoint, ready to send.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub name: String,
    url: reqwest::Url,
    signer: Signer,
    http: reqwest::Client,
}

impl Endpoint {
    /// From its configuration and its secrets (read by the caller).
    pub fn new(config: &WebhookConfig, secrets: &[String]) -> Result<Endpoint, String> {
        let url = reqwest::Url::parse(&config.url).map_err(|e| format!("url `{}`: {e}", config.url))?;
        let signer = Signer::new(secrets)?;
        let http = crate::tls::client::https_client(config.timeout, config.ca_file.as_deref())?;
        Ok(Endpoint {
            name: config.name.clone(),
            url,
            signer,
            http,
        })
    }

    /// Posts `event`, signed at `now`. A 2xx answer delivers it; 408, 429
    /// and 5xx (and no answer) are tried again, honouring `Retry-After`;
    /// any other answer refuses it for good.
    pub async fn send(&self, event: &Event, source: &str, now: DateTime<Utc>) -> Result<(), DeliveryError> {
        let body = serde_json::to_vec(&cloud_event(event, source))
            .map_err(|e| DeliveryError::refused(format!("encoding the event: {e}")))?;
        let timestamp = now.timestamp();
        let signature = self.signer.sign(&event.id, timestamp, &body);
        let answer = self
            .http
            .post(self.url.clone())
            .header("content-type", "application/cloudevents+json")
            .header("webhook-id", &event.id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await
            .map_err(|e| DeliveryError::retryable(format!("webhook `{}`: {}", self.name, error_chain(&e))))?;
        let status = answer.status();
        if status.is_success() {
            return Ok(());
        }
        let retry_after = retry_after(answer.headers());
        let message = format!("webhook `{}` answered {status}", self.name);
        let retryable = status.is_server_error()
            || status == reqwest::StatusCode::TOO_MANY_REQUESTS
            || status == reqwest::StatusCode::REQUEST_TIMEOUT;
        Err(DeliveryError {
            message,
            retryable,
            retry_after,
        })
    }
}

/// A `Retry-After` in seconds (the HTTP-date form is read as absent).
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    jitgate_shared::backoff::retry_after(headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?)
}

/// An error with its causes, one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    // The example of the Standard Webhooks specification's reference
    // libraries: this secret, id, timestamp and body sign to this value.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TIMESTAMP: i64 = 1614265330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn signs_as_the_specification_s_example() {
        let signer = Signer::new(&[SECRET.to_owned()]).unwrap();
        assert_eq!(signer.sign(ID, TIMESTAMP, BODY), SIGNATURE);
    }

    #[test]
    fn every_secret_signs_during_a_rotation() {
        let other = format!("{SECRET_PREFIX}{}", B64.encode([7u8; 32]));
        let signer = Signer::new(&[other, SECRET.to_owned()]).unwrap();
        let header = signer.sign(ID, TIMESTAMP, BODY);
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[1], SIGNATURE);
        assert_ne!(parts[0], SIGNATURE);
    }

    #[test]
    fn a_changed_byte_changes_the_signature() {
        let signer = Signer::new(&[SECRET.to_owned()]).unwrap();
        assert_ne!(signer.sign(ID, TIMESTAMP, br#"{"test": 2432232315}"#), SIGNATURE);
        assert_ne!(signer.sign(ID, TIMESTAMP + 1, BODY), SIGNATURE);
        assert_ne!(signer.sign("msg_other", TIMESTAMP, BODY), SIGNATURE);
    }

    #[test]
    fn bad_secrets_are_named() {
        assert!(Signer::new(&[]).unwrap_err().contains("no signing secret"));
        let err = Signer::new(&["whsec_not base64!".into()]).unwrap_err();
        assert!(err.contains("secret 1"), "{err}");
        let err = Signer::new(&[format!("whsec_{}", B64.encode([1u8; 8]))]).unwrap_err();
        assert!(err.contains("8 bytes"), "{err}");
    }
}
