//! Store round trips of `RedisStore`, side by side with the same commands
//! sent directly with the `redis` crate to the same server, so the ratio
//! shows what the adapter adds to a round trip. By hand:
//!
//! ```sh
//! eval "$(bash scripts/redis-server.sh start /tmp/redis-bench)"
//! cargo bench -p rocket_kvsession_redis --bench store_latency -- --samples 5000
//! bash scripts/redis-server.sh stop /tmp/redis-bench
//! ```
//!
//! It needs `REDIS_URL` and fails without it, unless
//! `KVSESSION_SKIP_REDIS=1` says to skip it. Each sample does, on a 1 KiB
//! session record, a `get`, a `put` (an `update` with the expected version
//! and a new expiry: what saving an existing session does) and a `create`
//! (a new session), once through the adapter and once directly, in
//! alternating order. The direct side sends the same commands: `GET`,
//! `EVALSHA` of the store's own compare-and-swap script (its Lua text,
//! from the crate's hidden `__bench` module, loaded with `SCRIPT LOAD`), and
//! `SET ... NX PXAT`, with the same record header, over its own
//! `ConnectionManager`. It prints
//! a markdown table: median and p99 per operation, and the adapter/direct
//! ratio of the medians (goal: at most 1.05). The keys it wrote are
//! deleted at the end.

use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rocket_kvsession::KeyValueStore;
use rocket_kvsession_bench::{
    block_on, compare, print_comparison, ArgError, Args, Labels, Runtime, Side, StoreSide,
};
use rocket_kvsession_redis::__bench::UPDATE_SCRIPT;
use rocket_kvsession_redis::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use rocket_kvsession_redis::redis::{self, Value};
use rocket_kvsession_redis::{RedisStore, DEFAULT_TIMEOUT};

/// The ratio goal: the adapter adds at most 5% to a round trip.
const GOAL: f64 = 1.05;

const USAGE: &str = "store_latency [--samples N (>= 100)]";

/// How long the records written live: both sides write the same expiry.
const TTL: Duration = Duration::from_secs(3600);

fn expiry_ms() -> u64 {
    (SystemTime::now() + TTL)
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(1)
}

/// The record layout of the store: format, version, expiry, value.
fn record(version: u64, expires_ms: u64, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(17 + value.len());
    out.push(1);
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(&expires_ms.to_be_bytes());
    out.extend_from_slice(value);
    out
}

/// The same commands as the adapter, sent with the `redis` crate.
struct Direct {
    conn: ConnectionManager,
    sha1: String,
    version: u64,
    next_version: u64,
}

impl Side for Direct {
    async fn get(&mut self, key: &str) -> Result<Vec<u8>, String> {
        let bytes: Option<Vec<u8>> = redis::cmd("GET")
            .arg(key)
            .query_async(&mut self.conn)
            .await
            .map_err(|e| format!("direct GET: {e}"))?;
        let mut bytes = bytes.ok_or("direct GET: record missing")?;
        if bytes.len() < 17 {
            return Err("direct GET: no record header".into());
        }
        self.version = u64::from_be_bytes(bytes[1..9].try_into().expect("8 bytes"));
        bytes.drain(..17);
        Ok(bytes)
    }

    async fn put(&mut self, key: &str, value: &[u8]) -> Result<(), String> {
        self.next_version += 1;
        let expires = expiry_ms();
        let mut expected = vec![1u8];
        expected.extend_from_slice(&self.version.to_be_bytes());
        let outcome: i64 = redis::cmd("EVALSHA")
            .arg(&self.sha1)
            .arg(1)
            .arg(key)
            .arg(expected)
            .arg(record(self.next_version, expires, value))
            .arg(expires.to_string())
            .query_async(&mut self.conn)
            .await
            .map_err(|e| format!("direct EVALSHA: {e}"))?;
        if outcome != 1 {
            return Err(format!("direct EVALSHA: outcome {outcome}"));
        }
        self.version = self.next_version;
        Ok(())
    }

