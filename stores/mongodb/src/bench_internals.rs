//! The filters, update documents and decoding [`MongoStore`] uses, so that
//! `benches/store_latency.rs` sends exactly the store's commands with the
//! raw driver beside the store, instead of copies of them.
//!
//! Not part of the public API; may change in any release.
//!
//! [`MongoStore`]: crate::store::MongoStore

use std::time::SystemTime;

use mongodb::bson::{DateTime, Document};
use rocket_kvsession::{Record, StoreError, Version};

use crate::schema;

/// The document `create` inserts: a new session at version 1.
pub fn new_document(key: &str, value: &[u8], expires_at: Option<SystemTime>) -> Document {
    schema::new_document(key, value, expires_at)
}

/// The filter `get` reads with: a live (unexpired) document with this key.
pub fn live(key: &str, now: DateTime) -> Document {
    schema::live(key, now)
}

/// The filter of an `update` with an expected version: a live document with
/// this key at this version.
pub fn live_at_version(key: &str, now: DateTime, version: i64) -> Document {
    schema::live_at_version(key, now, version)
}

/// The update document of `update`: the new value and expiry, the version
/// bumped.
pub fn rewrite(value: &[u8], expires_at: Option<SystemTime>) -> Document {
    schema::rewrite(value, expires_at)
}

/// The version number an `update` filters on for a token the store handed
/// out.
pub fn parse_version(version: &Version) -> Option<i64> {
    schema::parse_version(version)
}

/// The record `get` makes of a session document.
///
/// # Errors
///
/// [`StoreError::Backend`] for a document without a binary `value`.
pub fn record_of(key: &str, document: &Document) -> Result<Record, StoreError> {
    schema::record_of(key, document)
}
