//! Timed store round trips: one side, or two sides in alternating order.

use std::fmt;
use std::time::{Duration, Instant, SystemTime};

use rocket_kvsession::{CreateOutcome, KeyValueStore, UpdateOutcome, Version};

use crate::stats::record;

/// Latency samples of the three store operations.
#[derive(Debug, Default)]
pub struct Samples {
    /// `get` latencies.
    pub get: Vec<Duration>,
    /// `put` (update) latencies.
    pub put: Vec<Duration>,
    /// `create` latencies.
    pub create: Vec<Duration>,
}

/// One side of a store comparison: the adapter, or the backend used
/// directly.
#[allow(async_fn_in_trait)]
pub trait Side {
    /// Reads `key`.
    async fn get(&mut self, key: &str) -> Result<Vec<u8>, String>;
    /// Rewrites the existing `key`.
    async fn put(&mut self, key: &str, value: &[u8]) -> Result<(), String>;
    /// Writes the new `key`.
    async fn create(&mut self, key: &str, value: &[u8]) -> Result<(), String>;
}

/// A [`Side`] over any [`KeyValueStore`], doing what the engine does:
/// `put` is an `update` with the version the last `get` or `put` returned
/// (saving an existing session), `create` a collision-safe `create` (saving
/// a new session). Writes carry an expiry `ttl` from now when one is set.
pub struct StoreSide<S> {
    store: S,
    label: &'static str,
    ttl: Option<Duration>,
    version: Option<Version>,
}

impl<S> fmt::Debug for StoreSide<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreSide")
            .field("label", &self.label)
            .field("ttl", &self.ttl)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl<S: KeyValueStore> StoreSide<S> {
    /// A side over `store`, writing without an expiry. `label` prefixes its
    /// error messages.
    pub fn new(store: S, label: &'static str) -> Self {
        StoreSide {
            store,
            label,
            ttl: None,
            version: None,
        }
    }

    /// Writes expire `ttl` after the write.
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    fn expiry(&self) -> Option<SystemTime> {
        self.ttl.map(|ttl| SystemTime::now() + ttl)
    }
}

impl<S: KeyValueStore> Side for StoreSide<S> {
    async fn get(&mut self, key: &str) -> Result<Vec<u8>, String> {
        let label = self.label;
        let record = self
            .store
            .get(key)
            .await
            .map_err(|e| format!("{label} get: {}", chain(&e)))?
            .ok_or_else(|| format!("{label} get: record missing"))?;
        self.version = record.version;
        Ok(record.value)
    }

    async fn put(&mut self, key: &str, value: &[u8]) -> Result<(), String> {
        let label = self.label;
        match self
            .store
            .update(key, value, self.version.as_ref(), self.expiry())
            .await
            .map_err(|e| format!("{label} update: {}", chain(&e)))?
        {
            UpdateOutcome::Updated(version) => {
                self.version = version;
                Ok(())
            }
            other => Err(format!("{label} update: {other:?}")),
        }
    }

    async fn create(&mut self, key: &str, value: &[u8]) -> Result<(), String> {
        let label = self.label;
        match self
            .store
            .create(key, value, self.expiry())
            .await
            .map_err(|e| format!("{label} create: {}", chain(&e)))?
        {
            // The version of the key `put` rewrites stays as it is.
            CreateOutcome::Created(_) => Ok(()),
            CreateOutcome::AlreadyExists => Err(format!("{label} create: key exists")),
        }
    }
}

/// `error` and its sources, separated by colons.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

/// Times one put, get and create on `side`, checking what it reads.
pub async fn sample(
    side: &mut impl Side,
    key: &str,
    new_key: &str,
    value: &[u8],
    into: Option<&mut Samples>,
) -> Result<(), String> {
    let start = Instant::now();
    side.put(key, value).await?;
    let put = start.elapsed();
    let start = Instant::now();
    let read = side.get(key).await?;
    let get = start.elapsed();
    if read != value {
        return Err("get did not return the value just written".into());
    }
    let start = Instant::now();
    side.create(new_key, value).await?;
    let create = start.elapsed();
    if let Some(s) = into {
        s.get.push(get);
        s.put.push(put);
        s.create.push(create);
    }
    Ok(())
}

