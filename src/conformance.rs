//! The store conformance suite: one `pub async fn` per behaviour of the
//! [`KeyValueStore`] contract.
//!
//! Every store crate dev-depends on `rocket_kvsession` with the `conformance`
//! feature and calls each case from its own `#[tokio::test]`, so every store
//! is held to the same contract and no test is copied between crates:
//!
//! ```no_run
//! # async fn demo() {
//! use rocket_kvsession::{conformance, MemoryStore};
//! let store = MemoryStore::new();
//! conformance::create_get_update_delete(&store).await;
//! conformance::run_all(&store).await;
//! # }
//! ```
//!
//! Each case uses its own fresh key prefix, so the cases can run against one
//! shared backend (a database collection, a bucket) concurrently. The cases
//! panic (assert) on a violation, like any test.
//!
//! This module (and [`app`], the suite through a real Rocket app) is a test
//! fixture for store crates, behind the `conformance` feature: it is not
//! covered by semver, and its cases and helpers may change in any release.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::stream::{self, StreamExt, TryStreamExt};

use crate::store::{CreateOutcome, DeleteOutcome, Expiry, KeyValueStore, UpdateOutcome};

pub mod app;
pub mod app_tokens;
pub mod hooked;
pub mod interference;

pub use crate::clock::ManualClock;

/// A key prefix no other case (in this or another process) uses.
pub fn unique_prefix(case: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("conf-{case}-{:x}{:x}{n:x}-", nanos, std::process::id())
}

/// A random session id of `key_bits` bits in this crate's layout
/// (`{random hex}_{created hex}`), created at `created`: for tests that
/// write records a sweep must judge by their keys.
pub fn session_id_created_at(key_bits: u32, created: SystemTime) -> String {
    let mut rng = <rand_chacha::ChaCha20Rng as rand_core::SeedableRng>::from_os_rng();
    crate::id::SessionId::generate(&mut rng, key_bits, created).to_string()
}

/// Whether `text` is a session id in this crate's layout.
pub fn is_session_id(text: &str) -> bool {
    text.parse::<crate::id::SessionId>().is_ok()
}

/// A key shaped like a session key: the prefix, then `{hex}_{hex}`.
fn session_key(prefix: &str, n: u64) -> String {
    format!("{prefix}{n:016x}_{:x}", 1_700_000_000u64)
}

fn far_future() -> SystemTime {
    SystemTime::now() + Duration::from_secs(3600)
}

async fn listed(store: &dyn KeyValueStore, prefix: &str) -> HashSet<String> {
    store
        .list(prefix)
        .map_ok(|info| info.key)
        .try_collect()
        .await
        .expect("list")
}

/// Calls `$callback!` with the name of every case of the suite, so a store
/// crate gets one test per case without copying the list (and picks up new
/// cases by itself). Arguments after the callback are passed first:
///
/// ```
/// macro_rules! case_tests {
///     ($make:ident, $($case:ident),+ $(,)?) => {$(
///         #[tokio::test]
///         async fn $case() {
///             rocket_kvsession::conformance::$case(&$make()).await;
///         }
///     )+};
/// }
/// fn make() -> rocket_kvsession::MemoryStore {
///     rocket_kvsession::MemoryStore::new()
/// }
/// rocket_kvsession::conformance_cases!(case_tests, make);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! conformance_cases {
    ($callback:ident $(, $arg:tt)* $(,)?) => {
        $callback!(
            $($arg,)*
            create_get_update_delete,
            create_collision,
            update_of_vanished_record,
            versioned_update,
            expiry_invisible_on_read,
            touch_keeps_value,
            touch_moves_last_modified,
            list_by_prefix,
            prefix_isolation,
            large_value,
            binary_values,
            delete_many,
            concurrent_creates,
            concurrent_versioned_updates,
            native_expiry_sweep,
            compare_and_delete,
        );
    };
}

/// Calls each case named by [`conformance_cases!`] in turn.
macro_rules! run_cases {
    ($store:ident, $($case:ident),+ $(,)?) => {
        $($case($store).await;)+
    };
}

