#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod connect;
mod error;
mod index;
mod store;

pub use connect::{MongoStoreBuilder, DEFAULT_CONNECT_TIMEOUT, DEFAULT_SERVER_SELECTION_TIMEOUT};
pub use index::TTL_INDEX_NAME;
pub use store::{MongoStore, DEFAULT_OPERATION_TIMEOUT, MAX_KEY_LEN};

/// The MongoDB driver this crate is built on, re-exported so applications use
/// the same version (for [`MongoStore::new`] and
/// [`MongoStoreBuilder::client_options`]).
pub use mongodb;
