//! [`SqliteStore`]: sessions in a SQLite table.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use futures_util::stream::BoxStream;
use rocket_kvsession::{
    CreateOutcome, KeyInfo, KeyValueStore, Record, StoreError, UpdateOutcome, Version,
};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::Row;

use crate::error::store_error;
use crate::keyset::{delete_expired_sql, list_sql, pages, PrefixRange, PAGE};
use crate::millis;
use crate::table::{InvalidTableName, TableName};

const NAME: &str = "sqlite";

/// How long [`SqliteStore::connect`]'s connections wait for another
/// connection's write to finish (SQLite's `busy_timeout`) before an
/// operation fails as unavailable.
pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// At most how many keys one `DELETE ... IN (...)` statement deletes: well
/// under SQLite's limit on bound parameters (32,766 since 3.32).
const DELETE_BATCH: usize = 500;

/// Session records in a SQLite table, through a sqlx [`SqlitePool`].
///
/// The table (default [`DEFAULT_TABLE_NAME`](crate::DEFAULT_TABLE_NAME),
/// see [`with_table_name`](Self::with_table_name)) is created by
/// [`init`](KeyValueStore::init), which the fairing calls at ignite:
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
/// The statements are those of [`PostgresStore`](crate::PostgresStore) in
/// SQLite's dialect: one statement per operation, values bound as
/// parameters, expiry as a column filtered on every read and deleted by the
/// sweep ([`cleanup_sessions`](rocket_kvsession::cleanup_sessions), natively,
/// 10,000 rows per statement). An update whose compare-and-swap fails reads
/// once more to tell a conflict from a vanished record.
///
/// # Concurrency
///
/// SQLite lets any number of connections read at once but only one write at
/// a time, to the whole database. In WAL mode (which
/// [`connect`](Self::connect) turns on) readers never wait for the writer;
/// writers queue, each waiting up to the busy timeout
/// ([`DEFAULT_BUSY_TIMEOUT`]) for the write lock, and fail as unavailable
/// (503) after it. Each session write is one short statement, so this
/// serializes writes without losing any: concurrent writes to one session
/// are ordered by the version column's compare-and-swap like on any other
/// store. A pool of your own should set WAL and a busy timeout too
/// (`SqliteConnectOptions::journal_mode`, `busy_timeout`).
///
/// An in-memory database (`sqlite::memory:`) lives only as long as a
/// connection to it: [`connect`](Self::connect) gives it a pool of one
/// connection that is never closed, so every operation runs on it in turn.
///
/// Cloning is cheap; clones share the pool.
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    table: TableName,
    sql: Arc<Statements>,
}

impl SqliteStore {
    /// A store on `pool`, in the table [`DEFAULT_TABLE_NAME`](crate::DEFAULT_TABLE_NAME).
    ///
    /// Share the application's own pool or give the store one of its own;
    /// see [Concurrency](#concurrency) for the settings it should have.
    pub fn new(pool: SqlitePool) -> Self {
        let table = TableName::default();
        SqliteStore {
            sql: Arc::new(Statements::new(&table)),
            pool,
            table,
        }
    }

    /// Opens a pool of its own on the database at `url`, creating the file
    /// if it does not exist: `sqlite://sessions.db` (relative to the working
    /// directory), `sqlite:///var/lib/app/sessions.db`, or `sqlite::memory:`
    /// for a database in memory, private to this store.
    ///
    /// File databases get WAL journaling, `synchronous = NORMAL` (durable
    /// across application crashes; the last commits may be lost on power
    /// failure) and a busy timeout of [`DEFAULT_BUSY_TIMEOUT`]; an in-memory
    /// database gets one connection that stays open.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), rocket_kvsession::StoreError> {
    /// use rocket_kvsession_sqlx::SqliteStore;
    /// let on_disk = SqliteStore::connect("sqlite://sessions.db").await?;
    /// let in_memory = SqliteStore::connect("sqlite::memory:").await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let error = |e| store_error(NAME, crate::DEFAULT_TABLE_NAME, e);
        let options = SqliteConnectOptions::from_str(url)
            .map_err(error)?
            .create_if_missing(true)
            .busy_timeout(DEFAULT_BUSY_TIMEOUT);
        let pool = if is_in_memory(url) {
            // The database goes away with its last connection: keep exactly one.
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
        .map_err(error)?;
        Ok(SqliteStore::new(pool))
    }

