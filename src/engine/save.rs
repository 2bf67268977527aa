//! Saving a request's session after its response: the engine carries out
//! the [`SavePlan`] the session's state decided, one function per arm.

use rocket::http::Status;

use super::{Engine, SessionCell};
use crate::error::Error;
use crate::events::SessionEventKind;
use crate::id::SessionId;
use crate::metrics::{self, Save};
use crate::record::{Envelope, Stored};
use crate::state::{Ending, Origin, SavePlan, Snapshot, Untouched};
use crate::store::{CreateOutcome, DeleteOutcome, UpdateOutcome, Version};

/// What a save that lost a compare-and-swap finds under its session's key.
enum Newest {
    /// The session lives on: this request's changes merged onto its newest
    /// data, and that data's version.
    Live(Envelope, Option<Version>),
    /// It ended (a logout, a revocation, expiry): the changes go with it.
    Ended,
    /// A concurrent login or `regenerate()` moved it to a new id.
    Moved,
}

/// What the fairing must do to the response after a save.
#[derive(Debug)]
pub(crate) enum SaveOutcome {
    /// Nothing to change.
    Done,
    /// The new session was not stored: drop its `Set-Cookie` header.
    DropCookie,
    /// The session is gone: drop any `Set-Cookie` for it and remove the cookie.
    RemoveCookie,
    /// The save failed: answer 503; `drop_cookie` if a new session's cookie
    /// must not reach the client.
    Failed { error: Error, drop_cookie: bool },
}

impl Engine {
    /// Persists the request's session after the response was built.
    /// `from_handler` tells whether the handler's response is sent: Rocket
    /// drops the handler's cookies when a catcher answers instead, and a
    /// catcher's response saves nothing (a session whose new cookie never
    /// reaches the browser would be unreachable, a rotation would strand
    /// the browser on the old id, and the request failed).
    pub(crate) async fn save(
        &self,
        cell: &SessionCell,
        status: Status,
        from_handler: bool,
    ) -> SaveOutcome {
        let persist = status.code < 500 || self.config.save_on_error;
        let plan = cell
            .lock()
            .plan(self.clock.now_unix(), persist, from_handler);
        let drop_cookie = plan.issues_new_cookie();
        let result = match plan {
            SavePlan::Nothing => Ok(SaveOutcome::Done),
            SavePlan::DropCookie => Ok(SaveOutcome::DropCookie),
            // The rare arms on the heap: the request's save future stays
            // small for the common ones (an update, a first save).
            SavePlan::Touch(untouched) => {
                Box::pin(self.touch_if_due(cell, &untouched)).await;
                Ok(SaveOutcome::Done)
            }
            SavePlan::Create(snapshot) => self.save_new(cell, snapshot).await,
            SavePlan::Rotate(snapshot, origin) => {
                Box::pin(self.save_rotated(cell, snapshot, &origin)).await
            }
            SavePlan::Update(snapshot) => self.save_existing(cell, snapshot).await,
            SavePlan::End(origin, ending) => Box::pin(self.end_emptied(cell, origin, ending)).await,
        };
        result.unwrap_or_else(|error| SaveOutcome::Failed { error, drop_cookie })
    }

    /// Ends a session the request emptied (a `clear()`, or a rotation
    /// whose data was all removed).
    async fn end_emptied(
        &self,
        cell: &SessionCell,
        origin: Origin,
        ending: Ending,
    ) -> Result<SaveOutcome, Error> {
        let owner = cell.lock().loaded_owner().cloned();
        let id = origin.id.clone();
        if self.end(origin).await? > 0 {
            self.events
                .emit(SessionEventKind::Destroyed, owner.as_ref());
        }
        if let Some(owner) = owner {
            // Ended: it leaves its owner's index, as on a logout.
            self.unindex(&owner.name, &[id]).await;
        }
        Ok(match ending {
            Ending::DropCookie => SaveOutcome::DropCookie,
            Ending::RemoveCookie => SaveOutcome::RemoveCookie,
        })
    }

