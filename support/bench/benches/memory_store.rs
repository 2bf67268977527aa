//! `MemoryStore` against the store it replaced (moka's LRU cache with
//! striped write locks): `get`, `put` (a compare-and-swap update) and
//! `create` latency (median and p99) of a 1 KiB session record, measured in
//! one run in alternating order, with the ratio new / old.
//!
//! `cargo bench -p rocket_kvsession_bench --bench memory_store [-- --samples N] [--fill N] [--capacity N]`
//!
//! * `--fill N`: other sessions in each store before measuring (default 5,000).
//! * `--capacity N`: both stores' capacity in records (default
//!   `MemoryStore::DEFAULT_MAX_ENTRIES`). Below `fill` + the samples, every
//!   `create` of the run evicts a record.
//! * `--profile OP --count N [--store new|moka]`: no timing; `N` calls of one
//!   operation (`get`, `update` (unconditional), `cas` (an update naming the
//!   version), `create`, `touch`, `delete`, or `-` for none) on a filled
//!   store (the new `MemoryStore` by default, `moka` for the one it
//!   replaced), for a profiler. `valgrind --tool=callgrind` of a run minus
//!   that of `--profile -` with the same `--count`, divided by `N`, is the
//!   instructions of one call.
//!
//! The baseline, `MokaStore` below, is the `MemoryStore` of before (moka
//! 0.12's sync cache with LRU eviction, per-entry expiry, and 64 striped
//! locks serializing each key's writes), kept here only to be measured
//! against.

use std::fmt;
use std::hash::BuildHasher;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use foldhash::fast::RandomState;
use futures::stream::{self, BoxStream, StreamExt};
use moka::policy::EvictionPolicy;
use moka::sync::Cache;
use moka::Expiry as CacheExpiry;
use rocket_kvsession::{
    Capabilities, CompareAndDelete, CreateOutcome, DeleteOutcome, Expiry, KeyInfo, KeyValueStore,
    MemoryStore, Record, StoreError, UpdateOutcome, Version,
};
use rocket_kvsession_bench::{
    block_on, compare, micros, percentile, record, ArgError, Args, Runtime, Side, StoreSide,
};

const USAGE: &str = "memory_store [--samples N (>= 100)] [--fill N] [--capacity N (>= 1)] \
                     [--profile get|update|cas|create|touch|delete|- [--count N] [--store new|moka]]";

/// The store's name in errors and logs.
const NAME: &str = "memory (moka)";

/// What one record is assumed to cost beyond its key and value bytes: the
/// cache's own bookkeeping (hash table slot, recency list and timer wheel
/// nodes, reference counts) and the record's version and times. An estimate,
/// so that many tiny records cannot fill far more memory than `max_bytes`.
const ENTRY_OVERHEAD: u64 = 256;

/// How many locks the writes are spread over, by the key's hash: writes to
/// one key wait for each other, writes to keys of different stripes do not.
const WRITE_STRIPES: usize = 64;

/// One stored record. Shared (`Arc`) so that a read clones a pointer, not
/// the value.
#[derive(Debug)]
struct Entry {
    value: Arc<[u8]>,
    /// Kept as the token it is handed out as, so a read clones a pointer.
    version: Version,
    expires_at: Option<SystemTime>,
    /// When the record was last written or touched: `KeyInfo::last_modified`.
    modified: SystemTime,
}

impl Entry {
    fn live(&self, now: SystemTime) -> bool {
        self.expires_at.is_none_or(|at| at > now)
    }

    /// How long the cache keeps the entry: until its expiry, or for ever.
    fn time_to_live(&self) -> Option<Duration> {
        self.expires_at.map(|at| {
            at.duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO)
        })
    }
}

/// Hands each entry's own expiry to the cache, which then drops it when it
/// expires (from a timer wheel, without scanning the other entries).
struct EntryExpiry;

impl CacheExpiry<String, Arc<Entry>> for EntryExpiry {
    fn expire_after_create(
        &self,
        _key: &String,
        entry: &Arc<Entry>,
        _created_at: Instant,
    ) -> Option<Duration> {
        entry.time_to_live()
    }

    fn expire_after_update(
        &self,
        _key: &String,
        entry: &Arc<Entry>,
        _updated_at: Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        entry.time_to_live()
    }
}

