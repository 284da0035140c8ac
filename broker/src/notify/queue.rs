//! The notification queue's rules: one [`Notification`] per event and
//! address, kept in the store until delivered or given up, tried again
//! with backoff. Pure: the delivery service brings the clock and the
//! randomness.
//!
//! A broker takes a notification by moving its `due` past the time a
//! delivery may take ([`Notification::claim`], a compare-and-set), so of
//! several brokers one delivers it; should that broker die, the
//! notification falls due again and another delivers it. A receiver may
//! then see it twice: it deduplicates on the event id (webhooks'
//! `webhook-id`, mail's `Message-ID`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::event::Event;
use super::route::Address;

/// How long a delivery may take before the notification falls due again
/// (for another broker to take).
pub const CLAIM: Duration = Duration::from_secs(60);
/// The longest pause between tries, unless `[notify] retry_cap` says
/// otherwise.
pub const MOST_PAUSE: Duration = Duration::from_secs(15 * 60);
/// How long a notification is tried before it is given up.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(24 * 3600);
/// How long settled notifications are kept, for the delivery status.
pub const KEEP_SETTLED: Duration = Duration::from_secs(7 * 24 * 3600);

/// One event for one address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// `{event id}/{address key}`: an event is queued once per address.
    pub id: String,
    pub version: u64,
    pub event: Event,
    pub address: Address,
    pub queued_at: DateTime<Utc>,
    /// When to try next; `None` once settled.
    pub due: Option<DateTime<Utc>>,
    /// Tries started.
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settled: Option<Settled>,
    /// Where the message landed, for channels whose messages are changed
    /// later (Slack: replaced when the request is decided).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<Receipt>,
}

/// Where a delivered message is, to change it later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    pub channel: String,
    pub ts: String,
}

/// How a notification's delivery ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Settled {
    Delivered {
        at: DateTime<Utc>,
    },
    /// Refused for good by the receiver, or failing for
    /// [`GIVE_UP_AFTER`]; `last_error` says why.
    GaveUp {
        at: DateTime<Utc>,
    },
}

/// Why one delivery failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DeliveryError {
    pub message: String,
    /// Trying again can help (network, 5xx, 429); otherwise the receiver
    /// refused the message itself.
    pub retryable: bool,
    /// The receiver asked for this pause (`Retry-After`).
    pub retry_after: Option<Duration>,
}

impl DeliveryError {
    pub fn retryable(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: true,
            retry_after: None,
        }
    }

    pub fn refused(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: false,
            retry_after: None,
        }
    }
}

fn later(now: DateTime<Utc>, pause: Duration) -> DateTime<Utc> {
    now + chrono::Duration::from_std(pause).unwrap_or(chrono::Duration::MAX)
}

impl Notification {
    pub fn new(event: Event, address: Address, now: DateTime<Utc>) -> Self {
        let id = if address.changes_in_place() {
            address.key()
        } else {
            format!("{}/{}", event.id, address.key())
        };
        Notification {
            id,
            version: 0,
            event,
            address,
            queued_at: now,
            due: Some(now),
            attempts: 0,
            last_error: None,
            settled: None,
            receipt: None,
        }
    }

    /// The same message in place, now to show `event`: due at once, unless
    /// a try of the older event is under way or backing off (then when that
    /// try is recorded, see [`Notification::after_older_try`], or its
    /// claim or pause runs out), so the newer change lands last.
    pub fn retarget(&self, event: Event, now: DateTime<Utc>) -> Notification {
        let waiting = self.settled.is_none() && self.due.is_some_and(|d| d > now);
        Notification {
            event,
            queued_at: now,
            due: Some(if waiting { self.due.unwrap_or(now) } else { now }),
            attempts: 0,
            last_error: None,
            settled: None,
            ..self.clone()
        }
    }

    /// This notification, as stored, after a try of an older event it
    /// replaced was recorded as done: due at once. `None` when it is still
    /// that older event (nothing changed meanwhile).
    pub fn after_older_try(&self, tried: &Notification, now: DateTime<Utc>) -> Option<Notification> {
        (self.event.id != tried.event.id && self.settled.is_none()).then(|| Notification {
            due: Some(now),
            ..self.clone()
        })
    }

    /// Taken for one try: due again after [`CLAIM`] unless settled first.
    pub fn claim(&self, now: DateTime<Utc>) -> Notification {
        Notification {
            due: Some(later(now, CLAIM)),
            attempts: self.attempts + 1,
            ..self.clone()
        }
    }

