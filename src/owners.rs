//! The owner index: for each owner (`Session::set_owner`), one record that
//! names the ids of the owner's sessions, so listing and revoking them costs
//! a read per session of that owner, never a scan of the store.
//!
//! The index works on any [`KeyValueStore`]: it is an ordinary record under
//! `key_prefix` + `owner_` + the first 128 bits of the SHA-256 of the owner's
//! name (hex), written with the same compare-and-swap as sessions. Its
//! invariant: every live session with an owner is named by that owner's
//! index. An id goes into the index *before* the session's first record under
//! that id is written (a login, a rotation, a new owner), so the index may
//! name sessions that do not exist (yet, or any more), never the reverse.
//! Readers check each session's record (live, not expired, same owner) and
//! prune the rest; the sweep prunes too, and every write drops the ids whose
//! lifetime is over. On TTL stores the index expires with its last session.
//!
//! Record format 3: the tag, then the MessagePack array
//! `[owner, [[id, handle], ...]]`.

use std::time::SystemTime;

use sha2::{Digest, Sha256};

use crate::config::SessionConfig;
use crate::engine::{activity, deadline, session_key, Engine, Retries};
use crate::record::{Envelope, Handle, Index, IndexEntry as Entry, Owner, Stored};
use crate::error::Error;
use crate::id::SessionId;
use crate::store::{CreateOutcome, DeleteOutcome, KeyValueStore, UpdateOutcome, Version};
use crate::time::{now_unix, seconds, ROUNDING};

/// What follows the key prefix in the key of an owner index.
pub(crate) const INDEX_MARK: &str = "owner_";

/// At most this many sessions are checked at once when an index is read.
pub(crate) const CONCURRENCY: usize = 16;

/// At most this many sessions of one owner are live at once: a login beyond
/// it ends the owner's oldest sessions. It bounds the index (rewritten
/// whole at every login) and what one account can hold.
pub(crate) const MAX_SESSIONS_PER_OWNER: usize = 1000;

/// The store key of `owner`'s index.
pub(crate) fn index_key(config: &SessionConfig, owner: &str) -> String {
    let digest = Sha256::digest(owner.as_bytes());
    let mut key = String::with_capacity(config.key_prefix.len() + INDEX_MARK.len() + 32);
    key.push_str(&config.key_prefix);
    key.push_str(INDEX_MARK);
    key.push_str(&Handle(digest[..16].try_into().expect("16 of 32 bytes")).to_hex());
    key
}

/// Whether `key` (listed under the app's prefix) is an owner index.
pub(crate) fn is_index_key(config: &SessionConfig, key: &str) -> bool {
    key.strip_prefix(&config.key_prefix)
        .and_then(|rest| rest.strip_prefix(INDEX_MARK))
        .is_some_and(|hex| Handle::from_hex(hex).is_some())
}

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
}

/// Reads the session `entry` names and judges it for `owner`.
pub(crate) async fn check<S: KeyValueStore + ?Sized>(
    store: &S,
    config: &SessionConfig,
    owner: &str,
    entry: &Entry,
) -> Result<Found, Error> {
    let now = SystemTime::now();
    if now >= entry.id.expires(seconds(config.lifetime)) + ROUNDING {
        return Ok(Found::Gone);
    }
    let Some(record) = store.get(&session_key(config, &entry.id)).await? else {
        return Ok(Found::Gone);
    };
    let Ok(Stored::Live(envelope)) = Stored::decode(&record.value) else {
        return Ok(Found::Gone);
    };
    if envelope.owner.as_ref().is_none_or(|o| o.name != owner) {
        return Ok(Found::Gone);
    }
    let active = activity(config, envelope.last_active, record.expires_at);
    if now >= deadline(config, &entry.id, active) || record.expires_at.is_some_and(|at| now >= at) {
        return Ok(Found::Gone);
    }
    Ok(Found::Live {
        envelope,
        expires_at: record.expires_at,
    })
}