/// Runs every case of the suite, one after the other: the same list
/// [`conformance_cases!`] hands to a store crate's test macro.
pub async fn run_all(store: &dyn KeyValueStore) {
    conformance_cases!(run_cases, store);
}

/// Create, read back, update, read back, delete, read nothing.
pub async fn create_get_update_delete(store: &dyn KeyValueStore) {
    let key = session_key(&unique_prefix("crud"), 1);
    assert_eq!(store.get(&key).await.expect("get"), None);

    let created = store.create(&key, b"one", Some(far_future())).await;
    assert!(
        matches!(created, Ok(CreateOutcome::Created(_))),
        "{created:?}"
    );
    let record = store.get(&key).await.expect("get").expect("record exists");
    assert_eq!(record.value, b"one");

    let updated = store
        .update(&key, b"two", None, Some(far_future()))
        .await
        .expect("update");
    assert!(matches!(updated, UpdateOutcome::Updated(_)), "{updated:?}");
    let record = store.get(&key).await.expect("get").expect("record exists");
    assert_eq!(record.value, b"two");

    store.delete(&key).await.expect("delete");
    assert_eq!(store.get(&key).await.expect("get"), None);
    // Deleting again is not an error.
    store.delete(&key).await.expect("second delete");
}

/// `create` on an existing key reports the collision and writes nothing.
pub async fn create_collision(store: &dyn KeyValueStore) {
    let key = session_key(&unique_prefix("collide"), 2);
    let first = store.create(&key, b"first", Some(far_future())).await;
    assert!(matches!(first, Ok(CreateOutcome::Created(_))), "{first:?}");
    let second = store
        .create(&key, b"second", Some(far_future()))
        .await
        .expect("create");
    assert_eq!(second, CreateOutcome::AlreadyExists);
    let record = store.get(&key).await.expect("get").expect("record exists");
    assert_eq!(record.value, b"first", "a collision must not overwrite");
    store.delete(&key).await.expect("delete");
}

/// `update` never creates: a record that never existed or was deleted stays gone.
pub async fn update_of_vanished_record(store: &dyn KeyValueStore) {
    let prefix = unique_prefix("vanish");
    let never = session_key(&prefix, 3);
    let outcome = store
        .update(&never, b"x", None, Some(far_future()))
        .await
        .expect("update");
    assert_eq!(outcome, UpdateOutcome::Missing);
    assert_eq!(store.get(&never).await.expect("get"), None);

    let gone = session_key(&prefix, 4);
    let created = store.create(&gone, b"v1", Some(far_future())).await;
    let version = match created {
        Ok(CreateOutcome::Created(v)) => v,
        other => panic!("create: {other:?}"),
    };
    store.delete(&gone).await.expect("delete");
    let outcome = store
        .update(&gone, b"v2", version.as_ref(), Some(far_future()))
        .await
        .expect("update");
    assert_eq!(
        outcome,
        UpdateOutcome::Missing,
        "a deleted record was resurrected"
    );
    assert_eq!(store.get(&gone).await.expect("get"), None);
}

/// Compare-and-swap, for stores that support versioning: an update with a
/// stale version conflicts and writes nothing; with the current one it succeeds.
pub async fn versioned_update(store: &dyn KeyValueStore) {
    if !store.capabilities().compare_and_swap {
        return;
    }
    let key = session_key(&unique_prefix("cas"), 5);
    let v1 = match store.create(&key, b"v1", Some(far_future())).await {
        Ok(CreateOutcome::Created(Some(v))) => v,
        other => panic!("a versioning store must return a version on create: {other:?}"),
    };
    let read = store.get(&key).await.expect("get").expect("record");
    assert_eq!(
        read.version.as_ref(),
        Some(&v1),
        "get must return the version create returned"
    );

    let v2 = match store
        .update(&key, b"v2", Some(&v1), Some(far_future()))
        .await
    {
        Ok(UpdateOutcome::Updated(Some(v))) => v,
        other => panic!("update with the current version: {other:?}"),
    };
    assert_ne!(v1, v2, "an update must change the version");

    let stale = store
        .update(&key, b"stale", Some(&v1), Some(far_future()))
        .await
        .expect("update");
    assert_eq!(stale, UpdateOutcome::Conflict);
    let read = store.get(&key).await.expect("get").expect("record");
    assert_eq!(read.value, b"v2", "a conflicting update must write nothing");
    assert_eq!(read.version, Some(v2));
    store.delete(&key).await.expect("delete");
}

