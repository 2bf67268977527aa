//! [`MemcachedStore`]'s [`KeyValueStore`] and [`CompareAndDelete`]
//! implementations: which meta commands each operation sends, and what
//! their replies mean.
//!
//! memcached keeps an item up to two seconds past the record's expiry (it
//! counts whole seconds, and the store adds a second of grace, see
//! [`crate::expiry`]); the exact expiry is in the record's header, so reads
//! treat such an item as absent, `update` without a version and `touch`
//! leave it alone, and `create` replaces it. An `update` with a version
//! compares only the CAS value: it may rewrite an item in those last two
//! seconds, for a request that read the session while it was live.

use std::time::SystemTime;

use async_trait::async_trait;
use futures_util::stream::{self, BoxStream, StreamExt, TryStreamExt};
use memcache::exp::{Delete, Get, GetStatus, Meta, MutationResult, MutationStatus, Set};
use rocket_kvsession::{
    Capabilities, CompareAndDelete, CreateOutcome, DeleteOutcome, Expiry, KeyInfo, KeyValueStore,
    Record, StoreError, UpdateOutcome, Version,
};

use crate::connect::MemcachedStore;
use crate::crawler;
use crate::error::{corrupt, is_too_large, unexpected, STORE_NAME};
use crate::expiry::exptime;
use crate::key;
use crate::record::{self, Header, HEADER_LEN};

/// How often an operation that reads a CAS value and then writes with it
/// (`update` without a version, `touch`, `create` over an expired item)
/// tries again when a concurrent write changed the item in between.
const READ_WRITE_ATTEMPTS: usize = 8;
/// Keys per pipelined batch of `md` commands in `delete_many`.
const DELETE_BATCH: usize = 512;

/// What a key holds, as far as the store is concerned.
enum Current {
    /// No item.
    Missing,
    /// An item memcached still holds past the expiry in its header.
    Expired {
        /// Its CAS value.
        cas: u64,
    },
    /// A live record.
    Live {
        /// The stored bytes, header included.
        stored: Vec<u8>,
        /// Its CAS value.
        cas: u64,
        /// Its header.
        header: Header,
    },
}

/// The CAS value a version stands for. A token this store did not issue
/// becomes 0, which memcached never gives an item: it matches nothing.
fn cas_of(version: &Version) -> u64 {
    version.as_str().parse().unwrap_or(0)
}

/// The version a successful write returned (`c` flag).
fn written_version(result: &MutationResult, command: &'static str) -> Result<Version, StoreError> {
    result
        .cas
        .filter(|&cas| cas != 0)
        .map(Version::from)
        .ok_or_else(|| unexpected(command, "a stored item without its CAS value"))
}

/// A reply status no command of this store gets.
fn unexpected_status(command: &'static str, status: MutationStatus) -> StoreError {
    unexpected(command, format!("{status:?}"))
}

impl MemcachedStore {
    /// Reads `key` (`mg key v f c`).
    async fn current(&self, key: &str) -> Result<Current, StoreError> {
        let get = Get::new(key).meta(Meta::default().cas());
        let result = self.bounded(self.client().run(get)).await?;
        if result.status != GetStatus::Hit {
            return Ok(Current::Missing);
        }
        let (Some(stored), Some(cas)) = (result.value, result.item.cas) else {
            return Err(unexpected("mg v c", "a hit without its value or CAS value"));
        };
        let header = Header::parse(&stored).map_err(|reason| corrupt(key, reason))?;
        if header.expired_at(SystemTime::now()) {
            return Ok(Current::Expired { cas });
        }
        Ok(Current::Live {
            stored,
            cas,
            header,
        })
    }

    /// The `ms` of `stored` under `key`, expiring at `expires_at`, asking
    /// for the new CAS value.
    fn set(&self, key: &str, stored: &[u8], expires_at: Option<SystemTime>) -> Set {
        let set = Set::new(key, stored).return_cas();
        match exptime(expires_at, SystemTime::now()) {
            Some(token) => set.ttl_raw(token),
            None => set,
        }
    }

    /// Sends `set`; a server refusing the item as too large is a
    /// [`ValueTooLarge`](crate::MemcachedStoreError::ValueTooLarge).
    async fn write(&self, key: &str, set: Set) -> Result<MutationResult, StoreError> {
        let len = set.value.len();
        match self.bounded_raw(self.client().run(set)).await? {
            Err(e) if is_too_large(&e) => Err(self.refused_as_too_large(key, len)),
            result => result.map_err(crate::error::convert),
        }
    }

