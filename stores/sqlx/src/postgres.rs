//! [`PostgresStore`]: sessions in a PostgreSQL table.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use futures_util::stream::BoxStream;
use rocket_kvsession::{
    CreateOutcome, KeyInfo, KeyValueStore, Record, StoreError, UpdateOutcome, Version,
};
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::Row;

use crate::error::store_error;
use crate::keyset::{delete_expired_sql, list_sql, pages, PrefixRange, PAGE};
use crate::millis;
use crate::table::{InvalidTableName, TableName};

const NAME: &str = "postgres";

/// How long [`PostgresStore::connect`]'s pool waits for a connection before
/// an operation fails as unavailable (the request gets a 503).
pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// At most how many keys one `DELETE ... = ANY($1)` statement deletes.
const DELETE_BATCH: usize = 10_000;

/// Session records in a PostgreSQL table, through a sqlx [`PgPool`].
///
/// The table (default [`DEFAULT_TABLE_NAME`](crate::DEFAULT_TABLE_NAME),
/// see [`with_table_name`](Self::with_table_name)) is created by
/// [`init`](KeyValueStore::init), which the fairing calls at ignite:
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
/// Every operation is one statement with its values bound as parameters:
/// `get` skips expired rows; `create` is an insert-if-absent (`ON CONFLICT`,
/// taking over only an expired row); `update` is update-only and, with a
/// version, a compare-and-swap on the `version` column; `touch` moves only
/// the expiry and the last-modified time; `list` pages through the primary
/// key 1,000 keys at a time; `delete_many` is one `DELETE ... = ANY($1)`.
///
/// Expiry is a column: PostgreSQL does not delete expired rows by itself.
/// They are invisible to every read, and a sweep
/// ([`cleanup_sessions`](rocket_kvsession::cleanup_sessions), scheduled with
/// `cleanup_interval`) deletes them natively, 10,000 rows per statement
/// through the index on `expires_at`. Times are whole milliseconds since the
/// Unix epoch in `BIGINT` columns (the same as in [`SqliteStore`](crate::SqliteStore)),
/// and "now" is always the application's clock, never the database's.
///
/// Cloning is cheap; clones share the pool.
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
    table: TableName,
    sql: Arc<Statements>,
}

impl PostgresStore {
    /// A store on `pool`, in the table [`DEFAULT_TABLE_NAME`](crate::DEFAULT_TABLE_NAME).
    ///
    /// Share the application's own pool (from `rocket_db_pools` or
    /// elsewhere) or give the store one of its own. The pool's
    /// `acquire_timeout` is how long a request waits for the database
    /// before it fails with 503 Service Unavailable.
    pub fn new(pool: PgPool) -> Self {
        let table = TableName::default();
        PostgresStore {
            sql: Arc::new(Statements::new(&table)),
            pool,
            table,
        }
    }

    /// Connects a pool of its own to the database at `url`
    /// (`postgres://user:password@host:port/database`), with sqlx's default
    /// pool size and an acquire timeout of [`DEFAULT_ACQUIRE_TIMEOUT`].
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), rocket_kvsession::StoreError> {
    /// use rocket_kvsession_sqlx::PostgresStore;
    /// let store = PostgresStore::connect("postgres://app@localhost/app").await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .acquire_timeout(DEFAULT_ACQUIRE_TIMEOUT)
            .connect(url)
            .await
            .map_err(|e| store_error(NAME, DEFAULT_TABLE, e))?;
        Ok(PostgresStore::new(pool))
    }

    /// Keeps the sessions in the table `name` (`table` or `schema.table`;
    /// see [`TableName`] for what is accepted) instead of the default.
    ///
    /// ```
    /// # fn demo(pool: rocket_kvsession_sqlx::sqlx::PgPool) {
    /// use rocket_kvsession_sqlx::PostgresStore;
    /// let store = PostgresStore::new(pool).with_table_name("auth.sessions").unwrap();
    /// assert!(PostgresStore::new(store.pool().clone())
    ///     .with_table_name("sessions; DROP TABLE users")
    ///     .is_err());
    /// # }
    /// ```
    pub fn with_table_name(mut self, name: &str) -> Result<Self, InvalidTableName> {
        self.table = TableName::new(name)?;
        self.sql = Arc::new(Statements::new(&self.table));
        Ok(self)
    }

    /// The pool the store runs its statements on.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The table the store keeps the sessions in.
    pub fn table_name(&self) -> &TableName {
        &self.table
    }

    fn error(&self, e: sqlx::Error) -> StoreError {
        store_error(NAME, self.sql.display.as_str(), e)
    }

    async fn page(
        &self,
        range: &PrefixRange,
        after: Option<String>,
        without_expiry: bool,
    ) -> Result<Vec<KeyInfo>, StoreError> {
        let sql = list_sql('$', &self.sql.table, range, after.is_some(), without_expiry);
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
}

/// The default table's name, for errors before a table is chosen.
const DEFAULT_TABLE: &str = crate::DEFAULT_TABLE_NAME;

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("table", &self.table)
            .field("pool", &self.pool)
            .finish()
    }
}

