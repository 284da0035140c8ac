//! Reading the audit log while the broker runs, for admins and auditors:
//! a page at a time, newest first, filtered by person, resource, record
//! kind and time ([`AuditFilter`]); a download of every matching record as
//! JSON lines; and the broker's own check of the chain
//! ([`verify_stored`]), run at start, every `audit_verify_interval` and on
//! request.

use std::collections::HashSet;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::Stream;
use jitgate_shared::sync::lock;
use jitgate_shared::v1::api::RequestKind;
use jitgate_shared::v1::{ResourceId, UserId};

use super::admin::require_privileged;
use super::{Broker, ServiceError};
use crate::audit::query::{AuditFilter, Owned, Related};
use crate::audit::verify::{verify_stored, ChainStatus, CHUNK};
use crate::audit::AuditRecord;
use crate::domain::request::Request;
use crate::domain::user::User;
use crate::store::RequestFilter;

/// Records a page shows unless asked otherwise.
pub const AUDIT_PAGE: usize = 100;
/// The most records one page returns.
pub const MAX_AUDIT_PAGE: usize = 1_000;
/// The most records one page read looks at: a filter that matches rarely
/// answers with what it found so far and where to go on
/// ([`AuditPage::next_before`]), instead of reading the whole log.
pub const SEARCH_BUDGET: u64 = 10_000;
/// Brokers' clocks may disagree by this much, so records near a time
/// bound are not in strict time order; the search reads this far past a
/// bound (the filter itself is exact).
const CLOCK_SLACK: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

/// A read of the log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    pub filter: AuditFilter,
    /// Only records before this sequence number (the previous page's
    /// `next_before`); absent: from the newest.
    pub before: Option<u64>,
    /// Records wanted (1 to [`MAX_AUDIT_PAGE`]; 0 means [`AUDIT_PAGE`]).
    pub limit: usize,
}

/// One page of the log, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditPage {
    pub records: Vec<AuditRecord>,
    /// Older matching records may remain: ask again with this as `before`.
    pub next_before: Option<u64>,
    /// The oldest record this read looked at (0: none).
    pub searched_to: u64,
    /// The log's newest record when read.
    pub head: u64,
}

impl Broker {
    /// A page of the audit log (admins and auditors).
    #[tracing::instrument(skip_all, fields(caller = %caller.id, before = ?query.before))]
    pub async fn audit_log(&self, caller: &User, query: &AuditQuery) -> Result<AuditPage, ServiceError> {
        require_privileged(caller)?;
        check(&query.filter)?;
        let limit = match query.limit {
            0 => AUDIT_PAGE,
            n => n.min(MAX_AUDIT_PAGE),
        };
        let related = self.related(&query.filter).await?;
        let head = self.store.audit_head().await?.seq;
        let mut upper = query.before.map_or(head, |b| b.saturating_sub(1)).min(head);
        if let Some(until) = query.filter.until {
            upper = upper.min(self.last_record_before(until + CLOCK_SLACK, upper).await?);
        }
        let stop_at = query.filter.since.map(|t| t - CLOCK_SLACK);
        let mut page = AuditPage {
            head,
            ..AuditPage::default()
        };
        let mut searched = 0u64;
        while upper > 0 {
            let lowest = upper.saturating_sub(CHUNK as u64 - 1).max(1);
            let chunk = self.store.audit(lowest, (upper - lowest + 1) as usize).await?;
            for record in chunk.iter().rev() {
                page.searched_to = record.seq;
                if stop_at.is_some_and(|t| record.at < t) {
                    return Ok(page);
                }
                if query.filter.matches(record, &related) {
                    page.records.push(record.clone());
                    if page.records.len() == limit {
                        page.next_before = (record.seq > 1).then_some(record.seq);
                        return Ok(page);
                    }
                }
            }
            searched += upper - lowest + 1;
            upper = lowest - 1;
            if searched >= SEARCH_BUDGET && upper > 0 {
                page.next_before = Some(lowest);
                return Ok(page);
            }
        }
        Ok(page)
    }

