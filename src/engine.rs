//! The session engine: every store round trip of a session (load, save,
//! touch, regenerate, destroy), shared by the fairing and the guard.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use rand_core::RngCore;
use rocket::http::{Cookie, CookieJar, Status};
use rocket::{Phase, Request, Rocket};

use crate::config::SessionConfig;
use crate::cookie::{self, CookieSettings};
use crate::record::{Envelope, Handle, Stored};
use crate::error::Error;
use crate::id::SessionId;
use crate::seal::CookieCipher;
use crate::state::{CookieSpec, Origin, SessionState, Snapshot, Untouched};
use crate::store::{CreateOutcome, DeleteOutcome, KeyValueStore, UpdateOutcome, Version};
use crate::time::{from_unix, now_unix, seconds, unix, ROUNDING};

/// How many rotations a logout follows from the id it ended (a session
/// rotated again while the logout ran).
const MAX_SUCCESSORS: usize = 4;

/// How long a TTL store keeps the "moved to" marker of a rotated session:
/// far longer than any request that loaded the old session can run.
const MARKER_GRACE: Duration = Duration::from_secs(600);

/// The retry budget of one save's compare-and-swap loop: at most
/// `save_attempts` writes and `save_timeout` seconds, backoff included.
pub(crate) struct Retries {
    attempt: u32,
    max: u32,
    deadline: Instant,
}

impl Retries {
    pub(crate) fn new(config: &SessionConfig) -> Self {
        Retries {
            attempt: 1,
            max: config.save_attempts,
            deadline: Instant::now() + seconds(config.save_timeout),
        }
    }

    /// Called after a conflicting write: fails when the budget is spent
    /// (without sleeping first), else waits a full-jitter exponential
    /// backoff (from the second retry on) that spreads the retries of many
    /// requests racing on one record. `jitter(max_ms)` draws the wait.
    pub(crate) async fn next(&mut self, jitter: impl FnOnce(u64) -> Duration) -> Result<(), Error> {
        let now = Instant::now();
        if self.attempt >= self.max || now >= self.deadline {
            return Err(Error::Conflict {
                attempts: self.attempt,
            });
        }
        if self.attempt > 1 {
            let backoff = jitter(1 << self.attempt.min(10));
            tokio::time::sleep(backoff.min(self.deadline - now)).await;
        }
        self.attempt += 1;
        Ok(())
    }
}

/// The session of one request, cached in the request's local cache.
#[derive(Debug)]
pub(crate) struct SessionCell {
    state: Mutex<SessionState>,
}