fn key_info(row: &PgRow) -> Result<KeyInfo, sqlx::Error> {
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

/// The statements of one table, written once.
#[derive(Debug)]
struct Statements {
    /// The quoted table name.
    table: String,
    /// The table name for messages.
    display: String,
    create_table: String,
    create_index: String,
    get: String,
    create: String,
    update: String,
    update_versioned: String,
    touch: String,
    delete: String,
    delete_many: String,
}

/// A row is live at `$now` (milliseconds) if it has no expiry or a later one.
fn live(now: &str) -> String {
    format!("(expires_at IS NULL OR expires_at > {now})")
}

impl Statements {
    fn new(table: &TableName) -> Self {
        let t = table.quoted();
        Statements {
            create_table: format!(
                "CREATE TABLE IF NOT EXISTS {t} (\
                 key TEXT COLLATE \"C\" PRIMARY KEY, \
                 value BYTEA NOT NULL, \
                 version BIGINT NOT NULL, \
                 expires_at BIGINT, \
                 modified_at BIGINT NOT NULL)"
            ),
            create_index: format!(
                "CREATE INDEX IF NOT EXISTS {} ON {t} (expires_at)",
                table.quoted_expiry_index()
            ),
            get: format!(
                "SELECT value, version, expires_at FROM {t} WHERE key = $1 AND {}",
                live("$2")
            ),
            // Insert-if-absent; an expired row is taken over (its version
            // counts on, so a stale compare-and-swap cannot match the new
            // record).
            create: format!(
                "INSERT INTO {t} AS s (key, value, version, expires_at, modified_at) \
                 VALUES ($1, $2, 1, $3, $4) \
                 ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, \
                 version = s.version + 1, expires_at = EXCLUDED.expires_at, \
                 modified_at = EXCLUDED.modified_at \
                 WHERE s.expires_at IS NOT NULL AND s.expires_at <= $4 \
                 RETURNING version"
            ),
            update: format!(
                "UPDATE {t} SET value = $2, version = version + 1, expires_at = $3, \
                 modified_at = $4 WHERE key = $1 AND {} RETURNING version",
                live("$4")
            ),
            // One round trip for the three outcomes: the new version, or
            // whether a live row exists (a conflict) or not (missing). The
            // CTE and the outer query see the same snapshot.
            update_versioned: format!(
                "WITH updated AS (\
                 UPDATE {t} SET value = $2, version = version + 1, expires_at = $3, \
                 modified_at = $4 WHERE key = $1 AND version = $5 AND {live} \
                 RETURNING version) \
                 SELECT (SELECT version FROM updated) AS version, \
                 EXISTS (SELECT 1 FROM {t} WHERE key = $1 AND {live}) AS live",
                live = live("$4")
            ),
            touch: format!(
                "UPDATE {t} SET expires_at = $2, modified_at = $3 WHERE key = $1 AND {} \
                 RETURNING version",
                live("$3")
            ),
            delete: format!("DELETE FROM {t} WHERE key = $1"),
            delete_many: format!("DELETE FROM {t} WHERE key = ANY($1)"),
            display: table.to_string(),
            table: t,
        }
    }
}

#[async_trait]
impl KeyValueStore for PostgresStore {
    fn name(&self) -> &'static str {
        NAME
    }

    /// `true`: the store takes the expiry on every write and never returns
    /// an expired row; PostgreSQL does not delete them by itself, so
    /// [`delete_expired`](KeyValueStore::delete_expired) does, in the sweep.
    fn supports_ttl(&self) -> bool {
        true
    }

    fn supports_versioning(&self) -> bool {
        true
    }

    /// Creates the table and the index on `expires_at` if they do not exist,
    /// in one transaction under an advisory lock, so that several instances
    /// starting at once do not race each other.
    async fn init(&self) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(|e| self.error(e))?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(advisory_key(&self.sql.table))
            .execute(&mut *tx)
            .await
            .map_err(|e| self.error(e))?;
        for sql in [&self.sql.create_table, &self.sql.create_index] {
            sqlx::query(sql)
                .execute(&mut *tx)
                .await
                .map_err(|e| self.error(e))?;
        }
        tx.commit().await.map_err(|e| self.error(e))
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
        let expires_at = expires_at.map(millis::ceil);
        let now = millis::now();
        let Some(expected) = expected else {
            let row = sqlx::query(&self.sql.update)
                .bind(key)
                .bind(value)
                .bind(expires_at)
                .bind(now)
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| self.error(e))?;
            return match row {
                Some(row) => {
                    let v: i64 = row.try_get(0).map_err(|e| self.error(e))?;
                    Ok(UpdateOutcome::Updated(version(v)))
                }
                None => Ok(UpdateOutcome::Missing),
            };
        };
        let row = sqlx::query(&self.sql.update_versioned)
            .bind(key)
            .bind(value)
            .bind(expires_at)
            .bind(now)
            .bind(expected_version(expected))
            .fetch_one(&self.pool)
            .await
            .map_err(|e| self.error(e))?;
        let outcome = (|| {
            let v: Option<i64> = row.try_get(0)?;
            let live: bool = row.try_get(1)?;
            Ok(match (v, live) {
                (Some(v), _) => UpdateOutcome::Updated(version(v)),
                (None, true) => UpdateOutcome::Conflict,
                (None, false) => UpdateOutcome::Missing,
            })
        })();
        outcome.map_err(|e| self.error(e))
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

    /// One `DELETE ... WHERE key = ANY($1)` per 10,000 keys.
    async fn delete_many(&self, keys: Vec<String>) -> Result<(), StoreError> {
        for chunk in keys.chunks(DELETE_BATCH) {
            sqlx::query(&self.sql.delete_many)
                .bind(chunk)
                .execute(&self.pool)
                .await
                .map_err(|e| self.error(e))?;
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
        let sql = delete_expired_sql('$', &self.sql.table, &range);
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

/// A stable 64-bit key for the table's advisory lock (FNV-1a of the quoted
/// name).
fn advisory_key(table: &str) -> i64 {
    let hash = table.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    i64::from_ne_bytes(hash.to_ne_bytes())
}