/// The two capacity limits, folded into one weight per entry.
///
/// Every entry weighs its bytes (key, value and [`ENTRY_OVERHEAD`]) but at
/// least `unit = max_bytes / max_entries` (at least 1), and the cache keeps
/// the total weight at or below `capacity = min(max_bytes, max_entries *
/// unit)`. So the bytes never exceed `max_bytes`, and since each entry weighs
/// at least `unit`, there are never more than `capacity / unit <=
/// max_entries` entries (exactly `max_entries` small ones fit).
#[derive(Debug, Clone, Copy)]
struct Limits {
    max_entries: u64,
    max_bytes: u64,
    /// The least weight of an entry (at most `u32::MAX`, the cache's weight type).
    unit: u64,
    /// The cache's total weight limit.
    capacity: u64,
}

impl Limits {
    fn new(max_entries: u64, max_bytes: u64) -> Self {
        assert!(max_entries > 0, "MokaStore: max_entries must be at least 1");
        assert!(max_bytes > 0, "MokaStore: max_bytes must be at least 1");
        let unit = (max_bytes / max_entries).clamp(1, u64::from(u32::MAX));
        let capacity = max_bytes.min(max_entries.saturating_mul(unit));
        Limits {
            max_entries,
            max_bytes,
            unit,
            capacity,
        }
    }

    /// The bytes a record is accounted for.
    fn bytes(key: &str, value: &[u8]) -> u64 {
        key.len() as u64 + value.len() as u64 + ENTRY_OVERHEAD
    }

    /// The weight of a record, if the store can hold it at all.
    fn weight(&self, key: &str, value: &[u8]) -> Option<u32> {
        let weight = Self::bytes(key, value).max(self.unit);
        if weight > self.capacity {
            return None;
        }
        u32::try_from(weight).ok()
    }

    fn too_large(&self, key: &str, value: &[u8]) -> StoreError {
        StoreError::misconfigured(
            NAME,
            format!(
                "a record of {} bytes does not fit in a store of {} bytes and {} entries; \
                 raise the limits with MokaStore::with_capacity",
                Self::bytes(key, value),
                self.max_bytes,
                self.max_entries,
            ),
        )
    }
}

/// The `MokaStore` of before, as it was.
#[derive(Clone)]
struct MokaStore {
    cache: Cache<String, Arc<Entry>, RandomState>,
    /// Serialize the writes of one key (see [`write`](Self::write)), chosen
    /// by the key's hash with `hasher`.
    stripes: Arc<[Mutex<()>]>,
    hasher: RandomState,
    versions: Arc<AtomicU64>,
    limits: Limits,
}

impl fmt::Debug for MokaStore {
    // Not derived: the cache's own `Debug` would print every session.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MokaStore")
            .field("max_entries", &self.limits.max_entries)
            .field("max_bytes", &self.limits.max_bytes)
            .field("entries", &self.cache.entry_count())
            .finish()
    }
}

impl MokaStore {
    /// An empty store that holds at most `max_entries` records and
    /// `max_bytes` bytes of keys and values (each record counted with an
    /// estimated 256 bytes of bookkeeping).
    ///
    /// A record larger than `max_bytes` cannot be stored: writing one fails
    /// with [`StoreError::Misconfigured`].
    ///
    /// # Panics
    ///
    /// If `max_entries` or `max_bytes` is zero.
    fn with_capacity(max_entries: u64, max_bytes: u64) -> Self {
        let limits = Limits::new(max_entries, max_bytes);
        let cache = Cache::builder()
            .name("memory_store bench baseline")
            .max_capacity(limits.capacity)
            .weigher(move |key: &String, entry: &Arc<Entry>| {
                limits.weight(key, &entry.value).unwrap_or(u32::MAX)
            })
            .expire_after(EntryExpiry)
            // Sessions are used by recency; TinyLFU, moka's default, could
            // refuse to admit a new session when the store is full.
            .eviction_policy(EvictionPolicy::lru())
            .build_with_hasher(RandomState::default());
        MokaStore {
            cache,
            stripes: (0..WRITE_STRIPES).map(|_| Mutex::new(())).collect(),
            hasher: RandomState::default(),
            versions: Arc::default(),
            limits,
        }
    }

