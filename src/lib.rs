#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod cleanup;
mod config;
mod engine;
mod envelope;
mod error;
mod fairing;
mod id;
mod memory;
mod session;
mod store;

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
    use std::time::Duration;

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

    /// Decodes a stored session record as the engine does.
    pub fn decode_record(bytes: &[u8]) -> Result<RecordParts, crate::Error> {
        let envelope = crate::envelope::Envelope::decode(bytes)?;
        Ok((envelope.last_active, envelope.permanent, envelope.data))
    }
}