/// For TTL stores: a record past its expiry is invisible to `get`, cannot be
/// updated, and its key can be created again. Stores without TTL skip this.
/// The store's own clock decides, so this case waits in real time, with
/// margins of seconds: a record that expires 3 seconds after its creation
/// must be seen while it lives (checked only if the store answered within
/// that time: a slow store is not a failure) and must be gone 2.5 seconds
/// after its expiry (stores that keep whole seconds round it up). Takes
/// about 5.5 seconds.
pub async fn expiry_invisible_on_read(store: &dyn KeyValueStore) {
    if !store.capabilities().expiry.is_kept() {
        return;
    }
    let prefix = unique_prefix("expiry");
    let key = session_key(&prefix, 6);
    let soon = SystemTime::now() + Duration::from_secs(3);
    let created = store.create(&key, b"short-lived", Some(soon)).await;
    assert!(
        matches!(created, Ok(CreateOutcome::Created(_))),
        "{created:?}"
    );
    let record = store.get(&key).await.expect("get");
    if SystemTime::now() < soon {
        let record = record.expect("a record read before its expiry is live");
        if let Some(at) = record.expires_at {
            let delta = at.duration_since(soon).unwrap_or_else(|e| e.duration());
            assert!(
                delta < Duration::from_secs(1),
                "expiry not kept: {at:?} vs {soon:?}"
            );
        }
    }
    let gone = soon + Duration::from_millis(2500);
    if let Ok(wait) = gone.duration_since(SystemTime::now()) {
        tokio::time::sleep(wait).await;
    }
    assert_eq!(
        store.get(&key).await.expect("get"),
        None,
        "expired record visible"
    );
    let outcome = store
        .update(&key, b"again", None, Some(far_future()))
        .await
        .expect("update");
    assert_eq!(outcome, UpdateOutcome::Missing, "expired record updated");
    let recreated = store.create(&key, b"new", Some(far_future())).await;
    assert!(
        matches!(recreated, Ok(CreateOutcome::Created(_))),
        "an expired key must be free for create: {recreated:?}"
    );
    assert_eq!(
        store.get(&key).await.expect("get").expect("record").value,
        b"new"
    );
    store.delete(&key).await.expect("delete");
}

/// `touch` moves the expiry, keeps the value, and reports a missing record.
pub async fn touch_keeps_value(store: &dyn KeyValueStore) {
    let prefix = unique_prefix("touch");
    let key = session_key(&prefix, 7);
    let soon = SystemTime::now() + Duration::from_secs(60);
    let created = store.create(&key, b"keep me", Some(soon)).await;
    assert!(
        matches!(created, Ok(CreateOutcome::Created(_))),
        "{created:?}"
    );
    let later = SystemTime::now() + Duration::from_secs(7200);
    let outcome = store.touch(&key, later).await.expect("touch");
    assert!(matches!(outcome, UpdateOutcome::Updated(_)), "{outcome:?}");
    let record = store.get(&key).await.expect("get").expect("record");
    assert_eq!(record.value, b"keep me");
    if store.capabilities().expiry.is_kept() {
        if let Some(at) = record.expires_at {
            assert!(
                at > soon + Duration::from_secs(3000),
                "touch did not move the expiry"
            );
        }
    }
    let missing = store
        .touch(&session_key(&prefix, 8), later)
        .await
        .expect("touch");
    assert_eq!(missing, UpdateOutcome::Missing);
    assert_eq!(
        store.get(&session_key(&prefix, 8)).await.expect("get"),
        None
    );
    store.delete(&key).await.expect("delete");
}

