//! The expiry sweep at scale: `cleanup_sessions` on a table of 1,000,000
//! expired sessions (plus some live ones), on PostgreSQL and on a SQLite
//! file, through the stores' native path (`DELETE ... WHERE expires_at <=
//! now` in statements of at most 10,000 rows). With `--key-only`, the same
//! sweep again through the key-only path every store without a native sweep
//! takes (list every key, judge it by the creation time in the id, delete
//! in batches of 1,000), for comparison. By hand:
//!
//! ```sh
//! eval "$(bash scripts/postgres-server.sh start /tmp/postgres-bench)"
//! cargo bench -p rocket_kvsession_sqlx --bench sweep -- --sessions 1000000 --key-only
//! bash scripts/postgres-server.sh stop /tmp/postgres-bench
//! ```
//!
//! The baseline, measured in the same run on a table filled the same way:
//! the store's own native-sweep statement (taken from the store through the
//! hidden `rocket_kvsession_sqlx::__bench`, never a copy) sent with sqlx
//! directly, in the same batches until one deletes fewer; the table gives
//! the ratio native / sqlx of the wall-clock times.
//!
//! PostgreSQL needs `DATABASE_URL` and fails without it, unless
//! `KVSESSION_SKIP_POSTGRES=1` says to skip it. The rows are inserted with
//! one SQL statement (not timed with the sweep). It prints a markdown table.

use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use futures::stream::BoxStream;
use rocket_kvsession::{
    cleanup_sessions, Capabilities, CleanupReport, CompareAndDelete, CreateOutcome,
    ExpiredDeletion, KeyInfo, KeyValueStore, Record, SessionConfig, StoreError, UpdateOutcome,
    Version,
};
use rocket_kvsession_bench::{block_on, ArgError, Args, Runtime};
use rocket_kvsession_sqlx::__bench::{self, DeleteExpiredSql};
use rocket_kvsession_sqlx::sqlx;
use rocket_kvsession_sqlx::{PostgresStore, SqliteStore};

const USAGE: &str = "sweep [--sessions N (>= 1000)] [--live N] [--key-only]";

/// The app's key prefix in the benchmark table.
const PREFIX: &str = "app:";

/// The batch size `cleanup_sessions` hands the native sweep (the core's
/// `NATIVE_SWEEP_BATCH`); the baseline sends the same batches.
const NATIVE_BATCH: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Options {
    sessions: u64,
    live: u64,
    key_only: bool,
}

/// A store without the native sweep: every method forwarded but
/// `expired_deletion`, which says `None` on purpose, so `cleanup_sessions`
/// takes the key-only path (`clippy::missing_trait_methods` checks that
/// nothing else is left to a default).
struct KeyOnly<S>(S);

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl<S: KeyValueStore> KeyValueStore for KeyOnly<S> {
    fn name(&self) -> &'static str {
        self.0.name()
    }
    fn capabilities(&self) -> Capabilities {
        self.0.capabilities()
    }
    async fn init(&self) -> Result<(), StoreError> {
        self.0.init().await
    }
    fn check_key(&self, key: &str) -> Result<(), StoreError> {
        self.0.check_key(key)
    }
    async fn get(&self, key: &str) -> Result<Option<Record>, StoreError> {
        self.0.get(key).await
    }
    async fn create(
        &self,
        key: &str,
        value: &[u8],
        expires_at: Option<SystemTime>,
    ) -> Result<CreateOutcome, StoreError> {
        self.0.create(key, value, expires_at).await
    }
    async fn update(
        &self,
        key: &str,
        value: &[u8],
        expected: Option<&Version>,
        expires_at: Option<SystemTime>,
    ) -> Result<UpdateOutcome, StoreError> {
        self.0.update(key, value, expected, expires_at).await
    }
    async fn touch(&self, key: &str, expires_at: SystemTime) -> Result<UpdateOutcome, StoreError> {
        self.0.touch(key, expires_at).await
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.0.delete(key).await
    }
    async fn delete_many(&self, keys: Vec<String>) -> Result<(), StoreError> {
        self.0.delete_many(keys).await
    }
    fn list<'a>(&'a self, prefix: &'a str) -> BoxStream<'a, Result<KeyInfo, StoreError>> {
        self.0.list(prefix)
    }
    fn compare_and_delete(&self) -> Option<&dyn CompareAndDelete> {
        self.0.compare_and_delete()
    }
    /// Hidden on purpose: the point of the wrapper.
    fn expired_deletion(&self) -> Option<&dyn ExpiredDeletion> {
        None
    }
}

fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as i64
}

/// SQL that inserts `$5` (`?5`) session rows under `$1`: session-shaped keys
/// created at `$2` (hex seconds), expiring at `$3`, modified at `$4`.
fn fill_sql(postgres: bool, table: &str) -> String {
    if postgres {
        format!(
            "INSERT INTO {table} (key, value, version, expires_at, modified_at) \
             SELECT $1 || lpad(to_hex(i), 16, '0') || '_' || $2, \
             decode(repeat('ab', 200), 'hex'), 1, $3, $4 \
             FROM generate_series(1, $5) AS i"
        )
    } else {
        format!(
            "WITH RECURSIVE i(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM i WHERE n < ?5) \
             INSERT INTO {table} (key, value, version, expires_at, modified_at) \
             SELECT ?1 || printf('%016x', n) || '_' || ?2, zeroblob(200), 1, ?3, ?4 FROM i"
        )
    }
}

/// Inserts the expired and the live sessions; returns how long it took.
async fn fill<'e, E>(
    postgres: bool,
    table: &str,
    executor: E,
    options: Options,
) -> Result<Duration, String>
where
    E: sqlx::Executor<'e> + Copy,
    for<'q> i64: sqlx::Encode<'q, E::Database> + sqlx::Type<E::Database>,
    for<'q> String: sqlx::Encode<'q, E::Database> + sqlx::Type<E::Database>,
    for<'q> <E::Database as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, E::Database>,
{
    let started = Instant::now();
    let now = now_millis();
    let sql = fill_sql(postgres, table);
    for (prefix, created, expires_at, n) in [
        // Created two hours ago, lifetime one hour: expired by the column
        // and by the key.
        (
            PREFIX.to_owned(),
            now / 1000 - 7200,
            now - 3_600_000,
            options.sessions,
        ),
        // Live: created now, expiring in an hour.
        (
            format!("{PREFIX}live-"),
            now / 1000,
            now + 3_600_000,
            options.live,
        ),
    ] {
        if n == 0 {
            continue;
        }
        sqlx::query(&sql)
            .bind(prefix)
            .bind(format!("{created:x}"))
            .bind(expires_at)
            .bind(now)
            .bind(n as i64)
            .execute(executor)
            .await
            .map_err(|e| format!("fill: {e}"))?;
    }
    Ok(started.elapsed())
}

fn config() -> SessionConfig {
    SessionConfig {
        key_prefix: PREFIX.into(),
        lifetime: 3600,
        ..Default::default()
    }
}

/// What one sweep did, for a row of the table.
struct Swept {
    deleted: u64,
    scanned: u64,
    elapsed: Duration,
}

impl From<&CleanupReport> for Swept {
    fn from(report: &CleanupReport) -> Self {
        Swept {
            deleted: report.deleted,
            scanned: report.scanned,
            elapsed: report.elapsed,
        }
    }
}

fn row(database: &str, path: &str, options: Options, fill: Duration, swept: &Swept) {
    let secs = swept.elapsed.as_secs_f64();
    println!(
        "| {database} | {path} | {} | {} | {} | {} | {:.1} | {:.2} | {:.0} |",
        options.sessions,
        options.live,
        swept.deleted,
        swept.scanned,
        fill.as_secs_f64(),
        secs,
        swept.deleted as f64 / secs
    );
}

/// How many rows a statement deleted, for either database.
trait RowsAffected {
    fn rows(&self) -> u64;
}

impl RowsAffected for sqlx::postgres::PgQueryResult {
    fn rows(&self) -> u64 {
        self.rows_affected()
    }
}

impl RowsAffected for sqlx::sqlite::SqliteQueryResult {
    fn rows(&self) -> u64 {
        self.rows_affected()
    }
}

