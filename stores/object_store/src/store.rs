//! [`ObjectStoreKv`]: a [`KeyValueStore`] over any [`ObjectStore`].

use std::fmt;
use std::hash::{DefaultHasher, Hasher};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use futures::future::ready;
use futures::stream::{self, BoxStream, StreamExt};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    GetOptions, ObjectStore, ObjectStoreExt, ObjectStoreScheme, PutMode, PutOptions, PutPayload,
    PutResult, UpdateVersion,
};
use rocket_kvsession::{
    CreateOutcome, KeyInfo, KeyValueStore, Record, StoreError, UpdateOutcome, Version,
};
use tokio::sync::OnceCell;
use url::Url;

use crate::dir_listing::list_dir;
use crate::error::convert;
use crate::keys::{check_key_prefix, key_of, object_path, parse_prefix};
use crate::locks::KeyLocks;
use crate::STORE_NAME;

/// How many keys [`ObjectStoreKv::delete_many`](KeyValueStore::delete_many)
/// deletes under one set of locks when updates are serialized in process.
const DELETE_CHUNK: usize = 256;

/// How often an update without an expected version re-reads the current
/// version after another writer changed the object in between.
const BLIND_UPDATE_ATTEMPTS: usize = 16;

/// The name of the object the conditional-update probe addresses. It is
/// never written on a backend that honours conditional updates, and it can
/// never collide with a session key (keys cannot start with `.`).
const PROBE_NAME: &str = ".kvsession-update-probe";

/// How [`update`](KeyValueStore::update) makes its compare-and-swap atomic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum UpdateStrategy {
    /// The backend checks the version itself (`PutMode::Update`: an
    /// `If-Match` conditional write on S3, GCS and Azure, an ETag check in
    /// `InMemory`). Safe across any number of processes and hosts.
    ConditionalPut,
    /// The backend has no conditional update (the local file system). The
    /// store reads, compares and rewrites while holding an in-process lock on
    /// the key: safe between the requests of one process, not between
    /// processes (see [`ObjectStoreKv`]).
    ProcessLocks,
}

