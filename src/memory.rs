//! [`MemoryStore`]: the embedded, in-process store.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use async_trait::async_trait;
use futures::stream::{self, BoxStream, StreamExt};

use crate::error::StoreError;
use crate::store::{CreateOutcome, KeyInfo, KeyValueStore, Record, UpdateOutcome, Version};

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

#[derive(Debug, Default)]
struct Shared {
    map: Mutex<HashMap<String, Entry>>,
    next_version: AtomicU64,
    writes: AtomicU64,
}

/// An in-process, TTL-capable store: the embedded default.
///
/// Cheap to clone; clones share the same data. Expired entries are invisible
/// on read and dropped when read, and every few thousand writes a purge drops
/// all expired entries, so memory does not grow with sessions nobody reads.
/// It supports compare-and-swap updates. Data is lost when the process exits:
/// use it for development, tests and single-process apps.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    shared: Arc<Shared>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many live (unexpired) records the store holds.
    pub fn len(&self) -> usize {
        let now = SystemTime::now();
        self.lock().values().filter(|e| e.live(now)).count()
    }

    /// Whether the store holds no live record.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        // A panic while holding the lock cannot leave an entry half-written
        // (every mutation is a single insert/remove), so poisoning is ignored.
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
impl KeyValueStore for MemoryStore {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn supports_ttl(&self) -> bool {
        true
    }

    fn supports_versioning(&self) -> bool {
        true
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

    async fn touch(&self, key: &str, expires_at: SystemTime) -> Result<UpdateOutcome, StoreError> {
        let now = SystemTime::now();
        let mut map = self.lock();
        match map.get_mut(key).filter(|e| e.live(now)) {
            Some(entry) => {
                entry.expires_at = Some(expires_at);
                Ok(UpdateOutcome::Updated(Some(Version::from(entry.version))))
            }
            None => Ok(UpdateOutcome::Missing),
        }
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.lock().remove(key);
        Ok(())
    }

    async fn delete_many(&self, keys: Vec<String>) -> Result<u64, StoreError> {
        let mut map = self.lock();
        for key in &keys {
            map.remove(key);
        }
        Ok(keys.len() as u64)
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxStream<'a, Result<KeyInfo, StoreError>> {
        // Snapshot the matching keys; the lock is never held across an await.
        let keys: Vec<KeyInfo> = {
            let now = SystemTime::now();
            self.lock()
                .iter()
                .filter(|(k, e)| k.starts_with(prefix) && e.live(now))
                .map(|(k, e)| KeyInfo::new(k.clone(), Some(e.modified)))
                .collect()
        };
        stream::iter(keys.into_iter().map(Ok)).boxed()
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

    #[tokio::test]
    async fn clones_share_data() {
        let a = MemoryStore::new();
        let b = a.clone();
        let _ = a.create("k", b"v", None).await.unwrap();
        assert_eq!(b.get("k").await.unwrap().unwrap().value, b"v");
        assert_eq!(b.len(), 1);
    }

    #[tokio::test]
    async fn expired_entries_are_dropped() {
        let store = MemoryStore::new();
        let past = SystemTime::now() - std::time::Duration::from_secs(1);
        let _ = store.create("old", b"v", Some(past)).await.unwrap();
        assert_eq!(store.lock().len(), 1);
        assert_eq!(store.get("old").await.unwrap(), None);
        assert_eq!(
            store.lock().len(),
            0,
            "an expired entry read must be dropped"
        );
        // The periodic purge drops expired entries nobody reads.
        for n in 0..PURGE_EVERY {
            let _ = store
                .create(&format!("e{n}"), b"v", Some(past))
                .await
                .unwrap();
        }
        assert!(store.lock().len() < PURGE_EVERY as usize);
    }
}
