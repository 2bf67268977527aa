//! [`MongoStore`]: the [`KeyValueStore`] and [`CompareAndDelete`]
//! implementations.

use std::future::IntoFuture;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use futures_util::stream::{self, BoxStream, StreamExt, TryStreamExt};
use mongodb::bson::{doc, DateTime, Document};
use mongodb::options::ReturnDocument;
use mongodb::Collection;
use rocket_kvsession::{
    Capabilities, CompareAndDelete, CreateOutcome, DeleteOutcome, Expiry, KeyInfo, KeyValueStore,
    Record, StoreError, UpdateOutcome, Version,
};

use crate::error::{convert, write_error_code, DUPLICATE_KEY, STORE_NAME};
use crate::index;
use crate::schema::{
    self, check_key, live, live_at_version, parse_version, record_of, stored_version, version_of,
    ID, VERSION,
};
use crate::timeout;

/// The default bound on one store operation, see
/// [`MongoStore::operation_timeout`].
pub const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_secs(10);

/// How many keys one `delete_many` command removes at most.
const DELETE_BATCH: usize = 1000;

/// How many keys one `list` batch returns.
const LIST_BATCH: u32 = 1000;

/// A session store over a MongoDB collection: expiry kept and removed by the
/// server (a TTL index), compare-and-swap updates, compare-and-delete.
///
/// Each session is one document:
///
/// | field | BSON type | meaning |
/// |---|---|---|
/// | `_id` | string | the session key (prefix + session id); the `_id` index makes it unique |
/// | `value` | binary | the session record, byte for byte |
/// | `expires_at` | date | when the session ends; absent when no expiry was given |
/// | `version` | 64-bit integer | bumped by every update, for compare-and-swap |
///
/// Its [capabilities](KeyValueStore::capabilities) are
/// [`Expiry::RemovedByBackend`] with compare-and-swap, and it offers
/// [`CompareAndDelete`]:
///
/// * [`init`](KeyValueStore::init) (run by the fairing at ignite) ensures a
///   TTL index on `expires_at` with `expireAfterSeconds: 0`, so the server
///   removes each document at its own expiry. Changing the session lifetime
///   needs no index change.
/// * Every read filters on `expires_at > now` as well, because the server's
///   TTL monitor runs only about once a minute.
/// * `create` is an `insert_one`; a duplicate-key error (11000) is a
///   collision. A document that expired but was not yet removed does not
///   block the key.
/// * `update` is an `update_one` filtered on `_id`, the expected `version` and
///   liveness, without upsert: a vanished session is never brought back.
/// * `touch` rewrites only `expires_at`, not the data or the version.
/// * [`delete_if`](CompareAndDelete::delete_if) is a `delete_one` filtered on
///   `_id`, the expected `version` and liveness, so a logout removes the
///   session in one command, and an expired document counts as missing.
/// * No sweep is needed (the TTL monitor removes expired documents), so
///   the store has no [native sweep](KeyValueStore::expired_deletion).
/// * Every operation is bounded by an [operation timeout](Self::operation_timeout),
///   and connection failures become [`StoreError::Unavailable`] (a 503).
///
/// Clones share the collection handle (and so the driver's connection pool).
#[derive(Debug, Clone)]
pub struct MongoStore {
    collection: Collection<Document>,
    ensure_ttl_index: bool,
    operation_timeout: Option<Duration>,
}

impl MongoStore {
    /// A store over an existing collection handle.
    ///
    /// The client's own settings (pool size, timeouts, TLS, credentials) apply;
    /// see [`MongoStore::connect`] for a client with short timeouts. Use the
    /// default (primary) read preference: reading sessions from a lagging
    /// secondary would miss fresh writes.
    pub fn new(collection: Collection<Document>) -> Self {
        MongoStore {
            collection,
            ensure_ttl_index: true,
            operation_timeout: Some(DEFAULT_OPERATION_TIMEOUT),
        }
    }

    /// Whether [`init`](KeyValueStore::init) creates the TTL index on
    /// `expires_at` (default `true`).
    ///
    /// Turn it off when the application's database user may not create
    /// indexes; then create the index once yourself:
    /// `db.sessions.createIndex({expires_at: 1}, {expireAfterSeconds: 0})`.
    /// Sessions still expire on read without it, but expired documents are
    /// never removed.
    pub fn ensure_ttl_index(mut self, ensure: bool) -> Self {
        self.ensure_ttl_index = ensure;
        self
    }