    /// Keeps the sessions in the table `name` (`table`, or `schema.table`
    /// with the name of an attached database; see [`TableName`]) instead of
    /// the default.
    pub fn with_table_name(mut self, name: &str) -> Result<Self, InvalidTableName> {
        self.table = TableName::new(name)?;
        self.sql = Arc::new(Statements::new(&self.table));
        Ok(self)
    }

    /// The pool the store runs its statements on.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// The table the store keeps the sessions in.
    pub fn table_name(&self) -> &TableName {
        &self.table
    }

    fn error(&self, e: sqlx::Error) -> StoreError {
        store_error(NAME, &self.sql.display, e)
    }

    async fn page(
        &self,
        range: &PrefixRange,
        after: Option<String>,
        without_expiry: bool,
    ) -> Result<Vec<KeyInfo>, StoreError> {
        let sql = list_sql('?', &self.sql.table, range, after.is_some(), without_expiry);
        let mut query = sqlx::query(&sql).bind(after.as_deref().unwrap_or(&range.lower));
        if let Some(upper) = &range.upper {
            query = query.bind(upper);
        }
        let rows = query
            .bind(&range.pattern)
            .bind(PAGE as i64)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.error(e))?;
        rows.iter()
            .map(|row| key_info(row).map_err(|e| self.error(e)))
            .collect()
    }

    fn listing<'a>(
        &'a self,
        prefix: &'a str,
        without_expiry: bool,
    ) -> BoxStream<'a, Result<KeyInfo, StoreError>> {
        let range = PrefixRange::new(prefix);
        pages(move |after| {
            let range = range.clone();
            async move { self.page(&range, after, without_expiry).await }
        })
    }

    /// Whether a live row has `key` (after a compare-and-swap matched none).
    async fn is_live(&self, key: &str, now: i64) -> Result<bool, StoreError> {
        let row = sqlx::query(&self.sql.exists)
            .bind(key)
            .bind(now)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.error(e))?;
        Ok(row.is_some())
    }
}

/// Whether a SQLite URL names an in-memory database.
fn is_in_memory(url: &str) -> bool {
    url.contains(":memory:") || url.contains("mode=memory")
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("table", &self.table)
            .field("pool", &self.pool)
            .finish()
    }
}

fn key_info(row: &SqliteRow) -> Result<KeyInfo, sqlx::Error> {
    let key: String = row.try_get(0)?;
    let modified: i64 = row.try_get(1)?;
    Ok(KeyInfo::new(key, Some(millis::to_time(modified))))
}

fn version(n: i64) -> Option<Version> {
    Some(Version::from(n))
}

/// The version a token names; versions are positive, so a token that is not
/// one of ours is `0` and matches no row.
fn expected_version(token: &Version) -> i64 {
    token.as_str().parse().unwrap_or(0)
}

/// A row is live at `now` (milliseconds) if it has no expiry or a later one.
fn live(now: &str) -> String {
    format!("(expires_at IS NULL OR expires_at > {now})")
}

/// The statements of one table, written once.
#[derive(Debug)]
struct Statements {
    table: String,
    display: String,
    create_table: String,
    create_index: String,
    get: String,
    exists: String,
    create: String,
    update: String,
    update_versioned: String,
    touch: String,
    delete: String,
}

