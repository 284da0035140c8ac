//! What one broker tells the others sharing its database as its changes
//! commit (PostgreSQL delivers a notification when the transaction
//! commits, never before); every broker listens on a connection of its
//! own:
//! - [`OUTBOX`]: commands were queued for a configuration, so the broker
//!   holding that configuration's agent session sends them;
//! - [`CHANGES`]: requests, grants or agents changed, and whose
//!   ([`Changed`]), so pages open on any broker refresh live.
//!
//! Announcements lost while the listening connection was down are made up
//! for: on (re)connecting, every outbox is woken and every page told that
//! anything may have changed.

use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_postgres::AsyncMessage;

use super::connect::{connect_one, PgSettings};
use crate::store::changed::Changed;
use crate::store::{Announcements, OutboxWake};

/// The channel queued commands are announced on.
pub const OUTBOX: &str = "jitgate_outbox";
/// The channel committed changes are announced on.
pub const CHANGES: &str = "jitgate_changes";

/// Longest pause between attempts to listen again.
const RETRY_MAX: Duration = Duration::from_secs(5);

/// The payload announcing `configuration`'s outbox, from store `me`.
pub fn payload(configuration: &str, me: &str) -> String {
    format!("{configuration} {me}")
}

/// The payload announcing a change, from store `me`.
pub fn change_payload(changed: &Changed, me: &str) -> String {
    format!("{me} {}", changed.to_payload())
}

/// What an outbox payload announces, unless it came from `me` (which woke
/// its own sessions already).
fn announced<'a>(payload: &'a str, me: &str) -> Option<&'a str> {
    let (configuration, from) = payload.split_once(' ')?;
    (from != me).then_some(configuration)
}

/// What a change payload announces, unless it came from `me` (which told
/// its own pages already).
fn change_announced(payload: &str, me: &str) -> Option<Changed> {
    let (from, changed) = payload.split_once(' ')?;
    if from == me {
        return None;
    }
    let changed = Changed::from_payload(changed);
    if changed.is_none() {
        tracing::warn!(payload, "a change notification that is not one");
    }
    changed
}

/// Listens until both receivers are dropped.
pub fn spawn_listener(settings: PgSettings, me: String) -> Announcements {
    let (outbox_tx, outboxes) = mpsc::channel(1024);
    let (changes_tx, changes) = mpsc::channel(1024);
    tokio::spawn(async move {
        let senders = Senders {
            outbox: outbox_tx,
            changes: changes_tx,
        };
        let mut attempt = 0u32;
        loop {
            match listen(&settings, &me, &senders).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "listening for other brokers' changes failed; retrying")
                }
            }
            let pause = jitgate_shared::backoff::backoff(attempt, None, rand::random(), RETRY_MAX);
            attempt = attempt.saturating_add(1);
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = senders.closed() => return,
            }
        }
    });
    Announcements { outboxes, changes }
}

struct Senders {
    outbox: mpsc::Sender<OutboxWake>,
    changes: mpsc::Sender<Changed>,
}

impl Senders {
    /// Both receivers are gone.
    async fn closed(&self) {
        tokio::join!(self.outbox.closed(), self.changes.closed());
    }

    fn gone(&self) -> bool {
        self.outbox.is_closed() && self.changes.is_closed()
    }
}

/// One listening connection: `Ok` when the receivers are gone, `Err` when
/// the connection failed. A receiver dropped alone stops hearing; the
/// other still does.
async fn listen(settings: &PgSettings, me: &str, tx: &Senders) -> Result<(), crate::store::StoreError> {
    let (client, mut messages) = connect_one(settings).await?;
    let statement = format!("LISTEN {OUTBOX}; LISTEN {CHANGES}");
    let mut listening = std::pin::pin!(client.batch_execute(&statement));
    let mut started = false;
    loop {
        tokio::select! {
            r = &mut listening, if !started => {
                r.map_err(super::pg_error)?;
                started = true;
                tracing::debug!("listening for other brokers' changes");
                // Whatever was announced while not listening is unknown.
                let _ = tx.outbox.send(OutboxWake::All).await;
                let _ = tx.changes.send(Changed::anything()).await;
            }
            message = messages.next() => match message {
                Some(Ok(AsyncMessage::Notification(n))) if n.channel() == OUTBOX => {
                    if let Some(configuration) = announced(n.payload(), me) {
                        let Ok(configuration) = configuration.parse() else {
                            tracing::warn!(payload = n.payload(), "outbox notification names no configuration");
                            continue;
                        };
                        let _ = tx.outbox.send(OutboxWake::Configuration(configuration)).await;
                    }
                }
                Some(Ok(AsyncMessage::Notification(n))) if n.channel() == CHANGES => {
                    if let Some(changed) = change_announced(n.payload(), me) {
                        let _ = tx.changes.send(changed).await;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(super::pg_error(e)),
                None => return Err(crate::store::StoreError::backend(std::io::Error::other("the listening connection closed"))),
            },
            _ = tx.closed() => return Ok(()),
        }
        if tx.gone() {
            return Ok(());
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
        let changed = Changed::anything();
        assert_eq!(
            change_announced(&change_payload(&changed, "a"), "b"),
            Some(changed.clone())
        );
        assert_eq!(change_announced(&change_payload(&changed, "a"), "a"), None);
        assert_eq!(change_announced("b not-json", "a"), None);
    }
}