    /// Bounds every store operation, including waiting for a pooled
    /// connection (default [`DEFAULT_OPERATION_TIMEOUT`]; `None` waits as long
    /// as the driver does). An operation that runs longer fails with
    /// [`StoreError::Unavailable`], which the session guard turns into a 503.
    pub fn operation_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.operation_timeout = timeout;
        self
    }

    /// The collection the sessions are stored in.
    pub fn collection(&self) -> &Collection<Document> {
        &self.collection
    }

    /// Runs one driver operation under the operation timeout.
    async fn run<T>(
        &self,
        operation: impl IntoFuture<Output = mongodb::error::Result<T>>,
    ) -> Result<T, StoreError> {
        timeout::run(self.operation_timeout, operation).await
    }

    /// Like [`run`](Self::run), but hands back the driver's own result so the
    /// caller can look at specific error codes.
    async fn run_raw<T>(
        &self,
        operation: impl IntoFuture<Output = mongodb::error::Result<T>>,
    ) -> Result<mongodb::error::Result<T>, StoreError> {
        timeout::run_raw(self.operation_timeout, operation).await
    }

    /// Whether a live document with this key exists: one extra read, used
    /// only after a failed conditional update or delete.
    async fn exists(&self, key: &str, now: DateTime) -> Result<bool, StoreError> {
        let found = self
            .run(
                self.collection
                    .find_one(live(key, now))
                    .projection(doc! { ID: 1 }),
            )
            .await?;
        Ok(found.is_some())
    }

    async fn insert(
        &self,
        key: &str,
        value: &[u8],
        expires_at: Option<SystemTime>,
    ) -> Result<mongodb::error::Result<()>, StoreError> {
        let document = schema::new_document(key, value, expires_at);
        let result = self.run_raw(self.collection.insert_one(document)).await?;
        Ok(result.map(|_| ()))
    }
}