/// Reads `owner`'s index: `None` if there is none (or it is unreadable, which
/// is logged: it is rebuilt by the next login).
pub(crate) async fn read<S: KeyValueStore + ?Sized>(
    store: &S,
    config: &SessionConfig,
    owner: &str,
) -> Result<Option<(Index, Option<Version>)>, Error> {
    let Some(record) = store.get(&index_key(config, owner)).await? else {
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

/// Changes `owner`'s index with `change` under compare-and-swap, retried on
/// conflicts within the save budget (`save_attempts`, `save_timeout`). Ids
/// whose lifetime is over are dropped on every write. An index that ends up
/// empty is written empty (never deleted: a delete cannot be conditional, and
/// a login racing it would lose its entry); on TTL stores it expires.
pub(crate) async fn modify<S: KeyValueStore + ?Sized>(
    store: &S,
    config: &SessionConfig,
    owner: &str,
    mut change: impl FnMut(&mut Vec<Entry>),
) -> Result<(), Error> {
    let key = index_key(config, owner);
    let versioned = store.capabilities().compare_and_swap;
    let mut retries = Retries::new(config);
    loop {
        let (exists, mut index, version) = match store.get(&key).await? {
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
        let now = SystemTime::now();
        let lifetime = seconds(config.lifetime);
        index
            .entries
            .retain(|e| now < e.id.expires(lifetime) + ROUNDING);
        if exists && index.entries == before {
            return Ok(());
        }
        if let (true, Some(cad), Some(current)) = (
            index.entries.is_empty() && exists,
            store.compare_and_delete(),
            version.as_ref(),
        ) {
            // An emptied index goes, unless a login added to it meanwhile
            // (then its version moved on, and the change is made again).
            match cad.delete_if(&key, current).await? {
                DeleteOutcome::Deleted | DeleteOutcome::Missing => return Ok(()),
                DeleteOutcome::Conflict => {
                    retries.next(|max_ms| jitter_ms(max_ms)).await?;
                    continue;
                }
            }
        }
        let expiry = (config.set_ttl && store.capabilities().expiry.is_kept()).then(|| {
            index
                .entries
                .iter()
                .map(|e| e.id.expires(lifetime) + ROUNDING)
                .max()
                .unwrap_or(now)
                .max(now + ROUNDING)
        });
        let value = index.encode();
        let written = if exists {
            let expected = version.as_ref().filter(|_| versioned);
            matches!(
                store.update(&key, &value, expected, expiry).await?,
                UpdateOutcome::Updated(_)
            )
        } else {
            matches!(
                store.create(&key, &value, expiry).await?,
                CreateOutcome::Created(_)
            )
        };
        if written {
            return Ok(());
        }
        // Logins of one owner racing on its index: the save's retry budget
        // and backoff.
        retries.next(|max_ms| jitter_ms(max_ms)).await?;
    }
}

fn jitter_ms(max_ms: u64) -> std::time::Duration {
    let draw = rand_core::TryRngCore::try_next_u64(&mut rand_core::OsRng).unwrap_or(max_ms / 2);
    std::time::Duration::from_millis(draw % max_ms.max(1))
}

/// Names `id` (with its handle) in its owner's index, unless the index is
/// full ([`MAX_SESSIONS_PER_OWNER`]): returns whether it did.
pub(crate) async fn add<S: KeyValueStore + ?Sized>(
    store: &S,
    config: &SessionConfig,
    owner: &Owner,
    id: &SessionId,
) -> Result<bool, Error> {
    let mut added = true;
    modify(store, config, &owner.name, |entries| {
        added = true;
        if entries.iter().any(|e| &e.id == id) {
            return;
        }
        if entries.len() >= MAX_SESSIONS_PER_OWNER {
            added = false;
            return;
        }
        entries.push(Entry {
            id: id.clone(),
            handle: owner.handle,
        });
    })
    .await?;
    Ok(added)
}

/// Drops `ids` from `owner`'s index.
pub(crate) async fn remove<S: KeyValueStore + ?Sized>(
    store: &S,
    config: &SessionConfig,
    owner: &str,
    ids: &[SessionId],
) -> Result<(), Error> {
    if ids.is_empty() {
        return Ok(());
    }
    modify(store, config, owner, |entries| {
        entries.retain(|e| !ids.contains(&e.id))
    })
    .await
}

/// Prunes the index stored under `key` (found by a listing): drops every
/// entry whose session is gone. Returns how many entries went.
pub(crate) async fn prune_key<S: KeyValueStore + ?Sized>(
    store: &S,
    config: &SessionConfig,
    key: &str,
) -> Result<u64, Error> {
    let Some(record) = store.get(key).await? else {
        return Ok(0);
    };
    let Ok(index) = Index::decode(&record.value) else {
        return Ok(0);
    };
    if index_key(config, &index.owner) != key {
        return Ok(0);
    }
    let gone = gone_entries(store, config, &index).await?;
    let n = gone.len() as u64;
    remove(store, config, &index.owner, &gone).await?;
    Ok(n)
}

/// The ids of `index` whose sessions are gone.
async fn gone_entries<S: KeyValueStore + ?Sized>(
    store: &S,
    config: &SessionConfig,
    index: &Index,
) -> Result<Vec<SessionId>, Error> {
    let checked = checked(store, config, &index.owner, index.entries.clone()).await?;
    Ok(gone_of(&checked))
}

/// Each of `entries` with what its session's record says for `owner`, read
/// [`CONCURRENCY`] at a time, in order.
async fn checked<S: KeyValueStore + ?Sized>(
    store: &S,
    config: &SessionConfig,
    owner: &str,
    entries: Vec<Entry>,
) -> Result<Vec<(Entry, Found)>, Error> {
    use futures_util::stream::{self, StreamExt, TryStreamExt};
    stream::iter(entries)
        .map(|entry| async move {
            let found = check(store, config, owner, &entry).await?;
            Ok::<_, Error>((entry, found))
        })
        .buffered(CONCURRENCY)
        .try_collect()
        .await
}

/// The ids of the checked entries whose sessions are gone.
fn gone_of(checked: &[(Entry, Found)]) -> Vec<SessionId> {
    checked
        .iter()
        .filter(|(_, found)| matches!(found, Found::Gone))
        .map(|(entry, _)| entry.id.clone())
        .collect()
}

impl Engine {
    /// Names `id` in `owner`'s index, before its record is written.
    ///
    /// When the owner already has [`MAX_SESSIONS_PER_OWNER`] entries, the
    /// index is pruned of sessions that are gone, and if it is still full,
    /// the owner's oldest sessions are ended to make room.
    pub(crate) async fn index(&self, owner: &Owner, id: &SessionId) -> Result<(), Error> {
        let (store, config) = (&*self.store, &self.config);
        if add(store, config, owner, id).await? {
            return Ok(());
        }
        if let Some((index, _)) = read(store, config, &owner.name).await? {
            let gone = gone_entries(store, config, &index).await?;
            let live = index.entries.len() - gone.len();
            remove(store, config, &owner.name, &gone).await?;
            if live >= MAX_SESSIONS_PER_OWNER {
                let oldest: Vec<SessionId> = index
                    .entries
                    .iter()
                    .filter(|e| !gone.contains(&e.id))
                    .take(live + 1 - MAX_SESSIONS_PER_OWNER)
                    .map(|e| e.id.clone())
                    .collect();
                log::info!(
                    "kvsession: an owner reached {MAX_SESSIONS_PER_OWNER} sessions; \
                     ending the {} oldest",
                    oldest.len()
                );
                self.revoke_where(&owner.name, &[], |e| oldest.contains(&e.id))
                    .await?;
            }
        }
        if add(store, config, owner, id).await? {
            Ok(())
        } else {
            Err(Error::Conflict { attempts: 2 })
        }
    }

    /// Drops `ids` from `owner`'s index after they ended; a failure only
    /// logs (readers and the sweep prune what is left).
    pub(crate) async fn unindex(&self, owner: &str, ids: &[SessionId]) {
        if let Err(e) = remove(&*self.store, &self.config, owner, ids).await {
            log::warn!("kvsession: could not update an owner index: {e}");
        }
    }

    /// The live sessions of `owner` (with their records), pruning the index
    /// of every entry that is gone.
    pub(crate) async fn owned(&self, owner: &str) -> Result<Vec<(Entry, Found)>, Error> {
        let Some((index, _)) = read(&*self.store, &self.config, owner).await? else {
            return Ok(Vec::new());
        };
        let checked = checked(&*self.store, &self.config, owner, index.entries).await?;
        self.unindex(owner, &gone_of(&checked)).await;
        Ok(checked
            .into_iter()
            .filter(|(_, found)| matches!(found, Found::Live { .. }))
            .collect())
    }

    /// Ends every session in `owner`'s index that `pick` selects (and is
    /// not in `exclude`), with the compare-and-swap of a logout; drops them
    /// from the index. Returns how many live sessions ended.
    pub(crate) async fn revoke_where(
        &self,
        owner: &str,
        exclude: &[SessionId],
        pick: impl Fn(&Entry) -> bool,
    ) -> Result<u64, Error> {
        use futures_util::stream::{self, StreamExt, TryStreamExt};
        let Some((index, _)) = read(&*self.store, &self.config, owner).await? else {
            return Ok(0);
        };
        let chosen: Vec<Entry> = index
            .entries
            .into_iter()
            .filter(|e| !exclude.contains(&e.id) && pick(e))
            .collect();
        let only = crate::engine::Only { owner, exclude };
        let only = &only;
        let ended: u64 = stream::iter(chosen.iter().map(|e| e.id.clone()).collect::<Vec<_>>())
            .map(|id| async move {
                self.end_where(crate::state::Origin { id, version: None }, Some(only))
                    .await
            })
            .buffer_unordered(CONCURRENCY)
            .try_fold(0, |total, n| async move { Ok(total + n) })
            .await?;
        let ids: Vec<SessionId> = chosen.into_iter().map(|e| e.id).collect();
        remove(&*self.store, &self.config, owner, &ids).await?;
        Ok(ended)
    }

    /// The stored session's end of life, for `SessionInfo`.
    pub(crate) fn times(
        &self,
        id: &SessionId,
        envelope: &Envelope,
        expires_at: Option<SystemTime>,
    ) -> (u64, SystemTime) {
        let active = activity(&self.config, envelope.last_active, expires_at);
        let mut end = deadline(&self.config, id, active);
        if let Some(at) = expires_at {
            end = end.min(at);
        }
        (active.min(now_unix()), end)
    }
}

