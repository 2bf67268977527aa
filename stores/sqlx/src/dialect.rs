//! [`Dialect`]: what differs between the databases a
//! [`SqlStore`](crate::store::SqlStore) runs on, and [`Driver`]: what the
//! store needs of sqlx, the same for all of them.
//!
//! The store's operations, and the SQL they share, are written once
//! (`store.rs`, `statements.rs`); a dialect adds only what its database
//! does its own way: column types, the statement that initializes the
//! table, a bulk delete, whether a conditional write can say in the same
//! statement why it wrote nothing, and what its error codes mean.

use std::future::Future;

use futures_util::future::BoxFuture;
use sqlx::error::DatabaseError;
use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, Pool, Row, Type};

use crate::error::Failure;
use crate::table::TableName;

/// A database's SQL dialect: [`Postgres`](crate::postgres::Postgres) or
/// [`Sqlite`](crate::sqlite::Sqlite). Sealed: it lives in a private module,
/// so only this crate names or implements it.
pub trait Dialect: Send + Sync + Sized + 'static {
    /// The sqlx database.
    type Database: Driver;

    /// The store's type name, for `Debug`: `PostgresStore`, `SqliteStore`.
    const STORE_TYPE: &'static str;

    /// The character of numbered statement parameters: `$` (`$1`) or `?` (`?1`).
    const PLACEHOLDER: char;

    /// At most how many keys one [`delete_keys`](Self::delete_keys) statement
    /// deletes.
    const DELETE_BATCH: usize;

    /// Opens a pool of the store's own on the database at `url`, with the
    /// settings the store needs (what `connect` does).
    fn connect(url: &str)
        -> impl Future<Output = Result<Pool<Self::Database>, sqlx::Error>> + Send;

    /// `CREATE TABLE IF NOT EXISTS` for the session table, in the
    /// database's column types.
    fn create_table(table: &TableName) -> String;

    /// `CREATE INDEX IF NOT EXISTS` on the table's `expires_at`, the native
    /// sweep's index.
    fn create_index(table: &TableName) -> String;

    /// Runs `create_table`, then `create_index` (on the table `quoted`), so
    /// that several instances starting at once do not fail each other.
    fn init(
        pool: &Pool<Self::Database>,
        quoted: &str,
        create_table: &str,
        create_index: &str,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send;

    /// `write` (an `UPDATE` or `DELETE` of the row whose version matches,
    /// `... RETURNING version`) as one statement that always returns one
    /// row: the written row's `version` (NULL if nothing was written) and
    /// `live`, whether a row of `table` matched `live_row` before the write.
    /// `None` if the dialect cannot: the store then asks `live_row` with a
    /// second statement, only when nothing was written.
    fn telling_liveness(write: &str, table: &str, live_row: &str) -> Option<String>;

    /// Deletes the rows of `keys` (at most [`DELETE_BATCH`](Self::DELETE_BATCH))
    /// from the table `quoted`, in one statement.
    fn delete_keys(
        pool: &Pool<Self::Database>,
        quoted: &str,
        keys: &[String],
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send;

    /// How many rows a statement changed.
    fn rows_affected(done: &<Self::Database as sqlx::Database>::QueryResult) -> u64;

    /// What an error the database returned means to the store.
    fn failure(error: &dyn DatabaseError) -> Failure;
}

/// A statement parameter, of one of the types the store binds.
#[derive(Debug, Clone, Copy)]
pub enum Param<'a> {
    /// A key, a bound of a key range, a `LIKE` pattern.
    Text(&'a str),
    /// A value.
    Bytes(&'a [u8]),
    /// A time (milliseconds since the Unix epoch), a version, a limit.
    Int(i64),
    /// An expiry that may be absent.
    NullableInt(Option<i64>),
}

/// A sqlx database through the few Rust types the store exchanges with it:
/// it binds [`Param`]s, runs statements on a pool, and reads integers,
/// bytes, text and booleans from rows.
///
/// Implemented for every sqlx database that does all this (PostgreSQL and
/// SQLite do): the `where` clause of that one implementation is the only
/// place the store's generic code spells out what it needs of sqlx.
pub trait Driver: sqlx::Database {
    /// The row `sql` returns, if any.
    fn fetch_optional<'a>(
        pool: &'a Pool<Self>,
        sql: &'a str,
        params: &[Param<'a>],
    ) -> BoxFuture<'a, Result<Option<Self::Row>, sqlx::Error>>;

    /// The one row `sql` returns (an error if it returns none).
    fn fetch_one<'a>(
        pool: &'a Pool<Self>,
        sql: &'a str,
        params: &[Param<'a>],
    ) -> BoxFuture<'a, Result<Self::Row, sqlx::Error>>;

    /// Every row `sql` returns.
    fn fetch_all<'a>(
        pool: &'a Pool<Self>,
        sql: &'a str,
        params: &[Param<'a>],
    ) -> BoxFuture<'a, Result<Vec<Self::Row>, sqlx::Error>>;

    /// Runs `sql` for what it changes.
    fn execute<'a>(
        pool: &'a Pool<Self>,
        sql: &'a str,
        params: &[Param<'a>],
    ) -> BoxFuture<'a, Result<Self::QueryResult, sqlx::Error>>;

    /// The integer in `column`.
    fn int(row: &Self::Row, column: usize) -> Result<i64, sqlx::Error>;

    /// The integer or NULL in `column`.
    fn nullable_int(row: &Self::Row, column: usize) -> Result<Option<i64>, sqlx::Error>;

    /// The bytes in `column`.
    fn bytes(row: &Self::Row, column: usize) -> Result<Vec<u8>, sqlx::Error>;

    /// The text in `column`.
    fn text(row: &Self::Row, column: usize) -> Result<String, sqlx::Error>;

    /// The boolean in `column`.
    fn flag(row: &Self::Row, column: usize) -> Result<bool, sqlx::Error>;
}

type Query<'q, DB> = sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>;

fn query<'q, DB>(sql: &'q str, params: &[Param<'q>]) -> Query<'q, DB>
where
    DB: sqlx::Database,
    for<'a> &'a str: Encode<'a, DB> + Type<DB>,
    for<'a> &'a [u8]: Encode<'a, DB> + Type<DB>,
    i64: for<'a> Encode<'a, DB> + Type<DB>,
    Option<i64>: for<'a> Encode<'a, DB> + Type<DB>,
{
    params
        .iter()
        .fold(sqlx::query(sql), |query, param| match *param {
            Param::Text(text) => query.bind(text),
            Param::Bytes(bytes) => query.bind(bytes),
            Param::Int(n) => query.bind(n),
            Param::NullableInt(n) => query.bind(n),
        })
}

impl<DB> Driver for DB
where
    DB: sqlx::Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'a> &'a str: Encode<'a, DB> + Type<DB>,
    for<'a> &'a [u8]: Encode<'a, DB> + Type<DB>,
    i64: for<'a> Encode<'a, DB> + for<'r> Decode<'r, DB> + Type<DB>,
    Option<i64>: for<'a> Encode<'a, DB> + Type<DB>,
    Vec<u8>: for<'r> Decode<'r, DB> + Type<DB>,
    String: for<'r> Decode<'r, DB> + Type<DB>,
    bool: for<'r> Decode<'r, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
{
    fn fetch_optional<'a>(
        pool: &'a Pool<Self>,
        sql: &'a str,
        params: &[Param<'a>],
    ) -> BoxFuture<'a, Result<Option<Self::Row>, sqlx::Error>> {
        pool.fetch_optional(query(sql, params))
    }

    fn fetch_one<'a>(
        pool: &'a Pool<Self>,
        sql: &'a str,
        params: &[Param<'a>],
    ) -> BoxFuture<'a, Result<Self::Row, sqlx::Error>> {
        pool.fetch_one(query(sql, params))
    }

    fn fetch_all<'a>(
        pool: &'a Pool<Self>,
        sql: &'a str,
        params: &[Param<'a>],
    ) -> BoxFuture<'a, Result<Vec<Self::Row>, sqlx::Error>> {
        pool.fetch_all(query(sql, params))
    }

    fn execute<'a>(
        pool: &'a Pool<Self>,
        sql: &'a str,
        params: &[Param<'a>],
    ) -> BoxFuture<'a, Result<Self::QueryResult, sqlx::Error>> {
        pool.execute(query(sql, params))
    }

    fn int(row: &Self::Row, column: usize) -> Result<i64, sqlx::Error> {
        row.try_get(column)
    }

    fn nullable_int(row: &Self::Row, column: usize) -> Result<Option<i64>, sqlx::Error> {
        row.try_get(column)
    }

    fn bytes(row: &Self::Row, column: usize) -> Result<Vec<u8>, sqlx::Error> {
        row.try_get(column)
    }

    fn text(row: &Self::Row, column: usize) -> Result<String, sqlx::Error> {
        row.try_get(column)
    }

    fn flag(row: &Self::Row, column: usize) -> Result<bool, sqlx::Error> {
        row.try_get(column)
    }
}