    /// Writes the first record of a new session (insert-if-absent).
    async fn save_new(&self, cell: &SessionCell, snapshot: Snapshot) -> Result<SaveOutcome, Error> {
        let envelope = snapshot.written();
        if let Some(owner) = &envelope.owner {
            // Indexed before it exists: an owner's index names every
            // session of the owner.
            self.index(owner, &snapshot.id).await?;
        }
        let version = self.create(&snapshot.id, &envelope).await?;
        metrics::save(Save::Create);
        self.events
            .emit(SessionEventKind::Created, envelope.owner.as_ref());
        cell.lock().saved(envelope, version);
        Ok(SaveOutcome::Done)
    }

    /// Creates the record of `id`. Its cookie is already sealed into the
    /// response and cannot be replaced from here, so on a collision the id
    /// cannot change: the save is refused rather than hand out someone
    /// else's session.
    async fn create(&self, id: &SessionId, envelope: &Envelope) -> Result<Option<Version>, Error> {
        let expiry = self
            .expiry
            .for_session(&envelope.expiry)
            .session(id, envelope.last_active);
        match self
            .store
            .create(&self.keys.session(id), &envelope.encode(), expiry)
            .await?
        {
            CreateOutcome::Created(version) => Ok(version),
            CreateOutcome::AlreadyExists => Err(Error::IdCollision),
        }
    }

    /// Stores a new session holding `data`, under a freshly drawn id (drawn
    /// again on a collision), as the first save of a session would: same
    /// key, envelope and expiry. For `rocket_kvsession::testing`.
    #[cfg(feature = "testing")]
    pub(crate) async fn create_session(
        &self,
        data: std::collections::BTreeMap<String, Vec<u8>>,
        permanent: bool,
        owner: Option<String>,
    ) -> Result<SessionId, Error> {
        const ATTEMPTS: u32 = 8;
        let envelope = Envelope {
            last_active: self.clock.now_unix(),
            permanent,
            data: data.into(),
            owner: owner.map(|name| crate::record::Owner {
                name,
                handle: self.new_handle(),
            }),
            expiry: crate::record::OwnExpiry::default(),
        };
        for _ in 0..ATTEMPTS {
            let id = self.new_id();
            if let Some(owner) = &envelope.owner {
                self.index(owner, &id).await?;
            }
            match self.create(&id, &envelope).await {
                Err(Error::IdCollision) => continue,
                result => return result.map(|_| id),
            }
        }
        Err(Error::IdExhausted { attempts: ATTEMPTS })
    }

    /// Moves a rotated session from `origin` to its new id: writes the new
    /// record, then replaces the old one by a "moved to" marker with a
    /// compare-and-swap on the version this request loaded (the marker
    /// stays until the store's expiry, at most ten minutes, or the old
    /// session's expiry). If the old record was ended meanwhile (a logout),
    /// the new record is deleted and the session stays ended; if another
    /// request changed it, this request's changes are merged onto the
    /// newest data and the swap is tried again.
    async fn save_rotated(
        &self,
        cell: &SessionCell,
        snapshot: Snapshot,
        origin: &Origin,
    ) -> Result<SaveOutcome, Error> {
        let id = &snapshot.id;
        let mut envelope = snapshot.written();
        if let Some(owner) = &envelope.owner {
            self.index(owner, id).await?;
        }
        let mut version = self.create(id, &envelope).await?;
        let moved = {
            // The old record is swapped in its session's turn: no save of
            // this process races the swap.
            let gate = self.gates.enter(self.keys.session(&origin.id)).await;
            let moved = self
                .move_record(&snapshot, origin, &mut envelope, &mut version)
                .await;
            // Moved, ended, or unknown after an error: the old record is
            // no longer one to merge onto.
            gate.forget();
            moved
        };
        match moved {
            Ok(true) => {
                metrics::save(Save::Rotate);
                self.events
                    .emit(SessionEventKind::Rotated, envelope.owner.as_ref());
                cell.lock().saved(envelope, version);
                Ok(SaveOutcome::Done)
            }
            // The session was logged out first: it stays logged out. The
            // browser keeps its old cookie, whose id opens nothing.
            Ok(false) => {
                self.store.delete(&self.keys.session(id)).await?;
                log::info!("kvsession: session ended before its rotation was saved");
                Ok(SaveOutcome::DropCookie)
            }
            Err(e) => {
                // Leave the session where it was; the new record goes.
                if let Err(cleanup) = self.store.delete(&self.keys.session(id)).await {
                    log::warn!("kvsession: could not delete an unused rotated record: {cleanup}");
                }
                Err(e)
            }
        }
    }

