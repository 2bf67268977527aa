#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod cleanup;
mod config;
mod cookie;
mod engine;
mod envelope;
mod error;
mod fairing;
mod id;
mod memory;
mod session;
mod state;
mod store;
mod time;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;

pub use cleanup::{cleanup_sessions, CleanupReport};
pub use config::{SameSitePolicy, SessionConfig};
pub use error::{BoxError, Error, StoreError};
pub use fairing::KvSession;
pub use id::{ParseIdError, SessionId, MAX_KEY_BITS, MIN_KEY_BITS};
pub use memory::MemoryStore;
pub use session::Session;
pub use store::{CreateOutcome, KeyInfo, KeyValueStore, Record, UpdateOutcome, Version};

/// Access to internals for this repository's benchmarks. Not part of the
/// public API: it may change or go away in any release.
#[doc(hidden)]
pub mod __bench {
    use std::collections::BTreeMap;
    use std::time::{Duration, Instant};

    /// A decoded record: last activity, permanent flag, encoded values.
    pub type RecordParts = (u64, bool, BTreeMap<String, Vec<u8>>);

    /// Encodes a session record exactly as the engine stores it.
    pub fn encode_record(
        last_active: u64,
        permanent: bool,
        data: &BTreeMap<String, Vec<u8>>,
    ) -> Vec<u8> {
        crate::envelope::encode_parts(last_active, permanent, data)
    }

    /// A 1 KiB record of arbitrary bytes, the same for the same seed.
    pub fn record(seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..1024)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    /// The `p` quantile (0 to 1) of sorted, non-empty samples.
    pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
        let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
        sorted[i.min(sorted.len() - 1)]
    }

    /// A duration in microseconds.
    pub fn micros(d: Duration) -> f64 {
        d.as_secs_f64() * 1e6
    }

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

    /// Decodes a stored session record as the engine does.
    pub fn decode_record(bytes: &[u8]) -> Result<RecordParts, crate::Error> {
        let envelope = crate::envelope::Envelope::decode(bytes)?;
        Ok((envelope.last_active, envelope.permanent, envelope.data))
    }
}
