//! [`ObjectStoreKv`]: a [`KeyValueStore`] over any [`ObjectStore`].

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use futures_util::future::ready;
use futures_util::stream::{self, BoxStream, StreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, PutMode};
use rocket_kvsession::{
    Capabilities, CreateOutcome, Expiry, KeyInfo, KeyValueStore, Record, StoreError, UpdateOutcome,
    Version,
};
use tokio::sync::OnceCell;

use crate::error::{convert, STORE_NAME};
use crate::keys::{check_key, check_key_prefix, key_of, object_path, parse_prefix};
use crate::local_dir::{create_dir, delete_files, list_dir};
use crate::locks::KeyLocks;
use crate::objects;
use crate::update::{self, UpdateStrategy};

/// How many keys [`ObjectStoreKv::delete_many`](KeyValueStore::delete_many)
/// deletes under one set of locks when updates are serialized in process.
const DELETE_CHUNK: usize = 256;

/// A session store over any [`ObjectStore`]: a local directory, memory, S3,
/// GCS or Azure.
///
/// Each session is one object, `PREFIX/KEY`, holding exactly the bytes the
/// engine stores. Cheap to clone; clones share the backend and the locks.
///
/// # Keys
///
/// A key must be 1 to [`MAX_KEY_LEN`](crate::keys::MAX_KEY_LEN) bytes of ASCII
/// letters, digits, `_`, `-`, `.` and `:`, and must not start with `.`.
/// Session keys (a key prefix and a session id) always are; anything else
/// (`..`, `/`, empty, non-ASCII, overlong) is refused with
/// [`StoreError::InvalidKey`] before the backend is touched, so no key can
/// reach outside the store's prefix or directory. The store prefix obeys the
/// same rules per `/`-separated segment. On a case-insensitive file system
/// keys that differ only in case share a file; session ids are lower case.
///
/// # Capabilities
///
/// [`Expiry::Ignored`] with compare-and-swap
/// ([`capabilities`](KeyValueStore::capabilities)); no compare-and-delete
/// and no native sweep.
///
/// # Guarantees
///
/// * [`create`](KeyValueStore::create) is collision-safe: `PutMode::Create`
///   (a hard link of a fully written temporary file on a local disk,
///   `If-None-Match: *` on S3). A backend without it is refused with
///   [`StoreError::Misconfigured`] rather than silently overwriting.
/// * Writes are atomic: readers see the old or the new bytes, never a mix.
///   The local file system writes a temporary file and renames it into
///   place, so a crash never leaves a torn session.
/// * [`update`](KeyValueStore::update) never creates: a deleted session
///   stays deleted. With an expected [`Version`] it is a compare-and-swap,
///   with the strategy [`UpdateStrategy`] names:
///   * [`ConditionalPut`](UpdateStrategy::ConditionalPut) (memory, S3 with
///     conditional writes, GCS, Azure): the backend compares the ETag, so the
///     swap is atomic across processes and hosts sharing the bucket.
///   * [`ProcessLocks`](UpdateStrategy::ProcessLocks) (local directory):
///     `LocalFileSystem` cannot write conditionally, so the store takes an
///     in-process lock on the key (striped async mutexes), reads the record,
///     compares its version (the file's ETag and a hash of its bytes, so an
///     inode reused within one timestamp tick cannot pass for an old
///     version), and renames the new file into place. Within one process,
///     between all clones of one `ObjectStoreKv`, this is a true
///     compare-and-swap, and an update cannot resurrect a record that
///     [`delete`](KeyValueStore::delete) removed. **The remaining race:**
///     the lock does not reach other processes, nor a second `ObjectStoreKv`
///     built separately on the same directory in the same process. If two
///     such writers update one session at the same moment, both can pass
///     the comparison and the later rename wins, losing the other's change;
///     and a delete by another writer that falls between an update's check
///     and its rename is undone by that rename. Run one app process per
///     session directory (or use a backend with conditional writes) when
///     that matters.
/// * No expiry is kept ([`Expiry::Ignored`]): the engine hands the store
///   none, and expired sessions are removed by `cleanup_sessions`, which
///   [`list`](KeyValueStore::list) (a streamed listing with each object's
///   last-modified time) and [`delete_many`](KeyValueStore::delete_many)
///   (object_store's bulk `delete_stream`, S3's multi-object delete; on a
///   local directory, batches of unlinks in a few blocking tasks) serve in
///   constant memory. With [`ProcessLocks`](UpdateStrategy::ProcessLocks)
///   `delete_many` takes the key locks too, a chunk of keys at a time, so a
///   concurrent compare-and-swap in this process cannot resurrect a
///   deleted session.
/// * [`touch`](KeyValueStore::touch) reads the record and writes it back
///   unchanged with a compare-and-swap, which refreshes the last-modified
///   time the sweep reads as activity (the engine does not call it, since
///   the store keeps no expiry).
/// * No compare-and-delete
///   ([`compare_and_delete`](KeyValueStore::compare_and_delete) is `None`):
///   object_store's `delete` takes no condition, so "delete only if the
///   version is still the one read" cannot be made atomic across processes
///   (on S3 in particular), and in-process locks would not reach other app
///   servers. The engine therefore ends a logged-out session with a
///   compare-and-swap to a small "ended" marker and deletes it afterwards,
///   and keeps an emptied owner index as a small empty record; markers
///   left behind are session keys that `cleanup_sessions` removes once
///   their lifetime is over.
///
/// Listing filters by key prefix on the client: all objects under the
/// store prefix are listed, so give each app its own store prefix in a
/// shared bucket rather than relying on the key prefix alone.
#[derive(Clone)]
pub struct ObjectStoreKv {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn ObjectStore>,
    base: Path,
    /// The directory a local store was built on (re-created by `init`).
    local_dir: Option<PathBuf>,
    strategy: OnceCell<UpdateStrategy>,
    locks: KeyLocks,
}