    async fn create(&mut self, key: &str, value: &[u8]) -> Result<(), String> {
        self.next_version += 1;
        let expires = expiry_ms();
        let reply: Value = redis::cmd("SET")
            .arg(key)
            .arg(record(self.next_version, expires, value))
            .arg("NX")
            .arg("PXAT")
            .arg(expires)
            .query_async(&mut self.conn)
            .await
            .map_err(|e| format!("direct SET NX: {e}"))?;
        match reply {
            Value::Okay => Ok(()),
            other => Err(format!("direct SET NX: {other:?}")),
        }
    }
}

/// The keys `compare` creates for `samples` samples: `a{i:015x}_6745c1a0`
/// and `d{i:015x}_6745c1a0`, warm-up included.
fn created_keys(samples: usize) -> Vec<String> {
    let rounds = (samples / 10).max(10) + samples;
    (0..rounds)
        .flat_map(|i| [format!("a{i:015x}_6745c1a0"), format!("d{i:015x}_6745c1a0")])
        .collect()
}

async fn run(url: String, samples: usize) -> Result<(), String> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    // The two keys both sides rewrite, under a prefix of this run.
    let prefix = format!("bench-{:x}-{nanos:x}-", std::process::id());
    let store = RedisStore::connect(&url)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let client = redis::Client::open(url.as_str()).map_err(|e| format!("url: {e}"))?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(DEFAULT_TIMEOUT))
        .set_response_timeout(Some(DEFAULT_TIMEOUT));
    let mut conn = ConnectionManager::new_with_config(client, config)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let sha1: String = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(UPDATE_SCRIPT)
        .query_async(&mut conn)
        .await
        .map_err(|e| format!("SCRIPT LOAD: {e}"))?;

    let mut adapter = StoreSide::new(store.clone(), "adapter").with_ttl(TTL);
    let mut direct = Direct {
        conn,
        sha1,
        version: 0,
        next_version: 0,
    };
    let adapter_key = format!("{prefix}a5f0e3c2a9b8d7e6_6745c1a0");
    let direct_key = format!("{prefix}d5f0e3c2a9b8d7e6_6745c1a0");
    // The new keys `compare` creates (it names them itself, without a
    // prefix) may be left over from an interrupted run.
    store
        .delete_many(created_keys(samples))
        .await
        .map_err(|e| format!("delete leftover keys: {e}"))?;
    let first = rocket_kvsession_bench::record(0);
    adapter.create(&adapter_key, &first).await?;
    direct.create(&direct_key, &first).await?;
    adapter.get(&adapter_key).await?;
    direct.get(&direct_key).await?;

    let (a, d) = compare(
        &mut adapter,
        &adapter_key,
        &mut direct,
        &direct_key,
        samples,
    )
    .await?;

    let mut keys = created_keys(samples);
    keys.extend([adapter_key, direct_key]);
    store
        .delete_many(keys)
        .await
        .map_err(|e| format!("delete the benchmark keys: {e}"))?;

    print_comparison(
        Labels {
            adapter: "RedisStore",
            direct: "redis crate, same commands",
            ratio: "RedisStore / redis crate",
        },
        (a, d),
        1,
        GOAL,
    );
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
    let url = match std::env::var("REDIS_URL") {
        Ok(url) if !url.is_empty() => url,
        _ if std::env::var("KVSESSION_SKIP_REDIS").as_deref() == Ok("1") => {
            eprintln!("store_latency: REDIS_URL is not set; skipped (KVSESSION_SKIP_REDIS=1)");
            return ExitCode::SUCCESS;
        }
        _ => {
            eprintln!(
                "store_latency: REDIS_URL is not set; start a server with \
                 `eval \"$(bash scripts/redis-server.sh start STATE_DIR)\"` \
                 (or set KVSESSION_SKIP_REDIS=1 to skip this benchmark)"
            );
            return ExitCode::FAILURE;
        }
    };
    block_on(args.name(), Runtime::CurrentThread, run(url, samples))
}