    pub fn delivered(&self, now: DateTime<Utc>, receipt: Option<Receipt>) -> Notification {
        Notification {
            due: None,
            last_error: None,
            settled: Some(Settled::Delivered { at: now }),
            receipt,
            ..self.clone()
        }
    }

    /// After a failed try: due again after a backoff pause (`jitter` in
    /// `[0, 1)`, never longer than `longest` unless the receiver asked for
    /// more), or given up when the receiver refused it or it has been
    /// failing for [`GIVE_UP_AFTER`].
    pub fn failed(
        &self,
        error: &DeliveryError,
        now: DateTime<Utc>,
        jitter: f64,
        longest: Duration,
    ) -> Notification {
        let failing_for = (now - self.queued_at).to_std().unwrap_or_default();
        let (due, settled) = if !error.retryable || failing_for >= GIVE_UP_AFTER {
            (None, Some(Settled::GaveUp { at: now }))
        } else {
            let pause = jitgate_shared::backoff::backoff(
                self.attempts.saturating_add(4),
                error.retry_after,
                jitter,
                longest,
            );
            (Some(later(now, pause)), None)
        };
        Notification {
            due,
            settled,
            last_error: Some(error.message.clone()),
            ..self.clone()
        }
    }

    /// Settled before `before`: old enough to delete.
    pub fn settled_before(&self, before: DateTime<Utc>) -> bool {
        match self.settled {
            Some(Settled::Delivered { at } | Settled::GaveUp { at }) => at < before,
            None => false,
        }
    }
}

/// Delivery per address, over `notifications`, by address key.
pub fn status(notifications: &[Notification]) -> Vec<jitgate_shared::v1::api::NotificationEndpointView> {
    use jitgate_shared::v1::api::NotificationEndpointView as View;
    let mut by_address: std::collections::BTreeMap<String, View> = std::collections::BTreeMap::new();
    // The latest failure seen, by when it was queued.
    let mut error_at: std::collections::BTreeMap<String, DateTime<Utc>> = std::collections::BTreeMap::new();
    for n in notifications {
        let key = n.address.key();
        let v = by_address.entry(key.clone()).or_insert_with(|| View {
            address: key.clone(),
            channel: n.address.channel().to_owned(),
            queued: 0,
            failing: 0,
            delivered: 0,
            given_up: 0,
            last_delivered_at: None,
            last_error: None,
            oldest_queued_at: None,
        });
        match n.settled {
            Some(Settled::Delivered { at }) => {
                v.delivered += 1;
                v.last_delivered_at = v.last_delivered_at.max(Some(at));
            }
            Some(Settled::GaveUp { .. }) => v.given_up += 1,
            None => {
                v.queued += 1;
                if n.last_error.is_some() {
                    v.failing += 1;
                }
                v.oldest_queued_at = Some(v.oldest_queued_at.map_or(n.queued_at, |t| t.min(n.queued_at)));
            }
        }
        let failed = !matches!(n.settled, Some(Settled::Delivered { .. }));
        if let (true, Some(error)) = (failed, &n.last_error) {
            if error_at.get(&key).is_none_or(|t| *t <= n.queued_at) {
                error_at.insert(key, n.queued_at);
                v.last_error = Some(error.clone());
            }
        }
    }
    by_address.into_values().collect()
}

/// The cursor the router keeps over the audit log: every record up to
/// `seq` has had its notifications queued. Written with compare-and-set,
/// so of several brokers one routes each record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub name: String,
    pub version: u64,
    pub seq: u64,
}

impl Cursor {
    /// The notification router's cursor.
    pub const NOTIFY: &'static str = "notify";
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    fn queued() -> Notification {
        let address = Address::Webhook {
            endpoint: "siem".into(),
        };
        Notification::new(crate::notify::event::sample(), address, at(0))
    }

    #[test]
    fn one_notification_per_event_and_address() {
        assert_eq!(queued().id, "audit-7/webhook:siem");
        assert_eq!(queued().due, Some(at(0)));
    }

    #[test]
    fn a_claim_falls_due_again_if_nothing_settles_it() {
        let claimed = queued().claim(at(5));
        assert_eq!(claimed.attempts, 1);
        assert_eq!(claimed.due, Some(at(5 + CLAIM.as_secs() as i64)));
    }

