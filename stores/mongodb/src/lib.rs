#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
// docs.rs: badges naming the feature each gated item needs.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod connect;
mod error;
mod index;
mod schema;
mod store;
mod timeout;

/// The store's own filters, update documents and decoding, for this
/// repository's benchmarks. Not part of the public API; may change in any
/// release.
#[doc(hidden)]
#[path = "bench_internals.rs"]
pub mod __bench;

pub use connect::{MongoStoreBuilder, DEFAULT_CONNECT_TIMEOUT, DEFAULT_SERVER_SELECTION_TIMEOUT};
pub use index::TTL_INDEX_NAME;
pub use schema::MAX_KEY_LEN;
pub use store::{MongoStore, DEFAULT_OPERATION_TIMEOUT};

/// The MongoDB driver this crate is built on, re-exported so applications use
/// the same version (for [`MongoStore::new`] and
/// [`MongoStoreBuilder::client_options`]).
pub use mongodb;