/// A session store over any [`ObjectStore`]: a local directory, memory, S3,
/// GCS or Azure.
///
/// Each session is one object, `PREFIX/KEY`, holding exactly the bytes the
/// engine stores. Cheap to clone; clones share the backend and the locks.
///
/// # Keys
///
/// A key must be 1 to [`MAX_KEY_LEN`](crate::MAX_KEY_LEN) bytes of ASCII
/// letters, digits, `_`, `-`, `.` and `:`, and must not start with `.`.
/// Session keys (a key prefix and a session id) always are; anything else
/// (`..`, `/`, empty, non-ASCII, overlong) is refused with
/// [`StoreError::InvalidKey`] before the backend is touched, so no key can
/// reach outside the store's prefix or directory. The store prefix obeys the
/// same rules per `/`-separated segment. On a case-insensitive file system
/// keys that differ only in case share a file; session ids are lower case.
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
/// * The store is not TTL-capable: it ignores the expiry it is handed, and
///   expired sessions are removed by `cleanup_sessions`, which
///   [`list`](KeyValueStore::list) (a streamed listing with each object's
///   last-modified time) and [`delete_many`](KeyValueStore::delete_many)
///   (object_store's bulk `delete_stream`: S3's multi-object delete, bounded
///   parallel unlinks on a local disk) serve in constant memory.
///   `delete_many` takes the key locks too, a chunk of keys at a time.
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

    /// A store in the local directory `dir`, created (with its parents) if
    /// missing. Sessions are files directly in `dir`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Misconfigured`] if the directory cannot be created or
    /// opened.
    pub fn local_dir(dir: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let dir = dir.into();
        create_dir(&dir)?;
        let local =
            LocalFileSystem::new_with_prefix(&dir).map_err(|e| StoreError::Misconfigured {
                store: STORE_NAME,
                message: format!("cannot use session directory {}", dir.display()).into(),
                source: Some(e.into()),
            })?;
        Ok(Self::build(
            Arc::new(local),
            Path::default(),
            Some(dir),
            Some(UpdateStrategy::ProcessLocks),
        ))
    }

    /// A store in this process's memory (object_store's `InMemory`), mostly
    /// for tests. Data is lost when the store is dropped.
    pub fn in_memory() -> Self {
        Self::build(
            Arc::new(InMemory::new()),
            Path::default(),
            None,
            Some(UpdateStrategy::ConditionalPut),
        )
    }

    /// A store from a URL and backend options, through object_store's own
    /// URL parsing ([`object_store::parse_url_opts`]): `file:///var/sessions`,
    /// `memory:///`, `s3://bucket/prefix`, `gs://bucket/prefix`,
    /// `az://container/prefix` and the other forms object_store knows. The
    /// URL's path is the store prefix. Options are the backends' config keys,
    /// e.g. `("aws_endpoint", "http://127.0.0.1:9000")`,
    /// `("aws_allow_http", "true")`, `("aws_region", "eu-west-1")`. Nothing
    /// is read from the environment; pass credentials as options.
    ///
    /// A `file://` URL is the same as [`local_dir`](Self::local_dir) on its
    /// path (created if missing). S3 needs the crate feature `aws` (on by
    /// default), GCS `gcp`, Azure `azure`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Misconfigured`] for a URL that does not parse, a scheme
    /// whose feature is off, or options the backend rejects.
    pub fn from_url<I, K, V>(url: &str, options: I) -> Result<Self, StoreError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: Into<String>,
    {
        let misconfigured = |message: String, source: Option<rocket_kvsession::BoxError>| {
            StoreError::Misconfigured {
                store: STORE_NAME,
                message: message.into(),
                source,
            }
        };
        let parsed = Url::parse(url)
            .map_err(|e| misconfigured(format!("invalid store URL {url:?}"), Some(e.into())))?;
        let (scheme, _) = ObjectStoreScheme::parse(&parsed)
            .map_err(|e| misconfigured(format!("unsupported store URL {url:?}"), Some(e.into())))?;
        match scheme {
            ObjectStoreScheme::Local => {
                let dir = parsed.to_file_path().map_err(|()| {
                    misconfigured(format!("{url:?} is not a local file path"), None)
                })?;
                Self::local_dir(dir)
            }
            scheme => {
                let (store, prefix) =
                    object_store::parse_url_opts(&parsed, options).map_err(|e| {
                        misconfigured(
                            format!("cannot build the object store for {url:?}"),
                            Some(e.into()),
                        )
                    })?;
                let strategy =
                    (scheme == ObjectStoreScheme::Memory).then_some(UpdateStrategy::ConditionalPut);
                Ok(Self::build(
                    Arc::from(store),
                    parse_prefix(prefix.as_ref())?,
                    None,
                    strategy,
                ))
            }
        }
    }

    fn build(
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
            .get_or_try_init(|| self.probe())
            .await
            .copied()
    }

    async fn probe(&self) -> Result<UpdateStrategy, StoreError> {
        let path = self.inner.base.clone().join(PROBE_NAME);
        let mode = PutMode::Update(UpdateVersion {
            e_tag: Some("\"kvsession-probe-no-such-version\"".to_owned()),
            version: None,
        });
        let result = self
            .inner
            .store
            .put_opts(&path, PutPayload::from_static(b"probe"), mode.into())
            .await;
        use object_store::Error as E;
        let strategy = match result {
            Err(E::Precondition { .. } | E::NotFound { .. }) => UpdateStrategy::ConditionalPut,
            Err(E::NotImplemented { .. } | E::NotSupported { .. }) => UpdateStrategy::ProcessLocks,
            Ok(_) => {
                log::warn!(
                    "{}: the backend ignored a conditional put; updates are serialized \
                     in this process only",
                    self.inner.store
                );
                match self.inner.store.delete(&path).await {
                    Ok(()) | Err(E::NotFound { .. }) => {}
                    Err(e) => return Err(convert(e)),
                }
                UpdateStrategy::ProcessLocks
            }
            Err(e) => return Err(convert(e)),
        };
        log::debug!("{}: update strategy {strategy:?}", self.inner.store);
        Ok(strategy)
    }

    /// The version token of an object with these bytes.
    ///
    /// With conditional puts it is what the backend compares: the ETag, and
    /// the object version if there is one, separated by a newline (neither
    /// can hold one). With process locks it is the ETag and a hash of the
    /// bytes.
    fn version_of(
        strategy: UpdateStrategy,
        e_tag: Option<&str>,
        version: Option<&str>,
        bytes: &[u8],
    ) -> Option<Version> {
        match strategy {
            UpdateStrategy::ConditionalPut => match (e_tag, version) {
                (None, None) => None,
                (e_tag, None) => Some(Version::new(e_tag.unwrap_or_default())),
                (e_tag, Some(v)) => {
                    Some(Version::new(format!("{}\n{v}", e_tag.unwrap_or_default())))
                }
            },
            UpdateStrategy::ProcessLocks => {
                let mut hasher = DefaultHasher::new();
                hasher.write(bytes);
                Some(Version::new(format!(
                    "{}~{:016x}",
                    e_tag.unwrap_or_default(),
                    hasher.finish()
                )))
            }
        }
    }

    fn version_after_put(
        strategy: UpdateStrategy,
        put: &PutResult,
        bytes: &[u8],
    ) -> Option<Version> {
        Self::version_of(
            strategy,
            put.e_tag.as_deref(),
            put.version.as_deref(),
            bytes,
        )
    }

    /// The backend's precondition for a version token made by `version_of`.
    fn update_version(token: &Version) -> Option<UpdateVersion> {
        let (e_tag, version) = match token.as_str().split_once('\n') {
            Some((e_tag, version)) => (e_tag, Some(version.to_owned())),
            None => (token.as_str(), None),
        };
        if e_tag.is_empty() {
            return None;
        }
        Some(UpdateVersion {
            e_tag: Some(e_tag.to_owned()),
            version,
        })
    }

    /// Reads an object: its bytes and version, or `None` if it does not exist.
    async fn read(
        &self,
        path: &Path,
        strategy: UpdateStrategy,
    ) -> Result<Option<(Vec<u8>, Option<Version>)>, StoreError> {
        let result = match self.inner.store.get_opts(path, GetOptions::default()).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(convert(e)),
        };
        let meta = result.meta.clone();
        let bytes = match result.bytes().await {
            Ok(bytes) => bytes,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(convert(e)),
        };
        let version = Self::version_of(
            strategy,
            meta.e_tag.as_deref(),
            meta.version.as_deref(),
            &bytes,
        );
        Ok(Some((bytes.to_vec(), version)))
    }

    /// Whether an object exists.
    async fn exists(&self, path: &Path) -> Result<bool, StoreError> {
        match self.inner.store.head(path).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(convert(e)),
        }
    }

    async fn put(
        &self,
        path: &Path,
        value: &[u8],
        mode: PutMode,
    ) -> object_store::Result<PutResult> {
        self.inner
            .store
            .put_opts(
                path,
                PutPayload::from(value.to_vec()),
                PutOptions::from(mode),
            )
            .await
    }

    /// After a failed conditional put: did the object vanish or change?
    async fn missing_or_conflict(&self, path: &Path) -> Result<UpdateOutcome, StoreError> {
        Ok(if self.exists(path).await? {
            UpdateOutcome::Conflict
        } else {
            UpdateOutcome::Missing
        })
    }

    async fn update_conditional(
        &self,
        path: &Path,
        value: &[u8],
        expected: Option<&Version>,
    ) -> Result<UpdateOutcome, StoreError> {
        use object_store::Error as E;
        let strategy = UpdateStrategy::ConditionalPut;
        if let Some(expected) = expected {
            let Some(precondition) = Self::update_version(expected) else {
                return self.missing_or_conflict(path).await;
            };
            return match self.put(path, value, PutMode::Update(precondition)).await {
                Ok(put) => Ok(UpdateOutcome::Updated(Self::version_after_put(
                    strategy, &put, value,
                ))),
                Err(E::Precondition { .. } | E::NotFound { .. }) => {
                    self.missing_or_conflict(path).await
                }
                Err(e) => Err(convert(e)),
            };
        }
        // No expected version: overwrite whatever is there, but only while
        // something is there, so a deleted session is never brought back.
        for _ in 0..BLIND_UPDATE_ATTEMPTS {
            let meta = match self.inner.store.head(path).await {
                Ok(meta) => meta,
                Err(E::NotFound { .. }) => return Ok(UpdateOutcome::Missing),
                Err(e) => return Err(convert(e)),
            };
            let precondition = UpdateVersion {
                e_tag: meta.e_tag,
                version: meta.version,
            };
            match self.put(path, value, PutMode::Update(precondition)).await {
                Ok(put) => {
                    return Ok(UpdateOutcome::Updated(Self::version_after_put(
                        strategy, &put, value,
                    )))
                }
                Err(E::Precondition { .. } | E::NotFound { .. }) => continue,
                Err(e) => return Err(convert(e)),
            }
        }
        Ok(UpdateOutcome::Conflict)
    }

    async fn update_locked(
        &self,
        key: &str,
        path: &Path,
        value: &[u8],
        expected: Option<&Version>,
    ) -> Result<UpdateOutcome, StoreError> {
        let strategy = UpdateStrategy::ProcessLocks;
        let _guard = self.inner.locks.lock(key).await;
        match expected {
            Some(expected) => match self.read(path, strategy).await? {
                None => return Ok(UpdateOutcome::Missing),
                Some((_, current)) if current.as_ref() != Some(expected) => {
                    return Ok(UpdateOutcome::Conflict)
                }
                Some(_) => {}
            },
            None => {
                if !self.exists(path).await? {
                    return Ok(UpdateOutcome::Missing);
                }
            }
        }
        let put = self
            .put(path, value, PutMode::Overwrite)
            .await
            .map_err(convert)?;
        Ok(UpdateOutcome::Updated(Self::version_after_put(
            strategy, &put, value,
        )))
    }

    /// Deletes `paths` with the backend's bulk delete; absent objects count
    /// as deleted.
    async fn delete_paths(&self, paths: Vec<Path>) -> Result<(), StoreError> {
        let mut results = self
            .inner
            .store
            .delete_stream(stream::iter(paths.into_iter().map(Ok)).boxed());
        while let Some(result) = results.next().await {
            match result {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(convert(e)),
            }
        }
        Ok(())
    }
}