/// Samples one side `samples` times after a warm-up of a tenth as many. The
/// side rewrites its existing `key`; new keys are `{i:016x}_6745c1a0` for
/// `i` from 1.
pub async fn measure(side: &mut impl Side, key: &str, samples: usize) -> Result<Samples, String> {
    let values = [record(1), record(2)];
    let mut kept = Samples::default();
    let warmup = samples / 10;
    for i in 0..warmup + samples {
        let new_key = format!("{:016x}_6745c1a0", i as u64 + 1);
        let into = (i >= warmup).then_some(&mut kept);
        sample(side, key, &new_key, &values[i % 2], into).await?;
    }
    Ok(kept)
}

/// Samples both sides `samples` times after a warm-up of a tenth as many
/// (at least 10), alternating which side goes first so neither always
/// follows the other. Each side rewrites its existing key; new keys are
/// `a{i:015x}_6745c1a0` for side `a` and `d{i:015x}_6745c1a0` for side `d`.
pub async fn compare(
    a: &mut impl Side,
    a_key: &str,
    d: &mut impl Side,
    d_key: &str,
    samples: usize,
) -> Result<(Samples, Samples), String> {
    let values = [record(1), record(2)];
    let (mut a_samples, mut d_samples) = (Samples::default(), Samples::default());
    let warmup = (samples / 10).max(10);
    for i in 0..warmup + samples {
        let value = &values[i % 2];
        let keep = i >= warmup;
        let (a_new, d_new) = (format!("a{i:015x}_6745c1a0"), format!("d{i:015x}_6745c1a0"));
        let (a_into, d_into) = if keep {
            (Some(&mut a_samples), Some(&mut d_samples))
        } else {
            (None, None)
        };
        if i % 2 == 0 {
            sample(a, a_key, &a_new, value, a_into).await?;
            sample(d, d_key, &d_new, value, d_into).await?;
        } else {
            sample(d, d_key, &d_new, value, d_into).await?;
            sample(a, a_key, &a_new, value, a_into).await?;
        }
    }
    Ok((a_samples, d_samples))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rocket_kvsession::MemoryStore;

    #[tokio::test]
    async fn a_store_side_keeps_the_version_and_measures_every_operation() {
        let mut side =
            StoreSide::new(MemoryStore::new(), "memory").with_ttl(Duration::from_secs(60));
        side.create("k_1", &record(0)).await.unwrap();
        let samples = measure(&mut side, "k_1", 100).await.unwrap();
        assert_eq!(samples.get.len(), 100);
        assert_eq!(samples.put.len(), 100);
        assert_eq!(samples.create.len(), 100);
        // Every new key was created once: creating one again is refused.
        let again = side
            .create(&format!("{:016x}_6745c1a0", 1), &record(0))
            .await;
        assert_eq!(again, Err("memory create: key exists".to_string()));
        let stored = side.store().get("k_1").await.unwrap().unwrap();
        assert!(stored.expires_at.is_some());
    }

    #[tokio::test]
    async fn compare_measures_both_sides_and_checks_reads() {
        let mut a = StoreSide::new(MemoryStore::new(), "a");
        let mut d = StoreSide::new(MemoryStore::new(), "d");
        a.create("a_1", &record(0)).await.unwrap();
        d.create("d_1", &record(0)).await.unwrap();
        let (sa, sd) = compare(&mut a, "a_1", &mut d, "d_1", 20).await.unwrap();
        assert_eq!((sa.put.len(), sd.put.len()), (20, 20));
        // A stale version is refused, so a side that lost its key fails.
        a.store().delete("a_1").await.unwrap();
        assert!(compare(&mut a, "a_1", &mut d, "d_1", 20).await.is_err());
    }
}
