//! Waking the broker that holds an agent's session when another broker
//! queues a command for it. A commit that queues commands notifies
//! [`CHANNEL`] with each configuration (PostgreSQL delivers it when the
//! transaction commits, never before); every broker listens on a
//! connection of its own and wakes its sessions of that configuration.
//!
//! A notification lost while the listening connection was down is made
//! up for: on (re)connecting, every outbox is woken.

use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_postgres::AsyncMessage;

use super::connect::{connect_one, PgSettings};
use crate::store::OutboxWake;

/// The channel queued commands are announced on.
pub const CHANNEL: &str = "jitgate_outbox";

/// Longest pause between attempts to listen again.
const RETRY_MAX: Duration = Duration::from_secs(5);

/// The payload announcing `configuration`'s outbox, from store `me`.
pub fn payload(configuration: &str, me: &str) -> String {
    format!("{configuration} {me}")
}

/// What a payload announces, unless it came from `me` (which woke its own
/// sessions already).
fn announced<'a>(payload: &'a str, me: &str) -> Option<&'a str> {
    let (configuration, from) = payload.split_once(' ')?;
    (from != me).then_some(configuration)
}

/// Listens until the receiver is dropped.
pub fn spawn_listener(settings: PgSettings, me: String) -> mpsc::Receiver<OutboxWake> {
    let (tx, rx) = mpsc::channel(1024);
    tokio::spawn(async move {
        let mut attempt = 0u32;
        loop {
            match listen(&settings, &me, &tx).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "listening for other brokers' outbox changes failed; retrying")
                }
            }
            let pause = jitgate_shared::backoff::backoff(attempt, None, rand::random(), RETRY_MAX);
            attempt = attempt.saturating_add(1);
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = tx.closed() => return,
            }
        }
    });
    rx
}

/// One listening connection: `Ok` when the receiver is gone, `Err` when
/// the connection failed.
async fn listen(
    settings: &PgSettings,
    me: &str,
    tx: &mpsc::Sender<OutboxWake>,
) -> Result<(), crate::store::StoreError> {
    let (client, mut messages) = connect_one(settings).await?;
    let statement = format!("LISTEN {CHANNEL}");
    let mut listening = std::pin::pin!(client.batch_execute(&statement));
    let mut started = false;
    loop {
        tokio::select! {
            r = &mut listening, if !started => {
                r.map_err(super::pg_error)?;
                started = true;
                tracing::debug!("listening for other brokers' outbox changes");
                // Whatever was announced while not listening is unknown.
                if tx.send(OutboxWake::All).await.is_err() {
                    return Ok(());
                }
            }
            message = messages.next() => match message {
                Some(Ok(AsyncMessage::Notification(n))) => {
                    if let Some(configuration) = announced(n.payload(), me) {
                        let Ok(configuration) = configuration.parse() else {
                            tracing::warn!(payload = n.payload(), "outbox notification names no configuration");
                            continue;
                        };
                        if tx.send(OutboxWake::Configuration(configuration)).await.is_err() {
                            return Ok(());
                        }
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(super::pg_error(e)),
                None => return Err(crate::store::StoreError::backend(std::io::Error::other("the listening connection closed"))),
            },
            _ = tx.closed() => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_ignores_its_own_announcements() {
        assert_eq!(announced(&payload("aws", "a"), "b"), Some("aws"));
        assert_eq!(announced(&payload("aws", "a"), "a"), None);
        assert_eq!(announced("garbage", "a"), None);
    }
}