    /// The compare-and-swap loop of [`Engine::save_rotated`]: `Ok(false)`
    /// if the old record ended first.
    async fn move_record(
        &self,
        snapshot: &Snapshot,
        origin: &Origin,
        envelope: &mut Envelope,
        version: &mut Option<Version>,
    ) -> Result<bool, Error> {
        let id = &snapshot.id;
        let old_key = self.keys.session(&origin.id);
        let marker = Stored::ended(Some(id));
        let mut expected = origin.version.clone();
        let mut retries = self.retry.start();
        loop {
            let expiry = self.expiry.for_session(&snapshot.envelope.expiry).marker(
                &origin.id,
                snapshot.now,
                self.clock.now(),
            );
            match self
                .store
                .update(&old_key, &marker, expected.as_ref(), expiry)
                .await?
            {
                // The marker stays until the old session would have ended
                // (on stores that keep expiries, at most ten minutes): a
                // logout that loaded the old session before this rotation
                // and ends it later follows it to the new record.
                UpdateOutcome::Updated(_) => return Ok(true),
                UpdateOutcome::Missing => return Ok(false),
                UpdateOutcome::Conflict => {
                    retries.next().await?;
                    let (merged, current) = match self.remerge(&old_key, snapshot).await? {
                        Newest::Live(merged, current) => (merged, current),
                        Newest::Ended => return Ok(false),
                        // Another login or `regenerate()` of this session
                        // won: this one's changes cannot be kept.
                        Newest::Moved => return Err(Error::Superseded),
                    };
                    if let Some(owner) = merged
                        .owner
                        .as_ref()
                        .filter(|o| Some(*o) != envelope.owner.as_ref())
                    {
                        // Another request gave the session an owner meanwhile.
                        self.index(owner, id).await?;
                    }
                    *envelope = merged;
                    let expiry = self
                        .expiry
                        .for_session(&envelope.expiry)
                        .session(id, snapshot.now);
                    match self
                        .store
                        .update(
                            &self.keys.session(id),
                            &envelope.encode(),
                            version.as_ref(),
                            expiry,
                        )
                        .await?
                    {
                        UpdateOutcome::Updated(new_version) => *version = new_version,
                        UpdateOutcome::Missing | UpdateOutcome::Conflict => {
                            return Err(self.new_record_lost(id).await?)
                        }
                    }
                    expected = current;
                }
            }
        }
    }

    /// Why the new record of a rotation could not be written again before
    /// the old record named it. Ended (gone, or an "ended" marker on its
    /// way to a delete): a revocation found it through the owner's index
    /// (one that ends the old record too, or `revoke_other_sessions` of
    /// another tab that keeps it), or it expired; the rotation cannot
    /// complete, and the old record is left to what ended the new one.
    /// Still live: nothing else writes a new record before the old one
    /// names it, so the store changed it (a fault). Either way the rotation
    /// fails and the session stays where it was, with its data.
    async fn new_record_lost(&self, id: &SessionId) -> Result<Error, Error> {
        let current = self.store.get(&self.keys.session(id)).await?;
        Ok(
            match current.map(|r| Stored::decode(r.value)).transpose()? {
                Some(Stored::Live(_)) => Error::Conflict { attempts: 1 },
                None | Some(Stored::Ended(_)) => Error::Superseded,
            },
        )
    }

