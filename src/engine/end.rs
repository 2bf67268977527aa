//! Ending sessions: logout, revocation, and the compare-and-swap that ends
//! one record and follows the rotations it finds.
//!
//! On stores with compare-and-swap, a record is ended conditionally on the
//! version read: deleted with the store's compare-and-delete where it has
//! one, else replaced by an "ended" marker and then deleted. A rotation does
//! the same with a "moved to" marker, so whichever of the two comes second
//! sees the other: a logout that finds a "moved to" marker ends the new
//! record too, and a rotation that finds its source ended (or gone) deletes
//! the record it just wrote.
//!
//! An end wins against writers that keep coming (a copy of the cookie
//! saving the session over and over): after a conflict it re-reads and
//! retries at once, without the backoff saves use, and a save that finds
//! the ended marker never writes over it (saves are update-only and merge
//! only onto live records). If it still cannot end the record within the
//! retry budget, or a session keeps rotating away faster than it follows,
//! it fails: it never reports success and leaves a session alive.

use futures_util::stream::{self, StreamExt, TryStreamExt};

use super::{Engine, SessionCell};
use crate::error::Error;
use crate::events::SessionEventKind;
use crate::id::SessionId;
use crate::metrics::{self, Save};
use crate::owners::CONCURRENCY;
use crate::record::{Envelope, IndexEntry, Owner, Stored};
use crate::state::Origin;
use crate::store::{DeleteOutcome, UpdateOutcome, Version};

/// How many rotations a logout follows from the id it ended (a session
/// rotated again while the logout ran) before it gives up with an error.
const MAX_SUCCESSORS: usize = 16;

/// Which sessions a revocation may end: those of `owner`, except the ids in
/// `exclude` (the revoking request's own session).
#[derive(Debug)]
pub(crate) struct Only<'a> {
    pub(crate) owner: &'a str,
    pub(crate) exclude: &'a [SessionId],
}

impl Only<'_> {
    fn allows(&self, envelope: &Envelope) -> bool {
        envelope
            .owner
            .as_ref()
            .is_some_and(|o| o.name == self.owner)
    }

    fn excludes(&self, id: &SessionId) -> bool {
        self.exclude.contains(id)
    }
}

/// What ending one record did.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Step {
    /// A live record was ended; its owner, if it was read and had one.
    Ended(Option<Owner>),
    /// There was no live record: unreadable, or an "ended" marker.
    Gone,
    /// There was no record at all (ended and deleted, expired, or not
    /// written yet).
    Missing,
    /// The record was left alone: (a marker pointing to) a session the
    /// revocation excludes.
    Skipped,
    /// The record was left alone: a live session of another owner, or of
    /// none (yet).
    Foreign,
    /// The record had moved to this id (a rotation); its marker is gone.
    MovedTo(SessionId),
}

/// What [`Engine::end_named`] did.
#[derive(Debug)]
pub(crate) struct Ending {
    /// The live records it ended, by their owners where it read them.
    pub(crate) ended: Vec<Option<Owner>>,
    /// Whether the id it was given may still become a live session: its
    /// record was missing or not the owner's, which a session being
    /// written (indexed, its record not yet written) also looks like.
    pub(crate) maybe_pending: bool,
}

impl Engine {
    /// Ends the session now (see [`Engine::end`]) and drops it from its
    /// owner's index; the request goes on with a new, empty session. If the
    /// session was rotated meanwhile (a login in another request), the
    /// record it moved to is ended too: a logout always stays a logout.
    pub(crate) async fn destroy(&self, cell: &SessionCell) -> Result<(), Error> {
        let (origin, owner) = {
            let st = cell.lock();
            (st.origin(), st.owner().cloned())
        };
        if let Some(origin) = origin {
            let id = origin.id.clone();
            if self.end(origin).await? > 0 {
                self.events
                    .emit(SessionEventKind::Destroyed, owner.as_ref());
            }
            if let Some(owner) = owner {
                self.unindex(&owner.name, &[id]).await;
            }
        }
        cell.lock().reset(self.config.permanent);
        Ok(())
    }

