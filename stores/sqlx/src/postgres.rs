//! [`Postgres`]: PostgreSQL's dialect, for
//! [`PostgresStore`](crate::PostgresStore).

use std::time::Duration;

use sqlx::error::DatabaseError;
use sqlx::postgres::{PgPool, PgPoolOptions, PgQueryResult};

use crate::dialect::Dialect;
use crate::error::Failure;
use crate::table::TableName;

/// How long [`PostgresStore::connect`](crate::SqlStore::connect)'s pool
/// waits for a connection before an operation fails as unavailable (the
/// request gets a 503).
pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// PostgreSQL, on sqlx's driver: the dialect of
/// [`PostgresStore`](crate::PostgresStore) (`SqlStore<Postgres>`).
///
/// What it does its own way: keys are `TEXT COLLATE "C"` (byte order, for
/// the prefix ranges), values `BYTEA`; `init` runs under an advisory lock;
/// a compare-and-swap or compare-and-delete that writes nothing tells a
/// conflict from a missing row in the same statement; `delete_many` binds
/// up to 10,000 keys as one array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Postgres {}

impl Dialect for Postgres {
    type Database = sqlx::Postgres;

    const STORE_TYPE: &'static str = "PostgresStore";

    const PLACEHOLDER: char = '$';

    /// `DELETE ... = ANY($1)` binds one array, so this is no parameter
    /// limit; it bounds how long one statement holds its locks.
    const DELETE_BATCH: usize = 10_000;

    async fn connect(url: &str) -> Result<PgPool, sqlx::Error> {
        PgPoolOptions::new()
            .acquire_timeout(DEFAULT_ACQUIRE_TIMEOUT)
            .connect(url)
            .await
    }

    fn create_table(table: &TableName) -> String {
        format!(
            "CREATE TABLE IF NOT EXISTS {} (\
             key TEXT COLLATE \"C\" PRIMARY KEY, \
             value BYTEA NOT NULL, \
             version BIGINT NOT NULL, \
             expires_at BIGINT, \
             modified_at BIGINT NOT NULL)",
            table.quoted()
        )
    }

    fn create_index(table: &TableName) -> String {
        format!(
            "CREATE INDEX IF NOT EXISTS {} ON {} (expires_at)",
            table.quoted_expiry_index(),
            table.quoted()
        )
    }

    /// In one transaction under an advisory lock on the table's name:
    /// `CREATE ... IF NOT EXISTS` alone is not safe against itself running
    /// at the same time in another session.
    async fn init(
        pool: &PgPool,
        quoted: &str,
        create_table: &str,
        create_index: &str,
    ) -> Result<(), sqlx::Error> {
        let mut tx = pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(advisory_key(quoted))
            .execute(&mut *tx)
            .await?;
        for sql in [create_table, create_index] {
            sqlx::query(sql).execute(&mut *tx).await?;
        }
        tx.commit().await
    }

    /// A data-modifying `WITH`: the outer query sees the table as it was
    /// before the write (the same snapshot), so `live` says whether the row
    /// the write missed was there.
    fn telling_liveness(write: &str, table: &str, live_row: &str) -> Option<String> {
        Some(format!(
            "WITH written AS ({write}) \
             SELECT (SELECT version FROM written) AS version, \
             EXISTS (SELECT 1 FROM {table} WHERE {live_row}) AS live"
        ))
    }

    async fn delete_keys(pool: &PgPool, quoted: &str, keys: &[String]) -> Result<(), sqlx::Error> {
        sqlx::query(&format!("DELETE FROM {quoted} WHERE key = ANY($1)"))
            .bind(keys)
            .execute(pool)
            .await?;
        Ok(())
    }

    fn rows_affected(done: &PgQueryResult) -> u64 {
        done.rows_affected()
    }

    fn failure(error: &dyn DatabaseError) -> Failure {
        match error.code() {
            Some(code) if unavailable_code(&code) => Failure::Unavailable,
            Some(code) if code == "42P01" => Failure::MissingTable,
            _ => Failure::Other,
        }
    }
}

/// SQLSTATE codes that mean "not now" rather than "wrong": class 08
/// connection exception; class 53 insufficient resources (too many
/// connections, out of memory or disk); 57P01-57P03 admin or crash
/// shutdown, cannot connect now.
fn unavailable_code(code: &str) -> bool {
    code.starts_with("08") || code.starts_with("53") || matches!(code, "57P01" | "57P02" | "57P03")
}

/// A stable 64-bit key for the table's advisory lock (FNV-1a of the quoted
/// name).
fn advisory_key(table: &str) -> i64 {
    let hash = table.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    i64::from_ne_bytes(hash.to_ne_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        for code in ["08006", "08001", "53300", "57P01", "57P03"] {
            assert!(unavailable_code(code), "{code}");
        }
        for code in ["23505", "42P01", "40001", "57014"] {
            assert!(!unavailable_code(code), "{code}");
        }
    }

    #[test]
    fn the_advisory_key_is_stable() {
        assert_eq!(advisory_key("\"kvsession\""), advisory_key("\"kvsession\""));
        assert_ne!(advisory_key("\"kvsession\""), advisory_key("\"other\""));
    }
}
