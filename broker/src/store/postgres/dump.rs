//! Dumping the PostgreSQL store as [`Entry`]s, table by table in key order,
//! and loading entries into an empty one (its outbox sequence, audit head
//! and SCIM names set from them).

use futures_util::StreamExt;

use super::json::JsonIn;
use super::{decode, encode, i64_of, pg_error, table, u64_of, PgStore};
use crate::identity::scim::ScimResource;
use crate::store::dump::{DumpSink, Entry, RecordKindName, PAGE};
use crate::store::{RecordKind, StoreError};

type Row = tokio_postgres::Row;

fn doc<T: serde::de::DeserializeOwned>(what: &str, row: &Row, column: usize) -> Result<T, StoreError> {
    decode(what, row.get::<_, JsonIn>(column).0)
}

impl PgStore {
    /// Every row `sql` selects, made entries and handed to `sink` a page at
    /// a time, as the server streams them.
    async fn dump_rows(
        &self,
        sink: &mut dyn DumpSink,
        sql: &str,
        entry_of: impl Fn(&Row) -> Result<Entry, StoreError>,
    ) -> Result<(), StoreError> {
        let client = self.pool.get().await.map_err(pg_error)?;
        let statement = client.prepare_cached(sql).await.map_err(pg_error)?;
        let none: [&(dyn tokio_postgres::types::ToSql + Sync); 0] = [];
        let rows = client.query_raw(&statement, none).await.map_err(pg_error)?;
        let mut rows = std::pin::pin!(rows);
        let mut page = Vec::with_capacity(PAGE);
        while let Some(row) = rows.next().await {
            page.push(entry_of(&row.map_err(pg_error)?)?);
            if page.len() == PAGE {
                sink.put(std::mem::take(&mut page)).await?;
            }
        }
        if !page.is_empty() {
            sink.put(page).await?;
        }
        Ok(())
    }

    pub(super) async fn dump_into(&self, sink: &mut dyn DumpSink) -> Result<(), StoreError> {
        for kind in RecordKind::ALL {
            let sql = format!("SELECT id, version, doc FROM {} ORDER BY id", table(kind));
            self.dump_rows(sink, &sql, |r| {
                Ok(Entry::Record {
                    kind: RecordKindName(kind),
                    id: r.get(0),
                    version: u64_of(r.get(1)),
                    json: String::from_utf8_lossy(r.get::<_, JsonIn>(2).0).into_owned(),
                })
            })
            .await?;
        }
        self.dump_rows(sink, "SELECT doc FROM tokens ORDER BY hash", |r| {
            Ok(Entry::Token(doc("tokens", r, 0)?))
        })
        .await?;
        self.dump_rows(sink, "SELECT doc FROM jobs ORDER BY due, kind, subject", |r| {
            Ok(Entry::Job(doc("jobs", r, 0)?))
        })
        .await?;
        self.dump_rows(sink, "SELECT seq, priority, doc FROM outbox ORDER BY seq", |r| {
            Ok(Entry::Queued {
                seq: u64_of(r.get(0)),
                priority: u8::try_from(r.get::<_, i16>(1)).unwrap_or(u8::MAX),
                command: doc("outbox", r, 2)?,
            })
        })
        .await?;
        self.dump_rows(sink, "SELECT id FROM command_ids ORDER BY id", |r| {
            Ok(Entry::Known { id: r.get(0) })
        })
        .await?;
        self.dump_rows(sink, "SELECT doc FROM command_results ORDER BY command_id", |r| {
            Ok(Entry::Result(doc("command_results", r, 0)?))
        })
        .await?;
        self.dump_rows(sink, "SELECT doc FROM audit ORDER BY seq", |r| {
            Ok(Entry::Audit(doc("audit", r, 0)?))
        })
        .await?;
        self.dump_rows(sink, "SELECT doc FROM audit_anchor", |r| {
            Ok(Entry::Anchor(doc("audit_anchor", r, 0)?))
        })
        .await
    }

