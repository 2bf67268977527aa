//! The session engine: every store round trip of a session (load, save,
//! touch, regenerate, destroy), shared by the fairing and the guard.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use rand_core::RngCore;
use rocket::http::{CookieJar, Status};
use rocket::{Phase, Request, Rocket};

use crate::config::SessionConfig;
use crate::envelope::Envelope;
use crate::error::Error;
use crate::id::SessionId;
use crate::state::{SessionState, Snapshot};
use crate::store::{CreateOutcome, KeyValueStore, UpdateOutcome, Version};
use crate::time::{from_unix, now_unix, seconds, unix, ROUNDING};

/// How many ids `regenerate` draws before giving up on a broken RNG.
const ID_ATTEMPTS: u32 = 8;

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

/// The engine: store, configuration and id source of one Rocket instance,
/// kept in Rocket's managed state by the fairing.
pub(crate) struct Engine {
    pub(crate) store: Arc<dyn KeyValueStore>,
    pub(crate) config: SessionConfig,
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
        rng: SessionRng,
    ) -> Self {
        Engine {
            store,
            config,
            rng: Mutex::new(rng),
        }
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
        let mut key = String::with_capacity(self.config.key_prefix.len() + 82);
        key.push_str(&self.config.key_prefix);
        id.push_to(&mut key);
        key
    }

    fn new_session(&self) -> SessionCell {
        SessionCell::new(SessionState::fresh(self.config.permanent))
    }

    /// The time a session's activity was last recorded: the envelope's
    /// `last_active`, or later if a touch moved the store's expiry since.
    fn activity(&self, envelope: &Envelope, record_expires_at: Option<SystemTime>) -> u64 {
        match (self.config.idle_timeout, record_expires_at) {
            (Some(idle), Some(at)) => envelope
                .last_active
                .max(unix(at).saturating_sub(idle + ROUNDING.as_secs())),
            _ => envelope.last_active,
        }
    }

    /// When a session ends if its last activity was at `activity`, with a
    /// second of slack for whole-second times (see [`ROUNDING`]).
    fn deadline(&self, id: &SessionId, activity: u64) -> SystemTime {
        let absolute = id.expires(seconds(self.config.lifetime));
        let end = match self.config.idle_timeout {
            Some(idle) => absolute.min(from_unix(activity.saturating_add(idle))),
            None => absolute,
        };
        end + ROUNDING
    }

    /// The expiry handed to the store on a write, if the store takes one.
    fn store_expiry(&self, id: &SessionId, activity: u64) -> Option<SystemTime> {
        (self.config.set_ttl && self.store.supports_ttl()).then(|| self.deadline(id, activity))
    }

    /// Loads the session named by the request's cookie, or a new one.
    async fn load(&self, jar: &CookieJar<'_>) -> Result<SessionCell, Error> {
        let Some(cookie) = jar.get_private(&self.config.cookie_name) else {
            // No cookie, or one that fails to decrypt or authenticate.
            return Ok(self.new_session());
        };
        let Ok(id) = cookie.value().parse::<SessionId>() else {
            return Ok(self.new_session());
        };
        let now = SystemTime::now();
        if now >= id.expires(seconds(self.config.lifetime)) + ROUNDING {
            // Expired: no need to ask the store.
            return Ok(self.new_session());
        }
        let Some(record) = self.store.get(&self.key(&id)).await? else {
            return Ok(self.new_session());
        };
        let envelope = match Envelope::decode(&record.value) {
            Ok(envelope) => envelope,
            Err(e) => {
                log::warn!("kvsession: ignoring unreadable session record: {e}");
                return Ok(self.new_session());
            }
        };
        let activity = self.activity(&envelope, record.expires_at);
        if now >= self.deadline(&id, activity) || record.expires_at.is_some_and(|at| now >= at) {
            return Ok(self.new_session());
        }
        let state = SessionState::loaded(id, envelope, record.version, record.expires_at);
        Ok(SessionCell::new(state))
    }

    /// Writes `envelope` under a fresh id; returns the id and version.
    async fn create_fresh(
        &self,
        envelope: &Envelope,
    ) -> Result<(SessionId, Option<Version>), Error> {
        let bytes = envelope.encode();
        for _ in 0..ID_ATTEMPTS {
            let id = self.new_id();
            let expiry = self.store_expiry(&id, envelope.last_active);
            match self.store.create(&self.key(&id), &bytes, expiry).await? {
                CreateOutcome::Created(version) => return Ok((id, version)),
                CreateOutcome::AlreadyExists => {
                    log::warn!("kvsession: session id collision, drawing another");
                }
            }
        }
        Err(Error::IdExhausted {
            attempts: ID_ATTEMPTS,
        })
    }

    /// Moves a stored session to a new id, keeping its data: the record
    /// under the new id is written first, then the old key is deleted, so a
    /// failure never loses the session. A session not stored yet only
    /// forgets its id, so its cookie carries a new one.
    pub(crate) async fn regenerate(&self, cell: &SessionCell) -> Result<(), Error> {
        let (old_id, envelope) = {
            let mut st = cell.lock();
            let snapshot = st.snapshot(now_unix());
            if !snapshot.stored {
                st.forget_unstored_id();
                return Ok(());
            }
            (snapshot.id.clone(), snapshot.written())
        };
        let (new_id, version) = self.create_fresh(&envelope).await?;
        cell.lock().moved(new_id, envelope, version);
        if let Some(old_id) = old_id {
            self.store.delete(&self.key(&old_id)).await?;
        }
        Ok(())
    }

    /// Ends the session: deletes its record; the request goes on with a new,
    /// empty session.
    pub(crate) async fn destroy(&self, cell: &SessionCell) -> Result<(), Error> {
        let key = {
            let st = cell.lock();
            st.id().filter(|_| st.is_stored()).map(|id| self.key(id))
        };
        if let Some(key) = key {
            self.store.delete(&key).await?;
        }
        cell.lock().reset(self.config.permanent);
        Ok(())
    }

    /// Persists the request's session after the response was built.
    pub(crate) async fn save(&self, cell: &SessionCell, status: Status) -> SaveOutcome {
        let snapshot = cell.lock().snapshot(now_unix());
        let failed_save = |error| SaveOutcome::Failed {
            error,
            drop_cookie: snapshot.new_cookie,
        };
        if status.code >= 500 && !self.config.save_on_error {
            return self.unsaved(&snapshot);
        }
        let Some(id) = snapshot.id.clone() else {
            return SaveOutcome::Done;
        };
        let result = if !snapshot.is_modified() {
            if snapshot.stored {
                self.touch_if_due(&snapshot, &id).await;
            }
            Ok(SaveOutcome::Done)
        } else if snapshot.stored {
            self.save_existing(cell, &snapshot, &id).await
        } else {
            self.save_new(cell, &snapshot, &id).await
        };
        result.unwrap_or_else(failed_save)
    }

    /// The outcome when nothing is saved: a new session's cookie must not
    /// reach the client, since no record backs it.
    fn unsaved(&self, snapshot: &Snapshot) -> SaveOutcome {
        if snapshot.new_cookie {
            SaveOutcome::DropCookie
        } else {
            SaveOutcome::Done
        }
    }

    async fn save_new(
        &self,
        cell: &SessionCell,
        snapshot: &Snapshot,
        id: &SessionId,
    ) -> Result<SaveOutcome, Error> {
        if snapshot.envelope.data.is_empty() {
            // Never store an empty new session.
            return Ok(self.unsaved(snapshot));
        }
        let envelope = snapshot.written();
        let expiry = self.store_expiry(id, snapshot.now);
        match self
            .store
            .create(&self.key(id), &envelope.encode(), expiry)
            .await?
        {
            CreateOutcome::Created(version) => {
                cell.lock().saved(envelope, version);
                Ok(SaveOutcome::Done)
            }
            // The cookie with this id is already sealed into the response and
            // cannot be replaced from here, so the id cannot change: refuse
            // rather than hand out someone else's session.
            CreateOutcome::AlreadyExists => Err(Error::IdCollision),
        }
    }

    async fn save_existing(
        &self,
        cell: &SessionCell,
        snapshot: &Snapshot,
        id: &SessionId,
    ) -> Result<SaveOutcome, Error> {
        let key = self.key(id);
        if snapshot.cleared_empty() {
            // clear() is a whole-session operation: an emptied session is
            // deleted, whatever concurrent requests did meanwhile.
            self.store.delete(&key).await?;
            return Ok(SaveOutcome::RemoveCookie);
        }
        let now = snapshot.now;
        let versioned = self.store.supports_versioning();
        let attempts = self.config.save_attempts;
        let mut envelope = snapshot.written();
        let mut version = snapshot.version.clone();
        for attempt in 1..=attempts {
            let expected = version.as_ref().filter(|_| versioned);
            let expiry = self.store_expiry(id, now);
            match self
                .store
                .update(&key, &envelope.encode(), expected, expiry)
                .await?
            {
                UpdateOutcome::Updated(new_version) => {
                    let empty = envelope.data.is_empty();
                    cell.lock().saved(envelope, new_version);
                    // Every key was removed (and no concurrent request added
                    // one): an empty session is not kept.
                    if empty {
                        self.store.delete(&key).await?;
                        return Ok(SaveOutcome::RemoveCookie);
                    }
                    return Ok(SaveOutcome::Done);
                }
                UpdateOutcome::Missing => {
                    // Destroyed or expired meanwhile: never resurrect it.
                    log::info!("kvsession: session vanished before save; changes dropped");
                    return Ok(SaveOutcome::RemoveCookie);
                }
                UpdateOutcome::Conflict => {
                    // Full-jitter exponential backoff spreads the retries of
                    // many requests racing on one session.
                    if attempt > 1 {
                        tokio::time::sleep(self.jitter(1 << attempt.min(10))).await;
                    }
                    let Some(current) = self.store.get(&key).await? else {
                        return Ok(SaveOutcome::RemoveCookie);
                    };
                    envelope = snapshot
                        .changes
                        .merge_onto(Envelope::decode(&current.value)?);
                    envelope.last_active = now;
                    version = current.version;
                }
            }
        }
        Err(Error::Conflict { attempts })
    }

    /// Refreshes an unmodified session's activity, at most once per
    /// `touch_after`, when an idle timeout is configured. Failures only log:
    /// the request itself succeeded.
    async fn touch_if_due(&self, snapshot: &Snapshot, id: &SessionId) {
        if self.config.idle_timeout.is_none() {
            return;
        }
        let now = snapshot.now;
        let activity = self.activity(&snapshot.envelope, snapshot.record_expires_at);
        if now.saturating_sub(activity) < self.config.touch_after {
            return;
        }
        let key = self.key(id);
        let result = match self.store_expiry(id, now) {
            // Only the expiry moves; the data is not rewritten.
            Some(expiry) => self.store.touch(&key, expiry).await,
            None => {
                let expected = snapshot
                    .version
                    .as_ref()
                    .filter(|_| self.store.supports_versioning());
                self.store
                    .update(&key, &snapshot.written().encode(), expected, None)
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