impl fmt::Debug for ObjectStoreKv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectStoreKv")
            .field("store", &self.inner.store)
            .field("prefix", &self.inner.base.as_ref())
            .field("strategy", &self.inner.strategy.get())
            .finish_non_exhaustive()
    }
}

impl ObjectStoreKv {
    /// A store over `store`, keeping sessions under the object path `prefix`
    /// (`""` for the root, `"apps/shop/sessions"` for a subdirectory).
    ///
    /// The [`UpdateStrategy`] is found on first use by a probe that writes
    /// nothing on a backend with conditional writes: a conditional put
    /// naming a version no object has.
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidKey`] if the prefix has an empty, hidden (`.`)
    /// or non-ASCII segment.
    pub fn new(store: Arc<dyn ObjectStore>, prefix: &str) -> Result<Self, StoreError> {
        Ok(Self::build(store, parse_prefix(prefix)?, None, None))
    }

    /// The one constructor every other one ends in; a known `strategy`
    /// spares the probe.
    pub(crate) fn build(
        store: Arc<dyn ObjectStore>,
        base: Path,
        local_dir: Option<PathBuf>,
        strategy: Option<UpdateStrategy>,
    ) -> Self {
        ObjectStoreKv {
            inner: Arc::new(Inner {
                store,
                base,
                local_dir,
                strategy: OnceCell::new_with(strategy),
                locks: KeyLocks::new(),
            }),
        }
    }

    /// The backend, e.g. to inspect objects directly.
    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.inner.store
    }

    /// The object path under which sessions are kept (empty for the root).
    pub fn prefix(&self) -> &Path {
        &self.inner.base
    }

    /// The object path of a session key.
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidKey`] for a key this store refuses.
    pub fn path_of(&self, key: &str) -> Result<Path, StoreError> {
        object_path(&self.inner.base, key)
    }

    /// How this store makes updates atomic, probing the backend on first
    /// use (one request that writes nothing on a backend with conditional
    /// writes; a backend that ignores the condition and writes the probe
    /// object anyway gets it deleted again and is treated as having none).
    ///
    /// # Errors
    ///
    /// The backend's error if the probe request fails.
    pub async fn update_strategy(&self) -> Result<UpdateStrategy, StoreError> {
        self.inner
            .strategy
            .get_or_try_init(|| update::probe(self.inner.store.as_ref(), &self.inner.base))
            .await
            .copied()
    }

    fn backend(&self) -> &dyn ObjectStore {
        self.inner.store.as_ref()
    }
}

