//! [`SqlStore`]: sessions in a SQL table, one implementation of the store
//! traits for every [`Dialect`].

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use futures_util::stream::BoxStream;
use rocket_kvsession::{
    Capabilities, CompareAndDelete, CreateOutcome, DeleteOutcome, ExpiredDeletion, Expiry, KeyInfo,
    KeyValueStore, Record, StoreError, UpdateOutcome, Version,
};
use sqlx::Pool;

use crate::dialect::{Dialect, Driver, Param};
use crate::error::{store_error, STORE_NAME};
use crate::keyset::{delete_expired_sql, list_sql, pages, PrefixRange, PAGE};
use crate::millis;
use crate::statements::{Conditional, Statements};
use crate::table::{InvalidTableName, TableName, DEFAULT_TABLE_NAME};

/// Session records in a SQL table, through a sqlx pool: one row per
/// session, the expiry in a column, a version column for compare-and-swap.
///
/// Use it as [`PostgresStore`](crate::PostgresStore) or
/// [`SqliteStore`](crate::SqliteStore) (`D` is the database's dialect,
/// [`Postgres`](crate::Postgres) or [`Sqlite`](crate::Sqlite); the trait
/// behind it is sealed). Their pages show the table and what each database
/// does its own way.
///
/// Every operation is one statement with its values bound as parameters:
/// `get` skips expired rows; `create` is an insert-if-absent (`ON
/// CONFLICT`, taking over only an expired row); `update` is update-only
/// and, with a version, a compare-and-swap on the `version` column; `touch`
/// moves only the expiry and the last-modified time; `list` pages through
/// the primary key 1,000 keys at a time; `delete_many` deletes a batch of
/// keys per statement.
///
/// What it can do ([`capabilities`](KeyValueStore::capabilities)):
/// [`Expiry::FilteredOnRead`] with compare-and-swap. The expiry is a
/// column, and no read returns a row past it, but the database does not
/// delete expired rows by itself: the sweep
/// ([`cleanup_sessions`](rocket_kvsession::cleanup_sessions), scheduled
/// with `cleanup_interval`) does, through the store's native sweep
/// ([`expired_deletion`](KeyValueStore::expired_deletion)): `DELETE ...
/// WHERE expires_at <= now`, at most 10,000 rows per statement, found
/// through the index on `expires_at` (every expired row under the prefix,
/// whatever its key: an expired row is dead to every reader); the sweep
/// then lists the rows left and judges them by their keys under the
/// configuration in force. Its
/// [`compare_and_delete`](KeyValueStore::compare_and_delete) deletes a row
/// only while it is live and has the expected version, so a logout removes
/// the session it ended in one statement.
///
/// Times are whole milliseconds since the Unix epoch in integer columns,
/// and "now" is always the application's clock, never the database's.
///
/// Cloning is cheap; clones share the pool.
pub struct SqlStore<D: Dialect> {
    pool: Pool<D::Database>,
    table: TableName,
    sql: Arc<Statements>,
    dialect: PhantomData<fn() -> D>,
}

impl<D: Dialect> SqlStore<D> {
    /// A store on `pool`, in the table [`DEFAULT_TABLE_NAME`].
    ///
    /// Share the application's own pool or give the store one of its own.
    /// With PostgreSQL, the pool's `acquire_timeout` is how long a request
    /// waits for the database before it fails with 503 Service Unavailable;
    /// with SQLite, see [`SqliteStore`](crate::SqliteStore) for the
    /// settings the pool should have.
    pub fn new(pool: Pool<D::Database>) -> Self {
        let table = TableName::default();
        SqlStore {
            sql: Arc::new(Statements::new::<D>(&table)),
            pool,
            table,
            dialect: PhantomData,
        }
    }

