//! Checking a stored audit log: every record against the one before it,
//! then the chain against its signed anchor. One routine for the offline
//! `jitgate-broker audit verify` and the broker's own periodic check (shown
//! on the console's audit page).

use chrono::{DateTime, Utc};

use super::anchor::{AnchorBreak, AnchorVerifier, AuditAnchor};
use super::{AuditRecord, ChainBreak, ChainVerifier};
use crate::store::{Store, StoreError};

/// Records read (and hashed) at a time.
pub const CHUNK: usize = 2_000;

/// What a check of the stored log found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReport {
    /// Records that verified as a chain, from the first.
    pub records: u64,
    /// The signed head the chain was checked against, if the broker has
    /// signed one yet and a key to check it was given.
    pub anchor: Option<AuditAnchor>,
    /// The first thing wrong, if anything is.
    pub broken: Option<Broken>,
}

/// Why a log does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Broken {
    #[error(transparent)]
    Chain(#[from] ChainBreak),
    #[error(transparent)]
    Anchor(#[from] AnchorBreak),
}

/// Checks every record of `store` in order, then, when the store holds a
/// signed anchor and `key` is given, that the chain still reaches it.
/// `progress` is told how many records verified so far, after each chunk.
pub async fn verify_stored(
    store: &dyn Store,
    key: Option<&AnchorVerifier>,
    mut progress: impl FnMut(u64),
) -> Result<ChainReport, StoreError> {
    // The anchor first: records appended during the pass are after it.
    let anchor = store.audit_anchor().await?;
    let mut verifier = ChainVerifier::default();
    let mut anchored: Option<AuditRecord> = None;
    let mut from = 1;
    loop {
        let page = store.audit(from, CHUNK).await?;
        for record in &page {
            if let Err(e) = verifier.check(record) {
                return Ok(ChainReport {
                    records: verifier.verified(),
                    anchor: None,
                    broken: Some(e.into()),
                });
            }
            if anchor.as_ref().is_some_and(|a| a.seq == record.seq) {
                anchored = Some(record.clone());
            }
        }
        progress(verifier.verified());
        match page.last() {
            Some(last) => from = last.seq + 1,
            None => break,
        }
        tokio::task::yield_now().await;
    }
    let records = verifier.verified();
    let (Some(anchor), Some(key)) = (anchor, key) else {
        return Ok(ChainReport {
            records,
            anchor: None,
            broken: None,
        });
    };
    let broken = key
        .check(&anchor, anchored.as_ref(), records)
        .err()
        .map(Broken::from);
    Ok(ChainReport {
        records,
        anchor: Some(anchor),
        broken,
    })
}

/// The broker's latest check of its own log, and one under way.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChainStatus {
    /// The last finished check and when it finished.
    pub last: Option<(DateTime<Utc>, ChainReport)>,
    /// A check under way: records verified so far, of about how many.
    pub running: Option<(u64, u64)>,
}