    fn next_version(&self) -> Version {
        Version::from(self.versions.fetch_add(1, Ordering::Relaxed) + 1)
    }

    fn entry(
        &self,
        value: &[u8],
        version: Version,
        expires_at: Option<SystemTime>,
        now: SystemTime,
    ) -> Arc<Entry> {
        Arc::new(Entry {
            value: value.into(),
            version,
            expires_at,
            modified: now,
        })
    }

    /// Takes the write lock of `key` (one of [`WRITE_STRIPES`], by the key's
    /// hash). Every write holds it from its check of the record to its write
    /// of the cache, so that a delete can never fall between an update's
    /// check and its write. It is held only around calls of the cache,
    /// never across an `await`.
    fn lock(&self, key: &str) -> MutexGuard<'_, ()> {
        let stripe = self.hasher.hash_one(key) as usize % self.stripes.len();
        // The lock guards no data, so a panic while it was held cannot have
        // left anything half-written: a poisoned lock is as good as a clean one.
        self.stripes[stripe]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The live record under `key`, removing an expired one the cache still
    /// holds. Called with the key's [`lock`](Self::lock) held.
    fn current(&self, key: &str, now: SystemTime) -> Option<Arc<Entry>> {
        let entry = self.cache.get(key)?;
        if entry.live(now) {
            Some(entry)
        } else {
            self.cache.invalidate(key);
            None
        }
    }
}

#[async_trait]
impl KeyValueStore for MokaStore {
    fn name(&self) -> &'static str {
        NAME
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::new(Expiry::RemovedByBackend).with_compare_and_swap()
    }

    async fn get(&self, key: &str) -> Result<Option<Record>, StoreError> {
        let now = SystemTime::now();
        Ok(self
            .cache
            .get(key)
            .filter(|e| e.live(now))
            .map(|e| Record::new(e.value.to_vec(), Some(e.version.clone()), e.expires_at)))
    }

    async fn create(
        &self,
        key: &str,
        value: &[u8],
        expires_at: Option<SystemTime>,
    ) -> Result<CreateOutcome, StoreError> {
        if self.limits.weight(key, value).is_none() {
            return Err(self.limits.too_large(key, value));
        }
        let _lock = self.lock(key);
        let now = SystemTime::now();
        // `contains_key` is not a use of the record (a `get` is, and costs a
        // note in the cache's recency log): a new key, the usual case, is
        // created without one.
        if self.cache.contains_key(key) && self.current(key, now).is_some() {
            return Ok(CreateOutcome::AlreadyExists);
        }
        let version = self.next_version();
        let entry = self.entry(value, version.clone(), expires_at, now);
        self.cache.insert(key.to_owned(), entry);
        Ok(CreateOutcome::Created(Some(version)))
    }

    async fn update(
        &self,
        key: &str,
        value: &[u8],
        expected: Option<&Version>,
        expires_at: Option<SystemTime>,
    ) -> Result<UpdateOutcome, StoreError> {
        if self.limits.weight(key, value).is_none() {
            return Err(self.limits.too_large(key, value));
        }
        let _lock = self.lock(key);
        let now = SystemTime::now();
        let Some(current) = self.current(key, now) else {
            return Ok(UpdateOutcome::Missing);
        };
        if expected.is_some_and(|v| *v != current.version) {
            return Ok(UpdateOutcome::Conflict);
        }
        let version = self.next_version();
        let entry = self.entry(value, version.clone(), expires_at, now);
        self.cache.insert(key.to_owned(), entry);
        Ok(UpdateOutcome::Updated(Some(version)))
    }

    /// Moves the record's expiry and its last-modified time (what
    /// [`list`](KeyValueStore::list) reports, and the sweep reads as
    /// activity); keeps its value and version.
    async fn touch(&self, key: &str, expires_at: SystemTime) -> Result<UpdateOutcome, StoreError> {
        let _lock = self.lock(key);
        let now = SystemTime::now();
        let Some(current) = self.current(key, now) else {
            return Ok(UpdateOutcome::Missing);
        };
        let version = current.version.clone();
        let entry = Arc::new(Entry {
            value: Arc::clone(&current.value),
            version: version.clone(),
            expires_at: Some(expires_at),
            modified: now,
        });
        self.cache.insert(key.to_owned(), entry);
        Ok(UpdateOutcome::Updated(Some(version)))
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let _lock = self.lock(key);
        self.cache.invalidate(key);
        Ok(())
    }

    async fn delete_many(&self, keys: Vec<String>) -> Result<(), StoreError> {
        for key in &keys {
            let _lock = self.lock(key);
            self.cache.invalidate(key);
        }
        Ok(())
    }

    fn compare_and_delete(&self) -> Option<&dyn CompareAndDelete> {
        Some(self)
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxStream<'a, Result<KeyInfo, StoreError>> {
        // A snapshot of the matching keys (at most the store's capacity);
        // listing does not count as use for eviction.
        let now = SystemTime::now();
        let keys: Vec<KeyInfo> = self
            .cache
            .iter()
            .filter(|(k, e)| k.starts_with(prefix) && e.live(now))
            .map(|(k, e)| KeyInfo::new(k.as_str(), Some(e.modified)))
            .collect();
        stream::iter(keys.into_iter().map(Ok)).boxed()
    }
}

