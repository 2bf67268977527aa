//! The [`KeyValueStore`] trait every session backend implements.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use futures_util::stream::{self, BoxStream, StreamExt, TryStreamExt};

use crate::error::StoreError;

/// An opaque version token of a stored record.
///
/// Stores that support compare-and-swap ([`KeyValueStore::supports_versioning`])
/// return a new version on every write; an update that names the version it
/// loaded only succeeds while the stored record still has that version. What
/// the token holds is the store's business (a counter, an ETag, ...); the
/// engine only compares it for equality by handing it back.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Version(Arc<str>);

impl Version {
    /// Wraps a store-specific version token.
    pub fn new(token: impl Into<Arc<str>>) -> Self {
        Version(token.into())
    }

    /// The token as the store gave it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<u64> for Version {
    fn from(n: u64) -> Self {
        Version(n.to_string().into())
    }
}

impl From<i64> for Version {
    fn from(n: i64) -> Self {
        Version(n.to_string().into())
    }
}

impl fmt::Debug for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Version({})", self.0)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A record read from a store.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Record {
    /// The stored bytes, exactly as written.
    pub value: Vec<u8>,
    /// The record's version, for stores that support compare-and-swap.
    pub version: Option<Version>,
    /// The expiry the store holds for the record, for TTL-capable stores that
    /// were handed one.
    pub expires_at: Option<SystemTime>,
}

impl Record {
    /// A record with the given value, version and expiry.
    pub fn new(value: Vec<u8>, version: Option<Version>, expires_at: Option<SystemTime>) -> Self {
        Record {
            value,
            version,
            expires_at,
        }
    }
}

/// What [`KeyValueStore::create`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum CreateOutcome {
    /// The record was written; it has this version (if the store versions records).
    Created(Option<Version>),
    /// A record with that key already exists; nothing was written.
    AlreadyExists,
}

/// What [`KeyValueStore::update`] and [`KeyValueStore::touch`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum UpdateOutcome {
    /// The record was rewritten; it now has this version (if the store versions records).
    Updated(Option<Version>),
    /// No record has that key (it expired or was deleted); nothing was written.
    Missing,
    /// The record exists but its version is not the expected one; nothing was written.
    Conflict,
}

/// One key found by [`KeyValueStore::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyInfo {
    /// The full key, prefix included.
    pub key: String,
    /// When the record was last written, where the store knows it.
    pub last_modified: Option<SystemTime>,
}

impl KeyInfo {
    /// A listed key with its last-modified time, if known.
    pub fn new(key: impl Into<String>, last_modified: Option<SystemTime>) -> Self {
        KeyInfo {
            key: key.into(),
            last_modified,
        }
    }
}