impl Statements {
    fn new(table: &TableName) -> Self {
        let t = table.quoted();
        Statements {
            create_table: format!(
                "CREATE TABLE IF NOT EXISTS {t} (\
                 key TEXT PRIMARY KEY, \
                 value BLOB NOT NULL, \
                 version INTEGER NOT NULL, \
                 expires_at INTEGER, \
                 modified_at INTEGER NOT NULL)"
            ),
            // SQLite puts the schema on the index name, not on the table.
            create_index: format!(
                "CREATE INDEX IF NOT EXISTS {}{} ON {} (expires_at)",
                table.quoted_schema_dot(),
                table.quoted_expiry_index(),
                table.quoted_table()
            ),
            get: format!(
                "SELECT value, version, expires_at FROM {t} WHERE key = ?1 AND {}",
                live("?2")
            ),
            exists: format!("SELECT 1 FROM {t} WHERE key = ?1 AND {}", live("?2")),
            // Insert-if-absent; an expired row is taken over (its version
            // counts on). In DO UPDATE, bare column names are the existing row.
            create: format!(
                "INSERT INTO {t} (key, value, version, expires_at, modified_at) \
                 VALUES (?1, ?2, 1, ?3, ?4) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value, \
                 version = version + 1, expires_at = excluded.expires_at, \
                 modified_at = excluded.modified_at \
                 WHERE expires_at IS NOT NULL AND expires_at <= ?4 \
                 RETURNING version"
            ),
            update: format!(
                "UPDATE {t} SET value = ?2, version = version + 1, expires_at = ?3, \
                 modified_at = ?4 WHERE key = ?1 AND {} RETURNING version",
                live("?4")
            ),
            update_versioned: format!(
                "UPDATE {t} SET value = ?2, version = version + 1, expires_at = ?3, \
                 modified_at = ?4 WHERE key = ?1 AND version = ?5 AND {} RETURNING version",
                live("?4")
            ),
            touch: format!(
                "UPDATE {t} SET expires_at = ?2, modified_at = ?3 WHERE key = ?1 AND {} \
                 RETURNING version",
                live("?3")
            ),
            delete: format!("DELETE FROM {t} WHERE key = ?1"),
            display: table.to_string(),
            table: t,
        }
    }

    /// `DELETE ... WHERE key IN (?1, ..., ?n)`.
    fn delete_many(&self, n: usize) -> String {
        let mut sql = format!("DELETE FROM {} WHERE key IN (", self.table);
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
}

#[async_trait]
impl KeyValueStore for SqliteStore {
    fn name(&self) -> &'static str {
        NAME
    }

    /// `true`: the store takes the expiry on every write and never returns
    /// an expired row; SQLite does not delete them by itself, so
    /// [`delete_expired`](KeyValueStore::delete_expired) does, in the sweep.
    fn supports_ttl(&self) -> bool {
        true
    }

    fn supports_versioning(&self) -> bool {
        true
    }

    /// Creates the table and the index on `expires_at` if they do not exist.
    async fn init(&self) -> Result<(), StoreError> {
        for sql in [&self.sql.create_table, &self.sql.create_index] {
            sqlx::query(sql)
                .execute(&self.pool)
                .await
                .map_err(|e| self.error(e))?;
        }
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Record>, StoreError> {
        let row = sqlx::query(&self.sql.get)
            .bind(key)
            .bind(millis::now())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.error(e))?;
        let Some(row) = row else { return Ok(None) };
        let record = (|| {
            let value: Vec<u8> = row.try_get(0)?;
            let v: i64 = row.try_get(1)?;
            let expires_at: Option<i64> = row.try_get(2)?;
            Ok(Record::new(
                value,
                version(v),
                expires_at.map(millis::to_time),
            ))
        })();
        record.map(Some).map_err(|e| self.error(e))
    }