    /// Every record matching `filter`, oldest first, as JSON lines (one
    /// record a line, as `jitgate-broker audit export` writes them: with no
    /// filter, `audit verify --input` checks the download's chain).
    #[tracing::instrument(skip_all, fields(caller = %caller.id))]
    pub async fn audit_export(
        &self,
        caller: &User,
        filter: AuditFilter,
    ) -> Result<impl Stream<Item = Result<Bytes, ServiceError>> + Send + 'static, ServiceError> {
        require_privileged(caller)?;
        check(&filter)?;
        let related = self.related(&filter).await?;
        let head = self.store.audit_head().await?.seq;
        let store = self.store.clone();
        let from = match filter.since {
            Some(since) => self.last_record_before(since - CLOCK_SLACK, head).await? + 1,
            None => 1,
        };
        tracing::info!(from, head, filtered = !filter.is_empty(), "audit log exported");
        // Read by every chunk; shared, not copied.
        let wanted = std::sync::Arc::new((filter, related));
        Ok(futures_util::stream::try_unfold(from, move |from| {
            let (store, wanted) = (store.clone(), wanted.clone());
            async move {
                let (filter, related) = &*wanted;
                if from > head {
                    return Ok(None);
                }
                let chunk = store.audit(from, CHUNK.min((head - from + 1) as usize)).await?;
                let Some(last) = chunk.last().map(|r| r.seq) else {
                    return Ok(None);
                };
                let mut lines = Vec::new();
                for record in chunk.iter().filter(|r| filter.matches(r, related)) {
                    serde_json::to_writer(&mut lines, record)
                        .map_err(|e| ServiceError::Unavailable(format!("writing an audit record: {e}")))?;
                    lines.push(b'\n');
                }
                Ok(Some((Bytes::from(lines), last + 1)))
            }
        }))
    }

    /// The broker's latest check of its audit chain (admins and auditors).
    pub fn audit_chain_status(&self, caller: &User) -> Result<ChainStatus, ServiceError> {
        require_privileged(caller)?;
        Ok(lock(&self.live.audit_chain).clone())
    }

    /// Starts a check of the audit chain now, unless one is under way
    /// (admins and auditors). Returns whether one started.
    pub fn request_audit_check(&self, caller: &User) -> Result<bool, ServiceError> {
        require_privileged(caller)?;
        if lock(&self.live.audit_chain).running.is_some() {
            return Ok(false);
        }
        let broker = self.clone();
        tokio::spawn(async move {
            if let Err(e) = broker.verify_audit_chain().await {
                tracing::warn!(error = %e, "checking the audit chain failed; trying again later");
            }
        });
        Ok(true)
    }

    /// Checks every record of the audit chain and the chain against its
    /// signed head, keeping the result for the console. A check already
    /// under way is left to finish.
    pub async fn verify_audit_chain(&self) -> Result<(), ServiceError> {
        let total = self.store.audit_head().await?.seq;
        {
            let mut status = lock(&self.live.audit_chain);
            if status.running.is_some() {
                return Ok(());
            }
            status.running = Some((0, total));
        }
        let key = self.keys.as_ref().map(|k| k.audit.verifier());
        let live = self.live.clone();
        let result = verify_stored(self.store.as_ref(), key.as_ref(), |done| {
            lock(&live.audit_chain).running = Some((done, total.max(done)));
        })
        .await;
        let mut status = lock(&self.live.audit_chain);
        status.running = None;
        let report = result?;
        match &report.broken {
            Some(e) => tracing::error!(records = report.records, error = %e, "the audit chain is BROKEN"),
            None => tracing::info!(records = report.records, "audit chain verified"),
        }
        self.metrics
            .audit_chain_broken
            .set(i64::from(report.broken.is_some()));
        status.last = Some((self.clock.now(), report));
        Ok(())
    }

    /// What the filter's person and resource own, read once.
    async fn related(&self, filter: &AuditFilter) -> Result<Related, ServiceError> {
        let person = match &filter.person {
            Some(id) => Some(self.owned_by_person(id).await?),
            None => None,
        };
        let resource = match &filter.resource {
            Some(id) => Some(self.owned_by_resource(id).await?),
            None => None,
        };
        Ok(Related { person, resource })
    }

    /// The accounts of the person `id` is one of, their requests and grants.
    async fn owned_by_person(&self, id: &UserId) -> Result<Owned, ServiceError> {
        let users = self.store.users().await?;
        let keys = users
            .iter()
            .find(|u| &u.id == id)
            .map(User::person_keys)
            .ok_or_else(|| ServiceError::invalid("person", format!("no account `{id}`")))?;
        let accounts: HashSet<UserId> = users
            .iter()
            .filter(|u| &u.id == id || u.person_keys().same_person(&keys))
            .map(|u| u.id.clone())
            .collect();
        let mut owned = Owned {
            accounts,
            ..Owned::default()
        };
        for account in owned.accounts.clone() {
            let requests = self
                .requests_where(&RequestFilter {
                    requester: Some(account),
                    ..RequestFilter::default()
                })
                .await?;
            add_requests(&mut owned, &requests);
        }
        Ok(owned)
    }

    /// A resource's requests and their grants.
    async fn owned_by_resource(&self, id: &ResourceId) -> Result<Owned, ServiceError> {
        let requests = self
            .requests_where(&RequestFilter {
                resource: Some(id.clone()),
                ..RequestFilter::default()
            })
            .await?;
        let mut owned = Owned::default();
        add_requests(&mut owned, &requests);
        Ok(owned)
    }

    /// The sequence number of the last record at or below `upper` written
    /// before `t` (0: none), by bisection: records are in time order up to
    /// the brokers' clock skew.
    async fn last_record_before(&self, t: DateTime<Utc>, upper: u64) -> Result<u64, ServiceError> {
        let (mut lo, mut hi) = (0u64, upper);
        // Invariant: record `lo` (or none, at 0) is before `t`; every record
        // after `hi` is not.
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            let before = match self.store.audit(mid, 1).await?.first() {
                Some(r) => r.at < t,
                None => false,
            };
            if before {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        Ok(lo)
    }
}

/// Requests and the grants they made or extend (every grant comes from a
/// request, so no read of grants is needed).
fn add_requests(owned: &mut Owned, requests: &[Request]) {
    for r in requests {
        owned.requests.insert(r.id);
        owned.grants.extend(r.grant);
        if let RequestKind::Extension { grant } = r.kind {
            owned.grants.insert(grant);
        }
    }
}

fn check(filter: &AuditFilter) -> Result<(), ServiceError> {
    filter
        .check()
        .map_err(|e| ServiceError::invalid("until", e.to_string()))
}
