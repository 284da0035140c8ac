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
    loop {
        if *shutdown.borrow() {
            break;
        }
        let pause = match broker.run_due_jobs().await {
            Ok(run) if run.more => Duration::ZERO,
            Ok(run) => {
                if run.done > 0 {
                    tracing::debug!(done = run.done, "ran due jobs");
                }
                until_next_due(&broker).await
            }
            Err(e) => {
                tracing::error!(error = %e, "running due jobs failed");
                ERROR_PAUSE
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