/// The last-modified time `list` reports for the one key under `prefix`.
async fn last_modified(store: &dyn KeyValueStore, prefix: &str) -> Option<SystemTime> {
    let listed: Vec<_> = store.list(prefix).try_collect().await.expect("list");
    assert_eq!(listed.len(), 1, "{listed:?}");
    listed[0].last_modified
}

/// On stores whose `list` reports when a record was last written, `touch`
/// moves that time too: the sweep reads it as the session's last activity,
/// so a session kept alive by reads alone is not swept as idle. Takes about
/// 1.1 seconds (some backends keep whole seconds).
pub async fn touch_moves_last_modified(store: &dyn KeyValueStore) {
    let prefix = unique_prefix("touch-modified");
    let key = session_key(&prefix, 1);
    let soon = SystemTime::now() + Duration::from_secs(60);
    let created = store.create(&key, b"v", Some(soon)).await;
    assert!(
        matches!(created, Ok(CreateOutcome::Created(_))),
        "{created:?}"
    );
    let Some(before) = last_modified(store, &prefix).await else {
        // The store does not report it: nothing for the sweep to read.
        store.delete(&key).await.expect("delete");
        return;
    };
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let outcome = store
        .touch(&key, SystemTime::now() + Duration::from_secs(120))
        .await
        .expect("touch");
    assert!(matches!(outcome, UpdateOutcome::Updated(_)), "{outcome:?}");
    let after = last_modified(store, &prefix)
        .await
        .expect("last_modified still reported");
    assert!(
        after > before,
        "touch did not move last_modified ({before:?} -> {after:?})"
    );
    store.delete(&key).await.expect("delete");
}

/// `list` streams exactly the keys under a prefix.
pub async fn list_by_prefix(store: &dyn KeyValueStore) {
    let prefix = unique_prefix("list");
    let mut expected = HashSet::new();
    for n in 0..25 {
        let key = session_key(&prefix, n);
        let created = store.create(&key, b"v", Some(far_future())).await;
        assert!(
            matches!(created, Ok(CreateOutcome::Created(_))),
            "{created:?}"
        );
        expected.insert(key);
    }
    assert_eq!(listed(store, &prefix).await, expected);
    let info = store
        .list(&prefix)
        .next()
        .await
        .expect("one entry")
        .expect("list");
    if let Some(modified) = info.last_modified {
        let age = SystemTime::now()
            .duration_since(modified)
            .unwrap_or_default();
        assert!(
            age < Duration::from_secs(600),
            "implausible last_modified {modified:?}"
        );
    }
    store
        .delete_many(expected.into_iter().collect())
        .await
        .expect("delete_many");
    assert!(listed(store, &prefix).await.is_empty());
}

/// Keys under one prefix are invisible under another, even a similar one.
pub async fn prefix_isolation(store: &dyn KeyValueStore) {
    let base = unique_prefix("iso");
    let a = format!("{base}a-");
    let b = format!("{base}b-");
    let key_a = session_key(&a, 1);
    let key_b = session_key(&b, 1);
    for key in [&key_a, &key_b] {
        let created = store.create(key, key.as_bytes(), Some(far_future())).await;
        assert!(
            matches!(created, Ok(CreateOutcome::Created(_))),
            "{created:?}"
        );
    }
    assert_eq!(listed(store, &a).await, HashSet::from([key_a.clone()]));
    assert_eq!(listed(store, &b).await, HashSet::from([key_b.clone()]));
    assert_eq!(
        store.get(&key_a).await.expect("get").expect("a").value,
        key_a.as_bytes()
    );
    store.delete(&key_a).await.expect("delete");
    assert!(
        store.get(&key_b).await.expect("get").is_some(),
        "delete crossed prefixes"
    );
    store.delete(&key_b).await.expect("delete");
}

