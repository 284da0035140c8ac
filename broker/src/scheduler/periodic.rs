//! Work done every so often, whatever is stored: each runs until shutdown,
//! and a failed round is logged and tried again at the next.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::api::limits::ClientLimits;
use crate::service::Broker;

/// How often expired sign-ins and tokens are swept from the store.
pub const SIGN_IN_SWEEP: Duration = Duration::from_secs(600);

/// Runs `round` every `every` until `shutdown` changes.
async fn every<F, Fut>(every: Duration, mut shutdown: watch::Receiver<bool>, mut round: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
        round().await;
    }
}

/// Signs the audit chain's head every `interval` (when it moved).
pub async fn anchor_audit(broker: Broker, interval: Duration, shutdown: watch::Receiver<bool>) {
    every(interval, shutdown, || async {
        if let Err(e) = broker.anchor_audit().await {
            tracing::warn!(error = %e, "signing the audit chain's head failed; trying again later");
        }
    })
    .await
}

/// Checks the whole audit chain at start and every `interval`.
pub async fn verify_audit(broker: Broker, interval: Duration, shutdown: watch::Receiver<bool>) {
    let round = || async {
        if let Err(e) = broker.verify_audit_chain().await {
            tracing::warn!(error = %e, "checking the audit chain failed; trying again later");
        }
    };
    round().await;
    every(interval, shutdown, round).await
}

/// Deletes expired pending sign-ins and tokens, and forgets quiet clients'
/// quotas, every [`SIGN_IN_SWEEP`].
pub async fn sweep_sign_ins(broker: Broker, limits: Arc<ClientLimits>, shutdown: watch::Receiver<bool>) {
    every(SIGN_IN_SWEEP, shutdown, || async {
        limits.forget_quiet();
        match broker.sweep_sign_ins().await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(swept = n, "expired sign-ins and tokens deleted"),
            Err(e) => tracing::warn!(error = %e, "sweeping expired sign-ins failed; trying again later"),
        }
    })
    .await
}
