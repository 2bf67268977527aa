//! Shared helpers for the sqlx stores' tests: the PostgreSQL server from
//! `DATABASE_URL`, one fresh table per test, SQLite files in temporary
//! directories.

#![allow(dead_code, unreachable_pub)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rocket_kvsession::KeyValueStore;
use rocket_kvsession_sqlx::{sqlx, PostgresStore, SqliteStore};
use tempfile::TempDir;

/// The opt-out: with `KVSESSION_SKIP_POSTGRES=1` the tests that need a
/// server are skipped (and say so); without it, a missing `DATABASE_URL`
/// fails them.
pub fn skipping_postgres() -> bool {
    std::env::var("KVSESSION_SKIP_POSTGRES").is_ok_and(|v| v == "1")
}

/// The server's URL, or `None` (after printing why) when the run opted out.
///
/// Panics when `DATABASE_URL` is unset and the run did not opt out: a test
/// that needs the server must not pass without one.
pub fn database_url(test: &str) -> Option<String> {
    if skipping_postgres() {
        eprintln!("{test}: skipped (KVSESSION_SKIP_POSTGRES=1)");
        return None;
    }
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => panic!(
            "{test}: DATABASE_URL is not set. Start a server with \
             `eval \"$(bash scripts/postgres-server.sh start STATE_DIR)\"` \
             (or point DATABASE_URL at a PostgreSQL database), or set \
             KVSESSION_SKIP_POSTGRES=1 to skip"
        ),
    }
}

/// A table name no other test (in this or another run) uses.
pub fn unique_table(test: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut name = format!("t_{:x}_{nanos:x}_{n}_{test}", std::process::id());
    name.truncate(63);
    name
}

/// A store under test and what it needs to stay alive and be cleaned up.
#[derive(Debug)]
pub enum Backend {
    /// A fresh table on the test server.
    Postgres(PostgresStore),
    /// A fresh database file in a temporary directory.
    SqliteFile(SqliteStore, TempDir),
    /// A fresh in-memory database.
    SqliteMemory(SqliteStore),
}

impl Backend {
    /// The store.
    pub fn store(&self) -> &dyn KeyValueStore {
        match self {
            Backend::Postgres(store) => store,
            Backend::SqliteFile(store, _) | Backend::SqliteMemory(store) => store,
        }
    }

    /// The store, shared.
    pub fn shared(&self) -> Arc<dyn KeyValueStore> {
        match self {
            Backend::Postgres(store) => Arc::new(store.clone()),
            Backend::SqliteFile(store, _) | Backend::SqliteMemory(store) => Arc::new(store.clone()),
        }
    }

    /// Drops the test's table (PostgreSQL) and closes the pool; the
    /// temporary directory goes with `self`.
    pub async fn finish(self) {
        match self {
            Backend::Postgres(store) => {
                let sql = format!("DROP TABLE IF EXISTS {}", quoted(store.table_name()));
                sqlx::query(&sql)
                    .execute(store.pool())
                    .await
                    .expect("drop the test table");
                store.pool().close().await;
            }
            Backend::SqliteFile(store, dir) => {
                store.pool().close().await;
                drop(dir);
            }
            Backend::SqliteMemory(store) => store.pool().close().await,
        }
    }
}

/// A table name as SQL.
pub fn quoted(table: &rocket_kvsession_sqlx::TableName) -> String {
    match table.schema() {
        Some(schema) => format!("\"{schema}\".\"{}\"", table.table()),
        None => format!("\"{}\"", table.table()),
    }
}

/// A store over a fresh table of the test server, created by `init`.
pub async fn postgres(test: &str) -> Option<Backend> {
    let url = database_url(test)?;
    let store = PostgresStore::connect(&url)
        .await
        .expect("connect")
        .with_table_name(&unique_table(test))
        .expect("table name");
    store.init().await.expect("init");
    Some(Backend::Postgres(store))
}

/// A store over a fresh SQLite file, created by `connect` and `init`.
pub async fn sqlite_file(_test: &str) -> Option<Backend> {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite://{}", dir.path().join("sessions.db").display());
    let store = SqliteStore::connect(&url).await.expect("connect");
    store.init().await.expect("init");
    Some(Backend::SqliteFile(store, dir))
}

/// A store over a fresh in-memory SQLite database.
pub async fn sqlite_memory(_test: &str) -> Option<Backend> {
    let store = SqliteStore::connect("sqlite::memory:")
        .await
        .expect("connect");
    store.init().await.expect("init");
    Some(Backend::SqliteMemory(store))
}