fn create_dir(dir: &std::path::Path) -> Result<(), StoreError> {
    std::fs::create_dir_all(dir).map_err(|e| StoreError::Misconfigured {
        store: STORE_NAME,
        message: format!("cannot create session directory {}", dir.display()).into(),
        source: Some(e.into()),
    })
}

#[async_trait]
impl KeyValueStore for ObjectStoreKv {
    fn name(&self) -> &'static str {
        STORE_NAME
    }

    /// `false`: expired sessions are removed by `cleanup_sessions`.
    fn supports_ttl(&self) -> bool {
        false
    }

    /// `true`: every backend object_store supports reports ETags; the swap
    /// is atomic as [`UpdateStrategy`] describes.
    fn supports_versioning(&self) -> bool {
        true
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
        Ok(self
            .read(&path, strategy)
            .await?
            .map(|(value, version)| Record::new(value, version, None)))
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
        match self.put(&path, value, PutMode::Create).await {
            Ok(put) => Ok(CreateOutcome::Created(Self::version_after_put(
                strategy, &put, value,
            ))),
            Err(E::AlreadyExists { .. }) => Ok(CreateOutcome::AlreadyExists),
            Err(e @ (E::NotImplemented { .. } | E::NotSupported { .. })) => {
                Err(StoreError::Misconfigured {
                    store: STORE_NAME,
                    message: "the backend cannot create an object only if it is absent \
                              (PutMode::Create), so new sessions could overwrite each other; \
                              for S3 enable conditional writes (`aws_conditional_put=etag`)"
                        .into(),
                    source: Some(e.into()),
                })
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
            UpdateStrategy::ConditionalPut => self.update_conditional(&path, value, expected).await,
            UpdateStrategy::ProcessLocks => self.update_locked(key, &path, value, expected).await,
        }
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let path = self.path_of(key)?;
        let _guard = match self.update_strategy().await? {
            UpdateStrategy::ProcessLocks => Some(self.inner.locks.lock(key).await),
            UpdateStrategy::ConditionalPut => None,
        };
        match self.inner.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(convert(e)),
        }
    }

    /// Deletes with object_store's bulk `delete_stream` (bounded parallel
    /// unlinks on a local disk, 1,000-key multi-object deletes on S3). All
    /// keys are checked before anything is deleted.
    async fn delete_many(&self, keys: Vec<String>) -> Result<u64, StoreError> {
        let n = keys.len() as u64;
        let paths = keys
            .iter()
            .map(|key| self.path_of(key))
            .collect::<Result<Vec<_>, _>>()?;
        match self.update_strategy().await? {
            UpdateStrategy::ConditionalPut => self.delete_paths(paths).await?,
            UpdateStrategy::ProcessLocks => {
                let mut paths = paths.into_iter();
                for chunk in keys.chunks(DELETE_CHUNK) {
                    let _guards = self
                        .inner
                        .locks
                        .lock_many(chunk.iter().map(String::as_str))
                        .await;
                    self.delete_paths(paths.by_ref().take(chunk.len()).collect())
                        .await?;
                }
            }
        }
        Ok(n)
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