/// A 64 KiB value round-trips byte for byte.
pub async fn large_value(store: &dyn KeyValueStore) {
    let key = session_key(&unique_prefix("large"), 9);
    let value: Vec<u8> = (0..64 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let created = store.create(&key, &value, Some(far_future())).await;
    assert!(
        matches!(created, Ok(CreateOutcome::Created(_))),
        "{created:?}"
    );
    assert_eq!(
        store.get(&key).await.expect("get").expect("record").value,
        value
    );
    let mut bigger = value.clone();
    bigger.reverse();
    let updated = store
        .update(&key, &bigger, None, Some(far_future()))
        .await
        .expect("update");
    assert!(matches!(updated, UpdateOutcome::Updated(_)), "{updated:?}");
    assert_eq!(
        store.get(&key).await.expect("get").expect("record").value,
        bigger
    );
    store.delete(&key).await.expect("delete");
}

/// Arbitrary bytes (every byte value, NULs, invalid UTF-8, empty) round-trip.
pub async fn binary_values(store: &dyn KeyValueStore) {
    let prefix = unique_prefix("binary");
    let all: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
    let cases: [&[u8]; 4] = [&all, b"\0\0\0", &[0xff, 0xfe, 0xc3, 0x28], b""];
    for (n, value) in cases.iter().enumerate() {
        let key = session_key(&prefix, n as u64);
        let created = store.create(&key, value, Some(far_future())).await;
        assert!(
            matches!(created, Ok(CreateOutcome::Created(_))),
            "{created:?}"
        );
        assert_eq!(
            &store.get(&key).await.expect("get").expect("record").value[..],
            *value
        );
        store.delete(&key).await.expect("delete");
    }
}

/// `delete_many` removes exactly the keys it is given.
pub async fn delete_many(store: &dyn KeyValueStore) {
    let prefix = unique_prefix("bulk");
    let keys: Vec<String> = (0..40).map(|n| session_key(&prefix, n)).collect();
    for key in &keys {
        let created = store.create(key, b"v", Some(far_future())).await;
        assert!(
            matches!(created, Ok(CreateOutcome::Created(_))),
            "{created:?}"
        );
    }
    let (doomed, kept) = keys.split_at(30);
    let mut doomed = doomed.to_vec();
    doomed.push(session_key(&prefix, 999)); // absent keys are fine
    store.delete_many(doomed).await.expect("delete_many");
    assert_eq!(
        listed(store, &prefix).await,
        kept.iter().cloned().collect::<HashSet<_>>()
    );
    store.delete_many(kept.to_vec()).await.expect("delete_many");
}

/// 1,000 concurrent creates of distinct keys all succeed and are all
/// readable; 50 concurrent creates of one key have exactly one winner.
pub async fn concurrent_creates(store: &dyn KeyValueStore) {
    let prefix = unique_prefix("concurrent");
    let keys: Vec<String> = (0..1000).map(|n| session_key(&prefix, n)).collect();
    let outcomes: Vec<_> = stream::iter(keys.iter())
        .map(|key| store.create(key, key.as_bytes(), Some(far_future())))
        .buffer_unordered(1000)
        .collect()
        .await;
    for outcome in &outcomes {
        assert!(
            matches!(outcome, Ok(CreateOutcome::Created(_))),
            "{outcome:?}"
        );
    }
    assert_eq!(listed(store, &prefix).await.len(), 1000);
    for key in keys.iter().step_by(97) {
        assert_eq!(
            store.get(key).await.expect("get").expect("record").value,
            key.as_bytes()
        );
    }

    let contested = session_key(&prefix, 5000);
    let outcomes: Vec<_> = stream::iter(0..50u32)
        .map(|n| {
            let contested = &contested;
            async move {
                store
                    .create(contested, &n.to_be_bytes(), Some(far_future()))
                    .await
            }
        })
        .buffer_unordered(50)
        .collect()
        .await;
    let winners = outcomes
        .iter()
        .filter(|o| matches!(o, Ok(CreateOutcome::Created(_))))
        .count();
    let losers = outcomes
        .iter()
        .filter(|o| matches!(o, Ok(CreateOutcome::AlreadyExists)))
        .count();
    assert_eq!((winners, losers), (1, 49), "{outcomes:?}");

    let mut all = keys;
    all.push(contested);
    store.delete_many(all).await.expect("delete_many");
    assert!(listed(store, &prefix).await.is_empty());
}

/// For stores that support versioning: 50 concurrent read-modify-write loops
/// on one record, each adding its own byte and retrying on conflict, lose no
/// update.
pub async fn concurrent_versioned_updates(store: &dyn KeyValueStore) {
    if !store.capabilities().compare_and_swap {
        return;
    }
    let key = session_key(&unique_prefix("cas-race"), 10);
    let created = store.create(&key, b"", Some(far_future())).await;
    assert!(
        matches!(created, Ok(CreateOutcome::Created(_))),
        "{created:?}"
    );
    let writers = 50u8;
    stream::iter(0..writers)
        .map(|n| {
            let key = &key;
            async move {
                for _attempt in 0..1000 {
                    let record = store.get(key).await.expect("get").expect("record");
                    let mut value = record.value.clone();
                    value.push(n);
                    match store
                        .update(key, &value, record.version.as_ref(), Some(far_future()))
                        .await
                        .expect("update")
                    {
                        UpdateOutcome::Updated(_) => return,
                        UpdateOutcome::Conflict => continue,
                        UpdateOutcome::Missing => panic!("record vanished"),
                    }
                }
                panic!("writer {n} never won a compare-and-swap");
            }
        })
        .buffer_unordered(writers as usize)
        .collect::<()>()
        .await;
    let mut value = store.get(&key).await.expect("get").expect("record").value;
    value.sort_unstable();
    assert_eq!(
        value,
        (0..writers).collect::<Vec<u8>>(),
        "an update was lost"
    );
    store.delete(&key).await.expect("delete");
}

/// For stores with a native expiry sweep ([`KeyValueStore::expired_deletion`]):
/// [`ExpiredDeletion::delete_expired`](crate::ExpiredDeletion::delete_expired)
/// deletes exactly the records under its prefix whose stored expiry is at or
/// before the given time, at most `limit` per call, and leaves records
/// stored without an expiry to
/// [`list_without_expiry`](crate::ExpiredDeletion::list_without_expiry),
/// which lists exactly those. Stores without the native path skip this.
pub async fn native_expiry_sweep(store: &dyn KeyValueStore) {
    let prefix = unique_prefix("native-sweep");
    let other = unique_prefix("native-sweep-other");
    let now = SystemTime::now();
    let soon = now + Duration::from_secs(60);
    let later = now + Duration::from_secs(3600);
    let key = |n| session_key(&prefix, n);
    let expiring: Vec<String> = (0..5).map(key).collect();
    let staying: Vec<String> = (10..13).map(key).collect();
    let unexpiring: Vec<String> = (20..22).map(key).collect();
    let foreign = session_key(&other, 0);
    let writes = expiring
        .iter()
        .map(|k| (k, Some(soon)))
        .chain(staying.iter().map(|k| (k, Some(later))))
        .chain(unexpiring.iter().map(|k| (k, None)))
        .chain([(&foreign, Some(soon))]);
    for (key, expires_at) in writes {
        let created = store.create(key, b"v", expires_at).await;
        assert!(
            matches!(created, Ok(CreateOutcome::Created(_))),
            "{created:?}"
        );
    }
    let Some(native) = store.expired_deletion() else {
        let everything: Vec<String> = listed(store, &prefix).await.into_iter().collect();
        store.delete_many(everything).await.expect("delete_many");
        store.delete(&foreign).await.expect("delete");
        return;
    };
    assert_eq!(
        store.capabilities().expiry,
        Expiry::FilteredOnRead,
        "a store with a native expiry sweep keeps expiries but does not act on them"
    );
    let without: HashSet<String> = native
        .list_without_expiry(&prefix)
        .map_ok(|info| info.key)
        .try_collect()
        .await
        .expect("list_without_expiry");
    for key in &unexpiring {
        assert!(
            without.contains(key),
            "{key} stored without expiry is not listed"
        );
    }
    assert!(
        without.iter().all(|k| k.starts_with(&prefix)),
        "{without:?}"
    );

    let sweep_at = now + Duration::from_secs(120);
    let first = native
        .delete_expired(&prefix, sweep_at, 3)
        .await
        .expect("delete_expired");
    // `first` already ran at sweep_at; nothing had expired before it.
    assert_eq!(first, 3, "at most `limit` records per call");
    let second = native
        .delete_expired(&prefix, sweep_at, 3)
        .await
        .expect("delete_expired");
    assert_eq!(second, 2);
    let third = native
        .delete_expired(&prefix, sweep_at, 3)
        .await
        .expect("delete_expired");
    assert_eq!(third, 0);
    let expected: HashSet<String> = staying.iter().chain(&unexpiring).cloned().collect();
    assert_eq!(listed(store, &prefix).await, expected);
    assert_eq!(
        without,
        unexpiring.iter().cloned().collect::<HashSet<_>>(),
        "a store with a native sweep lists only the records without expiry"
    );
    assert!(
        store.get(&foreign).await.expect("get").is_some(),
        "the sweep crossed prefixes"
    );
    let live_now = native
        .delete_expired(&other, now, 100)
        .await
        .expect("delete_expired");
    assert_eq!(live_now, 0, "a record was deleted before its expiry");
    store
        .delete_many(expected.into_iter().chain([foreign]).collect())
        .await
        .expect("delete_many");
    assert!(listed(store, &prefix).await.is_empty());
}

/// For stores with a compare-and-delete ([`KeyValueStore::compare_and_delete`]):
/// a delete with a stale version conflicts and keeps the record, one with
/// the current version removes it, and a missing key says so. Such a store
/// must also have compare-and-swap updates (the versions come from them).
/// Stores without it skip this.
pub async fn compare_and_delete(store: &dyn KeyValueStore) {
    let Some(cad) = store.compare_and_delete() else {
        return;
    };
    assert!(
        store.capabilities().compare_and_swap,
        "a store with compare-and-delete must version its records"
    );
    let prefix = unique_prefix("cad");
    let key = session_key(&prefix, 9);
    let v1 = match store.create(&key, b"v1", Some(far_future())).await {
        Ok(CreateOutcome::Created(Some(v))) => v,
        other => panic!("a versioning store must return a version on create: {other:?}"),
    };
    let v2 = match store
        .update(&key, b"v2", Some(&v1), Some(far_future()))
        .await
    {
        Ok(UpdateOutcome::Updated(Some(v))) => v,
        other => panic!("update with the current version: {other:?}"),
    };
    let stale = cad.delete_if(&key, &v1).await.expect("delete_if");
    assert_eq!(
        stale,
        DeleteOutcome::Conflict,
        "deleted over a newer version"
    );
    let kept = store.get(&key).await.expect("get").expect("record kept");
    assert_eq!(kept.value, b"v2");
    let deleted = cad.delete_if(&key, &v2).await.expect("delete_if");
    assert_eq!(deleted, DeleteOutcome::Deleted);
    assert_eq!(store.get(&key).await.expect("get"), None);
    let missing = cad.delete_if(&key, &v2).await.expect("delete_if");
    assert_eq!(missing, DeleteOutcome::Missing);
    // After a touch, the version a read returns deletes the record.
    let created = store.create(&key, b"v3", Some(far_future())).await;
    assert!(
        matches!(created, Ok(CreateOutcome::Created(_))),
        "{created:?}"
    );
    let touched = store
        .touch(&key, far_future() + Duration::from_secs(60))
        .await
        .expect("touch");
    assert!(matches!(touched, UpdateOutcome::Updated(_)), "{touched:?}");
    let current = store
        .get(&key)
        .await
        .expect("get")
        .and_then(|r| r.version)
        .expect("a versioned record");
    assert_eq!(
        cad.delete_if(&key, &current).await.expect("delete_if"),
        DeleteOutcome::Deleted
    );
    assert!(listed(store, &prefix).await.is_empty());
}
