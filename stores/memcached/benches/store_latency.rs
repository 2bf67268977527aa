//! Store round trips of `MemcachedStore`, side by side with the same
//! commands sent directly with the client crate (`memcache::exp`) to the
//! same server, so the ratio shows what the adapter adds to a round trip.
//! By hand:
//!
//! ```sh
//! eval "$(bash scripts/memcached-server.sh start /tmp/memcached-bench)"
//! cargo bench -p rocket_kvsession_memcached --bench store_latency -- --samples 5000
//! bash scripts/memcached-server.sh stop /tmp/memcached-bench
//! ```
//!
//! It needs `MEMCACHED_URL` and fails without it, unless
//! `KVSESSION_SKIP_MEMCACHED=1` says to skip it. Each sample does, on a
//! 1 KiB session record, a `get`, a `put` (an `update` with the expected
//! version and a new expiry: what saving an existing session does) and a
//! `create` (a new session), once through the adapter and once directly,
//! in alternating order. The direct side sends the same commands (`mg key v
//! f c`, `ms key S T C<cas> c`, `ms key S T ME c`) with the same 9-byte
//! record header, over a client of its own configured like the store's. It
//! prints a markdown table: median and p99 per operation, and the
//! adapter/direct ratio of the medians (goal: at most 1.05). The keys it
//! wrote are deleted at the end.

use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rocket_kvsession::KeyValueStore;
use rocket_kvsession_bench::{
    block_on, compare, print_comparison, ArgError, Args, Labels, Runtime, Side, StoreSide,
};
use rocket_kvsession_memcached::memcache::exp::{
    AsyncMetaClient, Get, GetStatus, Meta, MutationStatus, Set,
};
use rocket_kvsession_memcached::{MemcachedStore, DEFAULT_POOL_SIZE, DEFAULT_TIMEOUT};

/// The ratio goal: the adapter adds at most 5% to a round trip.
const GOAL: f64 = 1.05;

const USAGE: &str = "store_latency [--samples N (>= 100)]";

/// How long the records written live: both sides write the same expiry.
const TTL: Duration = Duration::from_secs(3600);

/// The record layout of the store: format, expiry in Unix milliseconds,
/// value.
fn record(expires: SystemTime, value: &[u8]) -> Vec<u8> {
    let ms = expires
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64;
    let mut out = Vec::with_capacity(9 + value.len());
    out.push(1);
    out.extend_from_slice(&ms.to_be_bytes());
    out.extend_from_slice(value);
    out
}

/// memcached's expiry token for `TTL` from now: seconds, plus the store's
/// second of grace.
fn ttl_token() -> u32 {
    TTL.as_secs() as u32 + 1
}

/// The same commands as the adapter, sent with the client crate.
struct Direct {
    client: AsyncMetaClient,
    cas: u64,
}

impl Side for Direct {
    async fn get(&mut self, key: &str) -> Result<Vec<u8>, String> {
        let get = Get::new(key).meta(Meta::default().cas());
        let result = self
            .client
            .run(get)
            .await
            .map_err(|e| format!("direct mg: {e}"))?;
        if result.status != GetStatus::Hit {
            return Err("direct mg: record missing".into());
        }
        let mut value = result.value.ok_or("direct mg: no value")?;
        if value.len() < 9 {
            return Err("direct mg: no record header".into());
        }
        self.cas = result.item.cas.ok_or("direct mg: no CAS value")?;
        value.drain(..9);
        Ok(value)
    }

    async fn put(&mut self, key: &str, value: &[u8]) -> Result<(), String> {
        let stored = record(SystemTime::now() + TTL, value);
        let set = Set::new(key, &stored)
            .return_cas()
            .ttl_raw(ttl_token())
            .compare_cas(self.cas);
        let result = self
            .client
            .run(set)
            .await
            .map_err(|e| format!("direct ms C: {e}"))?;
        if result.status != MutationStatus::Applied {
            return Err(format!("direct ms C: {:?}", result.status));
        }
        self.cas = result.cas.ok_or("direct ms C: no CAS value")?;
        Ok(())
    }

    async fn create(&mut self, key: &str, value: &[u8]) -> Result<(), String> {
        let stored = record(SystemTime::now() + TTL, value);
        let set = Set::new(key, &stored)
            .return_cas()
            .ttl_raw(ttl_token())
            .add();
        let result = self
            .client
            .run(set)
            .await
            .map_err(|e| format!("direct ms ME: {e}"))?;
        match result.status {
            MutationStatus::Applied => Ok(()),
            other => Err(format!("direct ms ME: {other:?}")),
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
    let store = MemcachedStore::connect(&url)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let client = AsyncMetaClient::builder()
        .connect_timeout(Some(DEFAULT_TIMEOUT))
        .io_timeout(Some(DEFAULT_TIMEOUT))
        .max_connections(Some(DEFAULT_POOL_SIZE))
        .max_idle(DEFAULT_POOL_SIZE)
        .connect_multiple_async(store.servers().iter().map(String::as_str))
        .await
        .map_err(|e| format!("connect: {e}"))?;

    let mut adapter = StoreSide::new(store.clone(), "adapter").with_ttl(TTL);
    let mut direct = Direct { client, cas: 0 };
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
            adapter: "MemcachedStore",
            direct: "memcache crate, same commands",
            ratio: "MemcachedStore / memcache crate",
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
    let url = match std::env::var("MEMCACHED_URL") {
        Ok(url) if !url.is_empty() => url,
        _ if std::env::var("KVSESSION_SKIP_MEMCACHED").as_deref() == Ok("1") => {
            eprintln!(
                "store_latency: MEMCACHED_URL is not set; skipped (KVSESSION_SKIP_MEMCACHED=1)"
            );
            return ExitCode::SUCCESS;
        }
        _ => {
            eprintln!(
                "store_latency: MEMCACHED_URL is not set; start a server with \
                 `eval \"$(bash scripts/memcached-server.sh start STATE_DIR)\"` \
                 (or set KVSESSION_SKIP_MEMCACHED=1 to skip this benchmark)"
            );
            return ExitCode::FAILURE;
        }
    };
    block_on(args.name(), Runtime::CurrentThread, run(url, samples))
}
