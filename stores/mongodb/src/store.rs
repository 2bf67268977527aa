//! [`MongoStore`]: the [`KeyValueStore`] implementation.

use std::future::IntoFuture;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use futures_util::stream::{self, BoxStream, StreamExt, TryStreamExt};
use mongodb::bson::{doc, DateTime, Document};
use mongodb::options::ReturnDocument;
use mongodb::Collection;
use rocket_kvsession::{
    CreateOutcome, KeyInfo, KeyValueStore, Record, StoreError, UpdateOutcome, Version,
};

use crate::error::{convert, write_error_code, DUPLICATE_KEY};
use crate::index;
use crate::schema::{
    self, check_key, live, parse_version, record_of, version_of, ID, STORE_NAME, VERSION,
};
use crate::timeout::{self, DEFAULT_OPERATION_TIMEOUT};

/// How many keys one `delete_many` command removes at most.
const DELETE_BATCH: usize = 1000;

/// How many keys one `list` batch returns.
const LIST_BATCH: u32 = 1000;

/// A TTL-capable, versioned session store over a MongoDB collection.
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
    /// only after a failed conditional update.
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

    fn supports_ttl(&self) -> bool {
        true
    }

    fn supports_versioning(&self) -> bool {
        true
    }

    async fn init(&self) -> Result<(), StoreError> {
        if !self.ensure_ttl_index {
            return Ok(());
        }
        index::ensure_ttl_index(&self.collection, self.operation_timeout).await
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
        let mut filter = live(key, now);

        let Some(expected) = expected else {
            // Unconditional: one findAndModify that also returns the new version.
            let updated = self
                .run(
                    self.collection
                        .find_one_and_update(filter, update)
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
            filter.insert(VERSION, expected);
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
}
