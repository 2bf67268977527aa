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

    /// Decodes a stored session record as the engine does.
    pub fn decode_record(bytes: &[u8]) -> Result<RecordParts, crate::Error> {
        let envelope = crate::envelope::Envelope::decode(bytes)?;
        Ok((envelope.last_active, envelope.permanent, envelope.data))
    }
}
