//! [`MemoryStore`]: the embedded, in-process store.

use std::fmt;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use foldhash::fast::RandomState;
use futures_util::stream::{self, BoxStream, StreamExt};
use moka::policy::EvictionPolicy;
use moka::sync::Cache;
use moka::Expiry as CacheExpiry;

use crate::error::StoreError;
use crate::store::{
    Capabilities, CompareAndDelete, CreateOutcome, DeleteOutcome, Expiry, KeyInfo, KeyValueStore,
    Record, UpdateOutcome, Version,
};

/// The store's name in errors and logs.
const NAME: &str = "memory";

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
        assert!(
            max_entries > 0,
            "MemoryStore: max_entries must be at least 1"
        );
        assert!(max_bytes > 0, "MemoryStore: max_bytes must be at least 1");
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
                 raise the limits with MemoryStore::with_capacity",
                Self::bytes(key, value),
                self.max_bytes,
                self.max_entries,
            ),
        )
    }
}

/// An in-process, TTL-capable store: the embedded default.
///
/// Cheap to clone; clones share the same data. It supports compare-and-swap
/// updates. Data is lost when the process exits: use it for development,
/// tests and single-process apps.
///
/// # Capacity
///
/// The store is bounded in entries and in bytes: [`new`](Self::new) holds at
/// most [`DEFAULT_MAX_ENTRIES`](Self::DEFAULT_MAX_ENTRIES) records and
/// [`DEFAULT_MAX_BYTES`](Self::DEFAULT_MAX_BYTES) of keys and values (plus
/// an estimated 256 bytes of bookkeeping per record);
/// [`with_capacity`](Self::with_capacity) sets other limits. When a write
/// would go over either limit, the least recently used records (read or
/// written longest ago) are evicted: their sessions end as if they had
/// expired. A new session is always admitted.
///
/// The bound matters because every request without a cookie that writes to
/// its session creates a record: without it a client could grow the
/// process's memory without limit. With it, such a flood costs at most the
/// store's capacity, but it does push out the sessions idle the longest. For
/// more sessions than fit in memory, or sessions that must survive a
/// restart or a flood, use a persistent store.
///
/// Eviction and the removal of expired records run in small batches on the
/// tasks that use the store (after 64 reads or writes, or on the first use
/// after 0.3 s), never as a scan of the whole store; other tasks go on
/// reading and writing while a batch runs. A burst of writes may go over the
/// limits by a few hundred records until the next batch.
///
/// # Concurrency
///
/// No operation awaits anything: each runs to its end on the calling task.
/// The writes of one key are serialized by a lock shared with the keys of the
/// same stripe (one of 64, by the key's hash), held from the write's check
/// of the record to its write of the cache. A write to another key of the
/// stripe waits for it, its thread blocked for as long as one cache write
/// takes (with, now and then, the batch above). Reads take no lock.
///
/// # Expiry
///
/// Each record expires at the time it was written with; an expired record is
/// never returned, and its memory is reclaimed without anybody reading it.
///
/// ```
/// use rocket_kvsession::{KvSession, MemoryStore};
///
/// // At most 10,000 sessions and 32 MiB.
/// let store = MemoryStore::with_capacity(10_000, 32 << 20);
/// let rocket = rocket::build().attach(KvSession::new(store));
/// # let _ = rocket;
/// ```
#[derive(Clone)]
pub struct MemoryStore {
    cache: Cache<String, Arc<Entry>, RandomState>,
    /// Serialize the writes of one key (see [`write`](Self::write)), chosen
    /// by the key's hash with `hasher`.
    stripes: Arc<[Mutex<()>]>,
    hasher: RandomState,
    versions: Arc<AtomicU64>,
    limits: Limits,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MemoryStore {
    // Not derived: the cache's own `Debug` would print every session.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("max_entries", &self.limits.max_entries)
            .field("max_bytes", &self.limits.max_bytes)
            .field("entries", &self.cache.entry_count())
            .finish()
    }
}

