//! The agent's durable journal (sled): what it applied and until when, the
//! final answer to every command it carried out (so a replayed command id
//! gets the same answer without acting again), and self-revoke reports the
//! broker has not acknowledged yet. What keeps access from outliving its
//! window is flushed before anyone hears of it: a grant's deadline before
//! the tenant is touched, a revoke's removal before it is answered, a
//! self-revoke report before it is sent. An answer's record is not flushed
//! on its own; after a crash that loses it, a replay acts again, which is
//! idempotent.

use std::path::Path;

use chrono::{DateTime, Utc};
use jitgate_shared::v1::protocol::Outcome;
use jitgate_shared::v1::{Entitlement, GrantId};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal at {path}: {error}")]
    Open { path: String, error: String },
    #[error("journal: {0}")]
    Backend(String),
}

fn backend(e: impl std::fmt::Display) -> JournalError {
    JournalError::Backend(e.to_string())
}

/// An entitlement the agent applied (or was applying when it stopped), and
/// the deadline it enforces by itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holding {
    pub entitlement: Entitlement,
    /// The grant command that set this deadline.
    pub command: String,
    pub grant: GrantId,
    pub deadline: DateTime<Utc>,
    /// End the principal's sign-in sessions when removing it.
    #[serde(default)]
    pub end_sign_in_sessions: bool,
}

/// The final answer to a command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredResult {
    pub outcome: Outcome,
    pub at: DateTime<Utc>,
    /// Kept until then at least: past the command's `not_after`, a replay
    /// is refused as expired, so the answer is no longer needed to keep a
    /// replay from acting twice. (Answers stored before this field: for
    /// [`RESULT_RETENTION`] after `at`.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_until: Option<DateTime<Utc>>,
}

impl StoredResult {
    fn expired(&self, now: DateTime<Utc>) -> bool {
        let until = self.keep_until.unwrap_or(self.at + RESULT_RETENTION);
        now > until.max(self.at + RESULT_RETENTION)
    }
}

/// An entitlement removed at its deadline, to tell the broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelfRevokeReport {
    pub command: String,
    pub grant: GrantId,
    pub entitlement: Entitlement,
    pub deadline: DateTime<Utc>,
    pub at: DateTime<Utc>,
    pub outcome: Outcome,
}

/// How long answers are kept: longer than any command stays valid
/// (revokes: 7 days).
pub const RESULT_RETENTION: chrono::Duration = chrono::Duration::days(8);

#[derive(Debug, Clone)]
pub struct Journal {
    db: sled::Db,
    holdings: sled::Tree,
    results: sled::Tree,
    reports: sled::Tree,
}

