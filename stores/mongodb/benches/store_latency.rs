//! Store round trips of `MongoStore`, side by side with the same operations
//! done directly with the `mongodb` driver on the same collection, so the
//! ratio shows what the adapter adds to a round trip. `scripts/bench.sh`
//! runs it; by hand:
//!
//! ```sh
//! eval "$(bash scripts/mongodb-server.sh start /tmp/mongodb-bench)"
//! cargo bench -p rocket_kvsession_mongodb --bench store_latency -- --samples 1000
//! bash scripts/mongodb-server.sh stop /tmp/mongodb-bench
//! ```
//!
//! It needs `MONGODB_URI` and fails without it, unless
//! `KVSESSION_SKIP_MONGODB=1` says to skip it. Each sample does, on a 1 KiB
//! session record, a `get`, a `put` (an `update` with the expected version
//! and a new expiry: what saving an existing session does) and a `create`
//! (a new session), once through the adapter and once directly, in
//! alternating order. The direct operations send the adapter's own commands
//! (the filters, update documents and decoding of the crate's hidden
//! `__bench` module, not copies of them): `find` with the liveness filter,
//! `update` filtered on `_id`, liveness and version with `$inc`/`$set`, and
//! `insert`. It prints a markdown table: median and p99 per operation, and
//! the adapter/driver ratio of the medians (goal: at most 1.10). The
//! collection it uses is dropped at the end.

use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rocket_kvsession::{KeyValueStore, Version};
use rocket_kvsession_bench::{
    block_on, compare, print_comparison, record, ArgError, Args, Labels, Runtime, Side, StoreSide,
};
use rocket_kvsession_mongodb::__bench::{
    live, live_at_version, new_document, parse_version, record_of, rewrite,
};
use rocket_kvsession_mongodb::mongodb::bson::{DateTime, Document};
use rocket_kvsession_mongodb::mongodb::Collection;
use rocket_kvsession_mongodb::MongoStore;

/// The ratio goal: the adapter adds at most 10% to a round trip.
const GOAL: f64 = 1.10;

const DATABASE: &str = "rocket_kvsession_bench";

const USAGE: &str = "store_latency [--samples N (>= 100)]";

/// How long the records written live: the adapter and the driver write the
/// same expiry.
const TTL: Duration = Duration::from_secs(3600);

fn expiry() -> SystemTime {
    SystemTime::now() + TTL
}

/// The adapter's own commands, sent with the driver.
struct Driver {
    collection: Collection<Document>,
    /// The version the last `get` read, as the adapter's update names it.
    version: Option<Version>,
}

impl Side for Driver {
    async fn get(&mut self, key: &str) -> Result<Vec<u8>, String> {
        let document = self
            .collection
            .find_one(live(key, DateTime::now()))
            .await
            .map_err(|e| format!("driver find_one: {e}"))?
            .ok_or("driver find_one: record missing")?;
        let record = record_of(key, &document).map_err(|e| format!("driver find_one: {e}"))?;
        self.version = record.version;
        Ok(record.value)
    }

    async fn put(&mut self, key: &str, value: &[u8]) -> Result<(), String> {
        let version = self
            .version
            .as_ref()
            .and_then(parse_version)
            .ok_or("driver update_one: no version read")?;
        let filter = live_at_version(key, DateTime::now(), version);
        let result = self
            .collection
            .update_one(filter, rewrite(value, Some(expiry())))
            .await
            .map_err(|e| format!("driver update_one: {e}"))?;
        if result.matched_count != 1 {
            return Err("driver update_one: no document matched".into());
        }
        self.version = Some(Version::from(version + 1));
        Ok(())
    }

    async fn create(&mut self, key: &str, value: &[u8]) -> Result<(), String> {
        self.collection
            .insert_one(new_document(key, value, Some(expiry())))
            .await
            .map_err(|e| format!("driver insert_one: {e}"))?;
        Ok(())
    }
}

async fn run(uri: String, samples: usize) -> Result<(), String> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let collection = format!("bench_{:x}_{nanos:x}", std::process::id());
    let store = MongoStore::connect(&uri, DATABASE, &collection)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    store.init().await.map_err(|e| format!("init: {e}"))?;

    let mut adapter = StoreSide::new(store.clone(), "adapter").with_ttl(TTL);
    let mut driver = Driver {
        collection: store.collection().clone(),
        version: None,
    };
    let (adapter_key, driver_key) = ("a5f0e3c2a9b8d7e6_6745c1a0", "d5f0e3c2a9b8d7e6_6745c1a0");
    adapter.create(adapter_key, &record(0)).await?;
    driver.create(driver_key, &record(0)).await?;
    adapter.get(adapter_key).await?;
    driver.get(driver_key).await?;

    let (a, d) = compare(&mut adapter, adapter_key, &mut driver, driver_key, samples).await?;

    let dropped = store.collection().drop().await;

    print_comparison(
        Labels {
            adapter: "MongoStore",
            direct: "mongodb driver, same command",
            ratio: "MongoStore / driver",
        },
        (a, d),
        0,
        GOAL,
    );
    dropped.map_err(|e| format!("drop the benchmark collection: {e}"))
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
    let uri = match std::env::var("MONGODB_URI") {
        Ok(uri) if !uri.is_empty() => uri,
        _ if std::env::var("KVSESSION_SKIP_MONGODB").as_deref() == Ok("1") => {
            eprintln!("store_latency: MONGODB_URI is not set; skipped (KVSESSION_SKIP_MONGODB=1)");
            return ExitCode::SUCCESS;
        }
        _ => {
            eprintln!(
                "store_latency: MONGODB_URI is not set; start a server with \
                 `eval \"$(bash scripts/mongodb-server.sh start STATE_DIR)\"` \
                 (or set KVSESSION_SKIP_MONGODB=1 to skip this benchmark)"
            );
            return ExitCode::FAILURE;
        }
    };
    block_on(args.name(), Runtime::CurrentThread, run(uri, samples))
}