impl MemoryStore {
    /// The default capacity in records: 100,000.
    ///
    /// Far more sessions than an app that keeps them in one process has
    /// active at once, while a flood of new sessions stays bounded.
    pub const DEFAULT_MAX_ENTRIES: u64 = 100_000;

    /// The default capacity in bytes: 256 MiB.
    ///
    /// Room for the default number of records at about 2.6 KiB each, several
    /// times a typical session record (an id, a user, a token or two), and a
    /// footprint that fits in a small container.
    pub const DEFAULT_MAX_BYTES: u64 = 256 << 20;

    /// An empty store with the default capacity
    /// ([`DEFAULT_MAX_ENTRIES`](Self::DEFAULT_MAX_ENTRIES) records,
    /// [`DEFAULT_MAX_BYTES`](Self::DEFAULT_MAX_BYTES)).
    pub fn new() -> Self {
        Self::with_capacity(Self::DEFAULT_MAX_ENTRIES, Self::DEFAULT_MAX_BYTES)
    }

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
    pub fn with_capacity(max_entries: u64, max_bytes: u64) -> Self {
        let limits = Limits::new(max_entries, max_bytes);
        let cache = Cache::builder()
            .name("rocket_kvsession::MemoryStore")
            .max_capacity(limits.capacity)
            .weigher(move |key: &String, entry: &Arc<Entry>| {
                limits.weight(key, &entry.value).unwrap_or(u32::MAX)
            })
            .expire_after(EntryExpiry)
            // Sessions are used by recency; TinyLFU, moka's default, could
            // refuse to admit a new session when the store is full.
            .eviction_policy(EvictionPolicy::lru())
            .build_with_hasher(RandomState::default());
        MemoryStore {
            cache,
            stripes: (0..WRITE_STRIPES).map(|_| Mutex::new(())).collect(),
            hasher: RandomState::default(),
            versions: Arc::default(),
            limits,
        }
    }

    /// The most records the store holds.
    pub fn max_entries(&self) -> u64 {
        self.limits.max_entries
    }

    /// The most bytes of keys and values (with the per-record estimate) the
    /// store holds.
    pub fn max_bytes(&self) -> u64 {
        self.limits.max_bytes
    }

    /// How many live (unexpired) records the store holds.
    ///
    /// Counts them one by one, so it takes time in proportion to the number
    /// of records; meant for tests and diagnostics.
    pub fn len(&self) -> usize {
        let now = SystemTime::now();
        self.cache.iter().filter(|(_, e)| e.live(now)).count()
    }

