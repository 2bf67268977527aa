//! The [`KeyValueStore`] trait every session backend implements.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use futures_util::stream::{self, BoxStream, StreamExt, TryStreamExt};

use crate::error::StoreError;

/// An opaque version token of a stored record.
///
/// Stores that support compare-and-swap ([`Capabilities::compare_and_swap`])
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

/// What a store does with the expiry it is handed on a write: the one place
/// a store says how its records end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Expiry {
    /// The store keeps no expiry: the engine hands it none (`expires_at` is
    /// always `None`), records live until they are deleted, and
    /// [`cleanup_sessions`](crate::cleanup_sessions) deletes expired
    /// sessions by their keys (the creation time in the id, and the
    /// listing's last-modified time for an idle timeout). A directory of
    /// files, an object store bucket.
    Ignored,
    /// The store keeps the expiry and never returns a record past it, but its
    /// backend does not delete expired records by itself: they stay until a
    /// sweep. A store of this kind usually offers a native sweep
    /// ([`KeyValueStore::expired_deletion`]). A SQL table with an
    /// `expires_at` column.
    FilteredOnRead,
    /// The store keeps the expiry, never returns a record past it, and its
    /// backend deletes expired records by itself: no sweep is needed. A Redis
    /// TTL, a MongoDB TTL index, the embedded [`MemoryStore`](crate::MemoryStore).
    RemovedByBackend,
}

impl Expiry {
    /// Whether the store keeps the expiry it is handed (so the engine hands
    /// it one, with `set_ttl`).
    pub fn is_kept(self) -> bool {
        !matches!(self, Expiry::Ignored)
    }

    /// Whether expired records stay until a sweep deletes them (schedule
    /// one with `cleanup_interval`).
    pub fn needs_sweep(self) -> bool {
        !matches!(self, Expiry::RemovedByBackend)
    }
}

/// What a store can do, said once: how it treats expiries and whether its
/// updates can be conditional. The optional operations that come with
/// methods of their own are sub-traits a store hands out
/// ([`KeyValueStore::compare_and_delete`], [`KeyValueStore::expired_deletion`]).
///
/// ```
/// use rocket_kvsession::{Capabilities, Expiry};
///
/// let caps = Capabilities::new(Expiry::RemovedByBackend).with_compare_and_swap();
/// assert!(caps.compare_and_swap && caps.expiry.is_kept());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// What the store does with the expiry it is handed.
    pub expiry: Expiry,
    /// Whether [`KeyValueStore::update`] honours an expected version
    /// (compare-and-swap). Without it, concurrent saves of one session can
    /// overwrite each other's changes, and a logout racing a save can lose.
    pub compare_and_swap: bool,
}

impl Capabilities {
    /// A store that treats expiries as `expiry` and has no compare-and-swap.
    pub const fn new(expiry: Expiry) -> Self {
        Capabilities {
            expiry,
            compare_and_swap: false,
        }
    }

    /// The same, with compare-and-swap updates.
    pub const fn with_compare_and_swap(mut self) -> Self {
        self.compare_and_swap = true;
        self
    }
}

/// What [`CompareAndDelete::delete_if`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum DeleteOutcome {
    /// The record had the expected version and is gone.
    Deleted,
    /// No record has that key (it expired or was deleted); nothing changed.
    Missing,
    /// The record exists but its version is not the expected one; it is kept.
    Conflict,
}

