//! The database's schema: versioned migrations embedded in the broker,
//! applied by `jitgate-broker migrate` (or at start), and checked at start
//! so that a broker never runs on a schema it does not know.

use deadpool_postgres::Pool;

use super::pg_error;
use crate::store::StoreError;

mod embedded {
    refinery::embed_migrations!("src/store/postgres/migrations");
}

/// Where refinery records the migrations applied.
const HISTORY: &str = "refinery_schema_history";

/// Held while migrating, so brokers starting together migrate once.
const MIGRATION_LOCK: i64 = 0x6a69_7467_6174_6501; // "jitgate" + 1

/// The newest schema version this broker knows.
pub fn latest() -> i32 {
    embedded::migrations::runner()
        .get_migrations()
        .iter()
        .map(|m| m.version())
        .max()
        .unwrap_or(0)
}

/// The schema of a database, against this broker's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schema {
    /// At the newest version this broker knows.
    Current,
    /// Older (`at` 0: empty database): `jitgate-broker migrate` brings it up.
    Behind { at: i32, latest: i32 },
    /// Newer than this broker knows: a newer broker migrated it.
    Ahead { at: i32, latest: i32 },
}

/// The version the database is at (0 when never migrated).
pub async fn version(pool: &Pool) -> Result<i32, StoreError> {
    let client = pool.get().await.map_err(pg_error)?;
    let exists = client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&HISTORY])
        .await
        .map_err(pg_error)?;
    if !exists.get::<_, bool>(0) {
        return Ok(0);
    }
    let row = client
        .query_one(&format!("SELECT coalesce(max(version), 0) FROM {HISTORY}"), &[])
        .await
        .map_err(pg_error)?;
    Ok(row.get(0))
}

pub async fn check(pool: &Pool) -> Result<Schema, StoreError> {
    let (at, latest) = (version(pool).await?, latest());
    Ok(match at.cmp(&latest) {
        std::cmp::Ordering::Equal => Schema::Current,
        std::cmp::Ordering::Less => Schema::Behind { at, latest },
        std::cmp::Ordering::Greater => Schema::Ahead { at, latest },
    })
}

/// Applies every migration the database lacks, each in its own
/// transaction, under an advisory lock. Returns the versions applied.
/// Refuses a database whose schema is newer than this broker's.
pub async fn migrate(pool: &Pool) -> Result<Vec<i32>, StoreError> {
    let mut client = pool.get().await.map_err(pg_error)?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(pg_error)?;
    let outcome = apply(&mut client, pool).await;
    // Dropping the connection would release the lock too; unlock to hand
    // the connection back clean.
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(pg_error);
    let applied = outcome?;
    unlocked?;
    Ok(applied)
}

async fn apply(client: &mut deadpool_postgres::Object, pool: &Pool) -> Result<Vec<i32>, StoreError> {
    if let Schema::Ahead { at, latest } = check(pool).await? {
        return Err(ahead(at, latest));
    }
    let client: &mut tokio_postgres::Client = client;
    let report = embedded::migrations::runner()
        .set_grouped(false)
        .run_async(client)
        .await
        .map_err(|e| StoreError::backend(std::io::Error::other(format!("migrating: {e}"))))?;
    Ok(report.applied_migrations().iter().map(|m| m.version()).collect())
}

/// The error for a database a newer broker migrated.
pub fn ahead(at: i32, latest: i32) -> StoreError {
    StoreError::Schema(format!(
        "the database's schema is at version {at}, newer than this broker knows ({latest}): run a broker of the version that migrated it, or newer"
    ))
}

/// The error for a database not migrated to this broker's schema.
pub fn behind(at: i32, latest: i32) -> StoreError {
    StoreError::Schema(format!(
        "the database's schema is at version {at}, this broker needs {latest}: run `jitgate-broker migrate` (or set database.migrate_at_start)"
    ))
}