    /// Saves the changes of a stored session: a compare-and-swap on the
    /// version this request loaded, merged onto the newest record and
    /// retried on conflict, within `save_attempts` and `save_timeout`.
    async fn save_existing(
        &self,
        cell: &SessionCell,
        snapshot: Snapshot,
    ) -> Result<SaveOutcome, Error> {
        let id = &snapshot.id;
        if let Some(owner) = snapshot.changes.new_owner() {
            self.index(owner, id).await?;
        } else if let Some(owner) = &snapshot.envelope.owner {
            // A session whose index entry is gone (an evicted or rebuilt
            // index) names itself again, alongside the write (one read of
            // the index when nothing is missing).
            let repair = async {
                match self.owners().ensure(owner, id).await {
                    Ok(true) => {}
                    Ok(false) => {
                        log::warn!("kvsession: an owner index is full; a session stays unlisted")
                    }
                    Err(e) => log::warn!("kvsession: could not check an owner index: {e}"),
                }
            };
            let (saved, ()) =
                futures_util::future::join(self.write_existing(cell, &snapshot), repair).await;
            return saved;
        }
        self.write_existing(cell, &snapshot).await
    }

    /// The compare-and-swap loop of [`Engine::save_existing`], in the
    /// session's turn (see [`serial`](super::serial)): the saves of one
    /// session in this process write one after the other, each onto the
    /// record the previous one wrote, so only other processes' writes
    /// conflict.
    async fn write_existing(
        &self,
        cell: &SessionCell,
        snapshot: &Snapshot,
    ) -> Result<SaveOutcome, Error> {
        let id = &snapshot.id;
        let versioned = self.store.capabilities().compare_and_swap;
        let gate = self.gates.enter(cell.store_key(&self.keys, id)).await;
        let key = gate.key();
        let written = if versioned {
            gate.newer_than(snapshot.version.as_ref())
        } else {
            None
        };
        let (mut envelope, mut version) = match written {
            // Another request of this process saved the session after this
            // one loaded it: the changes go onto that record, swapped on its
            // version (a write of another process since makes the swap
            // conflict, and the newest record is read as usual).
            Some(written) => (merged(snapshot, written.envelope), written.version),
            None => (snapshot.written(), snapshot.version.clone()),
        };
        let mut retries = self.retry.start();
        loop {
            let expected = version.as_ref().filter(|_| versioned);
            let expiry = self
                .expiry
                .for_session(&envelope.expiry)
                .session(id, snapshot.now);
            match self
                .store
                .update(key, &envelope.encode(), expected, expiry)
                .await?
            {
                UpdateOutcome::Updated(new_version) => {
                    metrics::save(Save::Update);
                    if envelope.is_empty() {
                        let dropped = self
                            .drop_emptied(cell, key, id, envelope, new_version)
                            .await;
                        // Ended, or written again by another process.
                        gate.forget();
                        return dropped;
                    }
                    if versioned {
                        gate.wrote(new_version.clone(), &envelope);
                    }
                    cell.lock().saved(envelope, new_version);
                    return Ok(SaveOutcome::Done);
                }
                UpdateOutcome::Missing => {
                    gate.forget();
                    return Ok(self.vanished());
                }
                UpdateOutcome::Conflict => {
                    retries.next().await?;
                    match self.remerge(key, snapshot).await? {
                        Newest::Live(merged, current) => {
                            envelope = merged;
                            version = current;
                        }
                        Newest::Ended => {
                            gate.forget();
                            return Ok(self.vanished());
                        }
                        // A concurrent login or `regenerate()` moved the
                        // session to a new id: the changes are not written
                        // to it (a request that loaded the old id must not
                        // reach the session it became), and the request
                        // fails rather than answer as if they were kept.
                        Newest::Moved => {
                            gate.forget();
                            return Err(Error::Superseded);
                        }
                    }
                }
            }
        }
    }

