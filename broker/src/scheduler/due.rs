//! Runs due jobs (grant activation and expiry, pending-request expiry) from
//! the store. Holds no state of its own: on restart the next due job is read
//! from the store and overdue ones run at once.

use std::time::Duration;

use tokio::sync::watch;

use crate::service::Broker;

/// The longest the scheduler sleeps without looking at the store again, in
/// case a job was scheduled by a path that did not wake it.
const MAX_SLEEP: Duration = Duration::from_secs(1);
/// Pause after a failed run, so a broken store does not spin a core.
const ERROR_PAUSE: Duration = Duration::from_millis(200);

/// Runs until `shutdown` turns true.
pub async fn run(broker: Broker, mut shutdown: watch::Receiver<bool>) {
    let notify = broker.scheduler_notify().clone();
    tracing::info!("scheduler started");
    // Runs in a row that made no progress because jobs failed.
    let mut failing = 0u32;
    loop {
        if *shutdown.borrow() {
            break;
        }
        let pause = match broker.run_due_jobs().await {
            Ok(run) => {
                if run.done > 0 {
                    tracing::debug!(done = run.done, "ran due jobs");
                }
                failing = if run.failed > 0 && run.done == 0 {
                    failing + 1
                } else {
                    0
                };
                let next = if run.more {
                    Duration::ZERO
                } else {
                    until_next_due(&broker).await
                };
                pause_after(failing, next)
            }
            Err(e) => {
                tracing::error!(error = %e, "running due jobs failed");
                failing += 1;
                pause_after(failing, ERROR_PAUSE)
            }
        };
        if pause.is_zero() {
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = notify.notified() => {}
            _ = shutdown.changed() => {}
        }
    }
    tracing::info!("scheduler stopped");
}

/// How long to wait before the next run: until the next job is due, but
/// after runs that only failed (a job whose change cannot be made stays
/// due), a growing pause (up to [`MAX_SLEEP`], so other jobs coming due are
/// late by at most that) instead of trying again at once in a loop.
fn pause_after(failing: u32, until_next: Duration) -> Duration {
    if failing == 0 {
        return until_next;
    }
    let backoff = jitgate_shared::backoff::backoff(failing - 1, None, 0.5, MAX_SLEEP);
    until_next.max(backoff)
}

async fn until_next_due(broker: &Broker) -> Duration {
    match broker.store().next_due().await {
        Ok(Some(due)) => (due - broker.clock().now())
            .to_std()
            .unwrap_or(Duration::ZERO)
            .min(MAX_SLEEP),
        Ok(None) => MAX_SLEEP,
        Err(e) => {
            tracing::error!(error = %e, "reading the next due job failed");
            ERROR_PAUSE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_that_only_fail_back_off_up_to_the_longest_sleep() {
        assert_eq!(
            pause_after(0, Duration::ZERO),
            Duration::ZERO,
            "progress: at once"
        );
        let pauses: Vec<_> = (1..20).map(|n| pause_after(n, Duration::ZERO)).collect();
        assert!(pauses.iter().all(|p| !p.is_zero()), "never a busy loop");
        assert!(pauses.windows(2).all(|w| w[0] <= w[1]), "grows");
        assert!(
            pauses.iter().all(|p| *p <= MAX_SLEEP),
            "other jobs late by at most MAX_SLEEP"
        );
        assert_eq!(pause_after(3, MAX_SLEEP), MAX_SLEEP);
    }
}
