//! Striped in-process locks that serialize writes to one key.

use std::collections::BTreeSet;
use std::fmt;
use std::hash::{DefaultHasher, Hash, Hasher};

use tokio::sync::{Mutex, MutexGuard};

/// How many stripes: keys that hash to the same stripe share a lock.
const STRIPES: usize = 1024;

/// A fixed set of async mutexes; a key always maps to the same one.
///
/// Holding a key's stripe makes read-compare-write sequences on that key
/// atomic with respect to every other holder in this process. Several keys
/// are locked in ascending stripe order, so two multi-key holders can never
/// deadlock each other.
pub(crate) struct KeyLocks {
    stripes: Box<[Mutex<()>]>,
}

impl KeyLocks {
    pub(crate) fn new() -> Self {
        KeyLocks {
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
        }
    }

    fn stripe(&self, key: &str) -> usize {
        let mut hasher = DefaultHasher::new();
        key.hash(&mut hasher);
        (hasher.finish() % STRIPES as u64) as usize
    }

    /// Locks the stripe of one key.
    pub(crate) async fn lock(&self, key: &str) -> MutexGuard<'_, ()> {
        self.stripes[self.stripe(key)].lock().await
    }

    /// Locks the stripes of several keys, in ascending order.
    pub(crate) async fn lock_many<'k>(
        &self,
        keys: impl IntoIterator<Item = &'k str>,
    ) -> Vec<MutexGuard<'_, ()>> {
        let stripes: BTreeSet<usize> = keys.into_iter().map(|k| self.stripe(k)).collect();
        let mut guards = Vec::with_capacity(stripes.len());
        for stripe in stripes {
            guards.push(self.stripes[stripe].lock().await);
        }
        guards
    }
}

impl fmt::Debug for KeyLocks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyLocks")
            .field("stripes", &self.stripes.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn one_key_excludes_itself_and_many_keys_do_not_deadlock() {
        let locks = KeyLocks::new();
        let guard = locks.lock("a").await;
        assert!(
            tokio::time::timeout(Duration::from_millis(50), locks.lock("a"))
                .await
                .is_err(),
            "a held stripe was locked twice"
        );
        drop(guard);
        let keys: Vec<String> = (0..50_000).map(|n| format!("k{n}")).collect();
        let guards = locks.lock_many(keys.iter().map(String::as_str)).await;
        assert_eq!(guards.len(), STRIPES, "50,000 keys cover every stripe");
        drop(guards);
        let _again = locks.lock("a").await;
    }
}
