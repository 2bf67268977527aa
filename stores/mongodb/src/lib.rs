#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod connect;
mod error;
mod index;
mod schema;
mod store;
mod timeout;

pub use connect::{MongoStoreBuilder, DEFAULT_CONNECT_TIMEOUT, DEFAULT_SERVER_SELECTION_TIMEOUT};
pub use index::TTL_INDEX_NAME;
pub use schema::MAX_KEY_LEN;
pub use store::MongoStore;
pub use timeout::DEFAULT_OPERATION_TIMEOUT;

/// The MongoDB driver this crate is built on, re-exported so applications use
/// the same version (for [`MongoStore::new`] and
/// [`MongoStoreBuilder::client_options`]).
pub use mongodb;