    #[test]
    fn failures_back_off_up_to_the_cap_and_honour_retry_after() {
        let mut n = queued();
        let mut last_pause = Duration::ZERO;
        for i in 0..20 {
            n = n
                .claim(at(i))
                .failed(&DeliveryError::retryable("503"), at(i), 0.5, MOST_PAUSE);
            let pause = (n.due.unwrap() - at(i)).to_std().unwrap();
            assert!(pause >= last_pause && pause <= MOST_PAUSE, "{pause:?}");
            last_pause = pause;
        }
        assert!(last_pause > MOST_PAUSE / 2);
        let asked = DeliveryError {
            retry_after: Some(Duration::from_secs(600)),
            ..DeliveryError::retryable("429")
        };
        let n = queued().claim(at(0)).failed(&asked, at(0), 0.0, MOST_PAUSE);
        assert_eq!(n.due, Some(at(600)));
        assert_eq!(n.last_error.as_deref(), Some("429"));
    }

    #[test]
    fn refusals_and_day_old_failures_give_up() {
        let n = queued()
            .claim(at(1))
            .failed(&DeliveryError::refused("404"), at(1), 0.0, MOST_PAUSE);
        assert_eq!((n.due, n.settled), (None, Some(Settled::GaveUp { at: at(1) })));
        let late = at(GIVE_UP_AFTER.as_secs() as i64);
        let n = queued()
            .claim(late)
            .failed(&DeliveryError::retryable("503"), late, 0.0, MOST_PAUSE);
        assert!(matches!(n.settled, Some(Settled::GaveUp { .. })));
        assert!(n.settled_before(late + chrono::Duration::seconds(1)));
        assert!(!queued().settled_before(late));
    }

    #[test]
    fn a_message_changed_in_place_ends_showing_the_newest_event() {
        let copy = Address::SlackCopy {
            channel: "C1".into(),
            ts: "1.2".into(),
            language: None,
        };
        let (mut older, mut newer) = (crate::notify::event::sample(), crate::notify::event::sample());
        older.id = Event::audit_id(1);
        newer.id = Event::audit_id(2);
        let first = Notification::new(older, copy.clone(), at(0));
        assert_eq!(first.id, "slack-copy:C1/1.2", "one notification per message");
        // Idle: the newer event is due at once.
        let idle = first.retarget(newer.clone(), at(1));
        assert_eq!((idle.due, idle.event.id.as_str()), (Some(at(1)), "audit-2"));
        // A try of the older one under way: the newer waits for it...
        let in_flight = first.claim(at(1));
        let waiting = in_flight.retarget(newer, at(2));
        assert_eq!(waiting.due, in_flight.due);
        assert_eq!(waiting.attempts, 0);
        // ...and is due at once when that try is recorded.
        let tried = in_flight.delivered(at(3), None);
        assert_eq!(waiting.after_older_try(&tried, at(3)).unwrap().due, Some(at(3)));
        assert!(in_flight.after_older_try(&tried, at(3)).is_none());
    }

    #[test]
    fn status_counts_per_address() {
        let other = Address::Email {
            to: "Sec@example.com".into(),
            name: String::new(),
            language: None,
        };
        let failing = queued()
            .claim(at(1))
            .failed(&DeliveryError::retryable("503"), at(1), 0.0, MOST_PAUSE);
        let delivered = Notification::new(crate::notify::event::sample(), other.clone(), at(2))
            .claim(at(2))
            .delivered(at(3), None);
        let gave_up = Notification::new(crate::notify::event::sample(), other, at(4))
            .claim(at(4))
            .failed(
                &DeliveryError::refused("550 no such user"),
                at(4),
                0.0,
                MOST_PAUSE,
            );
        let views = status(&[failing, delivered, gave_up]);
        assert_eq!(views.len(), 2);
        let (mail, hook) = (&views[0], &views[1]);
        assert_eq!(mail.address, "email:sec@example.com");
        assert_eq!((mail.delivered, mail.given_up, mail.queued), (1, 1, 0));
        assert_eq!(mail.last_delivered_at, Some(at(3)));
        assert_eq!(mail.last_error.as_deref(), Some("550 no such user"));
        assert_eq!((hook.queued, hook.failing), (1, 1));
        assert_eq!(hook.oldest_queued_at, Some(at(0)));
        assert_eq!(hook.last_error.as_deref(), Some("503"));
    }

    #[test]
    fn delivered_is_settled_and_no_longer_due() {
        let n = queued().claim(at(1)).delivered(at(2), None);
        assert_eq!(n.due, None);
        assert_eq!(n.settled, Some(Settled::Delivered { at: at(2) }));
    }
}
