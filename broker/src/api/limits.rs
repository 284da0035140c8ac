//! Per-client limits on what anyone can reach without an account: the
//! sign-in endpoints (`/auth/*`, `/api/v1/auth/*`), and guesses of bearer
//! tokens and agents' join tokens. A client is its peer address as the listener saw it (behind a
//! proxy on the same host every client is the proxy: set the limits for
//! that, or let the proxy limit).
//!
//! Sign-in requests past the quota get 429 with `Retry-After`. A client
//! whose tokens (bearer or join) keep failing is refused with 429 before any further
//! token of its is even looked at, until its quota refills: guessing does
//! not go faster than the quota, whatever the guesses are.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use jitgate_shared::v1::ErrorCode;

use super::error::ApiError;
use super::AppState;
use crate::service::ServiceError;

/// The quotas, per client and minute.
#[derive(Debug, Clone, Copy)]
pub struct LimitSettings {
    pub sign_ins_per_minute: NonZeroU32,
    pub failed_tokens_per_minute: NonZeroU32,
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            sign_ins_per_minute: NonZeroU32::new(60).unwrap_or(NonZeroU32::MIN),
            failed_tokens_per_minute: NonZeroU32::new(30).unwrap_or(NonZeroU32::MIN),
        }
    }
}

#[derive(Debug)]
pub struct ClientLimits {
    sign_ins: DefaultKeyedRateLimiter<IpAddr>,
    failed_tokens: DefaultKeyedRateLimiter<IpAddr>,
    /// Clients over their failed-token quota, until when.
    blocked: Mutex<HashMap<IpAddr, Instant>>,
}

/// Over a quota: try again after this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled(pub Duration);

impl ClientLimits {
    pub fn new(settings: LimitSettings) -> Self {
        Self {
            sign_ins: RateLimiter::keyed(Quota::per_minute(settings.sign_ins_per_minute)),
            failed_tokens: RateLimiter::keyed(Quota::per_minute(settings.failed_tokens_per_minute)),
            blocked: Mutex::new(HashMap::new()),
        }
    }

    /// One more sign-in request from `client`.
    pub fn sign_in(&self, client: IpAddr) -> Result<(), Throttled> {
        self.sign_ins
            .check_key(&client)
            .map_err(|not_until| Throttled(not_until.wait_time_from(DefaultClock::default().now())))
    }

    /// Whether `client` may present a bearer token now.
    pub fn may_present_token(&self, client: IpAddr) -> Result<(), Throttled> {
        let mut blocked = jitgate_shared::sync::lock(&self.blocked);
        match blocked.get(&client) {
            Some(until) if *until > Instant::now() => Err(Throttled(*until - Instant::now())),
            Some(_) => {
                blocked.remove(&client);
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// `client` presented a token that was refused.
    pub fn token_failed(&self, client: IpAddr) {
        if let Err(not_until) = self.failed_tokens.check_key(&client) {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            tracing::warn!(%client, ?wait, "too many refused tokens from one client; refusing its tokens for a while");
            jitgate_shared::sync::lock(&self.blocked).insert(client, Instant::now() + wait);
        }
    }

    /// Forgets clients that have been quiet (called by a periodic sweep).
    pub fn forget_quiet(&self) {
        self.sign_ins.retain_recent();
        self.failed_tokens.retain_recent();
        let now = Instant::now();
        jitgate_shared::sync::lock(&self.blocked).retain(|_, until| *until > now);
    }
}

/// The client a request came from, as the listener saw it.
pub fn client_of(extensions: &axum::http::Extensions) -> Option<IpAddr> {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
}

/// A token `client` presents (a bearer token, an agent's join token),
/// checked by `check`: refused with 429 while the client is over its quota
/// of refused tokens, and counted against it when `check` finds it no
/// good. Every place a token is checked goes through here, so guessing one
/// kind is as slow as guessing another.
pub async fn presenting_token<T>(
    limits: &ClientLimits,
    client: Option<IpAddr>,
    check: impl std::future::Future<Output = Result<T, ServiceError>>,
) -> Result<T, ApiError> {
    if let Some(client) = client {
        limits
            .may_present_token(client)
            .map_err(|t| too_many(t, "refused tokens"))?;
    }
    check.await.map_err(|e| {
        if let (Some(client), ServiceError::Unauthenticated(_)) = (client, &e) {
            limits.token_failed(client);
        }
        e.into()
    })
}

/// The client a request came from ([`client_of`]), for handlers.
#[derive(Debug, Clone, Copy)]
pub struct Client(pub Option<IpAddr>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Client(client_of(&parts.extensions)))
    }
}

/// 429 with `Retry-After` (whole seconds, at least 1).
pub fn too_many(Throttled(wait): Throttled, what: &str) -> ApiError {
    let seconds = (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1);
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::TooManyRequests,
        format!("too many {what} from this client; try again in {seconds} s"),
        None,
    )
    .retry_after(seconds)
}

/// Middleware for the sign-in routes.
pub async fn sign_in_quota(State(s): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(client) = client_of(req.extensions()) {
        if let Err(t) = s.limits.sign_in(client) {
            return too_many(t, "sign-in requests").into_response();
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(per_minute: u32) -> ClientLimits {
        let n = NonZeroU32::new(per_minute).unwrap();
        ClientLimits::new(LimitSettings {
            sign_ins_per_minute: n,
            failed_tokens_per_minute: n,
        })
    }

    #[test]
    fn sign_ins_are_limited_per_client() {
        let l = limits(3);
        let (a, b): (IpAddr, IpAddr) = ("127.0.0.2".parse().unwrap(), "127.0.0.3".parse().unwrap());
        for _ in 0..3 {
            l.sign_in(a).unwrap();
        }
        let Throttled(wait) = l.sign_in(a).unwrap_err();
        assert!(wait > Duration::ZERO);
        l.sign_in(b).unwrap();
    }

    #[test]
    fn a_client_whose_tokens_keep_failing_is_refused_before_its_next_token_is_read() {
        let l = limits(2);
        let (a, b): (IpAddr, IpAddr) = ("127.0.0.2".parse().unwrap(), "127.0.0.3".parse().unwrap());
        for _ in 0..2 {
            l.may_present_token(a).unwrap();
            l.token_failed(a);
        }
        l.may_present_token(a).unwrap();
        l.token_failed(a);
        assert!(l.may_present_token(a).is_err(), "over its quota");
        assert!(l.may_present_token(b).is_ok(), "others are not affected");
        l.forget_quiet();
        assert!(l.may_present_token(a).is_err(), "still blocked after a sweep");
    }
}
