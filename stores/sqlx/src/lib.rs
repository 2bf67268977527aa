#![cfg_attr(
    all(feature = "postgres", feature = "sqlite"),
    doc = include_str!("../README.md")
)]
#![cfg_attr(
    not(all(feature = "postgres", feature = "sqlite")),
    doc = "PostgreSQL and SQLite session stores for `rocket_kvsession`, on sqlx \
           (the full documentation is built with both features on)."
)]
#![forbid(unsafe_code)]
// docs.rs: badges naming the feature each gated item needs.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod dialect;
mod error;
mod keyset;
mod millis;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "sqlite")]
mod sqlite;
mod statements;
mod store;
mod table;

#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use postgres::{Postgres, DEFAULT_ACQUIRE_TIMEOUT};
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub use sqlite::{Sqlite, DEFAULT_BUSY_TIMEOUT};
pub use store::SqlStore;
pub use table::{InvalidTableName, TableName, DEFAULT_TABLE_NAME};

/// Session records in a PostgreSQL table, through a sqlx
/// [`PgPool`](sqlx::PgPool): [`SqlStore`] in PostgreSQL's dialect.
///
/// The table (default [`DEFAULT_TABLE_NAME`], see
/// [`with_table_name`](SqlStore::with_table_name)) is created by
/// [`init`](rocket_kvsession::KeyValueStore::init), which the fairing calls
/// at ignite, in one transaction under an advisory lock, so several
/// instances can start at once:
///
/// ```sql
/// CREATE TABLE IF NOT EXISTS "kvsession" (
///     key TEXT COLLATE "C" PRIMARY KEY,
///     value BYTEA NOT NULL,
///     version BIGINT NOT NULL,
///     expires_at BIGINT,            -- milliseconds since the Unix epoch
///     modified_at BIGINT NOT NULL   -- milliseconds since the Unix epoch
/// );
/// CREATE INDEX IF NOT EXISTS "kvsession_expires_at_idx" ON "kvsession" (expires_at);
/// ```
///
/// A compare-and-swap `update` or a compare-and-delete that writes nothing
/// tells a conflict from a vanished row in the same statement (a
/// data-modifying `WITH`); `delete_many` is one `DELETE ... = ANY($1)` per
/// 10,000 keys. [`connect`](SqlStore::connect)'s pool waits
/// [`DEFAULT_ACQUIRE_TIMEOUT`] for a connection before an operation fails
/// as unavailable (503).
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub type PostgresStore = SqlStore<Postgres>;

/// Session records in a SQLite table, through a sqlx
/// [`SqlitePool`](sqlx::SqlitePool): [`SqlStore`] in SQLite's dialect.
///
/// The table (default [`DEFAULT_TABLE_NAME`], see
/// [`with_table_name`](SqlStore::with_table_name)) is created by
/// [`init`](rocket_kvsession::KeyValueStore::init), which the fairing calls
/// at ignite:
///
/// ```sql
/// CREATE TABLE IF NOT EXISTS "kvsession" (
///     key TEXT PRIMARY KEY,
///     value BLOB NOT NULL,
///     version INTEGER NOT NULL,
///     expires_at INTEGER,            -- milliseconds since the Unix epoch
///     modified_at INTEGER NOT NULL   -- milliseconds since the Unix epoch
/// );
/// CREATE INDEX IF NOT EXISTS "kvsession_expires_at_idx" ON "kvsession" (expires_at);
/// ```
///
/// The statements are those of [`PostgresStore`], in
/// SQLite's dialect. A compare-and-swap `update` or a compare-and-delete
/// that writes nothing reads once more to tell a conflict from a vanished
/// row (SQLite has no data-modifying `WITH`); `delete_many` is one `DELETE
/// ... IN (?1, ...)` per 500 keys.
///
/// # Concurrency
///
/// SQLite lets any number of connections read at once but only one write at
/// a time, to the whole database. In WAL mode (which
/// [`connect`](SqlStore::connect) turns on) readers never wait for the
/// writer; writers queue, each waiting up to the busy timeout
/// ([`DEFAULT_BUSY_TIMEOUT`]) for the write lock, and fail as unavailable
/// (503) after it. Each session write is one short statement, so this
/// serializes writes without losing any: concurrent writes to one session
/// are ordered by the version column's compare-and-swap like on any other
/// store. A pool of your own should set WAL and a busy timeout too
/// (`SqliteConnectOptions::journal_mode`, `busy_timeout`).
///
/// An in-memory database (`sqlite::memory:`) lives only as long as a
/// connection to it: [`connect`](SqlStore::connect) gives it a pool of one
/// connection that is never closed, so every operation runs on it in turn.
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub type SqliteStore = SqlStore<Sqlite>;

/// The sqlx version this crate is built on, re-exported so applications
/// build their pools ([`sqlx::PgPool`], [`sqlx::SqlitePool`]) with the same
/// version.
pub use sqlx;

/// Access to internals for this repository's benchmarks: not part of the
/// public API; may change in any release.
#[doc(hidden)]
#[path = "bench_internals.rs"]
pub mod __bench;