    /// `stored` written over the item whose CAS value is `cas`.
    async fn swap(
        &self,
        key: &str,
        stored: &[u8],
        cas: u64,
        expires_at: Option<SystemTime>,
    ) -> Result<MutationResult, StoreError> {
        let set = self.set(key, stored, expires_at).compare_cas(cas);
        self.write(key, set).await
    }

    /// An update without an expected version: update-only, so it reads the
    /// CAS value first and writes over exactly that item.
    async fn update_any(
        &self,
        key: &str,
        stored: &[u8],
        expires_at: Option<SystemTime>,
    ) -> Result<UpdateOutcome, StoreError> {
        for _ in 0..READ_WRITE_ATTEMPTS {
            let Current::Live { cas, .. } = self.current(key).await? else {
                return Ok(UpdateOutcome::Missing);
            };
            let result = self.swap(key, stored, cas, expires_at).await?;
            match result.status {
                MutationStatus::Applied => {
                    return Ok(UpdateOutcome::Updated(Some(written_version(
                        &result, "ms C",
                    )?)))
                }
                MutationStatus::NotFound => return Ok(UpdateOutcome::Missing),
                MutationStatus::CasMismatch => continue,
                other => return Err(unexpected_status("ms C", other)),
            }
        }
        Ok(UpdateOutcome::Conflict)
    }

    /// After an `add` found the key taken: the record is live (a
    /// collision), or memcached still holds it past its expiry and it is
    /// replaced (compare-and-swap, so a concurrent create wins cleanly).
    /// `None` when the item changed meanwhile: try the `add` again.
    async fn create_over(
        &self,
        key: &str,
        stored: &[u8],
        expires_at: Option<SystemTime>,
    ) -> Result<Option<CreateOutcome>, StoreError> {
        let cas = match self.current(key).await? {
            Current::Live { .. } => return Ok(Some(CreateOutcome::AlreadyExists)),
            Current::Missing => return Ok(None),
            Current::Expired { cas } => cas,
        };
        let result = self.swap(key, stored, cas, expires_at).await?;
        match result.status {
            MutationStatus::Applied => Ok(Some(CreateOutcome::Created(Some(written_version(
                &result, "ms C",
            )?)))),
            MutationStatus::NotFound | MutationStatus::CasMismatch => Ok(None),
            other => Err(unexpected_status("ms C", other)),
        }
    }
}

