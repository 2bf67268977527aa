#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
// docs.rs: badges naming the feature each gated item needs.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod cleanup;
mod clock;
mod config;
mod cookie;
mod csrf;
mod engine;
mod error;
mod events;
mod fairing;
mod flash;
mod id;
mod keys;
mod lifetime;
mod manager;
mod memory;
mod metrics;
mod migrating;
mod owners;
mod record;
mod retry;
mod rng;
mod seal;
mod session;
mod state;
mod store;
mod time;
mod token;

#[cfg(any(test, feature = "conformance"))]
#[cfg_attr(docsrs, doc(cfg(feature = "conformance")))]
pub mod conformance;
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;

pub use cleanup::{cleanup_sessions, CleanupReport};
pub use config::{Secret, SessionConfig};
pub use cookie::SameSitePolicy;
pub use csrf::{CsrfChecked, CsrfError, CsrfForm, CSRF_FIELD, CSRF_HEADER, CSRF_KEY};
pub use error::{redact_ids, BoxError, Error, StoreError};
pub use events::{SessionEvent, SessionEventKind};
pub use fairing::KvSession;
pub use flash::{Flash, FLASH_KEY, MAX_FLASHES, MAX_FLASH_LEN};
pub use manager::{SessionInfo, SessionManager, LABEL_KEY, MAX_LABEL_LEN};
pub use memory::MemoryStore;
pub use migrating::MigratingStore;
pub use session::Session;
pub use store::{
    Capabilities, CompareAndDelete, CreateOutcome, DeleteOutcome, ExpiredDeletion, Expiry, KeyInfo,
    KeyValueStore, Record, UpdateOutcome, Version,
};

/// Access to internals for this repository's benchmarks. Not part of the
/// public API and not covered by semver: it may change or go away in any
/// release. Always compiled (it is small), so no feature of the crate
/// differs between what the benchmarks and what users build.
#[doc(hidden)]
#[path = "bench_internals.rs"]
pub mod __bench;