#[async_trait]
impl KeyValueStore for MongoStore {
    fn name(&self) -> &'static str {
        STORE_NAME
    }

    /// The server removes expired documents (the TTL index); reads still
    /// filter on the expiry, since the TTL monitor runs about once a minute.
    /// Updates are compare-and-swap on `version`.
    fn capabilities(&self) -> Capabilities {
        Capabilities::new(Expiry::RemovedByBackend).with_compare_and_swap()
    }

    async fn init(&self) -> Result<(), StoreError> {
        if !self.ensure_ttl_index {
            return Ok(());
        }
        index::ensure_ttl_index(&self.collection, self.operation_timeout).await
    }

    /// Not empty, no NUL byte, at most [`MAX_KEY_LEN`](crate::MAX_KEY_LEN)
    /// bytes: checked at launch for the longest keys the configuration
    /// makes, as every operation checks its own.
    fn check_key(&self, key: &str) -> Result<(), StoreError> {
        check_key(key)
    }

    async fn get(&self, key: &str) -> Result<Option<Record>, StoreError> {
        check_key(key)?;
        let found = self
            .run(self.collection.find_one(live(key, DateTime::now())))
            .await?;
        found.map(|document| record_of(key, &document)).transpose()
    }

    async fn create(
        &self,
        key: &str,
        value: &[u8],
        expires_at: Option<SystemTime>,
    ) -> Result<CreateOutcome, StoreError> {
        check_key(key)?;
        let created = Ok(CreateOutcome::Created(Some(Version::from(1i64))));
        match self.insert(key, value, expires_at).await? {
            Ok(()) => return created,
            Err(e) if write_error_code(&e) == Some(DUPLICATE_KEY) => {}
            Err(e) => return Err(convert(e)),
        }
        // The key is taken; if only by a document that expired but was not
        // swept yet, remove that one and try once more.
        let expired = schema::expired(key, DateTime::now());
        let removed = self.run(self.collection.delete_one(expired)).await?;
        if removed.deleted_count == 0 {
            return Ok(CreateOutcome::AlreadyExists);
        }
        match self.insert(key, value, expires_at).await? {
            Ok(()) => created,
            Err(e) if write_error_code(&e) == Some(DUPLICATE_KEY) => {
                Ok(CreateOutcome::AlreadyExists)
            }
            Err(e) => Err(convert(e)),
        }
    }

    async fn update(
        &self,
        key: &str,
        value: &[u8],
        expected: Option<&Version>,
        expires_at: Option<SystemTime>,
    ) -> Result<UpdateOutcome, StoreError> {
        check_key(key)?;
        let now = DateTime::now();
        let update = schema::rewrite(value, expires_at);

        let Some(expected) = expected else {
            // Unconditional: one findAndModify that also returns the new version.
            let updated = self
                .run(
                    self.collection
                        .find_one_and_update(live(key, now), update)
                        .projection(doc! { ID: 0, VERSION: 1 })
                        .return_document(ReturnDocument::After),
                )
                .await?;
            return Ok(match updated {
                Some(document) => UpdateOutcome::Updated(version_of(&document)),
                None => UpdateOutcome::Missing,
            });
        };

        if let Some(expected) = parse_version(expected) {
            let filter = live_at_version(key, now, expected);
            let result = self.run(self.collection.update_one(filter, update)).await?;
            if result.matched_count == 1 {
                return Ok(UpdateOutcome::Updated(Some(Version::from(expected + 1))));
            }
        }
        // No match: the record vanished, or its version moved on.
        Ok(if self.exists(key, now).await? {
            UpdateOutcome::Conflict
        } else {
            UpdateOutcome::Missing
        })
    }

    /// Rewrites only `expires_at` (one `update_one` with `$set`); the data and
    /// the version stay as they are, so the version the caller holds remains
    /// valid. Returns `Updated(None)`: the command does not report the version.
    async fn touch(&self, key: &str, expires_at: SystemTime) -> Result<UpdateOutcome, StoreError> {
        check_key(key)?;
        let update = schema::move_expiry(expires_at);
        let result = self
            .run(
                self.collection
                    .update_one(live(key, DateTime::now()), update),
            )
            .await?;
        Ok(if result.matched_count == 1 {
            UpdateOutcome::Updated(None)
        } else {
            UpdateOutcome::Missing
        })
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        check_key(key)?;
        self.run(self.collection.delete_one(doc! { ID: key }))
            .await?;
        Ok(())
    }

    /// One `delete_many({_id: {$in: [...]}})` per 1,000 keys.
    async fn delete_many(&self, keys: Vec<String>) -> Result<(), StoreError> {
        for key in &keys {
            check_key(key)?;
        }
        for batch in keys.chunks(DELETE_BATCH) {
            self.run(self.collection.delete_many(doc! { ID: { "$in": batch } }))
                .await?;
        }
        Ok(())
    }

    /// Streams the `_id`s that start with `prefix` (an anchored, escaped
    /// regular expression, which the `_id` index serves), fetching only the
    /// `_id` field. Documents that expired but were not yet removed by the
    /// TTL monitor are listed too; `last_modified` is not known.
    fn list<'a>(&'a self, prefix: &'a str) -> BoxStream<'a, Result<KeyInfo, StoreError>> {
        let filter = match schema::key_prefix(prefix) {
            Ok(filter) => filter,
            Err(error) => return stream::once(async move { Err(error) }).boxed(),
        };
        let open = async move {
            let cursor = self
                .run(
                    self.collection
                        .find(filter)
                        .projection(doc! { ID: 1 })
                        .batch_size(LIST_BATCH),
                )
                .await?;
            Ok::<_, StoreError>(stream::try_unfold(cursor, move |mut cursor| async move {
                let next = self.run_raw(cursor.try_next()).await?.map_err(convert)?;
                Ok(next.map(|document| (document, cursor)))
            }))
        };
        stream::once(open)
            .try_flatten()
            .try_filter_map(|document| async move {
                Ok(schema::key_of(&document).map(|key| KeyInfo::new(key, None)))
            })
            .boxed()
    }

    /// `Some(self)`: see [`CompareAndDelete`] for `MongoStore`.
    fn compare_and_delete(&self) -> Option<&dyn CompareAndDelete> {
        Some(self)
    }
}

#[async_trait]
impl CompareAndDelete for MongoStore {
    /// One `delete_one` filtered on `_id`, the expected `version` and
    /// liveness. Only when it deletes nothing does one more read tell
    /// [`DeleteOutcome::Conflict`] (a live document with another version)
    /// from [`DeleteOutcome::Missing`]; a document that expired but was not
    /// removed yet is missing, and is left to the TTL monitor.
    async fn delete_if(&self, key: &str, expected: &Version) -> Result<DeleteOutcome, StoreError> {
        check_key(key)?;
        let now = DateTime::now();
        if let Some(expected) = stored_version(expected) {
            let filter = live_at_version(key, now, expected);
            let result = self.run(self.collection.delete_one(filter)).await?;
            if result.deleted_count == 1 {
                return Ok(DeleteOutcome::Deleted);
            }
        }
        Ok(if self.exists(key, now).await? {
            DeleteOutcome::Conflict
        } else {
            DeleteOutcome::Missing
        })
    }
}