#[async_trait]
impl KeyValueStore for ObjectStoreKv {
    fn name(&self) -> &'static str {
        STORE_NAME
    }

    /// [`Expiry::Ignored`]: no expiry is kept, expired sessions are removed
    /// by `cleanup_sessions`. With compare-and-swap: every backend
    /// object_store supports reports ETags, and the swap is atomic as
    /// [`UpdateStrategy`] describes.
    fn capabilities(&self) -> Capabilities {
        Capabilities::new(Expiry::Ignored).with_compare_and_swap()
    }

    /// Keys are one path segment of ASCII letters, digits, `_`, `-`, `.`
    /// and `:`, not starting with `.`, at most 200 bytes: a `key_prefix`
    /// such as `shop/` refuses launch.
    fn check_key(&self, key: &str) -> Result<(), StoreError> {
        check_key(key)
    }

    /// Re-creates a local directory that vanished and finds the
    /// [`UpdateStrategy`].
    async fn init(&self) -> Result<(), StoreError> {
        if let Some(dir) = &self.inner.local_dir {
            create_dir(dir)?;
        }
        self.update_strategy().await.map(drop)
    }

    async fn get(&self, key: &str) -> Result<Option<Record>, StoreError> {
        let path = self.path_of(key)?;
        let strategy = self.update_strategy().await?;
        Ok(objects::read(self.backend(), &path)
            .await?
            .map(|(value, meta)| {
                let version = strategy.version_of_object(&meta, &value);
                Record::new(value, version, None)
            }))
    }

    async fn create(
        &self,
        key: &str,
        value: &[u8],
        _expires_at: Option<SystemTime>,
    ) -> Result<CreateOutcome, StoreError> {
        use object_store::Error as E;
        let path = self.path_of(key)?;
        let strategy = self.update_strategy().await?;
        match objects::put(self.backend(), &path, value, PutMode::Create).await {
            Ok(put) => Ok(CreateOutcome::Created(strategy.version_of_put(&put, value))),
            Err(E::AlreadyExists { .. }) => Ok(CreateOutcome::AlreadyExists),
            Err(e @ (E::NotImplemented { .. } | E::NotSupported { .. })) => {
                Err(StoreError::misconfigured_by(
                    STORE_NAME,
                    "the backend cannot create an object only if it is absent \
                     (PutMode::Create), so new sessions could overwrite each other; \
                     for S3 enable conditional writes (`aws_conditional_put=etag`)",
                    e,
                ))
            }
            Err(e) => Err(convert(e)),
        }
    }

    async fn update(
        &self,
        key: &str,
        value: &[u8],
        expected: Option<&Version>,
        _expires_at: Option<SystemTime>,
    ) -> Result<UpdateOutcome, StoreError> {
        let path = self.path_of(key)?;
        match self.update_strategy().await? {
            UpdateStrategy::ConditionalPut => {
                update::update_conditional(self.backend(), &path, value, expected).await
            }
            UpdateStrategy::ProcessLocks => {
                let locks = &self.inner.locks;
                update::update_locked(self.backend(), locks, key, &path, value, expected).await
            }
        }
    }

    /// Reads the record and writes it back unchanged with a
    /// compare-and-swap on the version it read, refreshing its
    /// last-modified time (what [`list`](KeyValueStore::list) reports and
    /// the sweep reads as activity); the expiry is not kept. Like any write
    /// it returns the record's new version. [`UpdateOutcome::Missing`] if
    /// there is no record, [`UpdateOutcome::Conflict`] if another write came
    /// between the read and the write.
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

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let path = self.path_of(key)?;
        let _guard = match self.update_strategy().await? {
            UpdateStrategy::ProcessLocks => Some(self.inner.locks.lock(key).await),
            UpdateStrategy::ConditionalPut => None,
        };
        objects::delete(self.backend(), &path).await
    }

    /// Deletes in bulk; all keys are checked before anything is deleted.
    ///
    /// A [`local_dir`](ObjectStoreKv::local_dir) store unlinks the files
    /// itself, 256 keys at a time under their key locks, each
    /// chunk in a few blocking tasks rather than one per file. Other
    /// backends use object_store's bulk `delete_stream` (1,000-key
    /// multi-object deletes on S3), under the key locks too when updates are
    /// serialized in process.
    async fn delete_many(&self, keys: Vec<String>) -> Result<(), StoreError> {
        if let Some(dir) = &self.inner.local_dir {
            for key in &keys {
                check_key(key)?;
            }
            let mut keys = keys.into_iter();
            loop {
                let chunk: Vec<String> = keys.by_ref().take(DELETE_CHUNK).collect();
                if chunk.is_empty() {
                    return Ok(());
                }
                let _guards = self
                    .inner
                    .locks
                    .lock_many(chunk.iter().map(String::as_str))
                    .await;
                delete_files(dir, chunk).await?;
            }
        }
        let paths = keys
            .iter()
            .map(|key| self.path_of(key))
            .collect::<Result<Vec<_>, _>>()?;
        match self.update_strategy().await? {
            UpdateStrategy::ConditionalPut => objects::delete_all(self.backend(), paths).await?,
            UpdateStrategy::ProcessLocks => {
                let mut paths = paths.into_iter();
                for chunk in keys.chunks(DELETE_CHUNK) {
                    let _guards = self
                        .inner
                        .locks
                        .lock_many(chunk.iter().map(String::as_str))
                        .await;
                    let chunk_paths = paths.by_ref().take(chunk.len()).collect();
                    objects::delete_all(self.backend(), chunk_paths).await?;
                }
            }
        }
        Ok(())
    }

    /// Streams the objects directly under the store prefix whose names are
    /// valid keys starting with `prefix`, with their last-modified times.
    ///
    /// A [`local_dir`](ObjectStoreKv::local_dir) store reads its directory
    /// directly (one `fstatat` per file, regular files only, symbolic links
    /// are not followed) instead of `LocalFileSystem::list`'s recursive walk,
    /// which resolves each file's full path three times.
    fn list<'a>(&'a self, prefix: &'a str) -> BoxStream<'a, Result<KeyInfo, StoreError>> {
        if let Err(e) = check_key_prefix(prefix) {
            return stream::once(ready(Err(e))).boxed();
        }
        if let Some(dir) = &self.inner.local_dir {
            return list_dir(dir.clone(), prefix.to_owned());
        }
        let base = self.inner.base.clone();
        let listing = if base.is_root() {
            self.inner.store.list(None)
        } else {
            self.inner.store.list(Some(&base))
        };
        listing
            .filter_map(move |entry| {
                ready(match entry {
                    Ok(meta) => key_of(&base, &meta.location)
                        .filter(|key| key.starts_with(prefix))
                        .map(|key| Ok(KeyInfo::new(key, Some(meta.last_modified.into())))),
                    // An object deleted while the listing ran.
                    Err(object_store::Error::NotFound { .. }) => None,
                    Err(e) => Some(Err(convert(e))),
                })
            })
            .boxed()
    }
}
