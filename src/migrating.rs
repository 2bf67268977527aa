//! [`MigratingStore`]: a store over two stores, for moving sessions from one
//! to the other without logging anyone out.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use futures_util::future;
use futures_util::stream::{self, BoxStream, StreamExt, TryStreamExt};

use crate::config::SessionConfig;
use crate::error::{chain, Error, StoreError};
use crate::keys::Keys;
use crate::lifetime::{Lifetime, StoreExpiry};
use crate::record::{Index, Stored};
use crate::store::{
    Capabilities, CompareAndDelete, CreateOutcome, DeleteOutcome, ExpiredDeletion, Expiry, KeyInfo,
    KeyValueStore, Record, UpdateOutcome, Version,
};
use crate::time::unix;

/// The store's name in logs and errors.
const NAME: &str = "migrating";

/// What a [`MigratingStore`] writes over a record it ended: in the new
/// store, so that no request still holding the old store's record can
/// create it there again; in the old store, where a record was moved or
/// ended. It is the crate's own marker of a session that moved, to an id
/// no session ever has (created at Unix time 0) whose random part is the
/// time the tombstone was written, in hex: so the engine reads a leftover
/// one, once the new store serves alone, as an ended session, and the
/// store knows its age. [`MigratingStore::get`](KeyValueStore::get) reads
/// it as no record.
fn tombstone() -> Vec<u8> {
    let mut value = Vec::with_capacity(TOMBSTONE_LEN);
    value.push(MARKER_TAG);
    value.extend_from_slice(format!("{:016x}_0", unix(SystemTime::now())).as_bytes());
    value
}

/// The format tag of the crate's session markers (`record::marker`).
const MARKER_TAG: u8 = crate::record::FORMAT_MARKER;

/// The length of a [`tombstone`]: the tag, 16 hex digits, `_0`.
const TOMBSTONE_LEN: usize = 19;

/// When the tombstone `value` was written (Unix seconds), if it is one.
fn tombstone_written(value: &[u8]) -> Option<u64> {
    let (&tag, body) = value.split_first()?;
    let hex = body.strip_suffix(b"_0")?;
    if tag != MARKER_TAG
        || hex.len() != 16
        || !hex.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()
}

fn is_tombstone(value: &[u8]) -> bool {
    tombstone_written(value).is_some()
}

/// Whether `value` is a tombstone written less than [`TOMBSTONE_GRACE`]
/// ago: a request that read the record it ended may still try to move
/// it, so a delete leaves it in place.
fn is_recent_tombstone(value: &[u8]) -> bool {
    tombstone_written(value)
        .is_some_and(|at| unix(SystemTime::now()) < at.saturating_add(TOMBSTONE_GRACE.as_secs()))
}

/// How long a tombstone is kept: far longer than any request that loaded
/// a record before it ended can run (the same reasoning as the engine's
/// "moved to" markers). On stores that keep expiries it expires then; on
/// others a delete of its key leaves it until then.
const TOMBSTONE_GRACE: Duration = crate::lifetime::MARKER_GRACE;

/// How often one operation re-reads and tries again when the two stores
/// changed under it, before it answers a conflict.
const ATTEMPTS: usize = 8;

/// How many records [`MigratingStore::migrate_all`] moves at once, and how
/// many keys a bulk delete checks at once.
const CONCURRENCY: usize = 16;

/// [`MigratingStore::migrate_all`] logs its progress every this many records.
const PROGRESS_EVERY: u64 = 1000;

/// Which of the two stores a record, or a version of one, comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Old,
    New,
}

impl Side {
    fn tag(self) -> &'static str {
        match self {
            Side::Old => "o:",
            Side::New => "n:",
        }
    }

    /// A version of this store's, tagged with where it came from.
    fn version(self, inner: Option<Version>) -> Option<Version> {
        inner.map(|v| Version::new(format!("{}{}", self.tag(), v.as_str())))
    }

    /// A record of this store's, its version tagged.
    fn record(self, mut record: Record) -> Record {
        record.version = self.version(record.version.take());
        record
    }

    /// The store and the store's own version a tagged version names;
    /// `None` for a version this store did not hand out.
    fn of(version: &Version) -> Option<(Side, Version)> {
        let token = version.as_str();
        [Side::New, Side::Old].into_iter().find_map(|side| {
            token
                .strip_prefix(side.tag())
                .map(|inner| (side, Version::new(inner)))
        })
    }
}

/// What ending the old store's record of a move found.
#[derive(Debug, PartialEq, Eq)]
enum OldEnd {
    /// It had the expected version and is now a tombstone.
    Ended,
    /// It was gone or already ended (a logout, an expiry, another move).
    Gone,
    /// It is live with another version than the one the move read.
    Changed,
}

/// What one move of a record from the old store to the new one did.
#[derive(Debug, PartialEq, Eq)]
enum Move {
    /// Created in the new store (with this version) and ended in the old.
    Moved(Option<Version>),
    /// The new store already holds the key (another request moved it, or
    /// it was ended there): nothing was written.
    AlreadyThere,
    /// The old record was ended meanwhile: the copy is a tombstone now.
    Ended,
    /// The old record changed meanwhile: the copy was taken back (or, if
    /// a request had used it already, the old record was ended instead).
    Changed,
}

/// What [`MigratingStore::migrate_all`] did with one key.
#[derive(Debug, PartialEq, Eq)]
enum Migrated {
    Moved,
    Skipped,
}