/// The baseline: the store's own native-sweep statement
/// (`__bench::delete_expired`), sent with sqlx directly in batches of
/// [`NATIVE_BATCH`] until one deletes fewer, as `cleanup_sessions` has the
/// store do.
async fn raw_sweep<'e, E>(sweep: &DeleteExpiredSql, executor: E) -> Result<Swept, String>
where
    E: sqlx::Executor<'e> + Copy,
    <E::Database as sqlx::Database>::QueryResult: RowsAffected,
    for<'q> i64: sqlx::Encode<'q, E::Database> + sqlx::Type<E::Database>,
    for<'q> &'q str: sqlx::Encode<'q, E::Database> + sqlx::Type<E::Database>,
    for<'q> <E::Database as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, E::Database>,
{
    let started = Instant::now();
    let now = DeleteExpiredSql::now(SystemTime::now());
    let mut deleted = 0;
    loop {
        let query = sqlx::query(&sweep.sql).bind(now).bind(NATIVE_BATCH as i64);
        let query = sweep
            .key_params
            .iter()
            .fold(query, |query, param| query.bind(param.as_str()));
        let n = query
            .execute(executor)
            .await
            .map_err(|e| format!("sqlx sweep: {e}"))?
            .rows();
        deleted += n;
        if n < NATIVE_BATCH as u64 {
            break;
        }
    }
    Ok(Swept {
        deleted,
        scanned: 0,
        elapsed: started.elapsed(),
    })
}

/// A row of the second table: the native sweep's wall-clock time over the
/// baseline's.
fn ratio(database: &str, native: &Swept, raw: &Swept) -> String {
    let ratio = native.elapsed.as_secs_f64() / raw.elapsed.as_secs_f64();
    format!("| {database} | {ratio:.3} |")
}

fn check(deleted: u64, options: Options) -> Result<(), String> {
    if deleted != options.sessions {
        return Err(format!(
            "the sweep deleted {deleted} sessions, not {}",
            options.sessions
        ));
    }
    Ok(())
}

async fn postgres(url: &str, options: Options) -> Result<String, String> {
    let table = format!("bench_sweep_{:x}_{:x}", std::process::id(), now_millis());
    let store = PostgresStore::connect(url)
        .await
        .map_err(|e| format!("connect: {e}"))?
        .with_table_name(&table)
        .map_err(|e| e.to_string())?;
    let quoted = format!("\"{table}\"");
    let result = async {
        store.init().await.map_err(|e| format!("init: {e}"))?;
        let filled = fill(true, &quoted, store.pool(), options).await?;
        sqlx::query(&format!("VACUUM ANALYZE {quoted}"))
            .execute(store.pool())
            .await
            .map_err(|e| format!("vacuum: {e}"))?;
        let report = cleanup_sessions(&store, &config())
            .await
            .map_err(|e| format!("sweep: {e}"))?;
        check(report.deleted, options)?;
        let native = Swept::from(&report);
        row("PostgreSQL 15", "native", options, filled, &native);
        let filled = fill(true, &quoted, store.pool(), Options { live: 0, ..options }).await?;
        sqlx::query(&format!("VACUUM ANALYZE {quoted}"))
            .execute(store.pool())
            .await
            .map_err(|e| format!("vacuum: {e}"))?;
        let raw = raw_sweep(&__bench::delete_expired(&store, PREFIX), store.pool()).await?;
        check(raw.deleted, options)?;
        row(
            "PostgreSQL 15",
            "sqlx, same statement",
            options,
            filled,
            &raw,
        );
        let ratio = ratio("PostgreSQL 15", &native, &raw);
        if options.key_only {
            let filled = fill(true, &quoted, store.pool(), Options { live: 0, ..options }).await?;
            sqlx::query(&format!("VACUUM ANALYZE {quoted}"))
                .execute(store.pool())
                .await
                .map_err(|e| format!("vacuum: {e}"))?;
            let key_only = KeyOnly(store.clone());
            let report = cleanup_sessions(&key_only, &config())
                .await
                .map_err(|e| format!("sweep: {e}"))?;
            check(report.deleted, options)?;
            row(
                "PostgreSQL 15",
                "key-only",
                options,
                filled,
                &Swept::from(&report),
            );
        }
        Ok::<_, String>(ratio)
    }
    .await;
    let dropped = sqlx::query(&format!("DROP TABLE {quoted}"))
        .execute(store.pool())
        .await;
    let ratio = result?;
    dropped.map_err(|e| format!("drop the table: {e}"))?;
    Ok(ratio)
}