#[async_trait]
impl KeyValueStore for MemcachedStore {
    fn name(&self) -> &'static str {
        STORE_NAME
    }

    /// memcached expires every item at the session's expiry itself, and
    /// updates are compare-and-swap (CAS values).
    fn capabilities(&self) -> Capabilities {
        Capabilities::new(Expiry::RemovedByBackend).with_compare_and_swap()
    }

    /// Reads every server's settings again (`stats settings`): the item
    /// size limit, and whether the LRU crawler runs (logged if not).
    async fn init(&self) -> Result<(), StoreError> {
        self.read_settings().await
    }

    /// At most 250 bytes, no spaces or control characters.
    fn check_key(&self, key: &str) -> Result<(), StoreError> {
        key::check(key)
    }

    async fn get(&self, key: &str) -> Result<Option<Record>, StoreError> {
        key::check(key)?;
        let Current::Live {
            mut stored,
            cas,
            header,
        } = self.current(key).await?
        else {
            return Ok(None);
        };
        stored.drain(..HEADER_LEN);
        Ok(Some(Record::new(
            stored,
            Some(Version::from(cas)),
            header.expires_at(),
        )))
    }

    async fn create(
        &self,
        key: &str,
        value: &[u8],
        expires_at: Option<SystemTime>,
    ) -> Result<CreateOutcome, StoreError> {
        key::check(key)?;
        let stored = record::encode(expires_at, value);
        self.check_size(key, stored.len())?;
        for _ in 0..READ_WRITE_ATTEMPTS {
            let add = self.set(key, &stored, expires_at).add();
            let result = self.write(key, add).await?;
            match result.status {
                MutationStatus::Applied => {
                    return Ok(CreateOutcome::Created(Some(written_version(
                        &result, "ms ME",
                    )?)))
                }
                MutationStatus::AlreadyExists => {
                    if let Some(outcome) = self.create_over(key, &stored, expires_at).await? {
                        return Ok(outcome);
                    }
                }
                other => return Err(unexpected_status("ms ME", other)),
            }
        }
        // The key kept changing under this create: treat it as taken (the
        // engine draws another id).
        Ok(CreateOutcome::AlreadyExists)
    }

    async fn update(
        &self,
        key: &str,
        value: &[u8],
        expected: Option<&Version>,
        expires_at: Option<SystemTime>,
    ) -> Result<UpdateOutcome, StoreError> {
        key::check(key)?;
        let stored = record::encode(expires_at, value);
        self.check_size(key, stored.len())?;
        let Some(expected) = expected else {
            return self.update_any(key, &stored, expires_at).await;
        };
        let result = self
            .swap(key, &stored, cas_of(expected), expires_at)
            .await?;
        match result.status {
            MutationStatus::Applied => Ok(UpdateOutcome::Updated(Some(written_version(
                &result, "ms C",
            )?))),
            MutationStatus::NotFound => Ok(UpdateOutcome::Missing),
            MutationStatus::CasMismatch => Ok(UpdateOutcome::Conflict),
            other => Err(unexpected_status("ms C", other)),
        }
    }

    /// Reads the record and writes it back with the header's expiry moved
    /// (compare-and-swap): memcached's own expiry commands (`mg T`,
    /// `touch`) would move only the item's whole-second expiry, not the
    /// exact one in the header. The value is kept; the version changes.
    async fn touch(&self, key: &str, expires_at: SystemTime) -> Result<UpdateOutcome, StoreError> {
        key::check(key)?;
        for _ in 0..READ_WRITE_ATTEMPTS {
            let Current::Live {
                mut stored, cas, ..
            } = self.current(key).await?
            else {
                return Ok(UpdateOutcome::Missing);
            };
            record::set_expiry(&mut stored, expires_at);
            let result = self.swap(key, &stored, cas, Some(expires_at)).await?;
            match result.status {
                MutationStatus::Applied => {
                    return Ok(UpdateOutcome::Updated(Some(written_version(
                        &result, "ms C",
                    )?)))
                }
                MutationStatus::NotFound => return Ok(UpdateOutcome::Missing),
                MutationStatus::CasMismatch => continue,
                other => return Err(unexpected_status("ms C", other)),
            }
        }
        // Rewritten by others each time: they recorded activity too.
        Ok(UpdateOutcome::Conflict)
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        key::check(key)?;
        let result = self.bounded(self.client().run(Delete::new(key))).await?;
        match result.status {
            MutationStatus::Applied | MutationStatus::NotFound => Ok(()),
            other => Err(unexpected_status("md", other)),
        }
    }

    /// `md` commands pipelined, one batch per server at a time.
    async fn delete_many(&self, keys: Vec<String>) -> Result<(), StoreError> {
        for key in &keys {
            key::check(key)?;
        }
        stream::iter(keys.chunks(DELETE_BATCH))
            .then(|batch| async move {
                let results = self
                    .bounded(self.client().run_many(batch.iter().map(Delete::new)))
                    .await?;
                for result in results {
                    match result.map_err(crate::error::convert)?.status {
                        MutationStatus::Applied | MutationStatus::NotFound => {}
                        other => return Err(unexpected_status("md", other)),
                    }
                }
                Ok(())
            })
            .try_collect::<()>()
            .await
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxStream<'a, Result<KeyInfo, StoreError>> {
        crawler::keys_with_prefix(self, prefix)
    }

    fn compare_and_delete(&self) -> Option<&dyn CompareAndDelete> {
        Some(self)
    }
}

/// `md key C<cas>`: memcached deletes the item only while it has that CAS
/// value.
#[async_trait]
impl CompareAndDelete for MemcachedStore {
    async fn delete_if(&self, key: &str, expected: &Version) -> Result<DeleteOutcome, StoreError> {
        key::check(key)?;
        let delete = Delete::new(key).compare_cas(cas_of(expected));
        let result = self.bounded(self.client().run(delete)).await?;
        match result.status {
            MutationStatus::Applied => Ok(DeleteOutcome::Deleted),
            MutationStatus::NotFound => Ok(DeleteOutcome::Missing),
            MutationStatus::CasMismatch => Ok(DeleteOutcome::Conflict),
            other => Err(unexpected_status("md C", other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_cas_values() {
        assert_eq!(cas_of(&Version::from(42u64)), 42);
        assert_eq!(cas_of(&Version::new("junk")), 0, "matches no item");
    }
}