/// A [`KeyValueStore`] over two stores, for moving an app's sessions from
/// one store (`old`) to another (`new`) without logging anyone out and
/// without downtime.
///
/// 1. Deploy with `MigratingStore::new(old, new)`: every server reads both
///    stores, and writes only to the new one.
/// 2. Wait one `lifetime` (every session still in the old store has ended
///    by then), or run [`migrate_all`](Self::migrate_all), which moves what
///    is left.
/// 3. Deploy with the new store alone.
///
/// ```rust,no_run
/// use std::sync::Arc;
/// use rocket::fairing::AdHoc;
/// use rocket_kvsession::{KvSession, MemoryStore, MigratingStore, SessionConfig};
///
/// #[rocket::launch]
/// async fn rocket() -> _ {
///     let old = MemoryStore::new(); // the store the app used so far, e.g. a RedisStore
///     let new = MemoryStore::new(); // the one it moves to, e.g. PostgresStore::connect(url)
///     let store = Arc::new(MigratingStore::new(old, new));
///     let migrating = store.clone();
///     rocket::build()
///         .attach(KvSession::from_arc(store))
///         // Optional, once every server runs with the MigratingStore (a
///         // later deploy, or one server): move what is left now rather
///         // than wait a lifetime.
///         .attach(AdHoc::on_liftoff("Move the sessions left", move |rocket| {
///             let config: SessionConfig =
///                 rocket.figment().extract_inner("kvsession").unwrap_or_default();
///             Box::pin(async move {
///                 rocket::tokio::spawn(async move {
///                     match migrating.migrate_all(&config).await {
///                         Ok(moved) => log::info!("{moved} session records moved"),
///                         Err(e) => log::error!("moving sessions failed: {e}"),
///                     }
///                 });
///             })
///         }))
/// }
/// ```
///
/// # What each operation does
///
/// * `get` reads the new store first and, if it holds nothing, the old
///   one. Anything in the new store shadows the old store's record,
///   tombstones included (see below), which read as no record. If the old
///   store shows the record ended, the new store is read again (the record
///   may have just moved), and if it is still empty, a tombstone is put
///   there before the answer "no record" is given (an end is between its
///   two writes, see below).
/// * `create` writes to the new store only, and answers
///   [`CreateOutcome::AlreadyExists`] if the key is live in either store.
/// * `update` and `touch` write where the record lives. The first write of
///   a record found only in the old store *moves* it: the record is
///   created in the new store (insert-if-absent) with the written value
///   and expiry, then the old one is ended with a compare-and-swap on the
///   version that was read, leaving a tombstone there. `touch` moves the
///   record with its current value, so read-only traffic moves sessions
///   too, wherever an idle timeout makes the engine touch them.
/// * `delete` and `delete_many` reach both stores: a key that the old
///   store still holds is first overwritten by a tombstone in the new
///   store, then deleted from the old one. The compare-and-delete (offered
///   when both stores offer one) ends the record in the store its version
///   came from, with a compare-and-swap to a tombstone there, and puts a
///   tombstone into the new store where the old store holds (or held) the
///   key.
/// * `list` merges both stores, each key once; see *Listing* below.
/// * [`migrate_all`](Self::migrate_all) moves every record of an app (its
///   sessions, owner indexes and markers) still only in the old store.
///
/// Versions name their store (each store's own token with a prefix), so
/// an update with a version read from the old store is never compared with
/// the new store's versions: it is a move.
///
/// # Races, and how each ends
///
/// *A session is live in at most one store after its first write*, and *a
/// logout (or revocation) that reports success has ended the session in
/// both stores*:
///
/// * Two requests move the same record: one creates it in the new store;
///   the other's create finds it there and answers
///   [`UpdateOutcome::Conflict`], so the engine re-reads the moved record
///   and merges its changes onto it, as for any concurrent save.
/// * A logout ends the old store's record while a request moves it: if the
///   move's create came first, the logout overwrites the copy with a
///   tombstone; if it comes later, the tombstone the logout left in the new
///   store makes it fail. Either way the move's compare-and-swap on the
///   old record then fails, the copy stays a tombstone, and the move
///   answers [`UpdateOutcome::Missing`]: the session stays logged out,
///   and no request ever reads the copy after the logout reported success.
/// * A logout reads the record from the old store and a request moves it
///   before the logout ends it: the logout's compare-and-delete conflicts
///   with the old store's tombstone, the engine re-reads, finds the moved
///   record and ends that one.
/// * Two ends of one session (a logout and a revocation) race a request
///   that read it from the old store before both: whichever end reports
///   success, the request's move finds a tombstone in the new store, or
///   its copy is overwritten by one before that end returns (a read that
///   finds the record ended in the old store and the new store empty puts
///   the tombstone there itself, see `get`).
/// * The old record changed between the move's read and its
///   compare-and-swap (a server not yet on the `MigratingStore` wrote it):
///   the copy is deleted again (with the new store's compare-and-delete)
///   and the move answers a conflict, so the engine merges onto the newer
///   record. If a request had already written over the copy, or the new
///   store has no compare-and-delete, the copy wins: the old record is
///   ended, and that server's change is lost.
///
/// Servers that use the old store alone cannot see records once they have
/// moved, and what they write to a record that was moved or ended
/// meanwhile is shadowed by the new store: switch every server to the
/// `MigratingStore` at once (or accept that requests such a server serves
/// during the rollout may find some sessions gone, or lose their changes).
/// These races are resolved where both stores have compare-and-swap; on a
/// pair without it, as on any store without it, concurrent writes of one
/// session can overwrite each other.
///
/// A tombstone is the crate's marker of a session that moved to an id no
/// session has, stamped with the time it was written: once the new store
/// serves alone, the engine reads a leftover one as an ended session. It
/// stays ten minutes (far longer than any request runs): on stores that
/// keep expiries it expires then; on others, deletes of its key (the
/// sweep's) leave it until then and remove it afterwards. Tombstones are
/// listed like other keys. Where a store failure leaves a live old record
/// under a tombstone (the old store could not end it), the tombstone is
/// made to last as long as that record, and the failure is returned. A
/// store failure between the two writes of a move is returned as an
/// error, and the copy is deleted again where it can be (as above); where
/// it cannot, the copy shadows the old record (it is the session from then
/// on, and `migrate_all` leaves the pair alone).
///
/// # Capabilities
///
/// * Compare-and-swap if both stores have it, compare-and-delete if both
///   offer one, and no native sweep ([`KeyValueStore::expired_deletion`]
///   is `None`: sweeps list the keys of both stores).
/// * Expiry: every write goes to the new store, so expiries are kept if
///   the new store keeps them ([`Expiry::Ignored`] otherwise), and records
///   are [`Expiry::RemovedByBackend`] only if both stores remove them
///   ([`Expiry::FilteredOnRead`] otherwise: schedule a sweep with
///   `cleanup_interval`). A record read from an old store that ignores
///   expiries has none, and the engine judges it by its id and data, as on
///   such a store. The old store is never handed an expiry it ignores.
///
/// # Listing
///
/// `list` first reads every key of the old store under the prefix into a
/// map (the key and its last-modified time, about 100 bytes and the key's
/// length per key), then streams the new store's keys, each in place of
/// the old store's entry for the same key, then what is left of the map.
/// So a key moved while the listing runs is listed once, with the new
/// store's last-modified time where it has one, and memory grows with the
/// old store only, which empties as the migration proceeds; the new store
/// is streamed.
///
/// # Cost
///
/// A read of a record in the new store is one read of it; a key in
/// neither store, or in the old one, costs a read of each. A create also
/// reads the old store (to be collision-safe across both), a touch reads
/// before it writes, a delete reads both stores, and a move is a create
/// and a compare-and-swap. Once the old store is empty, deploy with the
/// new store alone.
pub struct MigratingStore<O, N> {
    old: O,
    new: N,
}