async fn sqlite(options: Options) -> Result<String, String> {
    let dir = tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))?;
    let url = format!("sqlite://{}", dir.path().join("sweep.db").display());
    let store = SqliteStore::connect(&url)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    store.init().await.map_err(|e| format!("init: {e}"))?;
    let version: String = sqlx::query_scalar("SELECT sqlite_version()")
        .fetch_one(store.pool())
        .await
        .map_err(|e| e.to_string())?;
    let name = format!("SQLite {version} (file, WAL)");
    let filled = fill(false, "\"kvsession\"", store.pool(), options).await?;
    let report = cleanup_sessions(&store, &config())
        .await
        .map_err(|e| format!("sweep: {e}"))?;
    check(report.deleted, options)?;
    let native = Swept::from(&report);
    row(&name, "native", options, filled, &native);
    let filled = fill(
        false,
        "\"kvsession\"",
        store.pool(),
        Options { live: 0, ..options },
    )
    .await?;
    let raw = raw_sweep(&__bench::delete_expired(&store, PREFIX), store.pool()).await?;
    check(raw.deleted, options)?;
    row(&name, "sqlx, same statement", options, filled, &raw);
    let ratio = ratio(&name, &native, &raw);
    if options.key_only {
        let filled = fill(
            false,
            "\"kvsession\"",
            store.pool(),
            Options { live: 0, ..options },
        )
        .await?;
        let report = cleanup_sessions(&KeyOnly(store.clone()), &config())
            .await
            .map_err(|e| format!("sweep: {e}"))?;
        check(report.deleted, options)?;
        row(&name, "key-only", options, filled, &Swept::from(&report));
    }
    store.pool().close().await;
    Ok(ratio)
}

async fn run(url: Option<String>, options: Options) -> Result<(), String> {
    println!(
        "| database | sweep path | expired | live | deleted | keys listed | fill s | sweep s | deleted/s |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|");
    let mut ratios = Vec::new();
    if let Some(url) = url {
        ratios.push(postgres(&url, options).await?);
    }
    ratios.push(sqlite(options).await?);
    println!();
    println!("| database | native / sqlx, same statement (wall) |");
    println!("|---|---:|");
    for ratio in ratios {
        println!("{ratio}");
    }
    println!();
    Ok(())
}

fn options(args: &mut Args) -> Result<Options, ArgError> {
    let mut options = Options {
        sessions: 1_000_000,
        live: 10_000,
        key_only: false,
    };
    while let Some(arg) = args.next_arg() {
        match arg.as_str() {
            "--sessions" => options.sessions = args.number("--sessions", 1000)?,
            "--live" => options.live = args.number("--live", 0)?,
            "--key-only" => options.key_only = true,
            _ => return Err(ArgError::Unknown(arg)),
        }
    }
    Ok(options)
}

fn main() -> ExitCode {
    let Some(mut args) = Args::bench("sweep") else {
        return ExitCode::SUCCESS;
    };
    let options = match options(&mut args) {
        Ok(options) => options,
        Err(e) => return args.usage_error(&e, USAGE),
    };
    let url = match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("KVSESSION_SKIP_POSTGRES").as_deref() == Ok("1") => {
            eprintln!(
                "sweep: DATABASE_URL is not set; PostgreSQL skipped (KVSESSION_SKIP_POSTGRES=1)"
            );
            None
        }
        _ => {
            eprintln!(
                "sweep: DATABASE_URL is not set; start a server with \
                 `eval \"$(bash scripts/postgres-server.sh start STATE_DIR)\"` \
                 (or set KVSESSION_SKIP_POSTGRES=1 to measure SQLite only)"
            );
            return ExitCode::FAILURE;
        }
    };
    block_on(
        args.name(),
        Runtime::MultiThread(Some(2)),
        run(url, options),
    )
}
