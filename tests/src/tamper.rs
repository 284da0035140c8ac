//! Reaching into a stopped broker's store behind its back, the way an
//! attacker with disk or database access would, so that tests can show the
//! tampering is found. Works on either backend the broker runs on.

use jitgate_broker::audit::AuditRecord;

use crate::broker::TestBroker;

/// The audit chain of a stopped broker's store, for tampering.
#[derive(Debug)]
pub enum AuditStore {
    Sled(sled::Db),
    Postgres(tokio_postgres::Client),
}

impl AuditStore {
    pub async fn of(b: &TestBroker) -> Self {
        match b.database_url() {
            None => AuditStore::Sled(sled::open(b.data_dir().join("store")).unwrap()),
            Some(url) => {
                let client = jitgate_broker::store::postgres::scratch::connect_to(url)
                    .await
                    .unwrap();
                AuditStore::Postgres(client)
            }
        }
    }

    pub async fn last(&self) -> AuditRecord {
        match self {
            AuditStore::Sled(db) => {
                let (_, last) = db.scan_prefix("a/").next_back().unwrap().unwrap();
                serde_json::from_slice(&last).unwrap()
            }
            AuditStore::Postgres(c) => {
                let row = c
                    .query_one("SELECT doc::text FROM audit ORDER BY seq DESC LIMIT 1", &[])
                    .await
                    .unwrap();
                serde_json::from_str(row.get(0)).unwrap()
            }
        }
    }

    pub async fn remove(&self, seq: u64) {
        match self {
            AuditStore::Sled(db) => {
                db.remove(jitgate_broker::store::keys::audit(seq)).unwrap();
                db.flush().unwrap();
            }
            AuditStore::Postgres(c) => {
                let removed = c
                    .execute("DELETE FROM audit WHERE seq = $1", &[&(seq as i64)])
                    .await
                    .unwrap();
                assert_eq!(removed, 1);
            }
        }
    }

    pub async fn put(&self, record: &AuditRecord) {
        let doc = serde_json::to_string(record).unwrap();
        match self {
            AuditStore::Sled(db) => {
                db.insert(jitgate_broker::store::keys::audit(record.seq), doc.as_bytes())
                    .unwrap();
                db.flush().unwrap();
            }
            AuditStore::Postgres(c) => {
                c.execute(
                    "INSERT INTO audit (seq, doc) VALUES ($1, $2::text::json) \
                     ON CONFLICT (seq) DO UPDATE SET doc = EXCLUDED.doc",
                    &[&(record.seq as i64), &doc],
                )
                .await
                .unwrap();
            }
        }
    }
}
