#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
// docs.rs: badges naming the feature each gated item needs.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod connect;
mod error;
mod keys;
mod local_dir;
mod locks;
mod objects;
mod store;
mod update;
mod version;

pub use keys::{MAX_KEY_LEN, MAX_PREFIX_LEN};
/// The `object_store` crate this store is built on, re-exported so that
/// stores you build yourself match its version.
pub use object_store;
pub use store::ObjectStoreKv;
pub use update::UpdateStrategy;
