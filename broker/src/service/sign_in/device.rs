//! Device sign-ins (RFC 8628), for a CLI without a browser: the broker
//! polls the provider while the person approves on another device, and
//! hands the tokens out once. The polling tasks belong to
//! [`DeviceLogins`]; the server ends them when it stops.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use chrono::{DateTime, Duration, Utc};
use jitgate_shared::v1::api::{DevicePoll, DeviceStarted, TokenSet};
use tokio::task::JoinSet;

use super::{refused, LOGIN_TTL};
use crate::identity::oidc::OidcError;
use crate::service::auth::{hash_token, random_token};
use crate::service::{Broker, ServiceError};

/// At most this many device sign-ins are under way at once (each holds a
/// task polling its provider); past it, new ones are refused until some
/// finish or expire.
pub const MAX_DEVICE_LOGINS: usize = 1000;

/// Forgets the device sign-ins that expired by `now`.
fn forget_expired(devices: &mut HashMap<String, DeviceLogin>, now: DateTime<Utc>) {
    devices.retain(|_, d| now < d.expires_at);
}

/// Forgets expired device sign-ins and says whether one more fits.
fn room_for_device_login(devices: &mut HashMap<String, DeviceLogin>, now: DateTime<Utc>) -> bool {
    forget_expired(devices, now);
    devices.len() < MAX_DEVICE_LOGINS
}

/// A device sign-in the broker is polling the provider for; forgotten
/// when it expires, or once its outcome was fetched.
#[derive(Debug, Clone)]
struct DeviceLogin {
    expires_at: DateTime<Utc>,
    interval: u64,
    /// `None` while the person has not answered.
    outcome: Option<Result<Box<TokenSet>, String>>,
}

/// Device sign-ins under way, by the hash of their handle, and the tasks
/// polling their providers. In memory: a restart loses them, and people
/// start again.
#[derive(Debug, Default)]
pub struct DeviceLogins {
    logins: Mutex<HashMap<String, DeviceLogin>>,
    polls: Mutex<JoinSet<()>>,
}

impl DeviceLogins {
    fn logins(&self) -> Result<MutexGuard<'_, HashMap<String, DeviceLogin>>, ServiceError> {
        self.logins
            .lock()
            .map_err(|_| ServiceError::Unavailable("device sign-ins are unavailable".into()))
    }

    fn polls(&self) -> MutexGuard<'_, JoinSet<()>> {
        let mut polls = jitgate_shared::sync::lock(&self.polls);
        while polls.try_join_next().is_some() {}
        polls
    }

    /// Runs `poll` beside the others (forgetting those that finished).
    fn spawn(&self, poll: impl std::future::Future<Output = ()> + Send + 'static) {
        self.polls().spawn(poll);
    }

    /// Polls running now.
    pub fn polling(&self) -> usize {
        self.polls().len()
    }

    /// Stops polling for every device sign-in under way and waits until
    /// the polls have ended; the server calls it on its way down.
    pub async fn shutdown(&self) {
        let mut polls = std::mem::take(&mut *self.polls());
        polls.shutdown().await;
    }
}

