#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod connect;
mod error;
mod record;
mod store;

pub use connect::RedisStoreBuilder;
pub use error::RedisStoreError;
pub use store::{RedisStore, DEFAULT_TIMEOUT};

/// The Redis client this crate is built on, re-exported so applications use
/// the same version (for [`RedisStore::new`] and [`RedisStore::new_cluster`]).
pub use redis;
