//! [`Sqlite`]: SQLite's dialect, for [`SqliteStore`](crate::SqliteStore).

use std::str::FromStr;
use std::time::Duration;

use sqlx::error::DatabaseError;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteQueryResult,
    SqliteSynchronous,
};

use crate::dialect::Dialect;
use crate::error::Failure;
use crate::table::TableName;

/// How long [`SqliteStore::connect`](crate::SqlStore::connect)'s
/// connections wait for another connection's write to finish (SQLite's
/// `busy_timeout`) before an operation fails as unavailable.
pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// SQLite, on sqlx's driver with SQLite compiled in: the dialect of
/// [`SqliteStore`](crate::SqliteStore) (`SqlStore<Sqlite>`).
///
/// What it does its own way: values are `BLOB`s; with a schema, the index
/// is named in the schema (an attached database) rather than the table;
/// a compare-and-swap or compare-and-delete that writes nothing asks once
/// more whether the row is there (SQLite has no data-modifying `WITH`);
/// `delete_many` binds up to 500 keys per statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sqlite {}

impl Dialect for Sqlite {
    type Database = sqlx::Sqlite;

    const STORE_TYPE: &'static str = "SqliteStore";

    const PLACEHOLDER: char = '?';

    /// Well under SQLite's limit on bound parameters (32,766 since 3.32).
    const DELETE_BATCH: usize = 500;

    /// Creates the file if it does not exist. File databases get WAL
    /// journaling, `synchronous = NORMAL` and a busy timeout of
    /// [`DEFAULT_BUSY_TIMEOUT`]; an in-memory database lives only as long
    /// as a connection to it, so it gets a pool of exactly one connection
    /// that is never closed.
    async fn connect(url: &str) -> Result<SqlitePool, sqlx::Error> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .busy_timeout(DEFAULT_BUSY_TIMEOUT);
        if is_in_memory(url) {
            SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .connect_with(options)
                .await
        } else {
            let options = options
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal);
            SqlitePoolOptions::new().connect_with(options).await
        }
    }

    fn create_table(table: &TableName) -> String {
        format!(
            "CREATE TABLE IF NOT EXISTS {} (\
             key TEXT PRIMARY KEY, \
             value BLOB NOT NULL, \
             version INTEGER NOT NULL, \
             expires_at INTEGER, \
             modified_at INTEGER NOT NULL)",
            table.quoted()
        )
    }

    /// SQLite puts the schema on the index's name, not on the table's.
    fn create_index(table: &TableName) -> String {
        format!(
            "CREATE INDEX IF NOT EXISTS {}{} ON {} (expires_at)",
            table.quoted_schema_dot(),
            table.quoted_expiry_index(),
            table.quoted_table()
        )
    }

    /// One statement after the other: SQLite runs one write at a time for
    /// the whole database, so `IF NOT EXISTS` is enough.
    async fn init(
        pool: &SqlitePool,
        _quoted: &str,
        create_table: &str,
        create_index: &str,
    ) -> Result<(), sqlx::Error> {
        for sql in [create_table, create_index] {
            sqlx::query(sql).execute(pool).await?;
        }
        Ok(())
    }

    fn telling_liveness(_write: &str, _table: &str, _live_row: &str) -> Option<String> {
        None
    }

    async fn delete_keys(
        pool: &SqlitePool,
        quoted: &str,
        keys: &[String],
    ) -> Result<(), sqlx::Error> {
        let sql = delete_keys_sql(quoted, keys.len());
        keys.iter()
            .fold(sqlx::query(&sql), |query, key| query.bind(key))
            .execute(pool)
            .await?;
        Ok(())
    }

    fn rows_affected(done: &SqliteQueryResult) -> u64 {
        done.rows_affected()
    }

    fn failure(error: &dyn DatabaseError) -> Failure {
        if error.code().is_some_and(|code| unavailable_code(&code)) {
            Failure::Unavailable
        } else if error.message().starts_with("no such table") {
            Failure::MissingTable
        } else {
            Failure::Other
        }
    }
}

/// Whether a SQLite URL names an in-memory database.
fn is_in_memory(url: &str) -> bool {
    url.contains(":memory:") || url.contains("mode=memory")
}

/// `DELETE ... WHERE key IN (?1, ..., ?n)`.
fn delete_keys_sql(quoted: &str, n: usize) -> String {
    let mut sql = format!("DELETE FROM {quoted} WHERE key IN (");
    for i in 1..=n {
        if i > 1 {
            sql.push_str(", ");
        }
        sql.push('?');
        sql.push_str(&i.to_string());
    }
    sql.push(')');
    sql
}

/// Result codes that mean "not now" rather than "wrong": `SQLITE_BUSY` (5)
/// and `SQLITE_LOCKED` (6), and their extended codes.
fn unavailable_code(code: &str) -> bool {
    code.parse::<u32>().is_ok_and(|n| matches!(n & 0xff, 5 | 6))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_memory_urls() {
        assert!(is_in_memory("sqlite::memory:"));
        assert!(is_in_memory("sqlite://file.db?mode=memory&cache=shared"));
        assert!(!is_in_memory("sqlite://sessions.db"));
    }

    #[test]
    fn delete_keys_binds_every_key() {
        assert_eq!(
            delete_keys_sql("\"kvsession\"", 3),
            "DELETE FROM \"kvsession\" WHERE key IN (?1, ?2, ?3)"
        );
    }

    #[test]
    fn index_of_a_schema_qualified_table() {
        assert_eq!(
            Sqlite::create_index(&TableName::new("aux.sessions").unwrap()),
            "CREATE INDEX IF NOT EXISTS \"aux\".\"sessions_expires_at_idx\" ON \"sessions\" (expires_at)"
        );
    }

    #[test]
    fn codes() {
        for code in ["5", "6", "517", "262"] {
            assert!(unavailable_code(code), "{code}");
        }
        for code in ["1", "19", "2067", "08006"] {
            assert!(!unavailable_code(code), "{code}");
        }
    }
}