/// The journal key of an entitlement: its digest, as the broker's lease key.
pub fn entitlement_key(e: &Entitlement) -> String {
    e.digest()
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, JournalError> {
    serde_json::to_vec(v).map_err(backend)
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, JournalError> {
    serde_json::from_slice(bytes).map_err(backend)
}

impl Journal {
    pub fn open(path: &Path) -> Result<Self, JournalError> {
        let open = |error: String| JournalError::Open {
            path: path.display().to_string(),
            error,
        };
        // No background flusher: every write that must survive a crash is
        // followed by an explicit flush (a holding before acting, a
        // removal, a report and its acknowledgement), and an answer's
        // record is deliberately left to the next one. The flusher would
        // only add a thread and an fsync twice a second, idle or not.
        let db = sled::Config::new()
            .path(path)
            .mode(sled::Mode::HighThroughput)
            .flush_every_ms(None)
            .open()
            .map_err(|e| open(e.to_string()))?;
        let tree = |name: &str| db.open_tree(name).map_err(|e| open(e.to_string()));
        Ok(Self {
            holdings: tree("holdings")?,
            results: tree("results")?,
            reports: tree("reports")?,
            db,
        })
    }

    /// Makes every write so far durable, with sled's blocking flush (see
    /// [`jitgate_shared::blocking`]).
    pub async fn flush(&self) -> Result<(), JournalError> {
        jitgate_shared::blocking::in_place(|| self.db.flush())
            .map(|_| ())
            .map_err(backend)
    }

    pub fn result(&self, command: &str) -> Result<Option<StoredResult>, JournalError> {
        self.results
            .get(command)
            .map_err(backend)?
            .map(|v| decode(&v))
            .transpose()
    }

    /// Stores the answer to `command`, kept at least until its
    /// `not_after` (plus the clock skew an agent allows).
    pub fn put_result(
        &self,
        command: &str,
        outcome: &Outcome,
        at: DateTime<Utc>,
        not_after: DateTime<Utc>,
    ) -> Result<(), JournalError> {
        let stored = StoredResult {
            outcome: outcome.clone(),
            at,
            keep_until: Some(not_after + jitgate_shared::v1::signing::CLOCK_SKEW),
        };
        self.results.insert(command, encode(&stored)?).map_err(backend)?;
        Ok(())
    }

    pub fn holding(&self, entitlement: &Entitlement) -> Result<Option<Holding>, JournalError> {
        self.holdings
            .get(entitlement_key(entitlement))
            .map_err(backend)?
            .map(|v| decode(&v))
            .transpose()
    }

    pub fn put_holding(&self, holding: &Holding) -> Result<(), JournalError> {
        self.holdings
            .insert(entitlement_key(&holding.entitlement), encode(holding)?)
            .map_err(backend)?;
        Ok(())
    }

    pub fn remove_holding(&self, entitlement: &Entitlement) -> Result<(), JournalError> {
        self.holdings
            .remove(entitlement_key(entitlement))
            .map_err(backend)?;
        Ok(())
    }

    pub fn holdings(&self) -> Result<Vec<Holding>, JournalError> {
        self.holdings
            .iter()
            .values()
            .map(|v| decode(&v.map_err(backend)?))
            .collect()
    }

    pub fn put_report(&self, report: &SelfRevokeReport) -> Result<(), JournalError> {
        self.reports
            .insert(&report.command, encode(report)?)
            .map_err(backend)?;
        Ok(())
    }

    pub fn remove_report(&self, command: &str) -> Result<(), JournalError> {
        self.reports.remove(command).map_err(backend)?;
        Ok(())
    }

    pub fn reports(&self) -> Result<Vec<SelfRevokeReport>, JournalError> {
        self.reports
            .iter()
            .values()
            .map(|v| decode(&v.map_err(backend)?))
            .collect()
    }

    /// Forgets answers whose command can no longer be valid (past its
    /// `not_after`, and at least [`RESULT_RETENTION`] old): a replay of it
    /// is refused as expired anyway.
    pub fn prune(&self, now: DateTime<Utc>) -> Result<usize, JournalError> {
        let mut gone = 0;
        for kv in self.results.iter() {
            let (k, v) = kv.map_err(backend)?;
            let stored: StoredResult = decode(&v)?;
            if stored.expired(now) {
                self.results.remove(k).map_err(backend)?;
                gone += 1;
            }
        }
        Ok(gone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jitgate_shared::v1::{ConfigId, Target};

    #[tokio::test]
    async fn what_is_written_and_flushed_is_there_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let t = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let e = Entitlement {
            configuration: ConfigId::new("entra").unwrap(),
            target: Target::EntraGroupMembership { group_id: "g".into() },
            principal: "alice".into(),
        };
        {
            let j = Journal::open(dir.path()).unwrap();
            j.put_holding(&Holding {
                entitlement: e.clone(),
                command: "c1".into(),
                grant: GrantId::generate(),
                deadline: t,
                end_sign_in_sessions: false,
            })
            .unwrap();
            j.put_result("c1", &Outcome::Applied, t, t + chrono::Duration::hours(1))
                .unwrap();
            let nine_days_ago = t - chrono::Duration::days(9);
            j.put_result("old", &Outcome::Applied, nine_days_ago, nine_days_ago)
                .unwrap();
            // A grant valid for 30 days, answered 9 days ago: a replay
            // now would still verify, so its answer stays.
            j.put_result(
                "long",
                &Outcome::Applied,
                nine_days_ago,
                nine_days_ago + chrono::Duration::days(30),
            )
            .unwrap();
            j.flush().await.unwrap();
        }
        let j = Journal::open(dir.path()).unwrap();
        assert_eq!(j.holding(&e).unwrap().unwrap().deadline, t);
        assert_eq!(j.result("c1").unwrap().unwrap().outcome, Outcome::Applied);
        assert_eq!(j.prune(t).unwrap(), 1);
        assert!(j.result("old").unwrap().is_none());
        assert!(j.result("long").unwrap().is_some(), "kept until its not_after");
        assert_eq!(
            j.prune(t + chrono::Duration::days(22)).unwrap(),
            2,
            "then forgotten"
        );
        assert!(j.result("long").unwrap().is_none());
        j.remove_holding(&e).unwrap();
        assert!(j.holdings().unwrap().is_empty());
    }
}
