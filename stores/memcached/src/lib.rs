#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
// docs.rs: badges naming the feature each gated item needs.
#![cfg_attr(docsrs, feature(doc_cfg))]

// The layers, each importing only those listed before it: `error` (the
// store's name and errors), `record` (the layout of a stored value) and
// `expiry` (the expiry memcached is handed) import nothing of the crate;
// `key` (which keys memcached holds) and `admin` (the store's own
// connections: `stats settings`, the crawler's dump) the errors; `routing`
// (which server holds a key) nothing; `connect` (`MemcachedStore`, its
// client, timeout and item size limit) the errors, `admin` and `routing`;
// `crawler` (listing) the connection and `admin`; `store` (the
// `KeyValueStore` and `CompareAndDelete` impls) all of them.
mod admin;
mod connect;
mod crawler;
mod error;
mod expiry;
mod key;
mod record;
mod routing;
mod store;

pub use connect::{
    MemcachedStore, MemcachedStoreBuilder, DEFAULT_CRAWL_WAIT, DEFAULT_ITEM_SIZE_LIMIT,
    DEFAULT_POOL_SIZE, DEFAULT_TIMEOUT,
};
pub use error::MemcachedStoreError;

/// The memcached client this crate is built on, re-exported so applications
/// use the same version (for [`MemcachedStore::new`]): its meta-protocol
/// client [`memcache::exp::AsyncMetaClient`].
pub use memcache;