    pub(super) async fn load_entries(&self, entries: Vec<Entry>) -> Result<(), StoreError> {
        let mut client = self.pool.get().await.map_err(pg_error)?;
        let tx = client.transaction().await.map_err(pg_error)?;
        for e in entries {
            let (sql, params): (String, Vec<Box<dyn tokio_postgres::types::ToSql + Sync + Send>>) = match e {
                Entry::Record {
                    kind,
                    id,
                    version,
                    json,
                } => {
                    let name = if kind.0 == RecordKind::ScimResource {
                        let r: ScimResource = decode("a SCIM resource", json.as_bytes())?;
                        r.index_name()
                    } else {
                        None
                    };
                    let t = table(kind.0);
                    if kind.0 == RecordKind::ScimResource {
                        (
                            format!("INSERT INTO {t} (id, version, doc, name) VALUES ($1, $2, $3::text::json, $4)"),
                            vec![Box::new(id), Box::new(i64_of(version)?), Box::new(json), Box::new(name)],
                        )
                    } else {
                        (
                            format!("INSERT INTO {t} (id, version, doc) VALUES ($1, $2, $3::text::json)"),
                            vec![Box::new(id), Box::new(i64_of(version)?), Box::new(json)],
                        )
                    }
                }
                Entry::Token(t) => (
                    "INSERT INTO tokens (hash, doc) VALUES ($1, $2::text::json)".into(),
                    vec![
                        Box::new(t.hash.clone()),
                        Box::new(String::from_utf8_lossy(&encode(&t)?).into_owned()),
                    ],
                ),
                Entry::Job(j) => (
                    "INSERT INTO jobs (due, kind, subject, doc) VALUES ($1, $2, $3, $4::text::json)".into(),
                    vec![
                        Box::new(j.due),
                        Box::new(j.kind.name().to_owned()),
                        Box::new(j.kind.subject()),
                        Box::new(String::from_utf8_lossy(&encode(&j)?).into_owned()),
                    ],
                ),
                Entry::Queued {
                    priority,
                    seq,
                    command,
                } => (
                    "INSERT INTO outbox (seq, configuration, priority, entitlement, command_id, doc) \
                     OVERRIDING SYSTEM VALUE VALUES ($1, $2, $3, $4, $5, $6::text::json)"
                        .into(),
                    vec![
                        Box::new(i64_of(seq)?),
                        Box::new(command.entitlement.configuration.as_str().to_owned()),
                        Box::new(i16::from(priority)),
                        Box::new(command.entitlement.digest()),
                        Box::new(command.id.clone()),
                        Box::new(String::from_utf8_lossy(&encode(&command)?).into_owned()),
                    ],
                ),
                Entry::Known { id } => (
                    "INSERT INTO command_ids (id) VALUES ($1) ON CONFLICT DO NOTHING".into(),
                    vec![Box::new(id)],
                ),
                Entry::Result(r) => (
                    "INSERT INTO command_results (command_id, doc) VALUES ($1, $2::text::json)".into(),
                    vec![
                        Box::new(r.command.clone()),
                        Box::new(String::from_utf8_lossy(&encode(&r)?).into_owned()),
                    ],
                ),
                Entry::Audit(r) => {
                    // The head follows the newest record loaded.
                    let sql = "UPDATE audit_head SET seq = $1, hash = $2 WHERE seq < $1";
                    let statement = tx.prepare_cached(sql).await.map_err(pg_error)?;
                    tx.execute(&statement, &[&i64_of(r.seq)?, &r.hash])
                        .await
                        .map_err(pg_error)?;
                    (
                        "INSERT INTO audit (seq, doc) VALUES ($1, $2::text::json)".into(),
                        vec![
                            Box::new(i64_of(r.seq)?),
                            Box::new(String::from_utf8_lossy(&encode(&r)?).into_owned()),
                        ],
                    )
                }
                Entry::Anchor(a) => (
                    "INSERT INTO audit_anchor (seq, doc) VALUES ($1, $2::text::json)".into(),
                    vec![
                        Box::new(i64_of(a.seq)?),
                        Box::new(String::from_utf8_lossy(&encode(&a)?).into_owned()),
                    ],
                ),
            };
            let statement = tx.prepare_cached(&sql).await.map_err(pg_error)?;
            let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params
                .iter()
                .map(|p| p.as_ref() as &(dyn tokio_postgres::types::ToSql + Sync))
                .collect();
            tx.execute(&statement, &params).await.map_err(pg_error)?;
        }
        // New commands queue after the loaded ones.
        tx.batch_execute(
            "SELECT setval(pg_get_serial_sequence('outbox', 'seq'), coalesce((SELECT max(seq) FROM outbox), 0) + 1, false)",
        )
        .await
        .map_err(pg_error)?;
        tx.commit().await.map_err(pg_error)
    }

    pub(super) async fn count_entries(&self) -> Result<u64, StoreError> {
        let tables = RecordKind::ALL.iter().map(|k| table(*k)).chain([
            "tokens",
            "jobs",
            "outbox",
            "command_ids",
            "command_results",
            "audit",
            "audit_anchor",
        ]);
        let sql = tables
            .map(|t| format!("(SELECT count(*) FROM {t})"))
            .collect::<Vec<_>>()
            .join(" + ");
        let rows = self.rows(&format!("SELECT {sql}"), &[]).await?;
        Ok(rows.first().map(|r| u64_of(r.get(0))).unwrap_or(0))
    }
}
