//! Store round trips of `PostgresStore` and `SqliteStore`, side by side with
//! the same statements sent with sqlx directly on the same pool, so the ratio
//! shows what the adapter adds to a round trip. By hand:
//!
//! ```sh
//! eval "$(bash scripts/postgres-server.sh start /tmp/postgres-bench)"
//! cargo bench -p rocket_kvsession_sqlx --bench store_latency -- --samples 2000
//! bash scripts/postgres-server.sh stop /tmp/postgres-bench
//! ```
//!
//! PostgreSQL needs `DATABASE_URL` and fails without it, unless
//! `KVSESSION_SKIP_POSTGRES=1` says to skip it; SQLite runs on a file in a
//! temporary directory (WAL, as `SqliteStore::connect` opens it). Each
//! sample does, on a 1 KiB session record, a `get`, a `put` (an `update`
//! with the expected version and a new expiry: what saving an existing
//! session does) and a `create` (a new session), once through the adapter
//! and once directly, in alternating order. The direct side sends the
//! store's own SQL text (taken from the store through the hidden
//! `rocket_kvsession_sqlx::__bench`, never a copy) with the same binds. It prints a markdown
//! table: median and p99 per operation, and the adapter/sqlx ratio of the
//! medians (goal: at most 1.05). The tables it uses are dropped at the end.

use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rocket_kvsession::KeyValueStore;
use rocket_kvsession_bench::{
    block_on, compare, print_comparison, record, ArgError, Args, Labels, Runtime, Samples, Side,
    StoreSide,
};
use rocket_kvsession_sqlx::__bench::{self, StoreSql};
use rocket_kvsession_sqlx::sqlx::{self, Row};
use rocket_kvsession_sqlx::{PostgresStore, SqliteStore};

/// The ratio goal: the adapter adds at most 5% to a round trip.
const GOAL: f64 = 1.05;

const USAGE: &str = "store_latency [--samples N (>= 100)]";

/// How long the records written live: both sides write the same expiry.
const TTL: Duration = Duration::from_secs(3600);

fn millis(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as i64
}

fn now() -> i64 {
    millis(SystemTime::now())
}

fn expiry() -> i64 {
    millis(SystemTime::now() + TTL)
}

/// The store's own statements (`__bench::sql`), owned, to send with sqlx
/// directly beside the store.
struct Statements {
    get: String,
    put: String,
    create: String,
}

impl Statements {
    fn of(sql: StoreSql<'_>) -> Self {
        Statements {
            get: sql.get.to_owned(),
            put: sql.update_versioned.to_owned(),
            create: sql.create.to_owned(),
        }
    }
}

/// The store's statements on PostgreSQL, sent with sqlx.
struct PgDirect {
    pool: sqlx::PgPool,
    sql: Statements,
    version: i64,
}

impl PgDirect {
    fn new(store: &PostgresStore) -> Result<Self, String> {
        let sql = __bench::sql(store);
        if !sql.update_versioned_tells_liveness {
            return Err("PostgresStore's update no longer returns (version, live)".into());
        }
        Ok(PgDirect {
            pool: store.pool().clone(),
            sql: Statements::of(sql),
            version: 0,
        })
    }
}

impl Side for PgDirect {
    async fn get(&mut self, key: &str) -> Result<Vec<u8>, String> {
        let row = sqlx::query(&self.sql.get)
            .bind(key)
            .bind(now())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| format!("sqlx get: {e}"))?
            .ok_or("sqlx get: record missing")?;
        self.version = row.try_get(1).map_err(|e| e.to_string())?;
        let _: Option<i64> = row.try_get(2).map_err(|e| e.to_string())?;
        row.try_get(0).map_err(|e| e.to_string())
    }

    async fn put(&mut self, key: &str, value: &[u8]) -> Result<(), String> {
        let row = sqlx::query(&self.sql.put)
            .bind(key)
            .bind(value)
            .bind(Some(expiry()))
            .bind(now())
            .bind(self.version)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| format!("sqlx update: {e}"))?;
        let version: Option<i64> = row.try_get(0).map_err(|e| e.to_string())?;
        let _: bool = row.try_get(1).map_err(|e| e.to_string())?;
        self.version = version.ok_or("sqlx update: no row matched")?;
        Ok(())
    }

    async fn create(&mut self, key: &str, value: &[u8]) -> Result<(), String> {
        let row = sqlx::query(&self.sql.create)
            .bind(key)
            .bind(value)
            .bind(Some(expiry()))
            .bind(now())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| format!("sqlx insert: {e}"))?
            .ok_or("sqlx insert: key exists")?;
        let _: i64 = row.try_get(0).map_err(|e| e.to_string())?;
        Ok(())
    }
}

/// The store's statements on SQLite, sent with sqlx.
struct SqliteDirect {
    pool: sqlx::SqlitePool,
    sql: Statements,
    version: i64,
}

