//! [`MemoryStore`]: the embedded, in-process store.

use std::fmt;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::SystemTime;

use async_trait::async_trait;
use foldhash::fast::RandomState;
use futures_util::stream::{self, BoxStream, StreamExt};

use crate::clock::Clock;
use crate::error::StoreError;
use crate::store::{
    Capabilities, CompareAndDelete, CreateOutcome, DeleteOutcome, Expiry, KeyInfo, KeyValueStore,
    Record, UpdateOutcome, Version,
};

mod shard;

use shard::{record_bytes, Peers, Shard};

/// The store's name in errors and logs.
const NAME: &str = "memory";

/// The most shards a store has.
const MAX_SHARDS: usize = 64;

/// A store is split into shards only while each keeps at least this many
/// records...
const MIN_SHARD_ENTRIES: u64 = 1024;

/// ...and this many bytes, which is also the largest record of a store
/// split into shards.
const MIN_SHARD_BYTES: u64 = 4 << 20;

/// An in-process, TTL-capable store: the embedded default.
///
/// Cheap to clone; clones share the same data. It supports compare-and-swap
/// updates and compare-and-delete. Data is lost when the process exits: use
/// it for development, tests and single-process apps.
///
/// # Capacity
///
/// The store is bounded in entries and in bytes: [`new`](Self::new) holds at
/// most [`DEFAULT_MAX_ENTRIES`](Self::DEFAULT_MAX_ENTRIES) records and
/// [`DEFAULT_MAX_BYTES`](Self::DEFAULT_MAX_BYTES) of keys and values (plus
/// an estimated 256 bytes of bookkeeping per record);
/// [`with_capacity`](Self::with_capacity) sets other limits. A new record
/// is always admitted; when a write would go over either limit, other
/// records are evicted first (their sessions end as if they had expired).
///
/// The bound matters because every request without a cookie that writes to
/// its session creates a record: without it a client could grow the
/// process's memory without limit.
///
/// # Eviction order
///
/// Sessions that come back are protected from sessions that never do. The
/// store is split into up to 64 shards by the key's hash (one for a store
/// of fewer than 2,048 records or 8 MiB), each with its share of both
/// limits, and each shard keeps its records in two first-in, first-out
/// queues (S3-FIFO):
///
/// 1. A new record starts in the **probationary** queue, which may hold a
///    tenth of the shard's records before eviction takes from it.
/// 2. A record that is read, updated or touched again is **promoted** to
///    the protected queue when it reaches the head of the probationary
///    queue, instead of being evicted. A record that was not is evicted.
/// 3. The **protected** queue is evicted from only while the probationary
///    one is within its share. Each use of a record (up to 3) buys it
///    another round there; a record not used since its last round is
///    evicted.
/// 4. Wherever it stands, an expired record goes first, and an owner index
///    that names a session the store still holds is never evicted (so that
///    [`SessionManager::revoke_owner`](crate::SessionManager::revoke_owner)
///    always finds every live session).
///
/// So a flood of requests that each create a session and never come back
/// (cookieless bots, an attacker) only pushes out other such sessions and
/// the newest tenth of the store, never a session that was used again. A
/// session that is new when a flood starts survives if its next request
/// comes before a tenth of the store's capacity of new sessions was written
/// (10,000 at the default capacity). For sessions that must survive a
/// restart, or more sessions than fit in memory, use a persistent store.
///
/// The limits hold after every write, with one exception: a shard that
/// holds nothing but the record just written and owner indexes naming held
/// sessions keeps them all, over its share (at most one index per held
/// session, and only with owners).
///
/// # Concurrency
///
/// No operation awaits anything: each runs to its end on the calling task,
/// holding the lock of its key's shard (one of up to 64, by the key's hash)
/// for one hash table lookup and, on writes, the eviction it causes. Keys
/// of other shards are not held up. Eviction never waits for another
/// shard's lock: when it cannot tell whether a session named by an owner
/// index is held in a busy shard, it keeps the index.
///
/// # Expiry
///
/// Each record expires at the time it was written with; an expired record is
/// never returned, it is dropped first when a shard is full, and every
/// write checks two more slots of its shard, so that expired records are
/// reclaimed without anybody reading them.
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
    inner: Arc<Inner>,
}