#[async_trait]
impl CompareAndDelete for MokaStore {
    async fn delete_if(&self, key: &str, expected: &Version) -> Result<DeleteOutcome, StoreError> {
        let _lock = self.lock(key);
        let Some(current) = self.current(key, SystemTime::now()) else {
            return Ok(DeleteOutcome::Missing);
        };
        if current.version != *expected {
            return Ok(DeleteOutcome::Conflict);
        }
        self.cache.invalidate(key);
        Ok(DeleteOutcome::Deleted)
    }
}

#[derive(Debug)]
struct Options {
    samples: usize,
    fill: u64,
    capacity: u64,
    profile: Option<String>,
    count: u64,
    moka: bool,
}

/// `count` calls of one operation on a filled store, untimed, for a
/// profiler. The keys are made before any call, in every mode, so that a run
/// of `-` (no calls) subtracts their cost too.
async fn profile<S: KeyValueStore>(store: S, options: &Options, op: &str) -> Result<(), String> {
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
        "update" | "cas" => {
            for _ in 0..options.count {
                let expected = if op == "cas" { version.as_ref() } else { None };
                match store.update(key, &value, expected, ttl()).await {
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
    let bytes = MemoryStore::DEFAULT_MAX_BYTES;
    if let Some(op) = &options.profile {
        return if options.moka {
            profile(
                MokaStore::with_capacity(options.capacity, bytes),
                &options,
                op,
            )
            .await
        } else {
            profile(
                MemoryStore::with_capacity(options.capacity, bytes),
                &options,
                op,
            )
            .await
        };
    }
    let (old_key, new_key) = ("0f0e3c2a9b8d7e6f_6745c1a0", "5f0e3c2a9b8d7e6f_6745c1a0");
    let store = MokaStore::with_capacity(options.capacity, bytes);
    let mut old = filled(store, "moka", options.fill, old_key).await?;
    let store = MemoryStore::with_capacity(options.capacity, bytes);
    let mut new = filled(store, "MemoryStore", options.fill, new_key).await?;
    let (old_samples, new_samples) =
        compare(&mut old, old_key, &mut new, new_key, options.samples).await?;

    println!(
        "MemoryStore (sharded S3-FIFO) against the moka store it replaced, capacity {} \
         records each; {} other sessions each",
        options.capacity, options.fill
    );
    println!();
    println!(
        "| operation | moka median µs | MemoryStore median µs | ratio | \
         moka p99 µs | MemoryStore p99 µs | samples |"
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
        moka: false,
    };
    while let Some(arg) = args.next_arg() {
        match arg.as_str() {
            "--samples" => options.samples = args.number("--samples", 100)? as usize,
            "--fill" => options.fill = args.number("--fill", 0)?,
            "--capacity" => options.capacity = args.number("--capacity", 1)?,
            "--profile" => options.profile = Some(args.value("--profile")?),
            "--count" => options.count = args.number("--count", 1)?,
            "--store" => match args.value("--store")?.as_str() {
                "new" => options.moka = false,
                "moka" => options.moka = true,
                _ => return Err(ArgError::Unknown("--store".into())),
            },
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
