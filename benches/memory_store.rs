//! `MemoryStore` against the unbounded `HashMap` store it replaced: `get`,
//! `put` and `create` latency (median and p99) of a 1 KiB session record,
//! measured in one run in alternating order, with the ratio new / old.
//!
//! `cargo bench --bench memory_store [-- --samples N] [--fill N] [--capacity N]`
//!
//! * `--fill N`: other sessions in each store before measuring (default 5,000).
//! * `--capacity N`: the `MemoryStore`'s capacity in records (default
//!   `MemoryStore::DEFAULT_MAX_ENTRIES`). Below `fill` + the samples, every
//!   `create` of the run evicts a record.
//! * `--profile OP --count N`: no timing; `N` calls of one `MemoryStore`
//!   operation (`get`, `update`, `create`, `touch`, `delete`, or `-` for none)
//!   on a filled store, for a profiler. `valgrind --tool=callgrind` of a run
//!   minus that of `--profile -` with the same `--count`, divided by `N`, is
//!   the instructions of one call.
//!
//! The baseline, `HashMapStore` below, is the `MemoryStore` of before the
//! capacity bound (one `Mutex<HashMap>`, a purge of expired records every
//! 4,096 writes), kept here only to be measured against.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use futures::stream::{self, BoxStream, StreamExt};
use rocket_kvsession::{
    Capabilities, CreateOutcome, Expiry, KeyInfo, KeyValueStore, MemoryStore, Record, StoreError,
    UpdateOutcome, Version,
};
use rocket_kvsession_bench::{
    block_on, compare, micros, percentile, record, ArgError, Args, Runtime, Side, StoreSide,
};

const USAGE: &str = "memory_store [--samples N (>= 100)] [--fill N] [--capacity N (>= 1)] \
                     [--profile get|update|create|touch|delete|- [--count N]]";

/// How many writes pass between two purges of expired entries.
const PURGE_EVERY: u64 = 4096;

#[derive(Debug)]
struct Entry {
    value: Arc<[u8]>,
    version: u64,
    expires_at: Option<SystemTime>,
    modified: SystemTime,
}

impl Entry {
    fn live(&self, now: SystemTime) -> bool {
        self.expires_at.is_none_or(|at| at > now)
    }
}

/// The unbounded store of before, as it was.
#[derive(Debug, Clone, Default)]
struct HashMapStore {
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    map: Mutex<HashMap<String, Entry>>,
    next_version: AtomicU64,
    writes: AtomicU64,
}

impl HashMapStore {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        self.shared.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn next_version(&self) -> u64 {
        self.shared.next_version.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn after_write(&self, map: &mut HashMap<String, Entry>, now: SystemTime) {
        let writes = self.shared.writes.fetch_add(1, Ordering::Relaxed) + 1;
        if writes.is_multiple_of(PURGE_EVERY) {
            map.retain(|_, e| e.live(now));
        }
    }
}

#[async_trait]
impl KeyValueStore for HashMapStore {
    fn name(&self) -> &'static str {
        "hashmap"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::new(Expiry::RemovedByBackend).with_compare_and_swap()
    }

    async fn get(&self, key: &str) -> Result<Option<Record>, StoreError> {
        let now = SystemTime::now();
        let mut map = self.lock();
        match map.get(key) {
            Some(e) if e.live(now) => Ok(Some(Record::new(
                e.value.to_vec(),
                Some(Version::from(e.version)),
                e.expires_at,
            ))),
            Some(_) => {
                map.remove(key);
                Ok(None)
            }
            None => Ok(None),
        }
    }

    async fn create(
        &self,
        key: &str,
        value: &[u8],
        expires_at: Option<SystemTime>,
    ) -> Result<CreateOutcome, StoreError> {
        let now = SystemTime::now();
        let mut map = self.lock();
        if map.get(key).is_some_and(|e| e.live(now)) {
            return Ok(CreateOutcome::AlreadyExists);
        }
        let version = self.next_version();
        map.insert(
            key.to_owned(),
            Entry {
                value: value.into(),
                version,
                expires_at,
                modified: now,
            },
        );
        self.after_write(&mut map, now);
        Ok(CreateOutcome::Created(Some(Version::from(version))))
    }

    async fn update(
        &self,
        key: &str,
        value: &[u8],
        expected: Option<&Version>,
        expires_at: Option<SystemTime>,
    ) -> Result<UpdateOutcome, StoreError> {
        let now = SystemTime::now();
        let mut map = self.lock();
        let Some(entry) = map.get_mut(key).filter(|e| e.live(now)) else {
            return Ok(UpdateOutcome::Missing);
        };
        if expected.is_some_and(|v| v.as_str().parse::<u64>() != Ok(entry.version)) {
            return Ok(UpdateOutcome::Conflict);
        }
        let version = self.next_version();
        *entry = Entry {
            value: value.into(),
            version,
            expires_at,
            modified: now,
        };
        self.after_write(&mut map, now);
        Ok(UpdateOutcome::Updated(Some(Version::from(version))))
    }

    /// As the trait's default `touch` of before: a read, then a
    /// compare-and-swap writing the value back.
    async fn touch(&self, key: &str, expires_at: SystemTime) -> Result<UpdateOutcome, StoreError> {
        let Some(record) = self.get(key).await? else {
            return Ok(UpdateOutcome::Missing);
        };
        self.update(
            key,
            &record.value,
            record.version.as_ref(),
            Some(expires_at),
        )
        .await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.lock().remove(key);
        Ok(())
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxStream<'a, Result<KeyInfo, StoreError>> {
        let now = SystemTime::now();
        let keys: Vec<KeyInfo> = self
            .lock()
            .iter()
            .filter(|(k, e)| k.starts_with(prefix) && e.live(now))
            .map(|(k, e)| KeyInfo::new(k.clone(), Some(e.modified)))
            .collect();
        stream::iter(keys.into_iter().map(Ok)).boxed()
    }
}

