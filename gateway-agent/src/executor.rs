//! Carrying out commands: verify, look up the journal, act through the
//! provider, journal the result. And the deadline watch: an entitlement
//! whose deadline passes without the broker's revoke is removed here.
//!
//! Commands for one entitlement run one at a time, in arrival order (the
//! place in line is taken by [`Executor::admit`], synchronously, as a
//! command arrives); different entitlements run in parallel.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use jitgate_shared::v1::api::CommandOp;
use jitgate_shared::v1::protocol::{FailureKind, Outcome};
use jitgate_shared::v1::signing::{CommandBody, CommandRejected, CommandVerifier, SignedCommand};
use jitgate_shared::v1::{ConfigId, Entitlement, Target};
use tokio::sync::{watch, Notify};

use crate::clock::Clock;
use crate::journal::{entitlement_key, Holding, Journal, JournalError, SelfRevokeReport};
use crate::provider::{Effect, Ending, Provider, ProviderError, Window};
use crate::turns::Turns;

/// How long the agent waits past a deadline for the broker's own revoke
/// while connected; when it cannot reach the broker it does not wait.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(2);

/// The longest pause between tries to remove an expired entitlement after
/// a failure that may pass by itself (throttling, a timeout, a 5xx, a
/// credential being renewed).
pub const SELF_REVOKE_TRANSIENT_MAX: Duration = Duration::from_secs(60);
/// ... and after one that will not ([`FailureKind::NotFound`],
/// [`FailureKind::Rejected`]: a permission taken away, a principal
/// gone): it needs a person, and hammering the tenant helps nobody; it is
/// still tried until it succeeds.
pub const SELF_REVOKE_PERMANENT_MAX: Duration = Duration::from_secs(15 * 60);

/// Pause before the next try at removing an expired entitlement, after
/// `attempt` failures, the last being `error`.
pub fn self_revoke_pause(attempt: u32, error: &ProviderError, jitter: f64) -> Duration {
    let cap = if error.retryable() {
        SELF_REVOKE_TRANSIENT_MAX
    } else {
        SELF_REVOKE_PERMANENT_MAX
    };
    jitgate_shared::backoff::backoff(attempt, error.retry_after(), jitter, cap)
}

#[derive(Debug)]
pub struct Executor {
    configuration: ConfigId,
    verifier: CommandVerifier,
    journal: Journal,
    provider: Arc<dyn Provider>,
    /// One piece of work at a time per entitlement, by journal key.
    turns: Turns,
    /// A deadline was set or moved.
    deadlines: Notify,
    /// A self-revoke report waits to be sent.
    pub reports: Notify,
    grace: Duration,
    /// Failed tries at removing an expired entitlement, by journal key.
    self_revoke_failures: std::sync::Mutex<HashMap<String, u32>>,
    /// Deadlines, command expiry and journal times are read from it.
    clock: Arc<dyn Clock>,
}

impl Executor {
    pub fn new(
        configuration: ConfigId,
        verifier: CommandVerifier,
        journal: Journal,
        provider: Arc<dyn Provider>,
        grace: Duration,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            clock,
            configuration,
            verifier,
            journal,
            provider,
            self_revoke_failures: std::sync::Mutex::default(),
            turns: Turns::default(),
            deadlines: Notify::new(),
            reports: Notify::new(),
            grace,
        }
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    pub fn provider(&self) -> &Arc<dyn Provider> {
        &self.provider
    }