/// The shared state of a [`MemoryStore`] and its clones.
struct Inner {
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
    max_entries: u64,
    max_bytes: u64,
    /// The most bytes one record may take: that of the smallest shard.
    max_record_bytes: u64,
    clock: Clock,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MemoryStore {
    // Not derived: the records' `Debug` would print every session.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("max_entries", &self.inner.max_entries)
            .field("max_bytes", &self.inner.max_bytes)
            .field("shards", &self.inner.shards.len())
            .field("entries", &self.held().0)
            .finish()
    }
}

/// How many shards a store of these limits has: a power of two, at most
/// [`MAX_SHARDS`], each with at least [`MIN_SHARD_ENTRIES`] records and
/// [`MIN_SHARD_BYTES`], or one.
fn shard_count(max_entries: u64, max_bytes: u64) -> usize {
    let mut shards = MAX_SHARDS;
    while shards > 1
        && (max_entries / (shards as u64) < MIN_SHARD_ENTRIES
            || max_bytes / (shards as u64) < MIN_SHARD_BYTES)
    {
        shards /= 2;
    }
    shards
}

/// `total` split into `parts` shares that add up to it (the first ones one
/// larger).
fn share(total: u64, parts: usize, part: usize) -> u64 {
    let parts = parts as u64;
    total / parts + u64::from((part as u64) < total % parts)
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
    /// A record larger than `max_bytes` cannot be stored, nor, in a store
    /// of more than 8 MiB and 2,048 records (split into shards, see the
    /// [eviction order](Self#eviction-order)), one larger than its shard's
    /// share of the bytes (at least 4 MiB): writing one fails with
    /// [`StoreError::Misconfigured`].
    ///
    /// # Panics
    ///
    /// If `max_entries` or `max_bytes` is zero.
    pub fn with_capacity(max_entries: u64, max_bytes: u64) -> Self {
        Self::with_clock(max_entries, max_bytes, Clock::system())
    }

    /// [`with_capacity`](Self::with_capacity) on `clock`.
    fn with_clock(max_entries: u64, max_bytes: u64, clock: Clock) -> Self {
        assert!(
            max_entries > 0,
            "MemoryStore: max_entries must be at least 1"
        );
        assert!(max_bytes > 0, "MemoryStore: max_bytes must be at least 1");
        let count = shard_count(max_entries, max_bytes);
        let shards: Box<[Mutex<Shard>]> = (0..count)
            .map(|n| {
                Mutex::new(Shard::new(
                    n,
                    count,
                    share(max_entries, count, n),
                    share(max_bytes, count, n),
                ))
            })
            .collect();
        MemoryStore {
            inner: Arc::new(Inner {
                shards,
                hasher: RandomState::default(),
                max_entries,
                max_bytes,
                max_record_bytes: max_bytes / count as u64,
                clock,
            }),
        }
    }

    /// The most records the store holds.
    pub fn max_entries(&self) -> u64 {
        self.inner.max_entries
    }

    /// The most bytes of keys and values (with the per-record estimate) the
    /// store holds.
    pub fn max_bytes(&self) -> u64 {
        self.inner.max_bytes
    }

    /// How many live (unexpired) records the store holds.
    ///
    /// Counts them one by one, so it takes time in proportion to the number
    /// of records; meant for tests and diagnostics.
    pub fn len(&self) -> usize {
        let now = self.inner.clock.now();
        (0..self.inner.shards.len())
            .map(|n| self.inner.lock(n).live(now))
            .sum()
    }

    /// Whether the store holds no live record.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The records the store holds, expired or not, and their bytes as
    /// accounted (keys, value allocations and the per-record estimate).
    fn held(&self) -> (u64, u64) {
        (0..self.inner.shards.len())
            .map(|n| self.inner.lock(n).held())
            .fold((0, 0), |(a, b), (n, bytes)| (a + n, b + bytes))
    }

    /// Refuses a record no shard can hold.
    fn check_size(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        let bytes = record_bytes(key, value.len());
        if bytes <= self.inner.max_record_bytes {
            return Ok(());
        }
        Err(StoreError::misconfigured(
            NAME,
            format!(
                "a record of {bytes} bytes does not fit in a store of {} bytes and {} entries \
                 (at most {} bytes a record); raise the limits with MemoryStore::with_capacity",
                self.inner.max_bytes, self.inner.max_entries, self.inner.max_record_bytes,
            ),
        ))
    }
}