    /// Opens a pool of its own on the database at `url`, in the table
    /// [`DEFAULT_TABLE_NAME`].
    ///
    /// * PostgreSQL (`postgres://user:password@host:port/database`):
    ///   sqlx's default pool size, and an acquire timeout of
    ///   `DEFAULT_ACQUIRE_TIMEOUT` (5 s).
    /// * SQLite: `sqlite://sessions.db` (relative to the working directory,
    ///   created if it does not exist), `sqlite:///var/lib/app/sessions.db`,
    ///   or `sqlite::memory:` for a database in memory, private to this
    ///   store. File databases get WAL journaling, `synchronous = NORMAL`
    ///   (durable across application crashes; the last commits may be lost
    ///   on power failure) and a busy timeout of `DEFAULT_BUSY_TIMEOUT` (5
    ///   s); an in-memory database gets one connection that stays open.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), rocket_kvsession::StoreError> {
    /// use rocket_kvsession_sqlx::{PostgresStore, SqliteStore};
    /// let postgres = PostgresStore::connect("postgres://app@localhost/app").await?;
    /// let on_disk = SqliteStore::connect("sqlite://sessions.db").await?;
    /// let in_memory = SqliteStore::connect("sqlite::memory:").await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let pool = D::connect(url)
            .await
            .map_err(|e| store_error(DEFAULT_TABLE_NAME, e, D::failure))?;
        Ok(SqlStore::new(pool))
    }

    /// Keeps the sessions in the table `name` (`table` or `schema.table`;
    /// with SQLite the schema is the name of an attached database; see
    /// [`TableName`] for what is accepted) instead of the default.
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
        self.sql = Arc::new(Statements::new::<D>(&self.table));
        Ok(self)
    }

    /// The pool the store runs its statements on.
    pub fn pool(&self) -> &Pool<D::Database> {
        &self.pool
    }

    /// The table the store keeps the sessions in.
    pub fn table_name(&self) -> &TableName {
        &self.table
    }

    /// The statements the store sends (for the benchmarks' `__bench`).
    pub(crate) fn statements(&self) -> &Statements {
        &self.sql
    }

    fn error(&self, e: sqlx::Error) -> StoreError {
        store_error(&self.sql.display, e, D::failure)
    }

    /// The version in the first column of `row`.
    fn version(&self, row: &<D::Database as sqlx::Database>::Row) -> Result<Version, StoreError> {
        D::Database::int(row, 0)
            .map(Version::from)
            .map_err(|e| self.error(e))
    }

    /// Runs a write conditional on the version; `params` bind the key
    /// first. When it wrote nothing, a conflict is told from a missing row
    /// in the same statement, or by a second one only then.
    async fn conditional(
        &self,
        statement: &Conditional,
        params: &[Param<'_>],
        key: &str,
        now: i64,
    ) -> Result<Conditioned, StoreError> {
        let live = match statement {
            Conditional::Telling(sql) => {
                let row = D::Database::fetch_one(&self.pool, sql, params)
                    .await
                    .map_err(|e| self.error(e))?;
                if let Some(version) =
                    D::Database::nullable_int(&row, 0).map_err(|e| self.error(e))?
                {
                    return Ok(Conditioned::Written(Version::from(version)));
                }
                D::Database::flag(&row, 1).map_err(|e| self.error(e))?
            }
            Conditional::Probing(sql) => {
                let row = D::Database::fetch_optional(&self.pool, sql, params)
                    .await
                    .map_err(|e| self.error(e))?;
                if let Some(row) = row {
                    return Ok(Conditioned::Written(self.version(&row)?));
                }
                let params = [Param::Text(key), Param::Int(now)];
                D::Database::fetch_optional(&self.pool, &self.sql.exists, &params)
                    .await
                    .map_err(|e| self.error(e))?
                    .is_some()
            }
        };
        Ok(if live {
            Conditioned::Conflict
        } else {
            Conditioned::Missing
        })
    }

    /// A write that returns the version it left, or no row if the key has
    /// no live row.
    async fn write(&self, sql: &str, params: &[Param<'_>]) -> Result<UpdateOutcome, StoreError> {
        let row = D::Database::fetch_optional(&self.pool, sql, params)
            .await
            .map_err(|e| self.error(e))?;
        match row {
            Some(row) => Ok(UpdateOutcome::Updated(Some(self.version(&row)?))),
            None => Ok(UpdateOutcome::Missing),
        }
    }

    async fn page(
        &self,
        range: &PrefixRange,
        after: Option<String>,
        without_expiry: bool,
    ) -> Result<Vec<KeyInfo>, StoreError> {
        let sql = list_sql(
            D::PLACEHOLDER,
            &self.sql.quoted,
            range,
            after.is_some(),
            without_expiry,
        );
        let mut params = vec![Param::Text(after.as_deref().unwrap_or(&range.lower))];
        params.extend(range.upper.as_deref().map(Param::Text));
        params.push(Param::Text(&range.pattern));
        params.push(Param::Int(PAGE as i64));
        let rows = D::Database::fetch_all(&self.pool, &sql, &params)
            .await
            .map_err(|e| self.error(e))?;
        rows.iter()
            .map(|row| {
                let key = D::Database::text(row, 0)?;
                let modified = D::Database::int(row, 1)?;
                Ok(KeyInfo::new(key, Some(millis::to_time(modified))))
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(|e| self.error(e))
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

/// What a write conditional on the version did.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Conditioned {
    /// It wrote; the row now has this version (a deleted row had it).
    Written(Version),
    /// A live row has the key, with another version; nothing was written.
    Conflict,
    /// No live row has the key; nothing was written.
    Missing,
}

/// The version a token names; versions are positive, so a token that is
/// not one of ours is `0` and matches no row.
fn expected_version(token: &Version) -> i64 {
    token.as_str().parse().unwrap_or(0)
}

impl<D: Dialect> Clone for SqlStore<D> {
    fn clone(&self) -> Self {
        SqlStore {
            pool: self.pool.clone(),
            table: self.table.clone(),
            sql: Arc::clone(&self.sql),
            dialect: PhantomData,
        }
    }
}

impl<D: Dialect> fmt::Debug for SqlStore<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(D::STORE_TYPE)
            .field("table", &self.table)
            .field("pool", &self.pool)
            .finish()
    }
}

#[async_trait]
impl<D: Dialect> KeyValueStore for SqlStore<D> {
    fn name(&self) -> &'static str {
        STORE_NAME
    }

    /// [`Expiry::FilteredOnRead`] with compare-and-swap: the expiry is a
    /// column no read returns a row past, but the database does not delete
    /// expired rows by itself; the native sweep
    /// ([`expired_deletion`](KeyValueStore::expired_deletion)) does.
    fn capabilities(&self) -> Capabilities {
        Capabilities::new(Expiry::FilteredOnRead).with_compare_and_swap()
    }

    /// Creates the table and the index on `expires_at` if they do not
    /// exist; idempotent, and safe to run from several instances at once
    /// (PostgreSQL: in one transaction under an advisory lock).
    async fn init(&self) -> Result<(), StoreError> {
        D::init(
            &self.pool,
            &self.sql.quoted,
            &self.sql.create_table,
            &self.sql.create_index,
        )
        .await
        .map_err(|e| self.error(e))
    }

    async fn get(&self, key: &str) -> Result<Option<Record>, StoreError> {
        let params = [Param::Text(key), Param::Int(millis::now())];
        let row = D::Database::fetch_optional(&self.pool, &self.sql.get, &params)
            .await
            .map_err(|e| self.error(e))?;
        let Some(row) = row else { return Ok(None) };
        let value = D::Database::bytes(&row, 0).map_err(|e| self.error(e))?;
        let version = D::Database::int(&row, 1).map_err(|e| self.error(e))?;
        let expires_at = D::Database::nullable_int(&row, 2).map_err(|e| self.error(e))?;
        Ok(Some(Record::new(
            value,
            Some(Version::from(version)),
            expires_at.map(millis::to_time),
        )))
    }

    async fn create(
        &self,
        key: &str,
        value: &[u8],
        expires_at: Option<SystemTime>,
    ) -> Result<CreateOutcome, StoreError> {
        let params = [
            Param::Text(key),
            Param::Bytes(value),
            Param::NullableInt(expires_at.map(millis::ceil)),
            Param::Int(millis::now()),
        ];
        let row = D::Database::fetch_optional(&self.pool, &self.sql.create, &params)
            .await
            .map_err(|e| self.error(e))?;
        match row {
            Some(row) => Ok(CreateOutcome::Created(Some(self.version(&row)?))),
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
        let mut params = vec![
            Param::Text(key),
            Param::Bytes(value),
            Param::NullableInt(expires_at.map(millis::ceil)),
            Param::Int(now),
        ];
        let Some(expected) = expected else {
            return self.write(&self.sql.update, &params).await;
        };
        params.push(Param::Int(expected_version(expected)));
        let outcome = self
            .conditional(&self.sql.update_versioned, &params, key, now)
            .await?;
        Ok(match outcome {
            Conditioned::Written(version) => UpdateOutcome::Updated(Some(version)),
            Conditioned::Conflict => UpdateOutcome::Conflict,
            Conditioned::Missing => UpdateOutcome::Missing,
        })
    }

    /// Moves only the expiry and the last-modified time; the value and the
    /// version stay.
    async fn touch(&self, key: &str, expires_at: SystemTime) -> Result<UpdateOutcome, StoreError> {
        let params = [
            Param::Text(key),
            Param::Int(millis::ceil(expires_at)),
            Param::Int(millis::now()),
        ];
        self.write(&self.sql.touch, &params).await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        D::Database::execute(&self.pool, &self.sql.delete, &[Param::Text(key)])
            .await
            .map_err(|e| self.error(e))?;
        Ok(())
    }

    /// One statement per batch of keys: `DELETE ... WHERE key = ANY($1)`
    /// per 10,000 keys (PostgreSQL), `DELETE ... WHERE key IN (?1, ...)`
    /// per 500 (SQLite).
    async fn delete_many(&self, keys: Vec<String>) -> Result<(), StoreError> {
        for chunk in keys.chunks(D::DELETE_BATCH) {
            D::delete_keys(&self.pool, &self.sql.quoted, chunk)
                .await
                .map_err(|e| self.error(e))?;
        }
        Ok(())
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxStream<'a, Result<KeyInfo, StoreError>> {
        self.listing(prefix, false)
    }

    /// `Some`: one conditional `DELETE` (see [`CompareAndDelete`] below).
    fn compare_and_delete(&self) -> Option<&dyn CompareAndDelete> {
        Some(self)
    }

    /// `Some`: the native sweep (see [`ExpiredDeletion`] below).
    fn expired_deletion(&self) -> Option<&dyn ExpiredDeletion> {
        Some(self)
    }
}

#[async_trait]
impl<D: Dialect> CompareAndDelete for SqlStore<D> {
    /// One `DELETE ... WHERE key = $1 AND <live> AND version = $2`; when it
    /// deletes nothing, PostgreSQL tells a conflict from a missing row in
    /// the same statement, SQLite with a second query.
    async fn delete_if(&self, key: &str, expected: &Version) -> Result<DeleteOutcome, StoreError> {
        let now = millis::now();
        let params = [
            Param::Text(key),
            Param::Int(expected_version(expected)),
            Param::Int(now),
        ];
        let outcome = self
            .conditional(&self.sql.delete_if, &params, key, now)
            .await?;
        Ok(match outcome {
            Conditioned::Written(_) => DeleteOutcome::Deleted,
            Conditioned::Conflict => DeleteOutcome::Conflict,
            Conditioned::Missing => DeleteOutcome::Missing,
        })
    }
}

#[async_trait]
impl<D: Dialect> ExpiredDeletion for SqlStore<D> {
    /// One `DELETE` of at most `limit` rows under the prefix whose
    /// `expires_at` is at or before `now`, found through the index on
    /// `expires_at`.
    async fn delete_expired(
        &self,
        prefix: &str,
        now: SystemTime,
        limit: usize,
    ) -> Result<u64, StoreError> {
        let range = PrefixRange::new(prefix);
        let sql = delete_expired_sql(D::PLACEHOLDER, &self.sql.quoted, &range);
        let mut params = vec![
            Param::Int(millis::floor(now)),
            Param::Int(i64::try_from(limit).unwrap_or(i64::MAX)),
        ];
        params.extend(range.sweep_params().into_iter().map(Param::Text));
        let done = D::Database::execute(&self.pool, &sql, &params)
            .await
            .map_err(|e| self.error(e))?;
        Ok(D::rows_affected(&done))
    }

    /// The keys of rows with no `expires_at` (written without an expiry).
    fn list_without_expiry<'a>(
        &'a self,
        prefix: &'a str,
    ) -> BoxStream<'a, Result<KeyInfo, StoreError>> {
        self.listing(prefix, true)
    }
}