impl<O: Clone, N: Clone> Clone for MigratingStore<O, N> {
    fn clone(&self) -> Self {
        MigratingStore {
            old: self.old.clone(),
            new: self.new.clone(),
        }
    }
}

impl<O: KeyValueStore, N: KeyValueStore> fmt::Debug for MigratingStore<O, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MigratingStore")
            .field("old", &self.old.name())
            .field("new", &self.new.name())
            .finish()
    }
}

impl<O: KeyValueStore, N: KeyValueStore> MigratingStore<O, N> {
    /// A store that moves records from `old` to `new`.
    pub fn new(old: O, new: N) -> Self {
        MigratingStore { old, new }
    }

    /// The store sessions are moved from.
    pub fn old_store(&self) -> &O {
        &self.old
    }

    /// The store sessions are moved to.
    pub fn new_store(&self) -> &N {
        &self.new
    }

    /// Moves every record of the app `config` describes (under its
    /// `key_prefix`: sessions, owner indexes and the markers of rotated
    /// sessions) that is still only in the old store to the new store, and
    /// returns how many it moved.
    ///
    /// Each record is moved as a write would move it: created in the new
    /// store if it is not there yet (a record already there was moved by a
    /// request, and is left alone), then ended in the old store with a
    /// compare-and-swap, so it is safe to run while the app serves: a
    /// request or a logout racing it ends as described on
    /// [`MigratingStore`]. Each record keeps the expiry the old store holds
    /// for it; if the old store keeps none, it gets the one the engine
    /// would write for it (from its id, its data and `config`), or none if
    /// the new store keeps none or `set_ttl` is off. Sessions whose
    /// lifetime is over, and keys of other apps, are not moved.
    ///
    /// Logs its progress (`log::info!`, every 1,000 records moved) and a
    /// summary, never an id. Reads the old store's keys as a stream, and
    /// moves 16 records at a time.
    ///
    /// # Errors
    ///
    /// The first store error of either store, after which the records not
    /// yet moved stay where they are (running it again moves them), or
    /// [`Error::Conflict`] if one record kept changing under it.
    pub async fn migrate_all(&self, config: &SessionConfig) -> Result<u64, Error> {
        let keys = Keys::of(config);
        let rules = Lifetime::of(config);
        let kept = self.new.capabilities().expiry.is_kept();
        let expiry = StoreExpiry::new(config, kept);
        // Whether the engine hands the new store an expiry at all.
        let handed = expiry.is_handed();
        let scanned = AtomicU64::new(0);
        let moved = AtomicU64::new(0);
        let (keys, scanned_ref, moved_ref) = (&keys, &scanned, &moved);
        log::info!(
            "kvsession: migrating sessions from the {} store to the {} store",
            self.old.name(),
            self.new.name()
        );
        let result = self
            .old
            .list(keys.prefix())
            .map_err(Error::from)
            .try_filter(|info| {
                scanned_ref.fetch_add(1, Relaxed);
                let now = unix(SystemTime::now());
                let ours = match keys.own_session_id(&info.key, now) {
                    Some(id) => !rules.outlived(&id, now),
                    None => keys.is_index(&info.key),
                };
                future::ready(ours)
            })
            .map_ok(|info| async move {
                let outcome = self.migrate_one(&info.key, keys, &expiry, handed).await?;
                if outcome == Migrated::Moved {
                    let n = moved_ref.fetch_add(1, Relaxed) + 1;
                    if n.is_multiple_of(PROGRESS_EVERY) {
                        log::info!(
                            "kvsession: migration: {n} records moved, {} keys scanned",
                            scanned_ref.load(Relaxed)
                        );
                    }
                }
                Ok::<_, Error>(())
            })
            .try_buffer_unordered(CONCURRENCY)
            .try_collect::<()>()
            .await;
        let (moved, scanned) = (moved.into_inner(), scanned.into_inner());
        match result {
            Ok(()) => {
                log::info!(
                    "kvsession: migration done: {moved} records moved to the {} store, \
                     {scanned} keys scanned",
                    self.new.name()
                );
                Ok(moved)
            }
            Err(e) => {
                log::warn!(
                    "kvsession: migration stopped after {moved} records moved: {}",
                    chain(&e)
                );
                Err(e)
            }
        }
    }

