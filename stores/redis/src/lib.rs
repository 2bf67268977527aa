#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
// docs.rs: badges naming the feature each gated item needs.
#![cfg_attr(docsrs, feature(doc_cfg))]

// The layers, each importing only those listed before it: `error` (the
// store's name and errors) and `record` (the layout of a stored value)
// import nothing of the crate; `memory_policy` (what the server's
// `maxmemory-policy` means for sessions) only the client; `scripts` (the Lua scripts) the record
// layout; `connect` (`RedisStore`, its connection and timeout) the errors
// and versions; `scan` (listing) the connection; `store` (the
// `KeyValueStore` and `CompareAndDelete` impls) all of them.
mod connect;
mod error;
mod memory_policy;
mod record;
mod scan;
mod scripts;
mod store;

pub use connect::{RedisStore, RedisStoreBuilder, DEFAULT_TIMEOUT};
pub use error::RedisStoreError;

/// The Redis client this crate is built on, re-exported so applications use
/// the same version (for [`RedisStore::new`] and [`RedisStore::new_cluster`]).
pub use redis;

/// What the benchmarks of this repository need from the store's insides.
///
/// Not part of the public API; may change in any release.
#[doc(hidden)]
pub mod __bench {
    pub use crate::scripts::UPDATE_SCRIPT;
}
