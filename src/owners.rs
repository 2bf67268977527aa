//! The owner index: for each owner (`Session::set_owner`), one record that
//! names the ids of the owner's sessions, so listing and revoking them costs
//! a read per session of that owner, never a scan of the store.
//!
//! The index works on any [`KeyValueStore`]: it is an ordinary record
//! (format 3, see `record`) under the key `keys` gives it, written with the
//! same compare-and-swap as sessions. Its invariant: every live session with
//! an owner is named by that owner's index. An id goes into the index
//! *before* the session's first record under that id is written (a login, a
//! rotation, a new owner), so the index may name sessions that do not exist
//! (yet, or any more), never the reverse. Readers check each session's
//! record (live, not expired, same owner) and prune the rest; the sweep
//! prunes too, and every write drops the ids whose lifetime is over. An
//! entry whose record is missing or names another owner is kept while that
//! session may still be being written (for a save's budget after it was
//! indexed, [`Lifetime::may_be_pending`]): a listing, a sweep or a
//! revocation racing a login never unlists the session it logs in. A saved
//! session that finds itself missing from its owner's index (an evicted or
//! rebuilt index) adds itself back ([`OwnerIndex::ensure`]). On
//! stores that keep expiries the index expires with its last session; an
//! emptied index is deleted where the store has a compare-and-delete.
//!
//! This module is a service over a store: it knows nothing of the engine,
//! requests or cookies.

use std::time::SystemTime;

use futures_util::stream::{self, StreamExt, TryStreamExt};

use crate::clock::Clock;
use crate::error::Error;
use crate::id::SessionId;
use crate::keys::Keys;
use crate::lifetime::{Lifetime, StoreExpiry};
use crate::record::{Envelope, Index, IndexEntry, Owner, Stored};
use crate::retry::RetryPolicy;
use crate::store::{CreateOutcome, DeleteOutcome, KeyValueStore, UpdateOutcome, Version};
use crate::time::unix;

/// At most this many sessions are checked at once when an index is read.
pub(crate) const CONCURRENCY: usize = 16;

/// At most this many sessions of one owner are live at once: a login beyond
/// it ends the owner's oldest sessions. It bounds the index (rewritten
/// whole at every login) and what one account can hold.
pub(crate) const MAX_SESSIONS_PER_OWNER: usize = 1000;

/// What a session record says about an index entry.
#[derive(Debug)]
pub(crate) enum Found {
    /// The session is live and belongs to the owner.
    Live {
        envelope: Envelope,
        expires_at: Option<SystemTime>,
    },
    /// It ended, expired, moved to another id (which has its own entry),
    /// or belongs to someone else now: the entry can go.
    Gone,
    /// Not live for the owner yet: missing or another owner's, but indexed
    /// so recently that its record may still be being written. Neither
    /// listed nor pruned.
    Pending,
}

/// The owner indexes of one app (its keys and expiry rules) in one store.
#[derive(Debug)]
pub(crate) struct OwnerIndex<'a, S: ?Sized> {
    pub(crate) store: &'a S,
    pub(crate) keys: &'a Keys,
    pub(crate) rules: Lifetime,
    pub(crate) expiry: StoreExpiry,
    pub(crate) retry: &'a RetryPolicy,
    pub(crate) clock: &'a Clock,
}