    /// Whether the store holds no live record.
    pub fn is_empty(&self) -> bool {
        let now = SystemTime::now();
        !self.cache.iter().any(|(_, e)| e.live(now))
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
impl KeyValueStore for MemoryStore {
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
impl CompareAndDelete for MemoryStore {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance;

    macro_rules! case_tests {
        ($($case:ident),+ $(,)?) => {$(
            #[tokio::test]
            async fn $case() {
                conformance::$case(&MemoryStore::new()).await;
            }
        )+};
    }

    crate::conformance_cases!(case_tests);

    macro_rules! app_tests {
        ($($case:ident),+ $(,)?) => {$(
            #[rocket::async_test]
            async fn $case() {
                conformance::app::$case(std::sync::Arc::new(MemoryStore::new())).await;
            }
        )+};
    }

    mod app {
        use super::*;
        crate::app_conformance_cases!(app_tests);
    }

    #[tokio::test]
    async fn whole_suite_on_one_store() {
        conformance::run_all(&MemoryStore::new()).await;
    }

    /// What the store holds once its pending maintenance has run: the number
    /// of records and the bytes of their keys and values.
    async fn held(store: &MemoryStore) -> (u64, u64) {
        store.cache.run_pending_tasks();
        store.cache.iter().fold((0, 0), |(n, bytes), (k, e)| {
            (n + 1, bytes + k.len() as u64 + e.value.len() as u64)
        })
    }

    fn session_key(n: u64) -> String {
        format!("{n:016x}_{:x}", 1_700_000_000u64)
    }

    fn in_an_hour() -> Option<SystemTime> {
        Some(SystemTime::now() + Duration::from_secs(3600))
    }

    async fn create(store: &MemoryStore, key: &str, value: &[u8]) -> Version {
        match store.create(key, value, in_an_hour()).await {
            Ok(CreateOutcome::Created(Some(v))) => v,
            other => panic!("create {key}: {other:?}"),
        }
    }

    #[tokio::test]
    async fn clones_share_data() {
        let a = MemoryStore::new();
        let b = a.clone();
        let _ = a.create("k", b"v", None).await.unwrap();
        assert_eq!(b.get("k").await.unwrap().unwrap().value, b"v");
        assert_eq!(b.len(), 1);
        assert!(!b.is_empty());
        b.delete("k").await.unwrap();
        assert!(a.is_empty());
    }

    #[tokio::test]
    async fn default_capacity() {
        let store = MemoryStore::default();
        assert_eq!(store.max_entries(), 100_000);
        assert_eq!(store.max_bytes(), 256 << 20);
        let limits = store.limits;
        assert!(limits.capacity <= limits.max_bytes);
        assert!(limits.capacity / limits.unit <= limits.max_entries);
        // Debug shows the limits, not the sessions.
        let _ = store.create("secret-key", b"secret-value", None).await;
        let debug = format!("{store:?}");
        assert!(debug.contains("max_entries: 100000"), "{debug}");
        assert!(!debug.contains("secret"), "{debug}");
    }

    #[test]
    fn limits_imply_both_bounds() {
        for (entries, bytes) in [
            (100_000, 256 << 20),
            (3, 10),
            (7, 1000),
            (1, u64::MAX),
            (u64::MAX, 1),
            (1000, 1 << 40),
        ] {
            let limits = Limits::new(entries, bytes);
            assert!(limits.capacity <= bytes, "{limits:?}");
            assert!(limits.capacity / limits.unit <= entries, "{limits:?}");
            assert!(limits.unit <= u64::from(u32::MAX), "{limits:?}");
        }
        // Exactly `max_entries` small records fit.
        let limits = Limits::new(10, 1 << 20);
        assert_eq!(limits.capacity / limits.unit, 10);
    }

    #[test]
    #[should_panic(expected = "max_entries")]
    fn zero_entries_is_refused() {
        let _ = MemoryStore::with_capacity(0, 1 << 20);
    }

    #[tokio::test]
    async fn two_hundred_thousand_sessions_stay_within_the_default_capacity() {
        let store = MemoryStore::new();
        // About the size of a small session record (an envelope with a user).
        let value = [7u8; 120];
        for n in 0..200_000 {
            create(&store, &session_key(n), &value).await;
        }
        let (entries, bytes) = held(&store).await;
        assert!(entries <= MemoryStore::DEFAULT_MAX_ENTRIES, "{entries}");
        assert!(
            entries >= MemoryStore::DEFAULT_MAX_ENTRIES * 9 / 10,
            "{entries}"
        );
        assert!(bytes <= MemoryStore::DEFAULT_MAX_BYTES, "{bytes}");
        assert_eq!(store.len() as u64, entries);
        // The newest sessions are the ones kept.
        assert!(store.get(&session_key(199_999)).await.unwrap().is_some());
        assert!(store.get(&session_key(0)).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn large_records_are_bounded_by_bytes() {
        let store = MemoryStore::with_capacity(100_000, 1 << 20);
        let value = vec![1u8; 4096];
        for n in 0..2_000 {
            create(&store, &session_key(n), &value).await;
        }
        let (entries, bytes) = held(&store).await;
        assert!(bytes <= 1 << 20, "{bytes}");
        assert!(entries <= (1 << 20) / 4096, "{entries}");
        assert!(entries >= 100, "{entries}");
        assert!(store.get(&session_key(1_999)).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn a_record_larger_than_the_store_is_refused() {
        let store = MemoryStore::with_capacity(10, 4096);
        let huge = vec![0u8; 8192];
        let err = store.create("k_1", &huge, None).await.unwrap_err();
        assert!(matches!(err, StoreError::Misconfigured { .. }), "{err:?}");
        assert!(err.to_string().contains("with_capacity"), "{err}");
        assert!(store.get("k_1").await.unwrap().is_none());
        create(&store, "k_1", b"small").await;
        let err = store.update("k_1", &huge, None, None).await.unwrap_err();
        assert!(matches!(err, StoreError::Misconfigured { .. }), "{err:?}");
        assert_eq!(store.get("k_1").await.unwrap().unwrap().value, b"small");
    }

    #[tokio::test]
    async fn twenty_thousand_cookieless_requests_stay_within_capacity() {
        use conformance::app;
        use rocket::http::Status;

        let store = MemoryStore::with_capacity(1_000, 1 << 20);
        let config = app::config("memory-flood");
        let prefix = config.key_prefix.clone();
        let client = app::untracked(Arc::new(store.clone()), config).await;
        let mut last = None;
        for _ in 0..20_000 {
            let res = client.post("/set/a/1").dispatch().await;
            assert_eq!(res.status(), Status::Ok);
            last = res.cookies().get("session").map(|c| c.clone().into_owned());
        }
        let (entries, bytes) = held(&store).await;
        assert!(entries <= 1_000, "{entries}");
        assert!(entries >= 500, "{entries}");
        assert!(bytes <= 1 << 20, "{bytes}");
        assert_eq!(
            app::stored_keys(&store, &prefix).await.len() as u64,
            entries
        );
        // The newest session still works.
        let res = client
            .get("/get/a")
            .cookie(last.expect("a session cookie"))
            .dispatch()
            .await;
        assert_eq!(res.status(), Status::Ok);
        assert_eq!(res.into_string().await.as_deref(), Some("1"));
    }

    #[tokio::test]
    async fn eviction_drops_the_least_recently_used() {
        let store = MemoryStore::with_capacity(10, 1 << 20);
        for n in 0..10 {
            create(&store, &session_key(n), b"v").await;
        }
        held(&store).await;
        // Session 0 is the oldest written, but read since; 1 is the oldest used.
        assert!(store.get(&session_key(0)).await.unwrap().is_some());
        held(&store).await;
        create(&store, &session_key(10), b"v").await;
        let (entries, _) = held(&store).await;
        assert_eq!(entries, 10);
        assert!(store.get(&session_key(0)).await.unwrap().is_some());
        assert!(store.get(&session_key(1)).await.unwrap().is_none());
        assert!(store.get(&session_key(10)).await.unwrap().is_some());
        // A write counts as use too.
        held(&store).await;
        let _ = store
            .update(&session_key(2), b"w", None, in_an_hour())
            .await
            .unwrap();
        held(&store).await;
        create(&store, &session_key(11), b"v").await;
        held(&store).await;
        assert!(store.get(&session_key(2)).await.unwrap().is_some());
        assert!(store.get(&session_key(3)).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn touch_moves_last_modified_and_expiry_and_keeps_the_version() {
        let store = MemoryStore::new();
        let key = session_key(1);
        let version = create(&store, &key, b"v").await;
        let modified = |store: &MemoryStore| {
            let now = SystemTime::now();
            let infos: Vec<KeyInfo> = store
                .cache
                .iter()
                .filter(|(_, e)| e.live(now))
                .map(|(k, e)| KeyInfo::new(k.as_str(), Some(e.modified)))
                .collect();
            infos[0].last_modified.expect("a last-modified time")
        };
        let before = modified(&store);
        tokio::time::sleep(Duration::from_millis(20)).await;
        let later = SystemTime::now() + Duration::from_secs(7200);
        let outcome = store.touch(&key, later).await.unwrap();
        assert_eq!(outcome, UpdateOutcome::Updated(Some(version.clone())));
        let after = modified(&store);
        assert!(
            after >= before + Duration::from_millis(20),
            "{before:?} -> {after:?}"
        );
        // What `list` reports is what moved.
        let listed: Vec<KeyInfo> = store.list("").map(|r| r.unwrap()).collect::<Vec<_>>().await;
        assert_eq!(listed, vec![KeyInfo::new(key.clone(), Some(after))]);
        let record = store.get(&key).await.unwrap().unwrap();
        assert_eq!(record.version, Some(version.clone()));
        assert_eq!(record.expires_at, Some(later));
        assert_eq!(record.value, b"v");
        // The version it kept still wins a compare-and-swap.
        let outcome = store
            .update(&key, b"w", Some(&version), in_an_hour())
            .await
            .unwrap();
        assert!(matches!(outcome, UpdateOutcome::Updated(_)), "{outcome:?}");
    }

    #[tokio::test]
    async fn expired_entries_are_invisible_and_reclaimed() {
        let store = MemoryStore::new();
        let soon = SystemTime::now() + Duration::from_millis(100);
        let _ = store.create("old", b"v", Some(soon)).await.unwrap();
        let past = SystemTime::now() - Duration::from_secs(1);
        let _ = store.create("older", b"v", Some(past)).await.unwrap();
        let _ = store.create("kept", b"v", in_an_hour()).await.unwrap();
        assert!(store.get("old").await.unwrap().is_some());
        assert!(store.get("older").await.unwrap().is_none());
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(store.get("old").await.unwrap(), None);
        assert_eq!(store.len(), 1);
        let listed: Vec<String> = store
            .list("")
            .map(|r| r.unwrap().key)
            .collect::<Vec<_>>()
            .await;
        assert_eq!(listed, vec!["kept".to_owned()]);
        assert_eq!(
            store.touch("old", SystemTime::now()).await.unwrap(),
            UpdateOutcome::Missing
        );
        assert_eq!(
            store.update("old", b"w", None, None).await.unwrap(),
            UpdateOutcome::Missing
        );
        // Nobody reads them, yet their memory is reclaimed.
        let (entries, _) = held(&store).await;
        assert_eq!(entries, 1);
        // And their keys are free again.
        create(&store, "old", b"new").await;
        assert_eq!(store.get("old").await.unwrap().unwrap().value, b"new");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn of_parallel_creates_and_updates_of_one_key_exactly_one_wins() {
        let store = MemoryStore::new();
        for round in 0..100 {
            let key = session_key(round);
            let creates: Vec<_> = (0..8u8)
                .map(|n| {
                    let (store, key) = (store.clone(), key.clone());
                    tokio::spawn(async move { store.create(&key, &[n], in_an_hour()).await })
                })
                .collect();
            let mut created = Vec::new();
            for task in creates {
                if let CreateOutcome::Created(Some(v)) = task.await.unwrap().unwrap() {
                    created.push(v);
                }
            }
            assert_eq!(created.len(), 1, "round {round}");
            let version = created.pop().unwrap();
            let updates: Vec<_> = (0..8u8)
                .map(|n| {
                    let (store, key, version) = (store.clone(), key.clone(), version.clone());
                    tokio::spawn(async move {
                        store.update(&key, &[n], Some(&version), in_an_hour()).await
                    })
                })
                .collect();
            let mut won = Vec::new();
            for task in updates {
                match task.await.unwrap().unwrap() {
                    UpdateOutcome::Updated(Some(v)) => won.push(v),
                    UpdateOutcome::Conflict => {}
                    other => panic!("round {round}: {other:?}"),
                }
            }
            assert_eq!(won.len(), 1, "round {round}");
            let record = store.get(&key).await.unwrap().unwrap();
            assert_eq!(record.version, won.pop(), "round {round}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_delete_is_never_undone_by_a_concurrent_update() {
        let store = MemoryStore::new();
        for round in 0..200 {
            let key = session_key(round);
            let version = create(&store, &key, b"v").await;
            let (a, b) = (store.clone(), store.clone());
            let (k1, k2) = (key.clone(), key.clone());
            let update = tokio::spawn(async move {
                a.update(&k1, b"w", Some(&version), in_an_hour())
                    .await
                    .unwrap()
            });
            let delete = tokio::spawn(async move { b.delete(&k2).await.unwrap() });
            let _ = update.await.unwrap();
            delete.await.unwrap();
            assert_eq!(store.get(&key).await.unwrap(), None, "round {round}");
        }
    }
}