impl Inner {
    /// The lock of shard `n`. The shard's operations do not panic, so a
    /// poisoned lock (a panic elsewhere on that thread while it was held
    /// cannot happen: no code but the shard's runs under it) is taken as it
    /// is.
    fn lock(&self, n: usize) -> MutexGuard<'_, Shard> {
        self.shards[n]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Peers for Inner {
    fn route(&self, key: &str) -> (usize, u64) {
        let hash = self.hasher.hash_one(key);
        // The hash table uses the low bits and the top seven: pick the shard
        // by others, so that the keys of one shard still spread over them.
        let shard = (hash >> 32) as usize & (self.shards.len() - 1);
        (shard, hash)
    }

    fn holds(&self, shard: usize, hash: u64, key: &str, now: SystemTime) -> bool {
        match self.shards[shard].try_lock() {
            Ok(guard) => guard.holds(hash, key, now),
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner().holds(hash, key, now),
            Err(TryLockError::WouldBlock) => true,
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
        let inner = &*self.inner;
        let (shard, hash) = inner.route(key);
        let now = inner.clock.now();
        Ok(inner.lock(shard).get(hash, key, now))
    }

    async fn create(
        &self,
        key: &str,
        value: &[u8],
        expires_at: Option<SystemTime>,
    ) -> Result<CreateOutcome, StoreError> {
        self.check_size(key, value)?;
        let inner = &*self.inner;
        let (shard, hash) = inner.route(key);
        let now = inner.clock.now();
        Ok(inner
            .lock(shard)
            .create(hash, key, value, expires_at, now, inner))
    }

    async fn update(
        &self,
        key: &str,
        value: &[u8],
        expected: Option<&Version>,
        expires_at: Option<SystemTime>,
    ) -> Result<UpdateOutcome, StoreError> {
        self.check_size(key, value)?;
        let inner = &*self.inner;
        let (shard, hash) = inner.route(key);
        let now = inner.clock.now();
        Ok(inner
            .lock(shard)
            .update(hash, key, value, expected, expires_at, now, inner))
    }

    /// Moves the record's expiry and its last-modified time (what
    /// [`list`](KeyValueStore::list) reports, and the sweep reads as
    /// activity); keeps its value and version.
    async fn touch(&self, key: &str, expires_at: SystemTime) -> Result<UpdateOutcome, StoreError> {
        let inner = &*self.inner;
        let (shard, hash) = inner.route(key);
        let now = inner.clock.now();
        Ok(inner.lock(shard).touch(hash, key, expires_at, now))
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let inner = &*self.inner;
        let (shard, hash) = inner.route(key);
        inner.lock(shard).delete(hash, key);
        Ok(())
    }

    async fn delete_many(&self, keys: Vec<String>) -> Result<(), StoreError> {
        let inner = &*self.inner;
        for key in &keys {
            let (shard, hash) = inner.route(key);
            inner.lock(shard).delete(hash, key);
        }
        Ok(())
    }

    fn compare_and_delete(&self) -> Option<&dyn CompareAndDelete> {
        Some(self)
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxStream<'a, Result<KeyInfo, StoreError>> {
        // A snapshot of the matching keys (at most the store's capacity),
        // one shard at a time; listing does not count as use.
        let inner = &*self.inner;
        let now = inner.clock.now();
        let mut keys = Vec::new();
        for n in 0..inner.shards.len() {
            inner.lock(n).list(prefix, now, &mut keys);
        }
        stream::iter(keys.into_iter().map(Ok)).boxed()
    }
}

#[async_trait]
impl CompareAndDelete for MemoryStore {
    async fn delete_if(&self, key: &str, expected: &Version) -> Result<DeleteOutcome, StoreError> {
        let inner = &*self.inner;
        let (shard, hash) = inner.route(key);
        let now = inner.clock.now();
        Ok(inner.lock(shard).delete_if(hash, key, expected, now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::conformance;
    use std::time::Duration;

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

    macro_rules! app_token_tests {
        ($($case:ident),+ $(,)?) => {$(
            #[rocket::async_test]
            async fn $case() {
                conformance::app_tokens::$case(std::sync::Arc::new(MemoryStore::new())).await;
            }
        )+};
    }

    mod app_over_tokens {
        use super::*;
        crate::app_token_conformance_cases!(app_token_tests);

        /// The cases above do run over tokens: a login answers with a token
        /// and no session cookie.
        #[rocket::async_test]
        async fn the_app_sees_tokens() {
            conformance::app::over_tokens(async {
                let store = std::sync::Arc::new(MemoryStore::new());
                let config = conformance::app::config("app-tokens-check");
                let client = rocket::local::asynchronous::Client::untracked(conformance::app::app(
                    store, config,
                ))
                .await
                .expect("launch");
                let res = client.post("/login/ann").dispatch().await;
                assert_eq!(res.status(), rocket::http::Status::Ok);
                assert!(res
                    .headers()
                    .get_one(conformance::app::TOKEN_HEADER)
                    .is_some());
            })
            .await;
        }
    }

    #[tokio::test]
    async fn whole_suite_on_one_store() {
        conformance::run_all(&MemoryStore::new()).await;
    }

    /// What the store holds: the number of records and their bytes as
    /// accounted (at least those of their keys and values).
    async fn held(store: &MemoryStore) -> (u64, u64) {
        store.held()
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
        assert_eq!(store.inner.shards.len(), 64);
        assert_eq!(store.inner.max_record_bytes, 4 << 20);
        // Debug shows the limits, not the sessions.
        let _ = store.create("secret-key", b"secret-value", None).await;
        let debug = format!("{store:?}");
        assert!(debug.contains("max_entries: 100000"), "{debug}");
        assert!(debug.contains("entries: 1"), "{debug}");
        assert!(!debug.contains("secret"), "{debug}");
    }

    #[test]
    fn shares_add_up_to_both_limits() {
        for (entries, bytes) in [
            (100_000, 256 << 20),
            (3, 10),
            (7, 1000),
            (1, u64::MAX),
            (u64::MAX, 1),
            (1000, 1 << 40),
            (5_000, 1 << 40),
            (1 << 20, 33 << 20),
        ] {
            let store = MemoryStore::with_capacity(entries, bytes);
            let n = store.inner.shards.len();
            assert!(n.is_power_of_two() && n <= MAX_SHARDS, "{n}");
            let shards: Vec<(u64, u64)> = (0..n)
                .map(|i| (share(entries, n, i), share(bytes, n, i)))
                .collect();
            assert_eq!(shards.iter().map(|s| s.0).sum::<u64>(), entries);
            assert_eq!(shards.iter().map(|s| s.1).sum::<u64>(), bytes);
            assert!(
                n == 1 || shards.iter().all(|s| s.0 >= MIN_SHARD_ENTRIES),
                "{shards:?}"
            );
            assert!(
                n == 1 || shards.iter().all(|s| s.1 >= MIN_SHARD_BYTES),
                "{shards:?}"
            );
            assert!(shards.iter().all(|s| s.1 >= store.inner.max_record_bytes));
        }
        // Small stores are one shard: exactly `max_entries` records fit.
        assert_eq!(shard_count(2_047, 1 << 40), 1);
        assert_eq!(shard_count(1 << 20, (8 << 20) - 1), 1);
        assert_eq!(shard_count(2_048, 8 << 20), 2);
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
    async fn eviction_drops_records_that_were_not_used_again() {
        let store = MemoryStore::with_capacity(10, 1 << 20);
        for n in 0..10 {
            create(&store, &session_key(n), b"v").await;
        }
        // Session 0 is the oldest written, but read since; 1 is the oldest unused.
        assert!(store.get(&session_key(0)).await.unwrap().is_some());
        create(&store, &session_key(10), b"v").await;
        let (entries, _) = held(&store).await;
        assert_eq!(entries, 10);
        assert!(store.get(&session_key(1)).await.unwrap().is_none());
        assert!(store.get(&session_key(0)).await.unwrap().is_some());
        assert!(store.get(&session_key(10)).await.unwrap().is_some());
        // A write counts as use too.
        let _ = store
            .update(&session_key(2), b"w", None, in_an_hour())
            .await
            .unwrap();
        create(&store, &session_key(11), b"v").await;
        assert!(store.get(&session_key(2)).await.unwrap().is_some());
        assert!(store.get(&session_key(3)).await.unwrap().is_none());
        assert_eq!(held(&store).await.0, 10);
    }

    #[tokio::test]
    async fn touch_moves_last_modified_and_expiry_and_keeps_the_version() {
        let clock = ManualClock::new();
        let store = MemoryStore::with_clock(1_000, 1 << 20, Clock::manual(clock.clone()));
        let key = session_key(1);
        let version = create(&store, &key, b"v").await;
        let modified = |store: &MemoryStore| {
            let mut infos = Vec::new();
            store.inner.lock(0).list("", clock.now(), &mut infos);
            infos[0].last_modified.expect("a last-modified time")
        };
        let before = modified(&store);
        clock.advance(Duration::from_millis(20));
        let later = clock.now() + Duration::from_secs(7200);
        let outcome = store.touch(&key, later).await.unwrap();
        assert_eq!(outcome, UpdateOutcome::Updated(Some(version.clone())));
        let after = modified(&store);
        assert_eq!(after, before + Duration::from_millis(20));
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
        let clock = ManualClock::new();
        let store = MemoryStore::with_clock(1_000, 1 << 20, Clock::manual(clock.clone()));
        let soon = clock.now() + Duration::from_secs(10);
        let _ = store.create("old", b"v", Some(soon)).await.unwrap();
        let past = clock.now() - Duration::from_secs(1);
        let _ = store.create("older", b"v", Some(past)).await.unwrap();
        let in_an_hour = Some(clock.now() + Duration::from_secs(3600));
        let _ = store.create("kept", b"v", in_an_hour).await.unwrap();
        assert!(store.get("old").await.unwrap().is_some());
        assert!(store.get("older").await.unwrap().is_none());
        clock.advance(Duration::from_secs(10));
        assert_eq!(store.get("old").await.unwrap(), None);
        assert_eq!(store.len(), 1);
        let _ = store
            .create("expiring", b"v", Some(clock.now() + Duration::from_secs(5)))
            .await
            .unwrap();
        clock.advance(Duration::from_secs(5));
        let listed: Vec<String> = store
            .list("")
            .map(|r| r.unwrap().key)
            .collect::<Vec<_>>()
            .await;
        assert_eq!(listed, vec!["kept".to_owned()]);
        assert_eq!(
            store.touch("old", clock.now()).await.unwrap(),
            UpdateOutcome::Missing
        );
        assert_eq!(
            store.update("old", b"w", None, None).await.unwrap(),
            UpdateOutcome::Missing
        );
        // Nobody reads it, yet its memory is reclaimed by other writes.
        assert_eq!(held(&store).await.0, 2);
        for n in 0..4 {
            let _ = store.delete(&format!("none{n}")).await;
            let _ = store
                .touch("kept", clock.now() + Duration::from_secs(3600))
                .await;
        }
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