impl<S: KeyValueStore + ?Sized> OwnerIndex<'_, S> {
    /// Reads the session `entry` names and judges it for `owner`.
    pub(crate) async fn check(&self, owner: &str, entry: &IndexEntry) -> Result<Found, Error> {
        let now = self.clock.now();
        if self.rules.outlived(&entry.id, unix(now)) {
            return Ok(Found::Gone);
        }
        // Not (yet) this owner's: gone, unless it may still be being written.
        let not_yet = || {
            if self.rules.may_be_pending(entry.indexed, unix(now)) {
                Found::Pending
            } else {
                Found::Gone
            }
        };
        let Some(record) = self.store.get(&self.keys.session(&entry.id)).await? else {
            return Ok(not_yet());
        };
        let Ok(Stored::Live(envelope)) = Stored::decode(record.value) else {
            return Ok(Found::Gone);
        };
        if envelope.owner.as_ref().is_none_or(|o| o.name != owner) {
            return Ok(not_yet());
        }
        if !self.rules.for_session(&envelope.expiry).is_live(
            &entry.id,
            envelope.last_active,
            record.expires_at,
            now,
        ) {
            return Ok(Found::Gone);
        }
        Ok(Found::Live {
            envelope,
            expires_at: record.expires_at,
        })
    }

    /// Reads `owner`'s index: `None` if there is none (or it is unreadable,
    /// which is logged: it is rebuilt by the next login).
    pub(crate) async fn read(
        &self,
        owner: &str,
    ) -> Result<Option<(Index, Option<Version>)>, Error> {
        let Some(record) = self.store.get(&self.keys.index(owner)).await? else {
            return Ok(None);
        };
        match Index::decode(&record.value) {
            Ok(index) if index.owner == owner => Ok(Some((index, record.version))),
            Ok(_) => {
                log::warn!("kvsession: an owner index names another owner; ignored");
                Ok(None)
            }
            Err(e) => {
                log::warn!("kvsession: ignoring unreadable owner index: {e}");
                Ok(None)
            }
        }
    }

    /// Changes `owner`'s index with `change` under compare-and-swap, retried
    /// on conflicts within the save budget. Ids whose lifetime is over are
    /// dropped on every write. An index that ends up empty is deleted where
    /// the store has a compare-and-delete (conditional on the version read,
    /// so a login racing it keeps its entry), else written empty; on stores
    /// that keep expiries it then expires.
    async fn modify(
        &self,
        owner: &str,
        mut change: impl FnMut(&mut Vec<IndexEntry>),
    ) -> Result<(), Error> {
        let key = self.keys.index(owner);
        let versioned = self.store.capabilities().compare_and_swap;
        let mut retries = self.retry.start();
        loop {
            let (exists, mut index, version) = match self.store.get(&key).await? {
                None => (false, Index::new(owner), None),
                Some(record) => match Index::decode(&record.value) {
                    Ok(index) if index.owner == owner => (true, index, record.version),
                    // Unreadable: rebuilt from here on (the sessions it named
                    // are unlisted until they log in again).
                    _ => {
                        log::warn!("kvsession: replacing an unreadable owner index");
                        (true, Index::new(owner), record.version)
                    }
                },
            };
            let before = index.entries.clone();
            change(&mut index.entries);
            let now = self.clock.now();
            index
                .entries
                .retain(|e| !self.rules.outlived(&e.id, unix(now)));
            if index.entries == before && (exists || before.is_empty()) {
                // Nothing to change (no index is created empty).
                return Ok(());
            }
            let written = match (exists, index.entries.is_empty()) {
                (true, true) => self.delete_empty(&key, version.as_ref()).await?,
                _ => None,
            };
            let written = match written {
                Some(done) => done,
                None => {
                    let expiry = self.expiry.index(index.entries.iter().map(|e| &e.id), now);
                    let value = index.encode();
                    if exists {
                        let expected = version.as_ref().filter(|_| versioned);
                        matches!(
                            self.store.update(&key, &value, expected, expiry).await?,
                            UpdateOutcome::Updated(_)
                        )
                    } else {
                        matches!(
                            self.store.create(&key, &value, expiry).await?,
                            CreateOutcome::Created(_)
                        )
                    }
                }
            };
            if written {
                return Ok(());
            }
            // Logins of one owner racing on its index: the save's retry
            // budget and backoff.
            retries.next().await?;
        }
    }

    /// Deletes an emptied index read at `version`, if the store can do so
    /// conditionally: `Some(true)` if it is gone, `Some(false)` if a
    /// concurrent write moved it on, `None` to write it empty instead.
    async fn delete_empty(
        &self,
        key: &str,
        version: Option<&Version>,
    ) -> Result<Option<bool>, Error> {
        let (Some(cad), Some(version)) = (self.store.compare_and_delete(), version) else {
            return Ok(None);
        };
        Ok(Some(match cad.delete_if(key, version).await? {
            DeleteOutcome::Deleted | DeleteOutcome::Missing => true,
            DeleteOutcome::Conflict => false,
        }))
    }

    /// Names `id` (with its handle) in its owner's index, unless the index
    /// is full ([`MAX_SESSIONS_PER_OWNER`]): returns whether it did.
    pub(crate) async fn add(&self, owner: &Owner, id: &SessionId) -> Result<bool, Error> {
        let mut added = true;
        let indexed = self.clock.now_unix();
        self.modify(&owner.name, |entries| {
            added = true;
            if entries.iter().any(|e| &e.id == id) {
                return;
            }
            if entries.len() >= MAX_SESSIONS_PER_OWNER {
                added = false;
                return;
            }
            entries.push(IndexEntry {
                id: id.clone(),
                handle: owner.handle,
                indexed,
            });
        })
        .await?;
        Ok(added)
    }

    /// Makes sure `owner`'s index names `id`: one read when it does, else
    /// [`add`](Self::add) (the index was evicted, rebuilt, or pruned while
    /// the session was being written). Returns whether the index names it.
    pub(crate) async fn ensure(&self, owner: &Owner, id: &SessionId) -> Result<bool, Error> {
        if let Some((index, _)) = self.read(&owner.name).await? {
            if index.entries.iter().any(|e| &e.id == id) {
                return Ok(true);
            }
        }
        log::info!("kvsession: a session missing from its owner index is indexed again");
        self.add(owner, id).await
    }

    /// Drops `ids` from `owner`'s index.
    pub(crate) async fn remove(&self, owner: &str, ids: &[SessionId]) -> Result<(), Error> {
        if ids.is_empty() {
            return Ok(());
        }
        self.modify(owner, |entries| entries.retain(|e| !ids.contains(&e.id)))
            .await
    }

    /// Prunes the index stored under `key` (found by a listing): drops
    /// every entry whose session is gone. Returns how many entries went.
    pub(crate) async fn prune_key(&self, key: &str) -> Result<u64, Error> {
        let Some(record) = self.store.get(key).await? else {
            return Ok(0);
        };
        let Ok(index) = Index::decode(&record.value) else {
            return Ok(0);
        };
        if self.keys.index(&index.owner) != key {
            return Ok(0);
        }
        let gone = self.gone_entries(&index).await?;
        let n = gone.len() as u64;
        self.remove(&index.owner, &gone).await?;
        Ok(n)
    }

    /// The ids of `index` whose sessions are gone.
    pub(crate) async fn gone_entries(&self, index: &Index) -> Result<Vec<SessionId>, Error> {
        let checked = self.checked(&index.owner, index.entries.clone()).await?;
        Ok(gone_of(&checked))
    }

    /// Each of `entries` with what its session's record says for `owner`,
    /// read [`CONCURRENCY`] at a time, in order.
    pub(crate) async fn checked(
        &self,
        owner: &str,
        entries: Vec<IndexEntry>,
    ) -> Result<Vec<(IndexEntry, Found)>, Error> {
        stream::iter(entries)
            .map(|entry| async move {
                let found = self.check(owner, &entry).await?;
                Ok::<_, Error>((entry, found))
            })
            .buffered(CONCURRENCY)
            .try_collect()
            .await
    }
}

/// The ids of the checked entries whose sessions are gone.
pub(crate) fn gone_of(checked: &[(IndexEntry, Found)]) -> Vec<SessionId> {
    checked
        .iter()
        .filter(|(_, found)| matches!(found, Found::Gone))
        .map(|(entry, _)| entry.id.clone())
        .collect()
}
