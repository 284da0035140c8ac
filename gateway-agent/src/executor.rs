//! Carrying out commands: verify, look up the journal, act through the
//! provider, journal the result. And the deadline watch: an entitlement
//! whose deadline passes without the broker's revoke is removed here.
//!
//! Commands for one entitlement run one at a time, in arrival order;
//! different entitlements run in parallel.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use jitgate_shared::v1::api::CommandOp;
use jitgate_shared::v1::protocol::Outcome;
use jitgate_shared::v1::signing::{CommandBody, CommandRejected, CommandVerifier, SignedCommand};
use jitgate_shared::v1::{ConfigId, Entitlement, Target};
use tokio::sync::{watch, Mutex, Notify};

use crate::clock;
use crate::journal::{entitlement_key, Holding, Journal, JournalError, SelfRevokeReport};
use crate::provider::{Effect, Provider, ProviderError};

/// How long the agent waits past a deadline for the broker's own revoke
/// while connected; when it cannot reach the broker it does not wait.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(2);

#[derive(Debug)]
pub struct Executor {
    configuration: ConfigId,
    verifier: CommandVerifier,
    journal: Journal,
    provider: Arc<dyn Provider>,
    locks: std::sync::Mutex<HashMap<String, Arc<Mutex<()>>>>,
    /// A deadline was set or moved.
    deadlines: Notify,
    /// A self-revoke report waits to be sent.
    pub reports: Notify,
    grace: Duration,
}

impl Executor {
    pub fn new(
        configuration: ConfigId,
        verifier: CommandVerifier,
        journal: Journal,
        provider: Arc<dyn Provider>,
        grace: Duration,
    ) -> Self {
        Self {
            configuration,
            verifier,
            journal,
            provider,
            locks: std::sync::Mutex::new(HashMap::new()),
            deadlines: Notify::new(),
            reports: Notify::new(),
            grace,
        }
    }

    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    pub fn provider(&self) -> &Arc<dyn Provider> {
        &self.provider
    }

    fn lock_for(&self, entitlement: &Entitlement) -> Arc<Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(entitlement_key(entitlement)).or_default().clone()
    }

    /// Verifies and carries out one command. Returns the id to answer with
    /// (empty when the body names none) and the outcome.
    pub async fn execute(&self, signed: &SignedCommand) -> (String, Outcome) {
        let now = clock::now();
        let body = match self.verifier.verify(signed, &self.configuration, now) {
            Ok(body) => body,
            Err(rejected) => return self.refused(signed, rejected),
        };
        let id = body.id.clone();
        let outcome = match self.carry_out(&body).await {
            Ok(o) => o,
            Err(e) => {
                tracing::error!(command = %id, error = %e, "journal failed; not acting");
                Outcome::Failed {
                    reason: format!("agent journal: {e}"),
                    retryable: true,
                    retry_after_seconds: None,
                }
            }
        };
        (id, outcome)
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

    async fn carry_out(&self, body: &CommandBody) -> Result<Outcome, JournalError> {
        let lock = self.lock_for(&body.entitlement);
        let _held = lock.lock().await;
        if let Some(stored) = self.journal.result(&body.id)? {
            tracing::debug!(command = %body.id, "replayed command; answering from the journal");
            return Ok(stored.outcome);
        }
        let outcome = match body.op {
            CommandOp::Grant => self.grant(body).await?,
            CommandOp::Revoke => self.revoke(body).await?,
        };
        if !matches!(outcome, Outcome::Failed { retryable: true, .. }) {
            self.journal.put_result(&body.id, &outcome, clock::now())?;
        }
        self.journal.flush().await?;
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
        })?;
        self.journal.flush().await?;
        self.deadlines.notify_one();
        let outcome = match self.provider.apply(&body.entitlement).await {
            Ok(Effect::Changed) => Outcome::Applied,
            Ok(Effect::Unchanged) => Outcome::AlreadyPresent,
            Err(e) => {
                if !e.retryable && before.is_none() {
                    self.journal.remove_holding(&body.entitlement)?;
                }
                failed(e)
            }
        };
        Ok(outcome)
    }

    async fn revoke(&self, body: &CommandBody) -> Result<Outcome, JournalError> {
        let outcome = match self.provider.remove(&body.entitlement).await {
            Ok(Effect::Changed) => Outcome::Revoked,
            Ok(Effect::Unchanged) => Outcome::AlreadyAbsent,
            Err(e) => return Ok(failed(e)),
        };
        self.journal.remove_holding(&body.entitlement)?;
        self.deadlines.notify_one();
        Ok(outcome)
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
            let now = clock::now();
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
            let wait = next.map_or(Duration::from_secs(3600), clock::until);
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

    /// Removes one expired holding. On a failure returns when to try again.
    async fn expire(&self, seen: &Holding) -> Result<(), DateTime<Utc>> {
        let retry = || clock::now() + chrono::Duration::seconds(1);
        let lock = self.lock_for(&seen.entitlement);
        let _held = lock.lock().await;
        // A command may have moved the deadline or removed it meanwhile.
        match self.journal.holding(&seen.entitlement) {
            Ok(Some(h)) if h == *seen => {}
            Ok(_) => return Ok(()),
            Err(e) => {
                tracing::error!(error = %e, "reading the journal failed");
                return Err(retry());
            }
        }
        let outcome = match self.provider.remove(&seen.entitlement).await {
            Ok(Effect::Changed) => Outcome::Revoked,
            Ok(Effect::Unchanged) => Outcome::AlreadyAbsent,
            Err(e) => {
                tracing::error!(grant = %seen.grant, error = %e, "removing an expired entitlement failed; retrying");
                return Err(e
                    .retry_after
                    .and_then(|d| chrono::Duration::from_std(d).ok())
                    .map_or_else(retry, |d| clock::now() + d));
            }
        };
        let at = clock::now();
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

fn failed(e: ProviderError) -> Outcome {
    Outcome::Failed {
        reason: e.reason,
        retryable: e.retryable,
        retry_after_seconds: e.retry_after.map(|d| d.as_secs().max(1)),
    }
}