/// A pluggable, asynchronous key-value store for session records.
///
/// Keys are the session key prefix followed by a session id (ASCII: lower-case
/// hex digits and `_`, plus whatever the prefix holds). Values are opaque bytes.
///
/// The contract, checked for every store by the `conformance` suite:
///
/// * [`create`](Self::create) writes only if no live record has the key
///   (insert-if-absent) and says [`CreateOutcome::AlreadyExists`] otherwise.
/// * [`update`](Self::update) never creates: a vanished record gives
///   [`UpdateOutcome::Missing`], so a session that was logged out elsewhere is
///   never brought back. With an expected version, on stores that
///   [support versioning](Self::supports_versioning), it is a compare-and-swap.
/// * Stores that [support TTL](Self::supports_ttl) are handed the expiry on
///   every write, and must never return a record past its expiry, even if the
///   backend has not removed it yet.
/// * [`list`](Self::list) streams every key under a prefix without loading the
///   values, so a sweep over millions of sessions runs in constant memory.
///
/// The trait is object safe; the engine holds stores as `Arc<dyn KeyValueStore>`.
#[async_trait]
pub trait KeyValueStore: Send + Sync + 'static {
    /// A short name for logs and errors (`"memory"`, `"mongodb"`, ...).
    fn name(&self) -> &'static str;

    /// Whether the store takes the expiry it is handed on every write and
    /// never returns a record past it. Stores without TTL are swept by
    /// [`cleanup_sessions`](crate::cleanup_sessions) from the keys alone.
    ///
    /// A TTL-capable store whose backend removes expired records by itself
    /// (a Redis TTL, a MongoDB TTL index) needs no sweep; one that only
    /// filters them out on read (a SQL table with an expiry column) offers
    /// [`delete_expired`](Self::delete_expired), which the sweep uses.
    fn supports_ttl(&self) -> bool;

    /// Whether [`update`](Self::update) honours an expected version
    /// (compare-and-swap). Defaults to `false`.
    fn supports_versioning(&self) -> bool {
        false
    }

    /// Prepares the store (creates indexes, directories, ...). Called once when
    /// the fairing ignites; must be idempotent. Defaults to doing nothing.
    async fn init(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Checks that the store can hold `key` ([`StoreError::InvalidKey`]
    /// otherwise), without any I/O. The fairing calls it at ignite with the
    /// longest key the configuration can produce, so a `key_prefix` the
    /// store cannot hold refuses launch instead of failing every request.
    /// Stores that accept any key keep the default, which accepts all.
    fn check_key(&self, key: &str) -> Result<(), StoreError> {
        let _ = key;
        Ok(())
    }

    /// Reads a record; `None` if there is none or it has expired.
    async fn get(&self, key: &str) -> Result<Option<Record>, StoreError>;

    /// Writes a record only if no live record has this key.
    async fn create(
        &self,
        key: &str,
        value: &[u8],
        expires_at: Option<SystemTime>,
    ) -> Result<CreateOutcome, StoreError>;

    /// Rewrites an existing record; never creates one.
    ///
    /// With `expected` set and a store that supports versioning, the write
    /// happens only if the stored version equals `expected`
    /// ([`UpdateOutcome::Conflict`] otherwise). Stores without versioning
    /// ignore `expected`.
    async fn update(
        &self,
        key: &str,
        value: &[u8],
        expected: Option<&Version>,
        expires_at: Option<SystemTime>,
    ) -> Result<UpdateOutcome, StoreError>;

    /// Moves an existing record's expiry without changing its value.
    ///
    /// TTL stores should override this to rewrite only the expiry (and keep
    /// the version, since the value did not change). The default reads the
    /// record and writes it back unchanged with a compare-and-swap, which
    /// also refreshes its last-modified time.
    async fn touch(&self, key: &str, expires_at: SystemTime) -> Result<UpdateOutcome, StoreError> {
        match self.get(key).await? {
            None => Ok(UpdateOutcome::Missing),
            Some(record) => {
                self.update(
                    key,
                    &record.value,
                    record.version.as_ref(),
                    Some(expires_at),
                )
                .await
            }
        }
    }

    /// Deletes a record. Deleting a key that does not exist is not an error.
    async fn delete(&self, key: &str) -> Result<(), StoreError>;

    /// Deletes many records; absent keys are not an error. On success every
    /// key is gone. The default deletes them one by one, 16 at a time;
    /// stores with a bulk delete should override it.
    async fn delete_many(&self, keys: Vec<String>) -> Result<(), StoreError> {
        stream::iter(keys)
            .map(|key| async move { self.delete(&key).await })
            .buffer_unordered(16)
            .try_collect::<()>()
            .await?;
        Ok(())
    }

    /// Streams every key that starts with `prefix` (all keys for `""`), in no
    /// particular order, without reading the values.
    fn list<'a>(&'a self, prefix: &'a str) -> BoxStream<'a, Result<KeyInfo, StoreError>>;

    /// Deletes, in one statement, at most `limit` records under `prefix`
    /// whose stored expiry is at or before `now`, and returns how many it
    /// deleted; `Ok(None)` if the store cannot do this (the default).
    ///
    /// This is the native path of [`cleanup_sessions`](crate::cleanup_sessions)
    /// for stores that keep the expiry they are handed in a queryable field
    /// but whose backend does not remove expired records by itself (a SQL
    /// table with an `expires_at` column). The sweep calls it repeatedly
    /// until a call deletes fewer than `limit` records, so that no single
    /// statement holds its locks for long. Records written without an expiry
    /// are left alone: the sweep finds them through
    /// [`list_without_expiry`](Self::list_without_expiry) and judges them by
    /// their key. A store that overrides this must override that too.
    async fn delete_expired(
        &self,
        prefix: &str,
        now: SystemTime,
        limit: usize,
    ) -> Result<Option<u64>, StoreError> {
        let _ = (prefix, now, limit);
        Ok(None)
    }

    /// Streams the keys under `prefix` whose records hold no expiry that
    /// [`delete_expired`](Self::delete_expired) acts on, like
    /// [`list`](Self::list). The default lists every key under the prefix,
    /// which is right for every store without a native expiry sweep.
    fn list_without_expiry<'a>(
        &'a self,
        prefix: &'a str,
    ) -> BoxStream<'a, Result<KeyInfo, StoreError>> {
        self.list(prefix)
    }
}

#[async_trait]
impl<S: KeyValueStore + ?Sized> KeyValueStore for Arc<S> {
    fn name(&self) -> &'static str {
        (**self).name()
    }
    fn supports_ttl(&self) -> bool {
        (**self).supports_ttl()
    }
    fn supports_versioning(&self) -> bool {
        (**self).supports_versioning()
    }
    async fn init(&self) -> Result<(), StoreError> {
        (**self).init().await
    }
    fn check_key(&self, key: &str) -> Result<(), StoreError> {
        (**self).check_key(key)
    }
    async fn get(&self, key: &str) -> Result<Option<Record>, StoreError> {
        (**self).get(key).await
    }
    async fn create(
        &self,
        key: &str,
        value: &[u8],
        expires_at: Option<SystemTime>,
    ) -> Result<CreateOutcome, StoreError> {
        (**self).create(key, value, expires_at).await
    }
    async fn update(
        &self,
        key: &str,
        value: &[u8],
        expected: Option<&Version>,
        expires_at: Option<SystemTime>,
    ) -> Result<UpdateOutcome, StoreError> {
        (**self).update(key, value, expected, expires_at).await
    }
    async fn touch(&self, key: &str, expires_at: SystemTime) -> Result<UpdateOutcome, StoreError> {
        (**self).touch(key, expires_at).await
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        (**self).delete(key).await
    }
    async fn delete_many(&self, keys: Vec<String>) -> Result<(), StoreError> {
        (**self).delete_many(keys).await
    }
    fn list<'a>(&'a self, prefix: &'a str) -> BoxStream<'a, Result<KeyInfo, StoreError>> {
        (**self).list(prefix)
    }
    async fn delete_expired(
        &self,
        prefix: &str,
        now: SystemTime,
        limit: usize,
    ) -> Result<Option<u64>, StoreError> {
        (**self).delete_expired(prefix, now, limit).await
    }
    fn list_without_expiry<'a>(
        &'a self,
        prefix: &'a str,
    ) -> BoxStream<'a, Result<KeyInfo, StoreError>> {
        (**self).list_without_expiry(prefix)
    }
}