    /// Moves the record under `key` if it is still only in the old store.
    async fn migrate_one(
        &self,
        key: &str,
        keys: &Keys,
        expiry: &StoreExpiry,
        handed: bool,
    ) -> Result<Migrated, Error> {
        for _ in 0..ATTEMPTS {
            let Some(record) = self.old.get(key).await? else {
                return Ok(Migrated::Skipped);
            };
            if is_tombstone(&record.value) {
                return Ok(Migrated::Skipped);
            }
            let expires_at = if handed {
                record
                    .expires_at
                    .or_else(|| engine_expiry(key, &record.value, keys, expiry))
            } else {
                None
            };
            let expected = record.version.as_ref().filter(|_| self.old_cas());
            match self
                .move_record(key, &record.value, expected, expires_at)
                .await?
            {
                Move::Moved(_) => return Ok(Migrated::Moved),
                Move::AlreadyThere => {
                    // Moved by a request (the copy is the session now) or
                    // ended there: in the latter case, a logout that could
                    // not end the old record (it failed in between) is
                    // finished here. A live copy is left alone: the
                    // request that made it ends the old record itself.
                    let ended = self
                        .new
                        .get(key)
                        .await?
                        .is_some_and(|r| is_tombstone(&r.value));
                    if ended {
                        self.end_old_unconditionally(key).await?;
                    }
                    return Ok(Migrated::Skipped);
                }
                Move::Ended => return Ok(Migrated::Skipped),
                Move::Changed => continue,
            }
        }
        Err(Error::Conflict {
            attempts: ATTEMPTS as u32,
        })
    }

    fn old_cas(&self) -> bool {
        self.old.capabilities().compare_and_swap
    }

    fn new_cas(&self) -> bool {
        self.new.capabilities().compare_and_swap
    }

    /// The expiry of a tombstone in the new store: [`TOMBSTONE_GRACE`]
    /// from now, or, where it shadows a live record of the old store, at
    /// least as long as that record lives (so it cannot come back); none
    /// if the new store keeps no expiries.
    fn tombstone_expiry(&self, shadowing: Option<&Record>) -> Option<SystemTime> {
        if !self.new.capabilities().expiry.is_kept() {
            return None;
        }
        let grace = SystemTime::now() + TOMBSTONE_GRACE;
        match shadowing {
            None => Some(grace),
            Some(record) => record.expires_at.map(|at| at.max(grace)),
        }
    }

    /// After a tombstone was written into the new store but the old
    /// store could not end its live record `in_old`: the tombstone is
    /// made to last as long as that record (as far as that can be done),
    /// so the record never comes back when the tombstone expires. The
    /// failure itself is the caller's to report.
    async fn keep_shadowing(&self, key: &str, in_old: &Record) {
        if is_tombstone(&in_old.value) {
            return;
        }
        let expiry = self.tombstone_expiry(Some(in_old));
        if let Err(e) = self.put_tombstone(key, expiry).await {
            log::warn!(
                "kvsession: a record that could not be ended in the old store \
                 may come back when its tombstone expires: {}",
                chain(&e)
            );
        }
    }

    /// The expiry of a tombstone in the old store.
    fn old_tombstone_expiry(&self) -> Option<SystemTime> {
        self.old
            .capabilities()
            .expiry
            .is_kept()
            .then(|| SystemTime::now() + TOMBSTONE_GRACE)
    }

    /// The old store's record under `key` unless it is a tombstone.
    async fn live_in_old(&self, key: &str) -> Result<Option<Record>, StoreError> {
        Ok(self.old.get(key).await?.filter(|r| !is_tombstone(&r.value)))
    }

    /// Where the record under `key` lives: the new store's record, else
    /// the old store's, else none (tombstones are none).
    ///
    /// A record the old store shows ended was moved, or ended, after the
    /// new store was read: the new store is read again, so a move never
    /// makes a live record look absent. If the new store still holds
    /// nothing, an end is under way (between its two writes) or long over;
    /// before answering none, a tombstone is put into the new store (if it
    /// is still empty), so that a request still holding the old record
    /// cannot move it there once this answer has been given.
    async fn locate(&self, key: &str) -> Result<Option<(Side, Record)>, StoreError> {
        if let Some(record) = self.new.get(key).await? {
            return Ok((!is_tombstone(&record.value)).then_some((Side::New, record)));
        }
        match self.old.get(key).await? {
            None => return Ok(None),
            Some(record) if !is_tombstone(&record.value) => return Ok(Some((Side::Old, record))),
            Some(_) => {}
        }
        for _ in 0..ATTEMPTS {
            if let Some(record) = self.new.get(key).await? {
                return Ok((!is_tombstone(&record.value)).then_some((Side::New, record)));
            }
            let expiry = self.tombstone_expiry(None);
            if let CreateOutcome::Created(_) = self.new.create(key, &tombstone(), expiry).await? {
                return Ok(None);
            }
        }
        Err(StoreError::backend(
            NAME,
            "could not read a record: it kept changing",
        ))
    }

    /// Writes a tombstone over whatever the new store holds under `key`.
    async fn put_tombstone(
        &self,
        key: &str,
        expires_at: Option<SystemTime>,
    ) -> Result<(), StoreError> {
        for _ in 0..ATTEMPTS {
            match self.new.update(key, &tombstone(), None, expires_at).await? {
                UpdateOutcome::Updated(_) => return Ok(()),
                UpdateOutcome::Conflict => continue,
                UpdateOutcome::Missing => {}
            }
            if let CreateOutcome::Created(_) =
                self.new.create(key, &tombstone(), expires_at).await?
            {
                return Ok(());
            }
        }
        Err(StoreError::backend(
            NAME,
            "could not write a tombstone: the record kept changing",
        ))
    }

    /// Ends whatever live record the old store holds under `key`.
    async fn end_old_unconditionally(&self, key: &str) -> Result<(), StoreError> {
        let _ = self
            .old
            .update(key, &tombstone(), None, self.old_tombstone_expiry())
            .await?;
        Ok(())
    }