    /// Ends every other session of this session's owner; returns how many.
    pub(crate) async fn revoke_others(&self, cell: &SessionCell) -> Result<u64, Error> {
        let (owner, exclude) = {
            let st = cell.lock();
            let Some(owner) = st.owner() else {
                return Ok(0);
            };
            let mut exclude: Vec<SessionId> = st.id().cloned().into_iter().collect();
            exclude.extend(st.origin().map(|o| o.id));
            (owner.name.clone(), exclude)
        };
        self.revoke_where(&owner, &exclude, |_| true).await
    }

    /// Ends every session in `owner`'s index that `pick` selects (and is
    /// not in `exclude`), with the compare-and-swap of a logout; drops from
    /// the index the ids it ended or found ended, and those it found missing
    /// or another owner's once they cannot be a session still being
    /// written ([`Lifetime::may_be_pending`](crate::lifetime::Lifetime::may_be_pending)).
    /// Returns how many live sessions ended; fails (touching no index
    /// entry) if any of them could not be ended.
    pub(crate) async fn revoke_where(
        &self,
        owner: &str,
        exclude: &[SessionId],
        pick: impl Fn(&IndexEntry) -> bool,
    ) -> Result<u64, Error> {
        let Some((index, _)) = self.owners().read(owner).await? else {
            return Ok(0);
        };
        let chosen: Vec<IndexEntry> = index
            .entries
            .into_iter()
            .filter(|e| !exclude.contains(&e.id) && pick(e))
            .collect();
        let only = &Only { owner, exclude };
        let endings: Vec<(IndexEntry, Ending)> = stream::iter(chosen)
            .map(|entry| async move {
                let origin = Origin {
                    id: entry.id.clone(),
                    version: None,
                };
                let ending = self.end_named(origin, Some(only)).await?;
                Ok::<_, Error>((entry, ending))
            })
            .buffer_unordered(CONCURRENCY)
            .try_collect()
            .await?;
        let now = self.clock.now_unix();
        let mut ended = 0;
        let mut settled = Vec::with_capacity(endings.len());
        for (entry, ending) in endings {
            ended += self.revoked(&ending.ended);
            if !(ending.maybe_pending && self.rules.may_be_pending(entry.indexed, now)) {
                settled.push(entry.id);
            }
        }
        self.owners().remove(owner, &settled).await?;
        Ok(ended)
    }

    /// Emits a `Revoked` event for each of the records a revocation
    /// ended (`owners`, as [`Engine::end_where`] returns them); returns how
    /// many.
    pub(crate) fn revoked(&self, owners: &[Option<Owner>]) -> u64 {
        for owner in owners {
            self.events.emit(SessionEventKind::Revoked, owner.as_ref());
        }
        metrics::revoked(owners.len() as u64);
        owners.len() as u64
    }

    /// Ends the stored session `origin` and whatever it was rotated to;
    /// returns how many live records that ended.
    pub(crate) async fn end(&self, origin: Origin) -> Result<usize, Error> {
        self.end_named(origin, None)
            .await
            .map(|ending| ending.ended.len())
    }

    /// [`Engine::end`], for a revocation too: with `only`, a record is
    /// ended only if it is a live session of that owner (read first), and
    /// the ids it excludes are neither ended nor followed to. Works through
    /// the record and its successors; returns the live records it ended, by
    /// their owners where it read them.
    pub(crate) async fn end_where(
        &self,
        origin: Origin,
        only: Option<&Only<'_>>,
    ) -> Result<Vec<Option<Owner>>, Error> {
        self.end_named(origin, only)
            .await
            .map(|ending| ending.ended)
    }

    /// [`Engine::end_where`], also saying whether the id it was given may
    /// still be a session being written. Follows at most
    /// [`MAX_SUCCESSORS`] rotations and fails with [`Error::Conflict`]
    /// beyond: a session rotating away faster than the logout follows is
    /// not reported ended.
    pub(crate) async fn end_named(
        &self,
        origin: Origin,
        only: Option<&Only<'_>>,
    ) -> Result<Ending, Error> {
        let mut next = Some((origin.id, origin.version));
        let mut followed = 0;
        let mut ending = Ending {
            ended: Vec::new(),
            maybe_pending: false,
        };
        let mut first = true;
        while let Some((id, expected)) = next.take() {
            let step = self.end_one(&id, expected, only).await?;
            if first {
                ending.maybe_pending = matches!(step, Step::Missing | Step::Foreign);
                first = false;
            }
            match step {
                Step::Ended(owner) => ending.ended.push(owner),
                Step::MovedTo(successor) => {
                    if followed == MAX_SUCCESSORS {
                        log::warn!(
                            "kvsession: a session kept rotating while it was being ended; \
                             not reported ended"
                        );
                        return Err(Error::Conflict {
                            attempts: MAX_SUCCESSORS as u32,
                        });
                    }
                    followed += 1;
                    next = Some((successor, None));
                }
                Step::Gone | Step::Missing | Step::Skipped | Step::Foreign => {}
            }
        }
        Ok(ending)
    }

