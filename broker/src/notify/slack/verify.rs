//! Slack's request signatures: `X-Slack-Signature` is `v0=` and the
//! hex HMAC-SHA256, under the app's signing secret, of
//! `v0:{X-Slack-Request-Timestamp}:{body}`; a request older (or newer)
//! than five minutes is refused, and the comparison takes the same time
//! whatever the bytes.

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How far a request's timestamp may be from now, in seconds.
pub const MOST_SKEW: i64 = 5 * 60;

/// Why a request was not taken as Slack's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("no X-Slack-Signature or X-Slack-Request-Timestamp header")]
    Unsigned,
    #[error("X-Slack-Request-Timestamp `{0}` is not a number of seconds")]
    BadTimestamp(String),
    #[error("the request was signed {age} s from now (at most {MOST_SKEW} s)")]
    Stale { age: i64 },
    #[error("the signature does not match the body")]
    BadSignature,
}

/// Checks a request's signature at `now`.
pub fn verify(
    secret: &[u8],
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<(), Refusal> {
    let (Some(timestamp), Some(signature)) = (timestamp, signature) else {
        return Err(Refusal::Unsigned);
    };
    let at: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| Refusal::BadTimestamp(timestamp.chars().take(32).collect()))?;
    let age = now.timestamp() - at;
    if age.abs() > MOST_SKEW {
        return Err(Refusal::Stale { age });
    }
    let given = signature
        .strip_prefix("v0=")
        .and_then(|h| hex::decode(h).ok())
        .ok_or(Refusal::BadSignature)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).map_err(|_| Refusal::BadSignature)?;
    mac.update(b"v0:");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
    mac.verify_slice(&given).map_err(|_| Refusal::BadSignature)
}

/// The signature of `body` at `timestamp` (for tests and the contract
/// fake's side of the exchange).
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(format!("v0:{timestamp}:").as_bytes());
    mac.update(body);
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Slack's documented example: this secret, timestamp and body sign
    // to this value.
    const SECRET: &[u8] = b"8f742231b10e8888abcd99yyyzzz85a5";
    const TIMESTAMP: i64 = 1531420618;
    const BODY: &[u8] = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    const SIGNATURE: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(s, 0).unwrap()
    }

    #[test]
    fn the_documented_example_verifies() {
        assert_eq!(sign(SECRET, TIMESTAMP, BODY), SIGNATURE);
        let ts = TIMESTAMP.to_string();
        assert_eq!(
            verify(SECRET, Some(&ts), Some(SIGNATURE), BODY, at(TIMESTAMP + 10)),
            Ok(())
        );
    }

    #[test]
    fn tampered_stale_or_unsigned_requests_are_refused() {
        let ts = TIMESTAMP.to_string();
        let now = at(TIMESTAMP);
        let mut body = BODY.to_vec();
        body[10] ^= 1;
        assert_eq!(
            verify(SECRET, Some(&ts), Some(SIGNATURE), &body, now),
            Err(Refusal::BadSignature)
        );
        assert_eq!(
            verify(b"another secret", Some(&ts), Some(SIGNATURE), BODY, now),
            Err(Refusal::BadSignature)
        );
        assert_eq!(
            verify(SECRET, Some(&ts), Some(SIGNATURE), BODY, at(TIMESTAMP + 6 * 60)),
            Err(Refusal::Stale { age: 360 })
        );
        assert_eq!(
            verify(SECRET, Some(&ts), Some(SIGNATURE), BODY, at(TIMESTAMP - 6 * 60)),
            Err(Refusal::Stale { age: -360 })
        );
        assert_eq!(
            verify(SECRET, None, Some(SIGNATURE), BODY, now),
            Err(Refusal::Unsigned)
        );
        assert_eq!(verify(SECRET, Some(&ts), None, BODY, now), Err(Refusal::Unsigned));
        assert!(matches!(
            verify(SECRET, Some("soon"), Some(SIGNATURE), BODY, now),
            Err(Refusal::BadTimestamp(_))
        ));
        for bad in ["a2114d57", "v1=a2114d57", "v0=zz", "v0="] {
            assert_eq!(
                verify(SECRET, Some(&ts), Some(bad), BODY, now),
                Err(Refusal::BadSignature),
                "{bad}"
            );
        }
    }
}