    async fn create(
        &self,
        key: &str,
        value: &[u8],
        expires_at: Option<SystemTime>,
    ) -> Result<CreateOutcome, StoreError> {
        let row = sqlx::query(&self.sql.create)
            .bind(key)
            .bind(value)
            .bind(expires_at.map(millis::ceil))
            .bind(millis::now())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.error(e))?;
        match row {
            Some(row) => {
                let v: i64 = row.try_get(0).map_err(|e| self.error(e))?;
                Ok(CreateOutcome::Created(version(v)))
            }
            None => Ok(CreateOutcome::AlreadyExists),
        }
    }

    async fn update(
        &self,
        key: &str,
        value: &[u8],
        expected: Option<&Version>,
        expires_at: Option<SystemTime>,
    ) -> Result<UpdateOutcome, StoreError> {
        let now = millis::now();
        let query = match expected {
            None => sqlx::query(&self.sql.update),
            Some(_) => sqlx::query(&self.sql.update_versioned),
        }
        .bind(key)
        .bind(value)
        .bind(expires_at.map(millis::ceil))
        .bind(now);
        let query = match expected {
            None => query,
            Some(expected) => query.bind(expected_version(expected)),
        };
        let row = query
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.error(e))?;
        match row {
            Some(row) => {
                let v: i64 = row.try_get(0).map_err(|e| self.error(e))?;
                Ok(UpdateOutcome::Updated(version(v)))
            }
            None if expected.is_some() && self.is_live(key, now).await? => {
                Ok(UpdateOutcome::Conflict)
            }
            None => Ok(UpdateOutcome::Missing),
        }
    }

    /// Moves only the expiry and the last-modified time; the value and the
    /// version stay.
    async fn touch(&self, key: &str, expires_at: SystemTime) -> Result<UpdateOutcome, StoreError> {
        let row = sqlx::query(&self.sql.touch)
            .bind(key)
            .bind(millis::ceil(expires_at))
            .bind(millis::now())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.error(e))?;
        match row {
            Some(row) => {
                let v: i64 = row.try_get(0).map_err(|e| self.error(e))?;
                Ok(UpdateOutcome::Updated(version(v)))
            }
            None => Ok(UpdateOutcome::Missing),
        }
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        sqlx::query(&self.sql.delete)
            .bind(key)
            .execute(&self.pool)
            .await
            .map_err(|e| self.error(e))?;
        Ok(())
    }

    /// One `DELETE ... WHERE key IN (...)` per 500 keys.
    async fn delete_many(&self, keys: Vec<String>) -> Result<(), StoreError> {
        for chunk in keys.chunks(DELETE_BATCH) {
            let sql = self.sql.delete_many(chunk.len());
            let query = chunk
                .iter()
                .fold(sqlx::query(&sql), |query, key| query.bind(key));
            query.execute(&self.pool).await.map_err(|e| self.error(e))?;
        }
        Ok(())
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxStream<'a, Result<KeyInfo, StoreError>> {
        self.listing(prefix, false)
    }

    /// One `DELETE` of at most `limit` rows under the prefix whose
    /// `expires_at` is at or before `now`, found through the index on
    /// `expires_at`.
    async fn delete_expired(
        &self,
        prefix: &str,
        now: SystemTime,
        limit: usize,
    ) -> Result<Option<u64>, StoreError> {
        let range = PrefixRange::new(prefix);
        let sql = delete_expired_sql('?', &self.sql.table, &range);
        let mut query = sqlx::query(&sql)
            .bind(millis::floor(now))
            .bind(i64::try_from(limit).unwrap_or(i64::MAX));
        if !range.is_all() {
            query = query.bind(&range.lower);
            if let Some(upper) = &range.upper {
                query = query.bind(upper);
            }
            query = query.bind(&range.pattern);
        }
        let done = query.execute(&self.pool).await.map_err(|e| self.error(e))?;
        Ok(Some(done.rows_affected()))
    }

    /// The keys of rows with no `expires_at` (written without an expiry).
    fn list_without_expiry<'a>(
        &'a self,
        prefix: &'a str,
    ) -> BoxStream<'a, Result<KeyInfo, StoreError>> {
        self.listing(prefix, true)
    }
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
    fn delete_many_binds_every_key() {
        let sql = Statements::new(&TableName::default());
        assert_eq!(
            sql.delete_many(3),
            "DELETE FROM \"kvsession\" WHERE key IN (?1, ?2, ?3)"
        );
    }

    #[test]
    fn index_of_a_schema_qualified_table() {
        let sql = Statements::new(&TableName::new("aux.sessions").unwrap());
        assert_eq!(
            sql.create_index,
            "CREATE INDEX IF NOT EXISTS \"aux\".\"sessions_expires_at_idx\" ON \"sessions\" (expires_at)"
        );
    }
}