    /// Ends the old store's record of a move: a tombstone written over the
    /// version the move read (over whatever is there if the old store has
    /// no compare-and-swap or no version was read).
    async fn end_old(&self, key: &str, expected: Option<&Version>) -> Result<OldEnd, StoreError> {
        let expected = expected.filter(|_| self.old_cas());
        match self
            .old
            .update(key, &tombstone(), expected, self.old_tombstone_expiry())
            .await?
        {
            UpdateOutcome::Updated(_) => Ok(OldEnd::Ended),
            UpdateOutcome::Missing => Ok(OldEnd::Gone),
            UpdateOutcome::Conflict => Ok(match self.live_in_old(key).await? {
                Some(_) => OldEnd::Changed,
                None => OldEnd::Gone,
            }),
        }
    }

    /// Deletes `keys` from the new store (the old store holds none of
    /// them), except recent tombstones: a request that read the record a
    /// tombstone ended, from the old store, may still try to move it.
    async fn delete_new(&self, keys: Vec<String>) -> Result<(), StoreError> {
        let doomed: Vec<String> = stream::iter(keys)
            .map(|key| async move {
                let recent = self
                    .new
                    .get(&key)
                    .await?
                    .is_some_and(|r| is_recent_tombstone(&r.value));
                Ok::<_, StoreError>((!recent).then_some(key))
            })
            .buffer_unordered(CONCURRENCY)
            .try_filter_map(|key| future::ready(Ok(key)))
            .try_collect()
            .await?;
        match doomed.len() {
            0 => Ok(()),
            1 => self.new.delete(&doomed[0]).await,
            _ => self.new.delete_many(doomed).await,
        }
    }

    /// Deletes the copy a move created at `created`, unless a request
    /// wrote over it since (or a logout ended it): whether it is gone.
    /// Without a compare-and-delete in the new store, the copy is never
    /// deleted (a plain delete could remove a logout's tombstone written
    /// just before it): it stays, and is the session from then on.
    async fn take_back(&self, key: &str, created: Option<&Version>) -> Result<bool, StoreError> {
        match (self.new.compare_and_delete(), created) {
            (Some(cad), Some(version)) => {
                Ok(cad.delete_if(key, version).await? != DeleteOutcome::Conflict)
            }
            _ => Ok(false),
        }
    }

    /// Moves the record under `key`, read from the old store at `expected`,
    /// to the new store with `value`: created there, then ended in the old
    /// store.
    async fn move_record(
        &self,
        key: &str,
        value: &[u8],
        expected: Option<&Version>,
        expires_at: Option<SystemTime>,
    ) -> Result<Move, StoreError> {
        let created = match self.new.create(key, value, expires_at).await? {
            CreateOutcome::Created(version) => version,
            CreateOutcome::AlreadyExists => return Ok(Move::AlreadyThere),
        };
        let ended = match self.end_old(key, expected).await {
            Ok(ended) => ended,
            Err(e) => {
                // Leave the record where it was, if the copy can go; if
                // not, the copy is the session from now on.
                match self.take_back(key, created.as_ref()).await {
                    Ok(true) => {}
                    Ok(false) => log::warn!(
                        "kvsession: a record moved halfway was left in both stores \
                         (the new store's copy shadows the old one)"
                    ),
                    Err(cleanup) => log::warn!(
                        "kvsession: a record moved halfway was left in both stores \
                         (the new store's copy shadows the old one): {}",
                        chain(&cleanup)
                    ),
                }
                return Err(e);
            }
        };
        match ended {
            OldEnd::Ended => Ok(Move::Moved(created)),
            OldEnd::Gone => {
                // Logged out (or expired) since it was read: so is the copy.
                self.put_tombstone(key, self.tombstone_expiry(None)).await?;
                Ok(Move::Ended)
            }
            OldEnd::Changed => {
                if !self.take_back(key, created.as_ref()).await? {
                    // A request already wrote over the copy: it is the
                    // session now.
                    self.end_old_unconditionally(key).await?;
                }
                Ok(Move::Changed)
            }
        }
    }

    /// What an update or compare-and-delete of the new store that did not
    /// write means, or a move that found the key there: `Missing` if the
    /// record is ended (a tombstone) or gone from both stores, `Conflict`
    /// if it lives on (changed, moved again, or back in the old store
    /// because a move took its copy back), so the caller re-reads it.
    async fn did_not_write(&self, key: &str) -> Result<UpdateOutcome, StoreError> {
        Ok(match self.locate(key).await? {
            Some(_) => UpdateOutcome::Conflict,
            None => UpdateOutcome::Missing,
        })
    }

    /// An update of a record read from the new store at `expected`.
    async fn update_new(
        &self,
        key: &str,
        value: &[u8],
        expected: &Version,
        expires_at: Option<SystemTime>,
    ) -> Result<UpdateOutcome, StoreError> {
        match self
            .new
            .update(key, value, Some(expected), expires_at)
            .await?
        {
            UpdateOutcome::Updated(v) => Ok(UpdateOutcome::Updated(Side::New.version(v))),
            UpdateOutcome::Missing => self.did_not_write(key).await,
            UpdateOutcome::Conflict => self.did_not_write(key).await,
        }
    }

    /// An update of a record read from the old store at `expected`: a move.
    async fn update_old(
        &self,
        key: &str,
        value: &[u8],
        expected: &Version,
        expires_at: Option<SystemTime>,
    ) -> Result<UpdateOutcome, StoreError> {
        Ok(
            match self
                .move_record(key, value, Some(expected), expires_at)
                .await?
            {
                Move::Moved(v) => UpdateOutcome::Updated(Side::New.version(v)),
                Move::AlreadyThere => self.did_not_write(key).await?,
                Move::Ended => UpdateOutcome::Missing,
                Move::Changed => UpdateOutcome::Conflict,
            },
        )
    }

