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

mod error;
mod keyset;
mod millis;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "sqlite")]
mod sqlite;
mod table;

#[cfg(feature = "postgres")]
pub use postgres::{PostgresStore, DEFAULT_ACQUIRE_TIMEOUT};
#[cfg(feature = "sqlite")]
pub use sqlite::{SqliteStore, DEFAULT_BUSY_TIMEOUT};
pub use table::{InvalidTableName, TableName, DEFAULT_TABLE_NAME};

/// The sqlx version this crate is built on, re-exported so applications
/// build their pools ([`sqlx::PgPool`], [`sqlx::SqlitePool`]) with the same
/// version.
pub use sqlx;