impl Broker {
    /// Starts a device sign-in: the broker polls the provider in the
    /// background while the person approves on another device.
    #[tracing::instrument(skip(self, email))]
    pub async fn start_device_login(
        &self,
        email: Option<&str>,
        provider: Option<&str>,
    ) -> Result<DeviceStarted, ServiceError> {
        let name = self.route(email, provider)?;
        if self.sso.saml.contains_key(name) {
            return Err(ServiceError::invalid(
                "provider",
                format!("`{name}` is a SAML provider: the device flow is OIDC only; use `jitgate login` with a browser"),
            ));
        }
        let oidc = self.provider(name)?.clone();
        let full = || {
            ServiceError::Unavailable("too many device sign-ins are under way; try again in a minute".into())
        };
        // Checked before asking the provider, and again when adding.
        let room = self
            .sso
            .devices
            .logins()
            .map(|mut d| room_for_device_login(&mut d, self.clock.now()))
            .unwrap_or(false);
        if !room {
            return Err(full());
        }
        let start = oidc.start_device(email).await.map_err(|e| match e {
            OidcError::Config { .. } => ServiceError::Invalid {
                field: Some("provider"),
                message: e.to_string(),
            },
            other => ServiceError::Unavailable(other.to_string()),
        })?;
        let now = self.clock.now();
        let handle = random_token("");
        let key = hash_token(&handle);
        let expires_at = now + Duration::from_std(start.expires_in).unwrap_or(LOGIN_TTL);
        let interval = start.interval.as_secs().max(1);
        let mut devices = self.sso.devices.logins()?;
        if !room_for_device_login(&mut devices, now) {
            return Err(full());
        }
        devices.insert(
            key.clone(),
            DeviceLogin {
                expires_at,
                interval,
                outcome: None,
            },
        );
        drop(devices);
        let broker = self.clone();
        let shown = start.clone();
        self.sso.devices.spawn(async move {
            let clock = broker.clock.clone();
            let outcome = async {
                let verified = oidc
                    .finish_device(&start, || clock.now())
                    .await
                    .map_err(|e| e.to_string())?;
                let now = broker.clock.now();
                let (user, session) = broker
                    .sign_in(oidc.rules(), &verified.claims, verified.refresh_token, now)
                    .await
                    .map_err(|e| e.to_string())?;
                broker
                    .issue_tokens(&user, &session, now)
                    .await
                    .map(Box::new)
                    .map_err(|e| e.to_string())
            }
            .await;
            if let Err(e) = &outcome {
                tracing::warn!(provider = %oidc.name(), error = %e, "device sign-in ended without a session");
            }
            if let Ok(mut devices) = broker.sso.devices.logins() {
                if let Some(d) = devices.get_mut(&key) {
                    d.outcome = Some(outcome);
                }
            }
        });
        Ok(DeviceStarted {
            handle,
            provider: name.to_owned(),
            user_code: shown.user_code,
            verification_uri: shown.verification_uri,
            verification_uri_complete: shown.verification_uri_complete,
            interval_seconds: interval,
            expires_at,
        })
    }

    /// Where a device sign-in is; its tokens are handed out once.
    pub fn poll_device_login(&self, handle: &str) -> Result<DevicePoll, ServiceError> {
        let refuse = |m: String| ServiceError::Unauthenticated(m);
        let now = self.clock.now();
        let key = hash_token(handle);
        let mut devices = self.sso.devices.logins()?;
        forget_expired(&mut devices, now);
        let Some(login) = devices.get(&key).cloned() else {
            return Err(refuse("unknown or expired device sign-in; start again".into()));
        };
        match login.outcome {
            None => Ok(DevicePoll::Pending {
                interval_seconds: login.interval,
            }),
            Some(outcome) => {
                devices.remove(&key);
                match outcome {
                    Ok(tokens) => Ok(DevicePoll::SignedIn { tokens }),
                    Err(e) => Err(refused(e)),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_sign_ins_are_capped_and_expired_ones_make_room() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let login = |expires_at| DeviceLogin {
            expires_at,
            interval: 5,
            outcome: None,
        };
        let mut devices: HashMap<String, DeviceLogin> = (0..MAX_DEVICE_LOGINS)
            .map(|i| (i.to_string(), login(now + Duration::minutes(10))))
            .collect();
        assert!(!room_for_device_login(&mut devices, now), "full");
        // One of them expires: it is forgotten and makes room.
        devices.insert("0".into(), login(now - Duration::seconds(1)));
        devices.insert("old".into(), login(now - Duration::seconds(1)));
        assert!(room_for_device_login(&mut devices, now));
        assert_eq!(devices.len(), MAX_DEVICE_LOGINS - 1);
        assert!(!devices.contains_key("old"), "expired ones are forgotten");
    }

    #[tokio::test]
    async fn polls_run_until_shut_down() {
        let logins = DeviceLogins::default();
        let (ended_tx, ended) = tokio::sync::oneshot::channel::<()>();
        logins.spawn(async move {
            let _ended = ended_tx;
            std::future::pending::<()>().await;
        });
        logins.spawn(async {});
        tokio::task::yield_now().await;
        assert_eq!(logins.polling(), 1, "the finished one is forgotten");
        logins.shutdown().await;
        assert_eq!(logins.polling(), 0);
        assert!(
            ended.await.is_err(),
            "the pending poll was dropped, not left running"
        );
    }
}