    /// Every key was removed (and no concurrent request added one before
    /// the write): an empty session is not kept. Only the record just
    /// written goes, not one a concurrent request wrote since: it is ended
    /// conditionally on the version written (the store's compare-and-delete,
    /// or the "ended" marker written with a compare-and-swap, then deleted).
    async fn drop_emptied(
        &self,
        cell: &SessionCell,
        key: &str,
        id: &SessionId,
        envelope: Envelope,
        written: Option<Version>,
    ) -> Result<SaveOutcome, Error> {
        if self.end_record(key, id, written.as_ref()).await? == DeleteOutcome::Conflict {
            // Another request wrote the session meanwhile: it lives on.
            cell.lock().saved(envelope, written);
            return Ok(SaveOutcome::Done);
        }
        cell.lock().reset(self.config.permanent);
        Ok(SaveOutcome::RemoveCookie)
    }

    /// After a conflicting write: the newest record under `key` with this
    /// request's changes merged onto it (activity time `snapshot.now`), and
    /// its version; or whether the session has ended meanwhile (deleted,
    /// expired, replaced by an ended marker) or was moved to a new id.
    async fn remerge(&self, key: &str, snapshot: &Snapshot) -> Result<Newest, Error> {
        let Some(current) = self.store.get(key).await? else {
            return Ok(Newest::Ended);
        };
        match Stored::decode(current.value)? {
            Stored::Live(base) => Ok(Newest::Live(merged(snapshot, base), current.version)),
            Stored::Ended(None) => Ok(Newest::Ended),
            Stored::Ended(Some(_)) => Ok(Newest::Moved),
        }
    }

    /// The record of a stored session vanished before this request saved
    /// it (a logout, a rotation by another request, expiry): its changes
    /// are dropped, never written back. The browser's cookie is left alone:
    /// removing it could delete the cookie a concurrent `regenerate()` just
    /// issued, and a dead id is harmless (it is never adopted).
    fn vanished(&self) -> SaveOutcome {
        log::info!("kvsession: session ended before this request saved it; changes dropped");
        SaveOutcome::Done
    }

    /// Refreshes an unmodified session's activity, at most once per
    /// `touch_after`, when an idle timeout is configured. Failures only log:
    /// the request itself succeeded.
    async fn touch_if_due(&self, cell: &SessionCell, untouched: &Untouched) {
        let now = self.clock.now_unix();
        if !untouched.touch_due(&self.rules, now) {
            return;
        }
        let id = &untouched.id;
        let versioned = self.store.capabilities().compare_and_swap;
        let gate = self.gates.enter(cell.store_key(&self.keys, id)).await;
        let key = gate.key();
        if versioned && gate.newer_than(untouched.version.as_ref()).is_some() {
            // Another request of this process wrote the session since this
            // one loaded it, which recorded activity too.
            return;
        }
        let result = match self.expiry.for_session(&untouched.expiry).session(id, now) {
            // Only the expiry moves; the data is not rewritten.
            Some(expiry) => {
                let touched = self.store.touch(key, expiry).await;
                if let Ok(UpdateOutcome::Updated(version)) = &touched {
                    if *version != untouched.version {
                        // A store whose touch is a write: the remembered
                        // version is gone.
                        gate.forget();
                    }
                }
                touched
            }
            None => {
                let expected = untouched.version.as_ref().filter(|_| versioned);
                let envelope = cell.lock().written_at(now);
                let updated = self
                    .store
                    .update(key, &envelope.encode(), expected, None)
                    .await;
                if let Ok(UpdateOutcome::Updated(version)) = &updated {
                    if versioned {
                        gate.wrote(version.clone(), &envelope);
                    }
                }
                updated
            }
        };
        match result {
            Ok(UpdateOutcome::Updated(_)) => metrics::save(Save::Touch),
            // A conflict means another request wrote the session, which
            // recorded activity too.
            Ok(_) => {}
            Err(e) => log::warn!("kvsession: could not refresh session activity: {e}"),
        }
    }
}

/// `snapshot`'s changes merged onto `base`, a newer record of its session,
/// with the snapshot's activity time.
fn merged(snapshot: &Snapshot, base: Envelope) -> Envelope {
    let mut merged = snapshot.changes.merge_onto(base);
    merged.last_active = snapshot.now;
    merged
}