    /// Verifies one command and takes its place in its entitlement's line,
    /// now, in the order commands arrive; the returned future carries it
    /// out when its turn comes and gives the id to answer with (empty when
    /// the body names none) and the outcome.
    pub fn admit(
        self: &Arc<Self>,
        signed: &SignedCommand,
    ) -> impl std::future::Future<Output = (String, Outcome)> + Send + 'static {
        let now = self.clock.now();
        let admitted = match self.verifier.verify(signed, &self.configuration, now) {
            Ok(body) => {
                let turn = self.turns.take(entitlement_key(&body.entitlement));
                Ok((body, turn))
            }
            Err(rejected) => Err(self.refused(signed, rejected)),
        };
        let this = self.clone();
        async move {
            let (body, mut turn) = match admitted {
                Ok(admitted) => admitted,
                Err(refused) => return refused,
            };
            turn.wait().await;
            let id = body.id.clone();
            let outcome = match this.carry_out(&body).await {
                Ok(o) => o,
                Err(e) => {
                    tracing::error!(command = %id, error = %e, "journal failed; not acting");
                    Outcome::failed(FailureKind::Transport, format!("agent journal: {e}"), None)
                }
            };
            drop(turn);
            (id, outcome)
        }
    }

    /// [`Executor::admit`], awaited.
    pub async fn execute(self: &Arc<Self>, signed: &SignedCommand) -> (String, Outcome) {
        self.admit(signed).await
    }

    fn refused(&self, signed: &SignedCommand, rejected: CommandRejected) -> (String, Outcome) {
        // The id of a refused body is only used to address the answer.
        let id = serde_json::from_str::<serde_json::Value>(&signed.body)
            .ok()
            .and_then(|v| v.get("id").and_then(|i| i.as_str()).map(str::to_owned))
            .unwrap_or_default();
        // A replay of a command carried out before it expired gets the
        // answer it got then.
        if let CommandRejected::Expired { .. } = rejected {
            if let Ok(Some(stored)) = self.journal.result(&id) {
                return (id, stored.outcome);
            }
        }
        tracing::warn!(command = %id, reason = %rejected, "command refused");
        (
            id,
            Outcome::Refused {
                reason: rejected.to_string(),
            },
        )
    }

    /// Carries out a verified command; its turn has come.
    async fn carry_out(&self, body: &CommandBody) -> Result<Outcome, JournalError> {
        if let Some(stored) = self.journal.result(&body.id)? {
            tracing::debug!(command = %body.id, "replayed command; answering from the journal");
            return Ok(stored.outcome);
        }
        tracing::info!(command = %body.id, op = ?body.op, "carrying out command");
        let outcome = match body.op {
            CommandOp::Grant => self.grant(body).await?,
            CommandOp::Revoke => self.revoke(body).await?,
        };
        // The answer's record is written, not flushed, before the answer
        // goes: one flush per command. Losing it in a crash costs nothing
        // unsafe, since a grant's deadline was flushed before acting, the
        // broker stores the answer durably, and a replay re-applies
        // idempotently (and answers `already present`).
        if !outcome.failure().is_some_and(FailureKind::retryable) {
            self.journal
                .put_result(&body.id, &outcome, self.clock.now(), body.not_after)?;
        }
        tracing::info!(command = %body.id, op = ?body.op, ?outcome, principal = %body.entitlement.principal, target = %body.entitlement.target.describe(), "command carried out");
        Ok(outcome)
    }

    async fn grant(&self, body: &CommandBody) -> Result<Outcome, JournalError> {
        let before = self.journal.holding(&body.entitlement)?;
        // The deadline is journalled (and flushed) before the tenant is
        // touched: after a crash mid-call, the entitlement is still removed
        // on time.
        self.journal.put_holding(&Holding {
            entitlement: body.entitlement.clone(),
            command: body.id.clone(),
            grant: body.grant,
            deadline: body.not_after,
            end_sign_in_sessions: body.end_sign_in_sessions,
        })?;
        self.journal.flush().await?;
        self.deadlines.notify_one();
        let window = Window {
            until: body.not_after,
            cap_session_duration: body.cap_session_duration,
            provision_on_demand: body.provision_on_demand.clone(),
        };
        let outcome = match self.provider.apply_for(&body.entitlement, &window).await {
            Ok(Effect::Changed) => Outcome::Applied,
            Ok(Effect::Unchanged) => Outcome::AlreadyPresent,
            Err(e) => {
                if !e.retryable() && before.is_none() {
                    self.journal.remove_holding(&body.entitlement)?;
                }
                e.outcome()
            }
        };
        Ok(outcome)
    }

    async fn revoke(&self, body: &CommandBody) -> Result<Outcome, JournalError> {
        let ending = Ending {
            end_sign_in_sessions: body.end_sign_in_sessions,
        };
        let outcome = match self.provider.remove_for(&body.entitlement, &ending).await {
            Ok(Effect::Changed) => Outcome::Revoked,
            Ok(Effect::Unchanged) => Outcome::AlreadyAbsent,
            Err(e) => return Ok(e.outcome()),
        };
        self.journal.remove_holding(&body.entitlement)?;
        // Flushed before answering: a holding that came back after a crash
        // would be removed again at its deadline and reported as a
        // self-revoke the broker never needed.
        self.journal.flush().await?;
        self.deadlines.notify_one();
        Ok(outcome)
    }

    /// Which of `entitlements` (of this configuration) are held now and
    /// which are not; ones the tenant could not answer for are in neither.
    pub async fn check(&self, entitlements: Vec<Entitlement>) -> (Vec<Entitlement>, Vec<Entitlement>) {
        let (mut held, mut absent) = (Vec::new(), Vec::new());
        for e in entitlements {
            if e.configuration != self.configuration {
                tracing::warn!(configuration = %e.configuration, "check for another configuration refused");
                continue;
            }
            match self.provider.holds(&e).await {
                Ok(true) => held.push(e),
                Ok(false) => absent.push(e),
                Err(err) => {
                    tracing::warn!(principal = %e.principal, target = %e.target.describe(), error = %err, "cannot tell whether the entitlement is held")
                }
            }
        }
        (held, absent)
    }

    /// Who holds `targets` in the tenant, for reconciliation.
    pub async fn inventory(&self, targets: &[Target]) -> Result<Vec<Entitlement>, ProviderError> {
        let mut found = self.provider.list(targets).await?;
        found.retain(|e| e.configuration == self.configuration);
        Ok(found)
    }

    /// Removes entitlements whose deadline passed, forever: right at the
    /// deadline while `connected` is false, after the grace while it is true
    /// (the broker's revoke normally comes first).
    pub async fn enforce_deadlines(self: Arc<Self>, mut connected: watch::Receiver<bool>) {
        loop {
            let grace = if *connected.borrow() {
                self.grace
            } else {
                Duration::ZERO
            };
            let next = self.enforce_due(grace).await;
            let wait = next.map_or(Duration::from_secs(3600), |at| self.clock.until(at));
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.deadlines.notified() => {}
                changed = connected.changed() => {
                    if changed.is_err() {
                        // The channel is gone (shutting down): keep
                        // enforcing as if offline.
                        connected = watch::channel(false).1;
                    }
                }
            }
        }
    }

    /// Removes every holding whose deadline plus `grace` has passed by the
    /// clock; returns when the next one falls due (or a failed removal is
    /// tried again), `None` when nothing is held.
    pub async fn enforce_due(&self, grace: Duration) -> Option<DateTime<Utc>> {
        let now = self.clock.now();
        let mut next: Option<DateTime<Utc>> = None;
        match self.journal.holdings() {
            Ok(holdings) => {
                for h in holdings {
                    let due = h.deadline + chrono::Duration::from_std(grace).unwrap_or_default();
                    if due <= now {
                        if let Err(retry) = self.expire(&h).await {
                            next = Some(next.map_or(retry, |n| n.min(retry)));
                        }
                    } else {
                        next = Some(next.map_or(due, |n| n.min(due)));
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "reading the journal failed");
                next = Some(now + chrono::Duration::seconds(1));
            }
        }
        next
    }

    /// Removes one expired holding. On a failure returns when to try again.
    async fn expire(&self, seen: &Holding) -> Result<(), DateTime<Utc>> {
        let retry = || self.clock.now() + chrono::Duration::seconds(1);
        let mut turn = self.turns.take(entitlement_key(&seen.entitlement));
        turn.wait().await;
        // A command may have moved the deadline or removed it meanwhile.
        match self.journal.holding(&seen.entitlement) {
            Ok(Some(h)) if h == *seen => {}
            Ok(_) => return Ok(()),
            Err(e) => {
                tracing::error!(error = %e, "reading the journal failed");
                return Err(retry());
            }
        }
        let ending = Ending {
            end_sign_in_sessions: seen.end_sign_in_sessions,
        };
        let outcome = match self.provider.remove_for(&seen.entitlement, &ending).await {
            Ok(Effect::Changed) => Outcome::Revoked,
            Ok(Effect::Unchanged) => Outcome::AlreadyAbsent,
            Err(e) => {
                let attempt = {
                    let mut failures = jitgate_shared::sync::lock(&self.self_revoke_failures);
                    let n = failures.entry(entitlement_key(&seen.entitlement)).or_insert(0);
                    *n = n.saturating_add(1);
                    *n - 1
                };
                let pause = self_revoke_pause(attempt, &e, rand::random::<f64>());
                if e.retryable() {
                    tracing::warn!(grant = %seen.grant, error = %e, ?pause, "removing an expired entitlement failed; trying again");
                } else {
                    tracing::error!(grant = %seen.grant, error = %e, ?pause, attempts = attempt + 1, "removing an expired entitlement failed for good; it needs a person, and is tried again with a longer pause");
                }
                return Err(
                    self.clock.now() + chrono::Duration::from_std(pause).unwrap_or(chrono::Duration::MAX)
                );
            }
        };
        jitgate_shared::sync::lock(&self.self_revoke_failures).remove(&entitlement_key(&seen.entitlement));
        let at = self.clock.now();
        tracing::warn!(grant = %seen.grant, deadline = %seen.deadline, principal = %seen.entitlement.principal, target = %seen.entitlement.target.describe(), ?outcome, "deadline passed without the broker's revoke; removed it here");
        let report = SelfRevokeReport {
            command: seen.command.clone(),
            grant: seen.grant,
            entitlement: seen.entitlement.clone(),
            deadline: seen.deadline,
            at,
            outcome,
        };
        let written = self
            .journal
            .put_report(&report)
            .and_then(|()| self.journal.remove_holding(&seen.entitlement));
        if let Err(e) = written {
            tracing::error!(error = %e, "journalling a self-revoke failed");
            return Err(retry());
        }
        if let Err(e) = self.journal.flush().await {
            tracing::error!(error = %e, "flushing the journal failed");
        }
        self.reports.notify_one();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::provider::sandbox::{Sandbox, SandboxSettings};
    use jitgate_shared::v1::signing::CommandSigner;
    use jitgate_shared::v1::GrantId;

    fn start() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    /// A command issued at [`start`], for five minutes.
    fn command(config: &str, id: &str, op: CommandOp) -> CommandBody {
        let now = start();
        CommandBody {
            id: id.into(),
            op,
            grant: GrantId::generate(),
            entitlement: Entitlement {
                configuration: ConfigId::new(config).unwrap(),
                target: Target::EntraGroupMembership { group_id: "g".into() },
                principal: "alice".into(),
            },
            not_before: now,
            not_after: now + chrono::Duration::minutes(5),
            issued_at: now,
            cap_session_duration: false,
            end_sign_in_sessions: false,
            provision_on_demand: None,
        }
    }

    /// An executor over a sandbox tenant, its clock at [`start`].
    fn executor(
        dir: &std::path::Path,
        signer: &CommandSigner,
    ) -> (Arc<Executor>, Arc<Sandbox>, Arc<ManualClock>) {
        let sandbox =
            Arc::new(Sandbox::open(ConfigId::new("entra").unwrap(), SandboxSettings::default()).unwrap());
        let clock = Arc::new(ManualClock::new(start()));
        let e = Executor::new(
            ConfigId::new("entra").unwrap(),
            signer.verifier(),
            Journal::open(dir).unwrap(),
            sandbox.clone(),
            DEFAULT_GRACE,
            clock.clone(),
        );
        (Arc::new(e), sandbox, clock)
    }

    #[test]
    fn self_revokes_back_off_longer_after_permanent_failures() {
        let transient = ProviderError::transport("timed out");
        let permanent = ProviderError::rejected("AccessDenied");
        for jitter in [0.0, 0.5, 0.99] {
            let t: Vec<_> = (0..30)
                .map(|a| self_revoke_pause(a, &transient, jitter))
                .collect();
            let p: Vec<_> = (0..30)
                .map(|a| self_revoke_pause(a, &permanent, jitter))
                .collect();
            assert!(
                t.windows(2).all(|w| w[0] <= w[1]) && p.windows(2).all(|w| w[0] <= w[1]),
                "grows"
            );
            assert!(t.iter().all(|d| *d <= SELF_REVOKE_TRANSIENT_MAX));
            assert!(p.iter().all(|d| *d <= SELF_REVOKE_PERMANENT_MAX));
            assert!(
                p[29] > SELF_REVOKE_TRANSIENT_MAX,
                "a permanent failure waits longer than any transient one"
            );
        }
        let throttled = ProviderError::throttled("slow down", Some(Duration::from_secs(30)));
        assert!(
            self_revoke_pause(0, &throttled, 0.0) >= Duration::from_secs(30),
            "Retry-After is a floor"
        );
    }

    #[tokio::test]
    async fn refused_commands_never_touch_the_tenant_and_replays_act_once() {
        let dir = tempfile::tempdir().unwrap();
        let broker = CommandSigner::from_secret(&[7; 32]);
        let (e, tenant, _) = executor(dir.path(), &broker);

        // Signed by another key, tampered, unsigned, for another configuration.
        let forged = CommandSigner::from_secret(&[8; 32]).sign(&command("entra", "c0", CommandOp::Grant));
        let mut tampered = broker.sign(&command("entra", "c1", CommandOp::Grant));
        tampered.body = tampered.body.replace("alice", "mallory");
        let mut unsigned = broker.sign(&command("entra", "c2", CommandOp::Grant));
        unsigned.signature.clear();
        let elsewhere = broker.sign(&command("aws", "c3", CommandOp::Grant));
        let mut expired_body = command("entra", "c4", CommandOp::Grant);
        expired_body.not_after = start() - chrono::Duration::seconds(1);
        let expired = broker.sign(&expired_body);
        for bad in [forged, tampered, unsigned, elsewhere, expired] {
            let (_, outcome) = e.execute(&bad).await;
            assert!(matches!(outcome, Outcome::Refused { .. }), "{outcome:?}");
        }
        assert!(tenant.held().await.is_empty());
        assert!(e.journal().holdings().unwrap().is_empty());

        // A good grant applies once; its replay answers from the journal.
        let grant = broker.sign(&command("entra", "g1", CommandOp::Grant));
        assert_eq!(e.execute(&grant).await, ("g1".to_owned(), Outcome::Applied));
        assert_eq!(
            e.execute(&grant).await,
            ("g1".to_owned(), Outcome::Applied),
            "stored answer, not AlreadyPresent"
        );
        let revoke = broker.sign(&command("entra", "r1", CommandOp::Revoke));
        assert_eq!(e.execute(&revoke).await.1, Outcome::Revoked);
        // The old grant replayed after the revoke must not re-apply it.
        assert_eq!(e.execute(&grant).await.1, Outcome::Applied);
        assert!(tenant.held().await.is_empty(), "a replay never acts again");
        assert!(e.journal().holdings().unwrap().is_empty());
    }

    /// A grant and the revoke right behind it, whichever task the runtime
    /// runs first: the revoke finds the entitlement applied and removes it.
    #[tokio::test]
    async fn a_revoke_never_overtakes_the_grant_that_arrived_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let broker = CommandSigner::from_secret(&[7; 32]);
        let (e, tenant, _) = executor(dir.path(), &broker);
        let grant = e.admit(&broker.sign(&command("entra", "g1", CommandOp::Grant)));
        let revoke = e.admit(&broker.sign(&command("entra", "r1", CommandOp::Revoke)));
        // On this test's one thread, tasks run in the order spawned.
        let revoked = tokio::spawn(revoke);
        let applied = tokio::spawn(grant);
        assert_eq!(revoked.await.unwrap().1, Outcome::Revoked);
        assert_eq!(applied.await.unwrap().1, Outcome::Applied);
        assert!(tenant.held().await.is_empty(), "nothing held after the revoke");
        assert!(e.journal().holdings().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_holding_is_removed_exactly_at_its_deadline_plus_grace_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let broker = CommandSigner::from_secret(&[7; 32]);
        let (e, tenant, clock) = executor(dir.path(), &broker);
        let body = command("entra", "g1", CommandOp::Grant);
        assert_eq!(e.execute(&broker.sign(&body)).await.1, Outcome::Applied);
        let second = chrono::Duration::seconds(1);
        let grace = Duration::from_secs(2);

        assert_eq!(e.enforce_due(grace).await, Some(body.not_after + second * 2));
        clock.set(body.not_after);
        assert_eq!(
            e.enforce_due(grace).await,
            Some(body.not_after + second * 2),
            "connected: the broker's revoke has the grace to come first"
        );
        assert_eq!(tenant.held().await.len(), 1);
        assert!(e.journal().reports().unwrap().is_empty());

        clock.set(body.not_after + second * 2);
        assert_eq!(e.enforce_due(grace).await, None, "nothing left to watch");
        assert!(tenant.held().await.is_empty());
        let reports = e.journal().reports().unwrap();
        assert_eq!(reports.len(), 1);
        assert_eq!((reports[0].command.as_str(), reports[0].at), ("g1", clock.now()));
    }

    #[tokio::test]
    async fn offline_the_watch_removes_a_holding_once_the_clock_passes_its_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let broker = CommandSigner::from_secret(&[7; 32]);
        let (e, tenant, clock) = executor(dir.path(), &broker);
        let body = command("entra", "g1", CommandOp::Grant);
        assert_eq!(e.execute(&broker.sign(&body)).await.1, Outcome::Applied);
        let (_tx, connected) = watch::channel(false);
        let watch = tokio::spawn(e.clone().enforce_deadlines(connected));
        // Offline there is no grace: the deadline itself is enough.
        clock.set(body.not_after);
        e.deadlines.notify_one();
        tokio::time::timeout(Duration::from_secs(5), async {
            while !tenant.held().await.is_empty() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("removed once the clock passed the deadline");
        assert_eq!(e.journal().reports().unwrap().len(), 1);
        watch.abort();
    }
}