    /// An update without an expected version: wherever the record lives
    /// (moved if it is only in the old store), never over a tombstone.
    async fn update_anywhere(
        &self,
        key: &str,
        value: &[u8],
        expires_at: Option<SystemTime>,
    ) -> Result<UpdateOutcome, StoreError> {
        for _ in 0..ATTEMPTS {
            match self.locate(key).await? {
                None => return Ok(UpdateOutcome::Missing),
                Some((Side::New, current)) => {
                    // The version read, so that a tombstone written
                    // meanwhile is never overwritten.
                    let expected = current.version.as_ref().filter(|_| self.new_cas());
                    match self.new.update(key, value, expected, expires_at).await? {
                        UpdateOutcome::Updated(v) => {
                            return Ok(UpdateOutcome::Updated(Side::New.version(v)))
                        }
                        UpdateOutcome::Missing | UpdateOutcome::Conflict => continue,
                    }
                }
                Some((Side::Old, current)) => {
                    let expected = current.version.as_ref().filter(|_| self.old_cas());
                    match self.move_record(key, value, expected, expires_at).await? {
                        Move::Moved(v) => return Ok(UpdateOutcome::Updated(Side::New.version(v))),
                        Move::Ended => return Ok(UpdateOutcome::Missing),
                        Move::AlreadyThere | Move::Changed => continue,
                    }
                }
            }
        }
        Ok(UpdateOutcome::Conflict)
    }

    /// Ends, conditionally on `expected`, a record read from the new store.
    async fn delete_new_if(
        &self,
        key: &str,
        expected: &Version,
    ) -> Result<DeleteOutcome, StoreError> {
        let in_old = self.old.get(key).await?;
        if let (None, Some(cad)) = (&in_old, self.new.compare_and_delete()) {
            // Nothing of it left in the old store: no move of it can be
            // under way, and it can simply go.
            let outcome = cad.delete_if(key, expected).await?;
            return self.deleted_or(key, outcome).await;
        }
        // Else a request that read the old record may still try to move
        // it: it is ended with a tombstone, which stops the move.
        let live_old = in_old.filter(|r| !is_tombstone(&r.value));
        let expiry = self.tombstone_expiry(None);
        match self
            .new
            .update(key, &tombstone(), Some(expected), expiry)
            .await?
        {
            UpdateOutcome::Updated(_) => {
                if let Some(live_old) = &live_old {
                    // What the old store still holds is the record before
                    // it moved: it ends too.
                    if let Err(e) = self.end_old_unconditionally(key).await {
                        self.keep_shadowing(key, live_old).await;
                        return Err(e);
                    }
                }
                Ok(DeleteOutcome::Deleted)
            }
            UpdateOutcome::Missing => Ok(as_delete(self.did_not_write(key).await?)),
            UpdateOutcome::Conflict => Ok(as_delete(self.did_not_write(key).await?)),
        }
    }

    /// A compare-and-delete outcome of the new store, re-judged like an
    /// update's where it did not delete.
    async fn deleted_or(
        &self,
        key: &str,
        outcome: DeleteOutcome,
    ) -> Result<DeleteOutcome, StoreError> {
        Ok(match outcome {
            DeleteOutcome::Deleted => DeleteOutcome::Deleted,
            DeleteOutcome::Missing => as_delete(self.did_not_write(key).await?),
            DeleteOutcome::Conflict => as_delete(self.did_not_write(key).await?),
        })
    }

    /// Ends, conditionally on `expected`, a record read from the old store.
    async fn delete_old_if(
        &self,
        key: &str,
        expected: &Version,
    ) -> Result<DeleteOutcome, StoreError> {
        match self
            .old
            .update(
                key,
                &tombstone(),
                Some(expected),
                self.old_tombstone_expiry(),
            )
            .await?
        {
            UpdateOutcome::Updated(_) => {
                // A request moving it may have created its copy already, or
                // may be about to: the tombstone ends or stops it.
                self.put_tombstone(key, self.tombstone_expiry(None)).await?;
                Ok(DeleteOutcome::Deleted)
            }
            UpdateOutcome::Missing => Ok(as_delete(self.did_not_write(key).await?)),
            UpdateOutcome::Conflict => Ok(DeleteOutcome::Conflict),
        }
    }
}

fn as_delete(outcome: UpdateOutcome) -> DeleteOutcome {
    match outcome {
        UpdateOutcome::Missing => DeleteOutcome::Missing,
        _ => DeleteOutcome::Conflict,
    }
}

/// The expiry the engine would write for the record `value` under `key`:
/// a session's by its id and data, a "moved to" marker's, an owner index's
/// by the sessions it names; `None` for anything else.
fn engine_expiry(key: &str, value: &[u8], keys: &Keys, expiry: &StoreExpiry) -> Option<SystemTime> {
    let now = SystemTime::now();
    if let Some(id) = keys.own_session_id(key, unix(now)) {
        return match Stored::decode(value) {
            Ok(Stored::Live(envelope)) => expiry
                .for_session(&envelope.expiry)
                .session(&id, envelope.last_active),
            Ok(Stored::Ended(_)) => expiry.marker(&id, unix(now), now),
            Err(_) => None,
        };
    }
    let index = Index::decode(value).ok()?;
    expiry.index(index.entries.iter().map(|e| &e.id), now)
}

