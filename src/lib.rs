//! rocket_kvsession (docs come from README.md).
#![forbid(unsafe_code)]

mod error;
mod id;
mod memory;
mod store;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;

pub use error::{BoxError, Error, StoreError};
pub use id::{ParseIdError, SessionId, MAX_KEY_BITS, MIN_KEY_BITS};
pub use memory::MemoryStore;
pub use store::{CreateOutcome, KeyInfo, KeyValueStore, Record, UpdateOutcome, Version};
