//! What a due job does: the change each calls for, and running a batch of
//! them as one durable commit.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use jitgate_shared::v1::api::{EndReason, GrantState};

use crate::audit::{Actor, AuditEntry, AuditEvent};
use crate::domain::job::{Job, JobKind};
use crate::service::feed::Changed;
use crate::service::requests::{outboxes_of, supersedes_failing_revoke};
use crate::service::{Broker, ServiceError};
use crate::store::Change;

/// How many due jobs are turned into one durable batch. Preparing the next
/// batch while one is written gains nothing on sled 0.34: applying a batch
/// holds its global lock, which every read waits for (measured).
pub const JOB_BATCH: usize = 512;

impl Broker {
    /// Runs up to [`JOB_BATCH`] due jobs as one durable batch. Returns how
    /// many were done and whether any must be retried at once (a conflict
    /// with another change, such as two grants of one lease ending together).
    #[tracing::instrument(skip(self))]
    pub async fn run_due_jobs(&self) -> Result<DueRun, ServiceError> {
        let now = self.clock.now();
        let jobs = self.store.claim_due_jobs(now, JOB_BATCH).await?;
        if jobs.is_empty() {
            return Ok(DueRun::default());
        }
        let mut changes = Vec::with_capacity(jobs.len());
        let mut due = Vec::with_capacity(jobs.len());
        let mut failed = 0;
        for job in &jobs {
            match self.job_change(job, now).await {
                Ok(change) => {
                    due.push(job.due);
                    changes.push(change);
                }
                Err(e) => {
                    failed += 1;
                    tracing::error!(?job, error = %e, "scheduled job failed; it stays due and is retried");
                }
            }
        }
        let outboxes: BTreeSet<_> = changes.iter().flat_map(outboxes_of).collect();
        let recount = changes.iter().any(supersedes_failing_revoke);
        let changed = changes.iter().filter_map(Changed::of).reduce(Changed::merge);
        let results = self.store.commit_all(changes).await;
        if let Some(changed) = changed.filter(|_| results.iter().any(Result::is_ok)) {
            self.live.feed.publish(changed);
        }
        if recount {
            self.count_failing_revokes().await?;
        }
        self.signal_outboxes(outboxes);
        let durable = self.clock.now();
        let mut run = DueRun {
            failed,
            ..DueRun::default()
        };
        for (result, due) in results.iter().zip(due) {
            match result {
                Ok(_) => {
                    let late = (durable - due).to_std().unwrap_or_default().as_secs_f64();
                    run.done += 1;
                    run.lateness.push(late);
                    self.metrics.job_lateness.observe(late);
                }
                Err(e) if e.is_conflict() => run.conflicts += 1,
                Err(e) => {
                    run.failed += 1;
                    tracing::error!(error = %e, "committing a scheduled job failed; it stays due");
                }
            }
        }
        run.more = jobs.len() == JOB_BATCH || run.conflicts > 0;
        Ok(run)
    }

    /// The change one due job calls for. A job whose target moved on (ended,
    /// extended, rescheduled) just removes itself; a job for the target's
    /// current time is never dropped before that time.
    async fn job_change(&self, job: &Job, now: DateTime<Utc>) -> Result<Change, ServiceError> {
        let mut change = Change::default();
        if job.due > now {
            return Ok(change);
        }
        change.unschedule.push(*job);
        match job.kind {
            JobKind::ExpireGrant(id) => {
                let Some(grant) = self.store.grant(id).await? else {
                    return Ok(change);
                };
                if grant.state != GrantState::Active || grant.ends_at != job.due {
                    return Ok(change);
                }
                let request = self.store.request(grant.request).await?;
                self.close_window(grant, EndReason::Expired, None, Actor::System, &mut change, now)
                    .await?;
                if let Some(r) = request.filter(|r| r.grant == Some(id)) {
                    change.requests.push(r.ended(EndReason::Expired));
                }
            }
            JobKind::ActivateGrant(id) => {
                let Some(grant) = self.store.grant(id).await? else {
                    return Ok(change);
                };
                if grant.state != GrantState::Scheduled || grant.starts_at != job.due {
                    return Ok(change);
                }
                let request = self.store.request(grant.request).await?;
                self.open_window(grant, &mut change, now).await?;
                if let Some(r) = request {
                    change.requests.push(r.activated());
                }
            }
            JobKind::ExpirePending(id) => {
                let Some(request) = self.store.request(id).await? else {
                    return Ok(change);
                };
                if let Some(expired) = request.expire_pending(now) {
                    change.audit.push(AuditEntry {
                        at: now,
                        actor: Actor::System,
                        event: AuditEvent::RequestPendingExpired { request: id },
                    });
                    change.requests.push(expired);
                }
            }
        }
        Ok(change)
    }
}

/// What one run of due jobs did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DueRun {
    pub done: usize,
    /// For each job done, seconds from when it fell due to its change
    /// being durable (and its revoke, if any, on its way to the agent).
    pub lateness: Vec<f64>,
    pub conflicts: usize,
    pub failed: usize,
    /// Run again at once: the batch was full or some conflicted.
    pub more: bool,
}