/// Where [`MigratingStore::list`] is.
enum Listing<'a> {
    /// Reading the old store's keys.
    Start,
    /// Streaming the new store's keys; the old store's not listed yet.
    New(
        BoxStream<'a, Result<KeyInfo, StoreError>>,
        HashMap<String, KeyInfo>,
    ),
    /// The old store's keys the new store did not list.
    Rest(std::collections::hash_map::IntoValues<String, KeyInfo>),
    Done,
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl<O: KeyValueStore, N: KeyValueStore> KeyValueStore for MigratingStore<O, N> {
    fn name(&self) -> &'static str {
        NAME
    }

    fn capabilities(&self) -> Capabilities {
        let (old, new) = (self.old.capabilities(), self.new.capabilities());
        let expiry = if !new.expiry.is_kept() {
            Expiry::Ignored
        } else if old.expiry.needs_sweep() || new.expiry.needs_sweep() {
            Expiry::FilteredOnRead
        } else {
            Expiry::RemovedByBackend
        };
        let caps = Capabilities::new(expiry);
        if old.compare_and_swap && new.compare_and_swap {
            caps.with_compare_and_swap()
        } else {
            caps
        }
    }

    /// Prepares both stores.
    async fn init(&self) -> Result<(), StoreError> {
        self.old.init().await?;
        self.new.init().await
    }

    /// Checks that both stores can hold `key`.
    fn check_key(&self, key: &str) -> Result<(), StoreError> {
        self.old.check_key(key)?;
        self.new.check_key(key)
    }

    async fn get(&self, key: &str) -> Result<Option<Record>, StoreError> {
        Ok(self.locate(key).await?.map(|(side, r)| side.record(r)))
    }

    async fn create(
        &self,
        key: &str,
        value: &[u8],
        expires_at: Option<SystemTime>,
    ) -> Result<CreateOutcome, StoreError> {
        if self.live_in_old(key).await?.is_some() {
            return Ok(CreateOutcome::AlreadyExists);
        }
        for _ in 0..ATTEMPTS {
            if let CreateOutcome::Created(v) = self.new.create(key, value, expires_at).await? {
                return Ok(CreateOutcome::Created(Side::New.version(v)));
            }
            // A tombstone is no record: it is replaced.
            let Some(current) = self.new.get(key).await? else {
                continue;
            };
            if !is_tombstone(&current.value) {
                return Ok(CreateOutcome::AlreadyExists);
            }
            match current.version.as_ref().filter(|_| self.new_cas()) {
                Some(tombstone) => {
                    let outcome = self
                        .new
                        .update(key, value, Some(tombstone), expires_at)
                        .await?;
                    if let UpdateOutcome::Updated(v) = outcome {
                        return Ok(CreateOutcome::Created(Side::New.version(v)));
                    }
                }
                None => self.new.delete(key).await?,
            }
        }
        Ok(CreateOutcome::AlreadyExists)
    }

    async fn update(
        &self,
        key: &str,
        value: &[u8],
        expected: Option<&Version>,
        expires_at: Option<SystemTime>,
    ) -> Result<UpdateOutcome, StoreError> {
        let expected = expected.filter(|_| self.capabilities().compare_and_swap);
        match expected.map(Side::of) {
            None => self.update_anywhere(key, value, expires_at).await,
            // Not a version of this store's: it matches nothing.
            Some(None) => Ok(UpdateOutcome::Conflict),
            Some(Some((Side::New, v))) => self.update_new(key, value, &v, expires_at).await,
            Some(Some((Side::Old, v))) => self.update_old(key, value, &v, expires_at).await,
        }
    }

    /// Touches the record where it lives; one found only in the old store
    /// is moved to the new one with the new expiry (its version changes).
    async fn touch(&self, key: &str, expires_at: SystemTime) -> Result<UpdateOutcome, StoreError> {
        for _ in 0..ATTEMPTS {
            match self.locate(key).await? {
                None => return Ok(UpdateOutcome::Missing),
                Some((Side::New, _)) => match self.new.touch(key, expires_at).await? {
                    UpdateOutcome::Updated(v) => {
                        return Ok(UpdateOutcome::Updated(Side::New.version(v)))
                    }
                    UpdateOutcome::Missing => continue,
                    UpdateOutcome::Conflict => return Ok(UpdateOutcome::Conflict),
                },
                Some((Side::Old, current)) => {
                    let expected = current.version.as_ref().filter(|_| self.old_cas());
                    let expiry =
                        Some(expires_at).filter(|_| self.new.capabilities().expiry.is_kept());
                    match self
                        .move_record(key, &current.value, expected, expiry)
                        .await?
                    {
                        Move::Moved(v) => return Ok(UpdateOutcome::Updated(Side::New.version(v))),
                        Move::Ended => return Ok(UpdateOutcome::Missing),
                        Move::AlreadyThere | Move::Changed => continue,
                    }
                }
            }
        }
        Ok(UpdateOutcome::Conflict)
    }

    /// Deletes the record from both stores. For a key the old store still
    /// holds, the new store's record is overwritten by a tombstone first
    /// (so that a request that read the old record cannot move it to the
    /// new store afterwards, and no read finds a copy of it there), then
    /// the old record is deleted.
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let Some(in_old) = self.old.get(key).await? else {
            return self.delete_new(vec![key.to_owned()]).await;
        };
        self.put_tombstone(key, self.tombstone_expiry(None)).await?;
        if let Err(e) = self.old.delete(key).await {
            self.keep_shadowing(key, &in_old).await;
            return Err(e);
        }
        Ok(())
    }

    /// [`delete`](Self::delete) of every key: the keys the old store holds
    /// tombstoned in the new store, then deleted from the old store in one
    /// call; the others deleted from the new store in one call.
    async fn delete_many(&self, keys: Vec<String>) -> Result<(), StoreError> {
        let found: Vec<(String, Option<Record>)> = stream::iter(keys)
            .map(|key| async move {
                let in_old = self.old.get(&key).await?;
                Ok::<_, StoreError>((key, in_old))
            })
            .buffer_unordered(CONCURRENCY)
            .try_collect()
            .await?;
        let (in_old, only_new): (Vec<_>, Vec<_>) =
            found.into_iter().partition(|(_, old)| old.is_some());
        if !in_old.is_empty() {
            let expiry = self.tombstone_expiry(None);
            let keys: Vec<String> = in_old.iter().map(|(key, _)| key.clone()).collect();
            stream::iter(keys.clone())
                .map(|key| async move { self.put_tombstone(&key, expiry).await })
                .buffer_unordered(CONCURRENCY)
                .try_collect::<()>()
                .await?;
            if let Err(e) = self.old.delete_many(keys).await {
                for (key, record) in in_old.iter().filter_map(|(k, r)| Some((k, r.as_ref()?))) {
                    self.keep_shadowing(key, record).await;
                }
                return Err(e);
            }
        }
        self.delete_new(only_new.into_iter().map(|(key, _)| key).collect())
            .await
    }

    /// Both stores' keys under `prefix`, each once (see *Listing* on
    /// [`MigratingStore`]).
    fn list<'a>(&'a self, prefix: &'a str) -> BoxStream<'a, Result<KeyInfo, StoreError>> {
        stream::unfold(Listing::Start, move |mut listing| async move {
            loop {
                listing = match listing {
                    Listing::Start => {
                        let old = self
                            .old
                            .list(prefix)
                            .try_fold(HashMap::new(), |mut keys, info| {
                                keys.insert(info.key.clone(), info);
                                future::ready(Ok(keys))
                            })
                            .await;
                        match old {
                            Ok(keys) => Listing::New(self.new.list(prefix), keys),
                            Err(e) => return Some((Err(e), Listing::Done)),
                        }
                    }
                    Listing::New(mut listed, mut old) => match listed.next().await {
                        Some(Ok(info)) => {
                            old.remove(&info.key);
                            return Some((Ok(info), Listing::New(listed, old)));
                        }
                        Some(Err(e)) => return Some((Err(e), Listing::Done)),
                        None => Listing::Rest(old.into_values()),
                    },
                    Listing::Rest(mut rest) => {
                        return rest.next().map(|info| (Ok(info), Listing::Rest(rest)))
                    }
                    Listing::Done => return None,
                }
            }
        })
        .boxed()
    }

    /// `Some` if both stores have a compare-and-delete.
    fn compare_and_delete(&self) -> Option<&dyn CompareAndDelete> {
        let both = self.old.compare_and_delete().is_some()
            && self.new.compare_and_delete().is_some()
            && self.capabilities().compare_and_swap;
        both.then_some(self as &dyn CompareAndDelete)
    }

    /// `None`: a native sweep cannot delete what has expired in both
    /// stores at once, so sweeps list the keys of both.
    fn expired_deletion(&self) -> Option<&dyn ExpiredDeletion> {
        None
    }
}