impl SessionCell {
    fn new(state: SessionState) -> Self {
        SessionCell {
            state: Mutex::new(state),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, SessionState> {
        // Every mutation under this lock is completed before any code that
        // could panic runs, so a poisoned lock still holds a consistent state.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The per-request cache slot: empty until a `Session` guard loads the
/// session. Only the engine reads and writes it.
struct Slot(Option<Result<SessionCell, Error>>);

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

pub(crate) type SessionRng = Box<dyn RngCore + Send>;

/// The store key of `id` under `config`: the key prefix, then the id.
pub(crate) fn session_key(config: &SessionConfig, id: &SessionId) -> String {
    let mut key = String::with_capacity(config.key_prefix.len() + 82);
    key.push_str(&config.key_prefix);
    id.push_to(&mut key);
    key
}

/// The time a session's activity was last recorded: the envelope's
/// `last_active`, or later if a touch moved the store's expiry since.
pub(crate) fn activity(
    config: &SessionConfig,
    last_active: u64,
    record_expires_at: Option<SystemTime>,
) -> u64 {
    match (config.idle_timeout, record_expires_at) {
        (Some(idle), Some(at)) => {
            last_active.max(unix(at).saturating_sub(idle.saturating_add(ROUNDING.as_secs())))
        }
        _ => last_active,
    }
}

/// When a session ends if its last activity was at `activity`, with a
/// second of slack for whole-second times (see [`ROUNDING`]).
pub(crate) fn deadline(config: &SessionConfig, id: &SessionId, activity: u64) -> SystemTime {
    let absolute = id.expires(seconds(config.lifetime));
    let end = match config.idle_timeout {
        Some(idle) => absolute.min(from_unix(activity.saturating_add(idle))),
        None => absolute,
    };
    end + ROUNDING
}

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
}

/// The engine: store, configuration and id source of one Rocket instance,
/// kept in Rocket's managed state by the fairing.
pub(crate) struct Engine {
    pub(crate) store: Arc<dyn KeyValueStore>,
    pub(crate) config: SessionConfig,
    pub(crate) cookies: CookieSettings,
    cipher: CookieCipher,
    rng: Mutex<SessionRng>,
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("store", &self.store.name())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Engine {
    pub(crate) fn new(
        store: Arc<dyn KeyValueStore>,
        config: SessionConfig,
        cookies: CookieSettings,
        cipher: CookieCipher,
        rng: SessionRng,
    ) -> Self {
        Engine {
            store,
            config,
            cookies,
            cipher,
            rng: Mutex::new(rng),
        }
    }

    /// The session cookie for `spec`: its id sealed with the current key.
    pub(crate) fn session_cookie(&self, spec: &CookieSpec) -> Cookie<'static> {
        let mut id = String::with_capacity(82);
        spec.id.push_to(&mut id);
        let sealed = {
            let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
            self.cipher
                .seal(&self.config.cookie_name, id.as_bytes(), &mut **rng)
        };
        cookie::session_cookie(&self.cookies, spec, sealed)
    }

    /// The engine the fairing put into `rocket`'s managed state, if attached.
    pub(crate) fn fetch<P: Phase>(rocket: &Rocket<P>) -> Option<&Arc<Engine>> {
        rocket.state::<Arc<Engine>>()
    }

    /// The request's session, loaded once per request however many guards
    /// ask for it.
    pub(crate) async fn session<'r>(&self, req: &'r Request<'_>) -> &'r Result<SessionCell, Error> {
        let slot: &'r Slot = req
            .local_cache_async(async { Slot(Some(self.load(req.cookies()).await)) })
            .await;
        slot.0
            .as_ref()
            .expect("a slot filled by the guard always holds a session")
    }

    /// The request's session if a guard loaded it successfully; `None` for
    /// requests that never asked for one (they touch no store).
    pub(crate) fn loaded<'r>(req: &'r Request<'_>) -> Option<&'r SessionCell> {
        match req.local_cache(|| Slot(None)) {
            Slot(Some(Ok(cell))) => Some(cell),
            _ => None,
        }
    }

    pub(crate) fn new_id(&self) -> SessionId {
        let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        SessionId::generate(&mut **rng, self.config.key_bits, SystemTime::now())
    }

    fn jitter(&self, max_ms: u64) -> Duration {
        let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        Duration::from_millis(rng.next_u64() % max_ms.max(1))
    }

    /// The store key of `id`: the configured prefix, then the id.
    pub(crate) fn key(&self, id: &SessionId) -> String {
        session_key(&self.config, id)
    }

    fn new_session(&self) -> SessionCell {
        SessionCell::new(SessionState::fresh(self.config.permanent))
    }

    fn activity(&self, last_active: u64, record_expires_at: Option<SystemTime>) -> u64 {
        activity(&self.config, last_active, record_expires_at)
    }

    fn deadline(&self, id: &SessionId, activity: u64) -> SystemTime {
        deadline(&self.config, id, activity)
    }

    /// A new random session handle.
    pub(crate) fn new_handle(&self) -> Handle {
        let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        let mut bytes = [0u8; 16];
        rng.fill_bytes(&mut bytes);
        Handle(bytes)
    }

    /// The expiry handed to the store on a write, if the store takes one.
    fn store_expiry(&self, id: &SessionId, activity: u64) -> Option<SystemTime> {
        (self.config.set_ttl && self.store.capabilities().expiry.is_kept()).then(|| self.deadline(id, activity))
    }

    /// Loads the session named by the request's cookie, or a new one.
    async fn load(&self, jar: &CookieJar<'_>) -> Result<SessionCell, Error> {
        let Some(cookie) = jar.get(&self.config.cookie_name) else {
            return Ok(self.new_session());
        };
        let Some(opened) = self.cipher.open(&self.config.cookie_name, cookie.value()) else {
            // Sealed with another key, changed, or not sealed at all.
            return Ok(self.new_session());
        };
        let Some(id) = std::str::from_utf8(opened.plaintext())
            .ok()
            .and_then(|id| id.parse::<SessionId>().ok())
        else {
            return Ok(self.new_session());
        };
        if id.key_bits() != self.config.key_bits {
            return Ok(self.new_session());
        }
        let now = SystemTime::now();
        if now >= id.expires(seconds(self.config.lifetime)) + ROUNDING {
            // Expired: no need to ask the store.
            return Ok(self.new_session());
        }
        let Some(record) = self.store.get(&self.key(&id)).await? else {
            return Ok(self.new_session());
        };
        let envelope = match Stored::decode(record.value) {
            Ok(Stored::Live(envelope)) => envelope,
            // Logged out or rotated away a moment ago.
            Ok(Stored::Ended(_)) => return Ok(self.new_session()),
            Err(e) => {
                log::warn!("kvsession: ignoring unreadable session record: {e}");
                return Ok(self.new_session());
            }
        };
        let activity = self.activity(envelope.last_active, record.expires_at);
        if now >= self.deadline(&id, activity) || record.expires_at.is_some_and(|at| now >= at) {
            return Ok(self.new_session());
        }
        let mut state = SessionState::loaded(id, envelope, record.version, record.expires_at);
        if opened.needs_reseal {
            // Sealed with a key of `secret_key_fallbacks`: the response
            // carries the cookie sealed with the current key.
            state.reissue_cookie();
        }
        Ok(SessionCell::new(state))
    }

    /// Gives the session a new id, keeping its data. Nothing is written
    /// yet: the save writes the record under the new id, then ends the old
    /// one with a compare-and-swap (see [`Engine::save`]), so a request
    /// that fails changes nothing and a logout that came first wins.
    pub(crate) fn regenerate(&self, cell: &SessionCell) {
        cell.lock().rotate();
    }

    /// Ends the session now: its record is marked ended with a
    /// compare-and-swap, then deleted; the request goes on with a new,
    /// empty session. If the session was rotated meanwhile (a login in
    /// another request), the record it moved to is ended too: a logout
    /// always stays a logout.
    pub(crate) async fn destroy(&self, cell: &SessionCell) -> Result<(), Error> {
        let (origin, owner) = {
            let st = cell.lock();
            (st.origin(), st.owner().map(|o| o.name.clone()))
        };
        if let Some(origin) = origin {
            let id = origin.id.clone();
            self.end(origin).await?;
            if let Some(owner) = owner {
                self.unindex(&owner, &[id]).await;
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

    /// Ends the stored session `origin` and whatever it was rotated to.
    ///
    /// On stores with compare-and-swap, the record is first replaced by an
    /// "ended" marker, conditional on the version this request loaded; a
    /// rotation does the same with a "moved to" marker, so whichever of the
    /// two comes second sees the other: a logout that finds a "moved to"
    /// marker ends the new record too, and a rotation that finds its source
    /// ended deletes the record it just wrote.
    async fn end(&self, origin: Origin) -> Result<(), Error> {
        self.end_where(origin, None).await.map(drop)
    }

    /// [`Engine::end`], for a revocation: with `only`, a record is ended
    /// only if it is a live session of that owner (read first), and the ids
    /// it excludes are neither ended nor followed to. Returns how many live
    /// records were ended.
    pub(crate) async fn end_where(
        &self,
        origin: Origin,
        only: Option<&Only<'_>>,
    ) -> Result<u64, Error> {
        let mut pending = vec![(origin.id, origin.version)];
        let mut followed = 0;
        let mut ended = 0;
        let marker = Stored::ended(None);
        let excluded = |id: &SessionId| only.is_some_and(|o| o.exclude.contains(id));
        while let Some((id, mut expected)) = pending.pop() {
            if excluded(&id) {
                continue;
            }
            let key = self.key(&id);
            let versioned = self.store.capabilities().compare_and_swap;
            if only.is_some() {
                // Check the owner before ending anything.
                expected = None;
            } else if !versioned {
                self.store.delete(&key).await?;
                ended += 1;
                continue;
            }
            for _ in 0..self.config.save_attempts {
                if expected.is_none() {
                    // A successor, a revocation, or a conflict: read the
                    // record first, it may have moved on again.
                    let Some(current) = self.store.get(&key).await? else {
                        break;
                    };
                    match Stored::decode(&current.value) {
                        Ok(Stored::Live(envelope)) => {
                            if only.is_some_and(|o| !o.allows(&envelope)) {
                                break;
                            }
                            expected = current.version;
                        }
                        Ok(Stored::Ended(successor)) => {
                            if successor.as_ref().is_some_and(excluded) {
                                // The revoking session's own old id: its
                                // marker stays.
                                break;
                            }
                            if let Some(next) = successor.filter(|_| followed < MAX_SUCCESSORS) {
                                followed += 1;
                                pending.push((next, None));
                            }
                            self.store.delete(&key).await?;
                            break;
                        }
                        Err(_) => {
                            self.store.delete(&key).await?;
                            break;
                        }
                    }
                }
                if !versioned {
                    self.store.delete(&key).await?;
                    ended += 1;
                    break;
                }
                if let (Some(cad), Some(version)) =
                    (self.store.compare_and_delete(), expected.as_ref())
                {
                    // One conditional delete ends the record: a rotation
                    // racing it finds its source missing, as it would find
                    // the "ended" marker.
                    match cad.delete_if(&key, version).await? {
                        DeleteOutcome::Deleted => {
                            ended += 1;
                            break;
                        }
                        DeleteOutcome::Missing => break,
                        DeleteOutcome::Conflict => {
                            expected = None;
                            continue;
                        }
                    }
                }
                let expiry = self.store_expiry(&id, now_unix());
                match self
                    .store
                    .update(&key, &marker, expected.as_ref(), expiry)
                    .await?
                {
                    UpdateOutcome::Updated(_) => {
                        self.store.delete(&key).await?;
                        ended += 1;
                        break;
                    }
                    UpdateOutcome::Missing => break,
                    UpdateOutcome::Conflict => expected = None,
                }
            }
        }
        Ok(ended)
    }

    /// Persists the request's session after the response was built.
    /// `cookie_sent` tells whether the response carries the session's
    /// `Set-Cookie`: Rocket drops the handler's cookies when a catcher
    /// answers instead, and a session whose new cookie never reaches the
    /// browser is not saved (its record would be unreachable, or a rotation
    /// would strand the browser on the old id).
    pub(crate) async fn save(
        &self,
        cell: &SessionCell,
        status: Status,
        cookie_sent: bool,
    ) -> SaveOutcome {
        let now = now_unix();
        let untouched = cell.lock().untouched();
        if let Some(untouched) = untouched {
            // A read-only request: nothing to write but, with an idle
            // timeout, a touch now and then. The data is not copied.
            if status.code < 500 || self.config.save_on_error {
                self.touch_if_due(cell, &untouched, now).await;
            }
            return SaveOutcome::Done;
        }
        let snapshot = cell.lock().snapshot(now);
        if status.code >= 500 && !self.config.save_on_error {
            // Nothing of this request is written, a rotation included: the
            // browser keeps the cookie it had, which still works.
            return self.unsaved(&snapshot);
        }
        if snapshot.cookie_issued && !cookie_sent {
            // A catcher answered: the request failed, nothing is written.
            return SaveOutcome::Done;
        }
        let Some(id) = snapshot.id.clone() else {
            return SaveOutcome::Done;
        };
        let result = match &snapshot.rotated_from {
            Some(origin) => self.save_rotated(cell, &snapshot, origin, &id).await,
            None if !snapshot.stored => self.save_new(cell, &snapshot, &id).await,
            None if snapshot.is_modified() => self.save_existing(cell, &snapshot, &id).await,
            // Only a cookie was re-issued (same id, same permanence).
            None => Ok(SaveOutcome::Done),
        };
        result.unwrap_or_else(|error| SaveOutcome::Failed {
            error,
            drop_cookie: snapshot.new_cookie,
        })
    }

    /// The outcome when nothing is saved: a cookie for an id without a
    /// record must not reach the client.
    fn unsaved(&self, snapshot: &Snapshot) -> SaveOutcome {
        if snapshot.new_cookie {
            SaveOutcome::DropCookie
        } else {
            SaveOutcome::Done
        }
    }

    /// Writes the first record of a new session (insert-if-absent).
    async fn save_new(
        &self,
        cell: &SessionCell,
        snapshot: &Snapshot,
        id: &SessionId,
    ) -> Result<SaveOutcome, Error> {
        if snapshot.envelope.is_empty() {
            // Never store an empty new session.
            return Ok(self.unsaved(snapshot));
        }
        let envelope = snapshot.written();
        if let Some(owner) = &envelope.owner {
            // Indexed before it exists: an owner's index names every
            // session of the owner.
            self.index(owner, id).await?;
        }
        let version = self.create(id, &envelope).await?;
        cell.lock().saved(envelope, version);
        Ok(SaveOutcome::Done)
    }

    /// Creates the record of `id`. Its cookie is already sealed into the
    /// response and cannot be replaced from here, so on a collision the id
    /// cannot change: the save is refused rather than hand out someone
    /// else's session.
    async fn create(&self, id: &SessionId, envelope: &Envelope) -> Result<Option<Version>, Error> {
        let expiry = self.store_expiry(id, envelope.last_active);
        match self
            .store
            .create(&self.key(id), &envelope.encode(), expiry)
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
            last_active: now_unix(),
            permanent,
            data: data.into(),
            owner: owner.map(|name| crate::record::Owner {
                name,
                handle: self.new_handle(),
            }),
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

    /// Moves a rotated session from `origin` to `id`: writes the new record,
    /// then replaces the old one by a "moved to" marker with a
    /// compare-and-swap on the version this request loaded (the marker stays
    /// until `MARKER_GRACE` on TTL stores, or the old session's expiry).
    /// If the old record was ended meanwhile (a logout), the new record is
    /// deleted and the session stays ended; if another request changed it,
    /// this request's changes are merged onto the newest data and the swap
    /// is tried again.
    async fn save_rotated(
        &self,
        cell: &SessionCell,
        snapshot: &Snapshot,
        origin: &Origin,
        id: &SessionId,
    ) -> Result<SaveOutcome, Error> {
        if snapshot.envelope.is_empty() {
            // Rotated, then emptied: the session ends.
            self.end(origin.clone()).await?;
            return Ok(SaveOutcome::DropCookie);
        }
        let mut envelope = snapshot.written();
        if let Some(owner) = &envelope.owner {
            self.index(owner, id).await?;
        }
        let mut version = self.create(id, &envelope).await?;
        match self
            .move_record(snapshot, origin, id, &mut envelope, &mut version)
            .await
        {
            Ok(true) => {
                cell.lock().saved(envelope, version);
                Ok(SaveOutcome::Done)
            }
            // The session was logged out first: it stays logged out. The
            // browser keeps its old cookie, whose id opens nothing.
            Ok(false) => {
                self.store.delete(&self.key(id)).await?;
                log::info!("kvsession: session ended before its rotation was saved");
                Ok(SaveOutcome::DropCookie)
            }
            Err(e) => {
                // Leave the session where it was; the new record goes.
                if let Err(cleanup) = self.store.delete(&self.key(id)).await {
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
        id: &SessionId,
        envelope: &mut Envelope,
        version: &mut Option<Version>,
    ) -> Result<bool, Error> {
        let old_key = self.key(&origin.id);
        let marker = Stored::ended(Some(id));
        let mut expected = origin.version.clone();
        let mut retries = Retries::new(&self.config);
        loop {
            let expiry = self
                .store_expiry(&origin.id, snapshot.now)
                .map(|at| at.min(SystemTime::now() + MARKER_GRACE));
            match self
                .store
                .update(&old_key, &marker, expected.as_ref(), expiry)
                .await?
            {
                // The marker stays until the old session would have ended
                // (on TTL stores at most MARKER_GRACE): a logout that loaded
                // the old session before this rotation and ends it later
                // follows it to the new record.
                UpdateOutcome::Updated(_) => return Ok(true),
                UpdateOutcome::Missing => return Ok(false),
                UpdateOutcome::Conflict => {
                    retries.next(|max| self.jitter(max)).await?;
                    let Some((merged, current)) = self.remerge(&old_key, snapshot).await? else {
                        return Ok(false);
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
                    let expiry = self.store_expiry(id, snapshot.now);
                    match self
                        .store
                        .update(&self.key(id), &envelope.encode(), version.as_ref(), expiry)
                        .await?
                    {
                        UpdateOutcome::Updated(new_version) => *version = new_version,
                        // Only a logout that followed the old record's
                        // "moved to" marker can touch the new record, and
                        // there is no marker yet: the store lost it.
                        UpdateOutcome::Missing | UpdateOutcome::Conflict => return Ok(false),
                    }
                    expected = current;
                }
            }
        }
    }

    /// Saves the changes of a stored session: a compare-and-swap on the
    /// version this request loaded, merged onto the newest record and
    /// retried on conflict, within `save_attempts` and `save_timeout`.
    async fn save_existing(
        &self,
        cell: &SessionCell,
        snapshot: &Snapshot,
        id: &SessionId,
    ) -> Result<SaveOutcome, Error> {
        let key = self.key(id);
        if snapshot.cleared_empty() {
            // clear() is a whole-session operation: an emptied session is
            // ended, whatever concurrent requests did meanwhile.
            self.end(Origin {
                id: id.clone(),
                version: None,
            })
            .await?;
            return Ok(SaveOutcome::RemoveCookie);
        }
        if let Some(owner) = snapshot.changes.new_owner() {
            self.index(owner, id).await?;
        }
        let versioned = self.store.capabilities().compare_and_swap;
        let mut envelope = snapshot.written();
        let mut version = snapshot.version.clone();
        let mut retries = Retries::new(&self.config);
        loop {
            let expected = version.as_ref().filter(|_| versioned);
            let expiry = self.store_expiry(id, snapshot.now);
            match self
                .store
                .update(&key, &envelope.encode(), expected, expiry)
                .await?
            {
                UpdateOutcome::Updated(new_version) => {
                    if envelope.is_empty() {
                        // Every key was removed (and no concurrent request
                        // added one): an empty session is not kept. Where
                        // the store can, only the record just written goes,
                        // not one a concurrent request wrote since.
                        match (self.store.compare_and_delete(), new_version.as_ref()) {
                            (Some(cad), Some(written)) => {
                                if cad.delete_if(&key, written).await? == DeleteOutcome::Conflict {
                                    cell.lock().saved(envelope, new_version);
                                    return Ok(SaveOutcome::Done);
                                }
                            }
                            _ => self.store.delete(&key).await?,
                        }
                        cell.lock().reset(self.config.permanent);
                        return Ok(SaveOutcome::RemoveCookie);
                    }
                    cell.lock().saved(envelope, new_version);
                    return Ok(SaveOutcome::Done);
                }
                UpdateOutcome::Missing => return Ok(self.vanished()),
                UpdateOutcome::Conflict => {
                    retries.next(|max| self.jitter(max)).await?;
                    let Some((merged, current)) = self.remerge(&key, snapshot).await? else {
                        return Ok(self.vanished());
                    };
                    envelope = merged;
                    version = current;
                }
            }
        }
    }

    /// After a conflicting write: the newest record under `key` with this
    /// request's changes merged onto it (activity time `snapshot.now`), and
    /// its version; `None` if the session has ended meanwhile (deleted,
    /// expired, or replaced by an ended or moved marker).
    async fn remerge(
        &self,
        key: &str,
        snapshot: &Snapshot,
    ) -> Result<Option<(Envelope, Option<Version>)>, Error> {
        let Some(current) = self.store.get(key).await? else {
            return Ok(None);
        };
        let Stored::Live(base) = Stored::decode(current.value)? else {
            return Ok(None);
        };
        let mut merged = snapshot.changes.merge_onto(base);
        merged.last_active = snapshot.now;
        Ok(Some((merged, current.version)))
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
    async fn touch_if_due(&self, cell: &SessionCell, untouched: &Untouched, now: u64) {
        if self.config.idle_timeout.is_none() {
            return;
        }
        let activity = self.activity(untouched.last_active, untouched.record_expires_at);
        if now.saturating_sub(activity) < self.config.touch_after {
            return;
        }
        let id = &untouched.id;
        let key = self.key(id);
        let result = match self.store_expiry(id, now) {
            // Only the expiry moves; the data is not rewritten.
            Some(expiry) => self.store.touch(&key, expiry).await,
            None => {
                let expected = untouched
                    .version
                    .as_ref()
                    .filter(|_| self.store.capabilities().compare_and_swap);
                let envelope = cell.lock().snapshot(now).written();
                self.store
                    .update(&key, &envelope.encode(), expected, None)
                    .await
            }
        };
        match result {
            // A conflict means another request wrote the session, which
            // recorded activity too.
            Ok(_) => {}
            Err(e) => log::warn!("kvsession: could not refresh session activity: {e}"),
        }
    }
}