    /// Ends the record of `id`, expected at version `expected` (`None`:
    /// read it first), within the retry budget.
    pub(super) async fn end_one(
        &self,
        id: &SessionId,
        mut expected: Option<Version>,
        only: Option<&Only<'_>>,
    ) -> Result<Step, Error> {
        if only.is_some_and(|o| o.excludes(id)) {
            return Ok(Step::Skipped);
        }
        let key = self.keys.session(id);
        let versioned = self.store.capabilities().compare_and_swap;
        if only.is_some() {
            // Check the owner before ending anything.
            expected = None;
        } else if !versioned {
            self.store.delete(&key).await?;
            metrics::save(Save::End);
            return Ok(Step::Ended(None));
        }
        let mut retries = self.retry.start();
        let mut owner = None;
        loop {
            if expected.is_none() {
                // A successor, a revocation, or a conflict: read the record
                // first, it may have moved on again.
                let Some(current) = self.store.get(&key).await? else {
                    return Ok(Step::Missing);
                };
                match Stored::decode(current.value) {
                    Ok(Stored::Live(envelope)) => {
                        if only.is_some_and(|o| !o.allows(&envelope)) {
                            return Ok(Step::Foreign);
                        }
                        owner = envelope.owner;
                        expected = current.version;
                    }
                    Ok(Stored::Ended(successor)) => {
                        if let Some(next) = &successor {
                            if only.is_some_and(|o| o.excludes(next)) {
                                // The revoking session's own old id: its
                                // marker stays.
                                return Ok(Step::Skipped);
                            }
                        }
                        self.store.delete(&key).await?;
                        return Ok(successor.map_or(Step::Gone, Step::MovedTo));
                    }
                    Err(_) => {
                        self.store.delete(&key).await?;
                        return Ok(Step::Gone);
                    }
                }
            }
            if !versioned {
                self.store.delete(&key).await?;
                metrics::save(Save::End);
                return Ok(Step::Ended(owner));
            }
            match self.end_record(&key, id, expected.as_ref()).await? {
                DeleteOutcome::Deleted => {
                    // Nothing of it is left to merge onto.
                    self.gates.forget(&key);
                    metrics::save(Save::End);
                    return Ok(Step::Ended(owner));
                }
                DeleteOutcome::Missing => return Ok(Step::Missing),
                DeleteOutcome::Conflict => {
                    // Another request wrote the session: re-read at once (it
                    // may have rotated) and end what is there now.
                    retries.next_now()?;
                    expected = None;
                }
            }
        }
    }

    /// One conditional end of the record under `key` at `expected`: the
    /// store's compare-and-delete where it has one, else the "ended" marker
    /// written with a compare-and-swap, then the delete (of that marker:
    /// no save writes over it, so nothing newer is lost).
    pub(super) async fn end_record(
        &self,
        key: &str,
        id: &SessionId,
        expected: Option<&Version>,
    ) -> Result<DeleteOutcome, Error> {
        if let (Some(cad), Some(version)) = (self.store.compare_and_delete(), expected) {
            return Ok(cad.delete_if(key, version).await?);
        }
        let marker = Stored::ended(None);
        let expiry = self.expiry.session(id, self.clock.now_unix());
        Ok(
            match self.store.update(key, &marker, expected, expiry).await? {
                UpdateOutcome::Updated(_) => {
                    self.store.delete(key).await?;
                    DeleteOutcome::Deleted
                }
                UpdateOutcome::Missing => DeleteOutcome::Missing,
                UpdateOutcome::Conflict => DeleteOutcome::Conflict,
            },
        )
    }
}
