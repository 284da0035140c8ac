//! `GET /console/events`: Server-Sent Events telling an open page that
//! something it shows changed. Each event names only a topic (`requests`,
//! `grants`, `agents`), never a record, and only changes the person may see
//! reach them: their own requests and grants, or everyone's for approvers,
//! admins and auditors. The page then fetches itself again through the
//! ordinary, authorised route. The stream ends when the session does.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream};
use jitgate_shared::v1::UserId;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::broadcast::Receiver;

use super::viewer::Viewer;
use crate::api::AppState;
use crate::service::feed::{Changed, Topic};
use crate::service::requests::sees_all;

/// Which changes a person hears of.
#[derive(Debug, Clone)]
pub struct Audience {
    pub user: UserId,
    pub sees_all: bool,
    pub admin: bool,
}

impl Audience {
    /// The topics of `changed` this person may hear of.
    pub fn topics(&self, changed: &Changed) -> Vec<Topic> {
        let theirs = self.sees_all || changed.everyone || changed.people.contains(&self.user);
        changed
            .topics
            .iter()
            .copied()
            .filter(|t| match t {
                Topic::Requests | Topic::Grants => theirs,
                Topic::Agents => self.admin,
            })
            .collect()
    }
}

struct Listening {
    rx: Receiver<Changed>,
    audience: Audience,
    ends: tokio::time::Instant,
    queued: Vec<Topic>,
}

pub async fn stream(State(s): State<AppState>, viewer: Viewer) -> Response {
    let now = s.broker.clock().now();
    let left = (viewer.session.expires_at - now).to_std().unwrap_or_default();
    let listening = Listening {
        rx: s.broker.live().feed.subscribe(),
        audience: Audience {
            user: viewer.user.id.clone(),
            sees_all: sees_all(&viewer.user),
            admin: crate::service::admin::is_privileged(&viewer.user),
        },
        ends: tokio::time::Instant::now() + left,
        queued: Vec::new(),
    };
    Sse::new(events(listening))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

fn events(listening: Listening) -> impl Stream<Item = Result<Event, Infallible>> {
    stream::unfold(listening, |mut l| async move {
        loop {
            if let Some(topic) = l.queued.pop() {
                let event = Event::default().event("changed").data(topic.as_str());
                return Some((Ok(event), l));
            }
            let next = tokio::select! {
                got = l.rx.recv() => got,
                () = tokio::time::sleep_until(l.ends) => return None,
            };
            match next {
                Ok(changed) => l.queued = l.audience.topics(&changed),
                // Fell behind: whatever it missed, refresh all it may see.
                Err(RecvError::Lagged(_)) => {
                    l.queued = vec![Topic::Requests, Topic::Grants];
                }
                Err(RecvError::Closed) => return None,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn changed(people: &[&str], topics: &[Topic]) -> Changed {
        Changed {
            topics: topics.iter().copied().collect(),
            people: people.iter().map(|p| UserId::new(*p).unwrap()).collect(),
            everyone: false,
        }
    }

    #[test]
    fn people_hear_only_of_what_they_may_see() {
        let alice = Audience {
            user: UserId::new("alice").unwrap(),
            sees_all: false,
            admin: false,
        };
        let bob = Audience {
            user: UserId::new("bob").unwrap(),
            sees_all: true,
            admin: false,
        };
        let carols = changed(&["carol"], &[Topic::Requests, Topic::Grants]);
        assert!(alice.topics(&carols).is_empty());
        assert_eq!(bob.topics(&carols), [Topic::Requests, Topic::Grants]);
        let hers = changed(&["alice"], &[Topic::Grants, Topic::Agents]);
        assert_eq!(alice.topics(&hers), [Topic::Grants]);
        // Whose is unknown (another broker's announcements were missed):
        // everyone refreshes what they may see.
        assert_eq!(
            alice.topics(&Changed::anything()),
            [Topic::Requests, Topic::Grants]
        );
    }
}