#[async_trait]
impl<O: KeyValueStore, N: KeyValueStore> CompareAndDelete for MigratingStore<O, N> {
    /// Ends the record in the store `expected` came from. A record read
    /// from the old store, or one the old store still holds the premoved
    /// state of, leaves a tombstone in the new store.
    async fn delete_if(&self, key: &str, expected: &Version) -> Result<DeleteOutcome, StoreError> {
        match Side::of(expected) {
            Some((Side::New, v)) => self.delete_new_if(key, &v).await,
            Some((Side::Old, v)) => self.delete_old_if(key, &v).await,
            None => Ok(DeleteOutcome::Conflict),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::SessionId;
    use crate::MemoryStore;

    #[test]
    fn a_tombstone_reads_as_an_ended_session_and_knows_its_age() {
        let value = tombstone();
        assert_eq!(value.len(), TOMBSTONE_LEN);
        let Ok(Stored::Ended(Some(never))) = Stored::decode(value.as_slice()) else {
            panic!("not a marker: {value:?}");
        };
        assert_eq!(never.created_unix(), 0);
        assert_eq!(value, Stored::ended(Some(&never)));
        let written = tombstone_written(&value).unwrap();
        assert!(written.abs_diff(unix(SystemTime::now())) <= 1);
        assert!(is_recent_tombstone(&value));
        let old = Stored::ended(Some(&"0000000000000001_0".parse().unwrap()));
        assert!(is_tombstone(&old) && !is_recent_tombstone(&old));
        // The engine's own markers are not tombstones.
        let moved: SessionId = "00112233445566778899aabbccddeeff_6745c1a0".parse().unwrap();
        assert!(!is_tombstone(&Stored::ended(Some(&moved))));
        assert!(!is_tombstone(&Stored::ended(None)));
        // No configuration takes the id it names for a session it wrote.
        let keys = Keys::of(&SessionConfig::default());
        let key = keys.session(&never);
        assert_eq!(keys.own_session_id(&key, unix(SystemTime::now())), None);
    }

    #[test]
    fn versions_say_their_store() {
        for side in [Side::Old, Side::New] {
            let tagged = side.version(Some(Version::new("n:o:7"))).unwrap();
            assert_eq!(Side::of(&tagged), Some((side, Version::new("n:o:7"))));
        }
        assert_eq!(Side::New.version(None), None);
        assert_eq!(Side::of(&Version::new("7")), None);
        assert_ne!(
            Side::Old.version(Some(Version::from(1u64))),
            Side::New.version(Some(Version::from(1u64)))
        );
    }

    #[tokio::test]
    async fn a_record_moves_on_its_first_write() {
        let (old, new) = (MemoryStore::new(), MemoryStore::new());
        let store = MigratingStore::new(old.clone(), new.clone());
        let _ = old.create("k", b"v1", None).await.unwrap();
        let read = store.get("k").await.unwrap().unwrap();
        let version = read.version.unwrap();
        assert!(version.as_str().starts_with("o:"), "{version:?}");
        let outcome = store
            .update("k", b"v2", Some(&version), None)
            .await
            .unwrap();
        let UpdateOutcome::Updated(Some(moved)) = outcome else {
            panic!("{outcome:?}");
        };
        assert!(moved.as_str().starts_with("n:"), "{moved:?}");
        assert_eq!(new.get("k").await.unwrap().unwrap().value, b"v2");
        assert!(is_tombstone(&old.get("k").await.unwrap().unwrap().value));
        // The old version is stale now.
        let stale = store
            .update("k", b"v3", Some(&version), None)
            .await
            .unwrap();
        assert_eq!(stale, UpdateOutcome::Conflict);
        let listed: Vec<String> = store.list("").map(|r| r.unwrap().key).collect().await;
        assert_eq!(listed, vec!["k".to_owned()]);
    }
}
