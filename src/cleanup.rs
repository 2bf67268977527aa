//! [`cleanup_sessions`]: the sweep for stores without TTL.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::future::{self, TryFutureExt};
use futures_util::stream::TryStreamExt;

use crate::clock::Clock;
use crate::config::SessionConfig;
use crate::error::Error;
use crate::events::{Events, SessionEventKind};
use crate::keys::Keys;
use crate::lifetime::{Lifetime, StoreExpiry};
use crate::owners::{OwnerIndex, CONCURRENCY};
use crate::retry::RetryPolicy;
use crate::rng::SharedRng;
use crate::store::{KeyInfo, KeyValueStore};
use crate::time::unix;

/// How many keys go to one [`KeyValueStore::delete_many`] call.
pub(crate) const SWEEP_BATCH: usize = 1000;
/// How many `delete_many` calls run at once during a sweep.
pub(crate) const SWEEP_CONCURRENCY: usize = 4;
/// At most how many records one native
/// [`delete_expired`](crate::ExpiredDeletion::delete_expired) statement
/// deletes: small enough that no statement holds its locks for long.
pub(crate) const NATIVE_SWEEP_BATCH: usize = 10_000;

/// What one [`cleanup_sessions`] sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CleanupReport {
    /// Keys listed under the app's prefix.
    pub scanned: u64,
    /// Expired sessions deleted.
    pub deleted: u64,
    /// Keys under the prefix that are not session ids, left alone (owner
    /// indexes included).
    pub skipped: u64,
    /// Entries dropped from owner indexes (see
    /// [`Session::set_owner`](crate::Session::set_owner)): sessions that
    /// ended, expired or changed owner.
    pub pruned: u64,
    /// How long the sweep took.
    pub elapsed: Duration,
}

/// Whether the session stored under `info` has ended, judged from the key
/// (its creation time) and, with an idle timeout, the listing's
/// last-modified time. `None` if the key is not a session key of this app.
fn expired(info: &KeyInfo, keys: &Keys, rules: &Lifetime, now: u64) -> Option<bool> {
    // Not a key this configuration writes (another app's, or not a
    // session at all): never deleted.
    let id = keys.own_session_id(&info.key, now)?;
    Some(rules.swept(&id, info.last_modified, now))
}

/// One sweep: deletes every expired session under the app's `key_prefix`
/// and reports how many keys it scanned and deleted.
///
/// Expiry is decided from the key alone (the creation time in the id, and
/// with `idle_timeout` the store's last-modified time): no value is read.
/// Keys that are not session ids are skipped. The listing is streamed and
/// deletions go out in batches of 1,000, four batches at a time, so memory
/// stays flat whatever the number of sessions.
///
/// Stores that keep the expiry in a queryable field but do not remove
/// expired records by themselves (the SQL stores) offer a native path
/// ([`KeyValueStore::expired_deletion`]),
/// [`ExpiredDeletion::delete_expired`](crate::ExpiredDeletion::delete_expired):
/// the sweep first has the store delete every record under the prefix
/// whose stored expiry has passed, in statements of at most 10,000 records
/// (such records are dead to every reader already, whichever app wrote
/// them; they are counted in `deleted` only). It then lists and judges by
/// their keys the records that are left, as on any store: a record stored
/// with an expiry computed under an earlier, longer `lifetime` or without
/// an `idle_timeout` is deleted by the configuration in force, not by the
/// expiry it was written with.
///
/// Stores with TTL expire sessions by themselves; a sweep on them is
/// harmless but rarely needed. Schedule sweeps with `cleanup_interval`
/// (configuration) or [`KvSession::cleanup_interval`](crate::KvSession::cleanup_interval).
pub async fn cleanup_sessions<S: KeyValueStore + ?Sized>(
    store: &S,
    config: &SessionConfig,
) -> Result<CleanupReport, Error> {
    // A sweep without an engine draws its retry jitter from a generator of
    // its own (owner index writes only).
    let rng = SharedRng::new(Box::new(
        <rand_chacha::ChaCha20Rng as rand_core::SeedableRng>::from_os_rng(),
    ));
    let keys = Keys::of(config);
    let retry = RetryPolicy::new(config, std::sync::Arc::new(rng));
    let clock = Clock::system();
    let owners = OwnerIndex {
        store,
        keys: &keys,
        rules: Lifetime::of(config),
        expiry: StoreExpiry::new(config, store.capabilities().expiry.is_kept()),
        retry: &retry,
        clock: &clock,
    };
    sweep(&owners, &Events::default()).await
}

