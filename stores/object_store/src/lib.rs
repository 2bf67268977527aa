#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod dir_listing;
mod error;
mod keys;
mod kv;
mod locks;

pub use keys::{MAX_KEY_LEN, MAX_PREFIX_LEN};
pub use kv::{ObjectStoreKv, UpdateStrategy};
/// The `object_store` crate this store is built on, re-exported so that
/// stores you build yourself match its version.
pub use object_store;

/// The store's name in logs and errors.
const STORE_NAME: &str = "object_store";