/// A pluggable, asynchronous key-value store for session records.
///
/// Keys are the session key prefix followed by a session id or an owner
/// index name (the prefix as configured, then ASCII lower-case hex digits,
/// `_` and `owner_`). Values are opaque bytes. The trait is object safe; the
/// engine holds stores as `Arc<dyn KeyValueStore>`.
///
/// # The contract
///
/// Checked for every store by the `conformance` suite (feature
/// `conformance`, `conformance::run_all` and `conformance::app::run_all`):
///
/// * [`capabilities`](Self::capabilities) says, once, what the store does
///   with expiries ([`Expiry`]) and whether updates are compare-and-swap.
/// * [`create`](Self::create) writes only if no live record has the key
///   (insert-if-absent) and says [`CreateOutcome::AlreadyExists`] otherwise.
/// * [`update`](Self::update) never creates: a vanished record gives
///   [`UpdateOutcome::Missing`], so a session that was logged out elsewhere is
///   never brought back. With an expected version, on stores with
///   [`compare_and_swap`](Capabilities::compare_and_swap), it writes only
///   over that version.
/// * Every write returns the record's new version (on stores with
///   compare-and-swap); [`touch`](Self::touch) keeps it.
/// * A store whose [`Expiry`] keeps expiries is handed one on every write and
///   must never return a record past it, even if the backend has not deleted
///   it yet; a store that ignores them is handed none.
/// * [`delete`](Self::delete) and [`delete_many`](Self::delete_many) of absent
///   keys are not errors.
/// * [`list`](Self::list) streams every key under a prefix without loading the
///   values, so a sweep over millions of sessions runs in constant memory.
/// * Optional: [`compare_and_delete`](Self::compare_and_delete), a delete
///   conditional on the version (the engine then removes ended records and
///   emptied owner indexes instead of leaving markers behind), and
///   [`expired_deletion`](Self::expired_deletion), the native sweep of a
///   store whose backend keeps expiries but does not act on them.
///
/// # Implementing a store
///
/// Every method without a default must be written; the defaults are safe
/// (no preparation, every key accepted, deletes one by one, no optional
/// operation). A wrapper that forwards to another store should forward every
/// method, defaults included (this crate's own `Arc<S>` forwarding is
/// checked with `clippy::missing_trait_methods`), or it silently loses the
/// inner store's optional operations.
#[async_trait]
pub trait KeyValueStore: Send + Sync + 'static {
    /// A short name for logs and errors (`"memory"`, `"mongodb"`, ...).
    fn name(&self) -> &'static str;

    /// What the store can do: how it treats expiries and whether updates are
    /// compare-and-swap.
    fn capabilities(&self) -> Capabilities;

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
    /// With `expected` set and a store with compare-and-swap, the write
    /// happens only if the stored version equals `expected`
    /// ([`UpdateOutcome::Conflict`] otherwise). Stores without
    /// compare-and-swap ignore `expected`.
    async fn update(
        &self,
        key: &str,
        value: &[u8],
        expected: Option<&Version>,
        expires_at: Option<SystemTime>,
    ) -> Result<UpdateOutcome, StoreError>;

    /// Moves an existing record's expiry without changing its value, and
    /// refreshes its last-modified time (what [`list`](Self::list)
    /// reports). The version stays where the backend can keep it; a store
    /// that cannot rewrite the expiry alone reads the record and writes it
    /// back unchanged with a compare-and-swap. The engine calls it only on
    /// stores that keep expiries.
    async fn touch(&self, key: &str, expires_at: SystemTime) -> Result<UpdateOutcome, StoreError>;

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

    /// The store's delete conditional on a record's version, if its backend
    /// has one (`Some(self)`); `None` (the default) if not. With it, a logout
    /// deletes the record it ended in one step and an emptied owner index
    /// is removed; without it, ended records become small markers first.
    fn compare_and_delete(&self) -> Option<&dyn CompareAndDelete> {
        None
    }

    /// The store's native sweep, for a store whose backend keeps expiries
    /// but does not delete expired records ([`Expiry::FilteredOnRead`]):
    /// `Some(self)` if it has one, `None` (the default) to be swept by
    /// listing its keys.
    fn expired_deletion(&self) -> Option<&dyn ExpiredDeletion> {
        None
    }
}

/// A delete conditional on the record's version: the optional
/// compare-and-delete of a [`KeyValueStore`], handed out by
/// [`KeyValueStore::compare_and_delete`].
#[async_trait]
pub trait CompareAndDelete: Send + Sync {
    /// Deletes the record under `key` only if its version is `expected`:
    /// [`DeleteOutcome::Conflict`] (and the record kept) if it has another
    /// version, [`DeleteOutcome::Missing`] if there is none (or it expired).
    async fn delete_if(&self, key: &str, expected: &Version) -> Result<DeleteOutcome, StoreError>;
}

/// The native sweep of a store that keeps the expiry it is handed in a
/// queryable field but whose backend does not delete expired records (a SQL
/// table with an `expires_at` column), handed out by
/// [`KeyValueStore::expired_deletion`]. Its two methods work together:
/// [`cleanup_sessions`](crate::cleanup_sessions) has the store delete what
/// has expired, then judges by their keys only the records that hold no
/// expiry.
#[async_trait]
pub trait ExpiredDeletion: Send + Sync {
    /// Deletes, in one statement, at most `limit` records under `prefix`
    /// whose stored expiry is at or before `now`, and returns how many it
    /// deleted. The sweep calls it repeatedly until a call deletes fewer
    /// than `limit` records, so that no single statement holds its locks for
    /// long. Records written without an expiry are left alone.
    async fn delete_expired(
        &self,
        prefix: &str,
        now: SystemTime,
        limit: usize,
    ) -> Result<u64, StoreError>;

    /// Streams the keys under `prefix` whose records hold no expiry (exactly
    /// those [`delete_expired`](Self::delete_expired) leaves alone), like
    /// [`KeyValueStore::list`].
    fn list_without_expiry<'a>(
        &'a self,
        prefix: &'a str,
    ) -> BoxStream<'a, Result<KeyInfo, StoreError>>;
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl<S: KeyValueStore + ?Sized> KeyValueStore for Arc<S> {
    fn name(&self) -> &'static str {
        (**self).name()
    }
    fn capabilities(&self) -> Capabilities {
        (**self).capabilities()
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
    fn compare_and_delete(&self) -> Option<&dyn CompareAndDelete> {
        (**self).compare_and_delete()
    }
    fn expired_deletion(&self) -> Option<&dyn ExpiredDeletion> {
        (**self).expired_deletion()
    }
}