/// [`cleanup_sessions`] over the owner indexes (and so the store, keys and
/// rules) of an app: the engine's own sweep.
pub(crate) async fn sweep<S: KeyValueStore + ?Sized>(
    owners: &OwnerIndex<'_, S>,
    events: &Events,
) -> Result<CleanupReport, Error> {
    let (store, keys, rules) = (owners.store, owners.keys, owners.rules);
    let prefix = keys.prefix();
    let started = std::time::Instant::now();
    let wall = owners.clock.now();
    let now = unix(wall);
    let mut natively_deleted = 0u64;
    let native = store.expired_deletion();
    if let Some(native) = native {
        loop {
            let n = native
                .delete_expired(prefix, wall, NATIVE_SWEEP_BATCH)
                .await?;
            natively_deleted += n;
            events.emit_many(SessionEventKind::Expired, n);
            if n < NATIVE_SWEEP_BATCH as u64 {
                break;
            }
        }
    }
    // Every key, also after a native deletion: the configuration in force
    // decides, not the expiries written under an earlier one.
    let listed = store.list(prefix);
    let scanned = AtomicU64::new(0);
    let skipped = AtomicU64::new(0);
    let pruned = AtomicU64::new(0);
    let (scanned_ref, skipped_ref, pruned_ref) = (&scanned, &skipped, &pruned);
    let rules = &rules;
    let deleted = listed
        .map_err(Error::from)
        .map_ok(|info| -> BoxFuture<'_, Result<Option<String>, Error>> {
            Box::pin(async move {
                scanned_ref.fetch_add(1, Relaxed);
                match expired(&info, keys, rules, now) {
                    Some(true) => Ok(Some(info.key)),
                    Some(false) => Ok(None),
                    None => {
                        skipped_ref.fetch_add(1, Relaxed);
                        if keys.is_index(&info.key) {
                            // An owner index: drop what it names that is gone.
                            let n = owners.prune_key(&info.key).await?;
                            pruned_ref.fetch_add(n, Relaxed);
                        }
                        Ok(None)
                    }
                }
            })
        })
        .try_buffered(CONCURRENCY)
        .try_filter_map(|doomed| future::ready(Ok(doomed)))
        .try_chunks(SWEEP_BATCH)
        .map_err(|e| e.1)
        .map_ok(|keys| {
            let n = keys.len() as u64;
            store
                .delete_many(keys)
                .map_ok(move |()| {
                    events.emit_many(SessionEventKind::Expired, n);
                    n
                })
                .err_into()
        })
        .try_buffer_unordered(SWEEP_CONCURRENCY)
        .try_fold(0u64, |total, n| future::ready(Ok::<_, Error>(total + n)))
        .await?;
    crate::metrics::sweep_deleted(natively_deleted + deleted);
    Ok(CleanupReport {
        scanned: scanned.into_inner(),
        deleted: natively_deleted + deleted,
        skipped: skipped.into_inner(),
        pruned: pruned.into_inner(),
        elapsed: started.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::SessionId;
    use crate::store::KeyValueStore;
    use crate::MemoryStore;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;
    use std::time::SystemTime;

    fn id_at(rng: &mut ChaCha20Rng, secs_ago: u64) -> String {
        let created = SystemTime::now() - Duration::from_secs(secs_ago);
        SessionId::generate(rng, 64, created).to_string()
    }

    #[tokio::test]
    async fn deletes_only_expired_sessions_of_its_prefix() {
        let store = MemoryStore::new();
        let config = SessionConfig {
            lifetime: 100,
            key_prefix: "app:".into(),
            ..Default::default()
        };
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let mut live = Vec::new();
        for n in 0..2500u64 {
            let key = format!(
                "app:{}",
                id_at(&mut rng, if n % 5 == 0 { 10 } else { 1000 })
            );
            let _ = store.create(&key, b"x", None).await.unwrap();
            if n % 5 == 0 {
                live.push(key);
            }
        }
        // Not session keys, and another app's sessions: left alone.
        let other = format!("other:{}", id_at(&mut rng, 1000));
        for key in ["app:settings", "app:abc_def", other.as_str()] {
            let _ = store.create(key, b"x", None).await.unwrap();
        }
        let report = cleanup_sessions(&store, &config).await.unwrap();
        assert_eq!(report.scanned, 2502);
        assert_eq!(report.deleted, 2000);
        assert_eq!(report.skipped, 2);
        assert_eq!(store.len(), 500 + 3);
        for key in live {
            assert!(store.get(&key).await.unwrap().is_some());
        }
        assert!(store.get(&other).await.unwrap().is_some());
        let again = cleanup_sessions(&store, &config).await.unwrap();
        assert_eq!((again.scanned, again.deleted), (502, 0));
    }

    #[tokio::test]
    async fn only_ids_of_this_configuration_are_deleted() {
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        for prefix in ["", "session:"] {
            let store = MemoryStore::new();
            let config = SessionConfig {
                lifetime: 100,
                key_prefix: prefix.into(),
                ..Default::default()
            };
            let ours = format!("{prefix}{}", id_at(&mut rng, 1000));
            let in_a_day = SystemTime::now() + Duration::from_secs(3 * 24 * 3600);
            let foreign = [
                // Plausible ids another app sharing the store wrote: a
                // creation time before this crate existed, 80 random bits,
                // 128 random bits, a creation time days ahead.
                format!("{prefix}0123456789abcdef_1"),
                format!("{prefix}beef0123456789abcdef_65a1b2c3"),
                format!(
                    "{prefix}{}",
                    SessionId::generate(
                        &mut rng,
                        128,
                        SystemTime::now() - Duration::from_secs(1000)
                    )
                ),
                format!("{prefix}{}", SessionId::generate(&mut rng, 64, in_a_day)),
            ];
            for key in foreign.iter().chain([&ours]) {
                let _ = store.create(key, b"x", None).await.unwrap();
            }
            let report = cleanup_sessions(&store, &config).await.unwrap();
            assert_eq!((report.deleted, report.skipped), (1, 4), "{prefix:?}");
            assert_eq!(store.get(&ours).await.unwrap(), None);
            for key in &foreign {
                assert!(store.get(key).await.unwrap().is_some(), "{key} deleted");
            }
        }
    }

    #[tokio::test]
    async fn idle_sessions_are_swept_by_last_modified() {
        let config = SessionConfig {
            idle_timeout: Some(60),
            touch_after: 10,
            ..Default::default()
        };
        let mut rng = ChaCha20Rng::seed_from_u64(4);
        let key = format!("{}{}", config.key_prefix, id_at(&mut rng, 10));
        let long_ago = SystemTime::now() - Duration::from_secs(3600);
        let fresh = KeyInfo::new(key.clone(), Some(SystemTime::now()));
        let idle = KeyInfo::new(key.clone(), Some(long_ago));
        let unknown = KeyInfo::new(key, None);
        let now = unix(SystemTime::now());
        let (keys, rules) = (Keys::of(&config), Lifetime::of(&config));
        assert_eq!(expired(&fresh, &keys, &rules, now), Some(false));
        assert_eq!(expired(&idle, &keys, &rules, now), Some(true));
        assert_eq!(expired(&unknown, &keys, &rules, now), Some(false));
    }
}