impl SqliteDirect {
    fn new(store: &SqliteStore) -> Result<Self, String> {
        let sql = __bench::sql(store);
        if sql.update_versioned_tells_liveness {
            return Err("SqliteStore's update now returns (version, live)".into());
        }
        Ok(SqliteDirect {
            pool: store.pool().clone(),
            sql: Statements::of(sql),
            version: 0,
        })
    }
}

impl Side for SqliteDirect {
    async fn get(&mut self, key: &str) -> Result<Vec<u8>, String> {
        let row = sqlx::query(&self.sql.get)
            .bind(key)
            .bind(now())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| format!("sqlx get: {e}"))?
            .ok_or("sqlx get: record missing")?;
        self.version = row.try_get(1).map_err(|e| e.to_string())?;
        let _: Option<i64> = row.try_get(2).map_err(|e| e.to_string())?;
        row.try_get(0).map_err(|e| e.to_string())
    }

    async fn put(&mut self, key: &str, value: &[u8]) -> Result<(), String> {
        let row = sqlx::query(&self.sql.put)
            .bind(key)
            .bind(value)
            .bind(Some(expiry()))
            .bind(now())
            .bind(self.version)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| format!("sqlx update: {e}"))?
            .ok_or("sqlx update: no row matched")?;
        self.version = row.try_get(0).map_err(|e| e.to_string())?;
        Ok(())
    }

    async fn create(&mut self, key: &str, value: &[u8]) -> Result<(), String> {
        let row = sqlx::query(&self.sql.create)
            .bind(key)
            .bind(value)
            .bind(Some(expiry()))
            .bind(now())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| format!("sqlx insert: {e}"))?
            .ok_or("sqlx insert: key exists")?;
        let _: i64 = row.try_get(0).map_err(|e| e.to_string())?;
        Ok(())
    }
}

/// Samples both sides, the adapter over `store` and `direct` on its pool.
async fn run_one<S: KeyValueStore>(
    store: S,
    mut direct: impl Side,
    samples: usize,
) -> Result<(Samples, Samples), String> {
    store.init().await.map_err(|e| format!("init: {e}"))?;
    let mut adapter = StoreSide::new(store, "adapter").with_ttl(TTL);
    let (adapter_key, direct_key) = ("a5f0e3c2a9b8d7e6_6745c1a0", "d5f0e3c2a9b8d7e6_6745c1a0");
    adapter.create(adapter_key, &record(0)).await?;
    direct.create(direct_key, &record(0)).await?;
    adapter.get(adapter_key).await?;
    direct.get(direct_key).await?;
    compare(&mut adapter, adapter_key, &mut direct, direct_key, samples).await
}

fn table_name() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!("bench_{:x}_{nanos:x}", std::process::id())
}

fn report(store: &str, samples: (Samples, Samples)) {
    let ratio = format!("{store} / sqlx");
    print_comparison(
        Labels {
            adapter: store,
            direct: "sqlx, same statement",
            ratio: &ratio,
        },
        samples,
        0,
        GOAL,
    );
}

async fn run(url: Option<String>, samples: usize) -> Result<(), String> {
    if let Some(url) = url {
        let table = table_name();
        let store = PostgresStore::connect(&url)
            .await
            .map_err(|e| format!("connect: {e}"))?
            .with_table_name(&table)
            .map_err(|e| e.to_string())?;
        let direct = PgDirect::new(&store)?;
        let pool = store.pool().clone();
        let result = run_one(store, direct, samples).await;
        let dropped = sqlx::query(&format!("DROP TABLE \"{table}\""))
            .execute(&pool)
            .await;
        report("PostgresStore", result?);
        dropped.map_err(|e| format!("drop the benchmark table: {e}"))?;
    }
    let dir = tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))?;
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let store = SqliteStore::connect(&url)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let direct = SqliteDirect::new(&store)?;
    report("SqliteStore", run_one(store, direct, samples).await?);
    Ok(())
}

fn options(args: &mut Args) -> Result<usize, ArgError> {
    let mut samples = 1000;
    while let Some(arg) = args.next_arg() {
        match arg.as_str() {
            "--samples" => samples = args.number("--samples", 100)? as usize,
            _ => return Err(ArgError::Unknown(arg)),
        }
    }
    Ok(samples)
}

fn main() -> ExitCode {
    let Some(mut args) = Args::bench("store_latency") else {
        return ExitCode::SUCCESS;
    };
    let samples = match options(&mut args) {
        Ok(samples) => samples,
        Err(e) => return args.usage_error(&e, USAGE),
    };
    let url = match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("KVSESSION_SKIP_POSTGRES").as_deref() == Ok("1") => {
            eprintln!("store_latency: DATABASE_URL is not set; PostgreSQL skipped (KVSESSION_SKIP_POSTGRES=1)");
            None
        }
        _ => {
            eprintln!(
                "store_latency: DATABASE_URL is not set; start a server with \
                 `eval \"$(bash scripts/postgres-server.sh start STATE_DIR)\"` \
                 (or set KVSESSION_SKIP_POSTGRES=1 to measure SQLite only)"
            );
            return ExitCode::FAILURE;
        }
    };
    block_on(args.name(), Runtime::CurrentThread, run(url, samples))
}