#[derive(Debug)]
struct Options {
    samples: usize,
    fill: u64,
    capacity: u64,
    profile: Option<String>,
    count: u64,
}

/// `count` calls of one operation on a filled `MemoryStore`, untimed, for a
/// profiler. The keys are made before any call, in every mode, so that a run
/// of `-` (no calls) subtracts their cost too.
async fn profile(options: &Options, op: &str) -> Result<(), String> {
    let store = MemoryStore::with_capacity(options.capacity, MemoryStore::DEFAULT_MAX_BYTES);
    let ttl = || Some(SystemTime::now() + Duration::from_secs(3600));
    let value = record(0);
    for i in 0..options.fill {
        let _ = store
            .create(&format!("other_{i:016x}"), &value, ttl())
            .await
            .map_err(|e| e.to_string())?;
    }
    let keys: Vec<String> = (0..options.count)
        .map(|i| format!("{i:016x}_6745c1a0"))
        .collect();
    let key = "5f0e3c2a9b8d7e6f_6745c1a0";
    let mut version = match store.create(key, &value, ttl()).await {
        Ok(CreateOutcome::Created(v)) => v,
        other => return Err(format!("create: {other:?}")),
    };
    let fail = |e: StoreError| e.to_string();
    match op {
        "-" => {}
        "get" => {
            for _ in 0..options.count {
                store.get(key).await.map_err(fail)?.ok_or("get: missing")?;
            }
        }
        "update" => {
            for _ in 0..options.count {
                match store.update(key, &value, version.as_ref(), ttl()).await {
                    Ok(UpdateOutcome::Updated(v)) => version = v,
                    other => return Err(format!("update: {other:?}")),
                }
            }
        }
        "create" => {
            for k in &keys {
                match store.create(k, &value, ttl()).await {
                    Ok(CreateOutcome::Created(_)) => {}
                    other => return Err(format!("create: {other:?}")),
                }
            }
        }
        "touch" => {
            for _ in 0..options.count {
                let at = SystemTime::now() + Duration::from_secs(3600);
                match store.touch(key, at).await {
                    Ok(UpdateOutcome::Updated(_)) => {}
                    other => return Err(format!("touch: {other:?}")),
                }
            }
        }
        "delete" => {
            for k in &keys {
                store.delete(k).await.map_err(fail)?;
            }
        }
        _ => return Err(format!("--profile: no operation named {op:?}")),
    }
    Ok(())
}

async fn filled<S: KeyValueStore>(
    store: S,
    label: &'static str,
    fill: u64,
    key: &str,
) -> Result<StoreSide<S>, String> {
    let mut side = StoreSide::new(store, label).with_ttl(Duration::from_secs(3600));
    for i in 0..fill {
        side.create(&format!("other_{i:016x}"), &record(i)).await?;
    }
    side.create(key, &record(0)).await?;
    side.get(key).await?;
    Ok(side)
}

async fn run(options: Options) -> Result<(), String> {
    if let Some(op) = &options.profile {
        return profile(&options, op).await;
    }
    let (old_key, new_key) = ("0f0e3c2a9b8d7e6f_6745c1a0", "5f0e3c2a9b8d7e6f_6745c1a0");
    let mut old = filled(HashMapStore::default(), "HashMap", options.fill, old_key).await?;
    let store = MemoryStore::with_capacity(options.capacity, MemoryStore::DEFAULT_MAX_BYTES);
    let mut new = filled(store, "MemoryStore", options.fill, new_key).await?;
    let (old_samples, new_samples) =
        compare(&mut old, old_key, &mut new, new_key, options.samples).await?;

    println!(
        "MemoryStore (moka, capacity {} records) against the HashMap store it replaced; \
         {} other sessions each",
        options.capacity, options.fill
    );
    println!();
    println!(
        "| operation | HashMap median µs | MemoryStore median µs | ratio | \
         HashMap p99 µs | MemoryStore p99 µs | samples |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (name, mut before, mut after) in [
        ("get", old_samples.get, new_samples.get),
        ("put (update, CAS)", old_samples.put, new_samples.put),
        ("create", old_samples.create, new_samples.create),
    ] {
        before.sort();
        after.sort();
        let (b, a) = (percentile(&before, 0.5), percentile(&after, 0.5));
        println!(
            "| {name} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {} |",
            micros(b),
            micros(a),
            micros(a) / micros(b),
            micros(percentile(&before, 0.99)),
            micros(percentile(&after, 0.99)),
            after.len()
        );
    }
    Ok(())
}

fn options(args: &mut Args) -> Result<Options, ArgError> {
    let mut options = Options {
        samples: 20_000,
        fill: 5_000,
        capacity: MemoryStore::DEFAULT_MAX_ENTRIES,
        profile: None,
        count: 1,
    };
    while let Some(arg) = args.next_arg() {
        match arg.as_str() {
            "--samples" => options.samples = args.number("--samples", 100)? as usize,
            "--fill" => options.fill = args.number("--fill", 0)?,
            "--capacity" => options.capacity = args.number("--capacity", 1)?,
            "--profile" => options.profile = Some(args.value("--profile")?),
            "--count" => options.count = args.number("--count", 1)?,
            _ => return Err(ArgError::Unknown(arg)),
        }
    }
    Ok(options)
}

fn main() -> ExitCode {
    let Some(mut args) = Args::bench("memory_store") else {
        return ExitCode::SUCCESS;
    };
    match options(&mut args) {
        Ok(options) => block_on(args.name(), Runtime::CurrentThread, run(options)),
        Err(e) => args.usage_error(&e, USAGE),
    }
}
