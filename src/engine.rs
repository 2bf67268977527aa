//! The session engine: loading, saving, touching; shared by the fairing and
//! the guard.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand_core::RngCore;
use rocket::http::{Cookie, CookieJar, Status};

use crate::config::SessionConfig;
use crate::envelope::Envelope;
use crate::error::Error;
use crate::id::SessionId;
use crate::store::{CreateOutcome, KeyValueStore, UpdateOutcome, Version};

/// Slack for times kept in whole seconds (see [`Engine::deadline`]).
const ROUNDING: Duration = Duration::from_secs(1);

/// How many ids `regenerate` draws before giving up on a broken RNG.
const ID_ATTEMPTS: u32 = 8;

pub(crate) fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn from_unix(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// One request's view of its session.
#[derive(Debug)]
pub(crate) struct State {
    /// The session id; `None` for a new session that has not needed one yet.
    pub(crate) id: Option<SessionId>,
    /// Whether a record with this id exists in the store (as of loading or
    /// of this request's own writes).
    pub(crate) stored: bool,
    /// The version of the record this request loaded or last wrote.
    pub(crate) version: Option<Version>,
    /// The session's data.
    pub(crate) envelope: Envelope,
    /// The expiry the store held when the record was loaded.
    pub(crate) record_expires_at: Option<SystemTime>,
    /// Keys this request set (`Some`) or removed (`None`).
    pub(crate) changes: BTreeMap<String, Option<Vec<u8>>>,
    /// Whether this request cleared the whole session.
    pub(crate) cleared: bool,
    /// Whether this request changed the permanent flag.
    pub(crate) permanent_changed: bool,
    /// Whether anything needs saving.
    pub(crate) modified: bool,
    /// Whether this request put a session cookie into the jar.
    pub(crate) cookie_set: bool,
}

impl State {
    pub(crate) fn fresh(permanent: bool) -> Self {
        State {
            id: None,
            stored: false,
            version: None,
            envelope: Envelope {
                last_active: 0,
                permanent,
                data: BTreeMap::new(),
            },
            record_expires_at: None,
            changes: BTreeMap::new(),
            cleared: false,
            permanent_changed: false,
            modified: false,
            cookie_set: false,
        }
    }

    /// Forgets this request's pending changes (they were written).
    pub(crate) fn mark_saved(&mut self) {
        self.changes.clear();
        self.cleared = false;
        self.permanent_changed = false;
        self.modified = false;
    }

    /// Applies this request's changes on top of `current`, the newest record.
    /// `clear()` is a whole-session operation and wins over `current`.
    fn merge_onto(&self, mut current: Envelope) -> Envelope {
        if self.cleared {
            current.data = self.envelope.data.clone();
        } else {
            for (key, change) in &self.changes {
                match change {
                    Some(value) => {
                        current.data.insert(key.clone(), value.clone());
                    }
                    None => {
                        current.data.remove(key);
                    }
                }
            }
        }
        if self.permanent_changed {
            current.permanent = self.envelope.permanent;
        }
        current
    }
}

/// The session of one request, cached in the request's local cache.
#[derive(Debug)]
pub(crate) struct SessionCell {
    state: Mutex<State>,
}

impl SessionCell {
    fn new(state: State) -> Self {
        SessionCell {
            state: Mutex::new(state),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // Every mutation under this lock is completed before any code that
        // could panic runs, so a poisoned lock still holds a consistent state.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
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

pub(crate) type SessionRng = Box<dyn RngCore + Send>;

/// The engine: store, configuration and id source of one Rocket instance.
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

    pub(crate) fn new_id(&self) -> SessionId {
        let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        SessionId::generate(&mut **rng, self.config.key_bits, SystemTime::now())
    }

    fn jitter(&self, max_ms: u64) -> Duration {
        let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        Duration::from_millis(rng.next_u64() % max_ms.max(1))
    }

    pub(crate) fn key(&self, id: &SessionId) -> String {
        let mut key = String::with_capacity(self.config.key_prefix.len() + 82);
        key.push_str(&self.config.key_prefix);
        id.push_to(&mut key);
        key
    }

    fn new_session(&self) -> SessionCell {
        SessionCell::new(State::fresh(self.config.permanent))
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

    /// When a session ends if its last activity was at `activity`.
    ///
    /// Creation and activity times are whole Unix seconds, rounded down, so
    /// one second is added: a session never ends before its full lifetime
    /// or idle timeout, and at most a second after.
    fn deadline(&self, id: &SessionId, activity: u64) -> SystemTime {
        let absolute = id.expires(self.config.lifetime());
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
    pub(crate) async fn load(&self, jar: &CookieJar<'_>) -> Result<SessionCell, Error> {
        let Some(cookie) = jar.get_private(&self.config.cookie_name) else {
            // No cookie, or one that fails to decrypt or authenticate.
            return Ok(self.new_session());
        };
        let Ok(id) = cookie.value().parse::<SessionId>() else {
            return Ok(self.new_session());
        };
        let now = SystemTime::now();
        if now >= id.expires(self.config.lifetime()) + ROUNDING {
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
        let mut state = State::fresh(envelope.permanent);
        state.id = Some(id);
        state.stored = true;
        state.version = record.version;
        state.envelope = envelope;
        state.record_expires_at = record.expires_at;
        Ok(SessionCell::new(state))
    }

    /// The cookie that carries `id`.
    pub(crate) fn cookie(&self, id: &SessionId, permanent: bool) -> Cookie<'static> {
        let c = &self.config;
        let mut cookie = Cookie::build((c.cookie_name.clone(), id.to_string()))
            .path(c.cookie_path.clone())
            .secure(c.cookie_secure)
            .http_only(c.cookie_http_only)
            .same_site(c.cookie_same_site.into())
            .build();
        if let Some(domain) = &c.cookie_domain {
            cookie.set_domain(domain.clone());
        }
        if permanent {
            let remaining = id
                .expires(c.lifetime())
                .duration_since(SystemTime::now())
                .unwrap_or_default();
            let remaining = rocket::time::Duration::seconds(remaining.as_secs() as i64);
            cookie.set_max_age(remaining);
            cookie.set_expires(rocket::time::OffsetDateTime::now_utc() + remaining);
        } else {
            // A browser-session cookie. Setting the expiration explicitly to
            // "session" keeps Rocket from giving private cookies a week.
            cookie.set_expires(None);
        }
        cookie
    }

    /// A cookie that, added to a jar, removes the session cookie.
    pub(crate) fn removal_cookie(&self) -> Cookie<'static> {
        let mut cookie = Cookie::build((self.config.cookie_name.clone(), ""))
            .path(self.config.cookie_path.clone())
            .build();
        if let Some(domain) = &self.config.cookie_domain {
            cookie.set_domain(domain.clone());
        }
        cookie
    }

    /// Writes `envelope` under a fresh id; returns the id and version.
    pub(crate) async fn create_fresh(
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

    /// Persists the request's session after the response was built.
    pub(crate) async fn save(&self, cell: &SessionCell, status: Status) -> SaveOutcome {
        let now = unix(SystemTime::now());
        let (id, stored, cookie_set, modified) = {
            let st = cell.lock();
            (st.id.clone(), st.stored, st.cookie_set, st.modified)
        };
        let drop_new_cookie = || {
            if cookie_set && !stored {
                SaveOutcome::DropCookie
            } else {
                SaveOutcome::Done
            }
        };
        if status.code >= 500 && !self.config.save_on_error {
            return drop_new_cookie();
        }
        let Some(id) = id else {
            return SaveOutcome::Done;
        };
        if !modified {
            if stored {
                self.touch_if_due(cell, &id, now).await;
            }
            return SaveOutcome::Done;
        }
        if stored {
            self.save_existing(cell, &id, now).await
        } else {
            self.save_new(cell, &id, now).await
        }
    }

    async fn save_new(&self, cell: &SessionCell, id: &SessionId, now: u64) -> SaveOutcome {
        let envelope = {
            let mut st = cell.lock();
            if st.envelope.data.is_empty() {
                // Never store an empty new session.
                return if st.cookie_set {
                    SaveOutcome::DropCookie
                } else {
                    SaveOutcome::Done
                };
            }
            st.envelope.last_active = now;
            st.envelope.clone()
        };
        let expiry = self.store_expiry(id, now);
        match self
            .store
            .create(&self.key(id), &envelope.encode(), expiry)
            .await
        {
            Ok(CreateOutcome::Created(version)) => {
                let mut st = cell.lock();
                st.stored = true;
                st.version = version;
                st.mark_saved();
                SaveOutcome::Done
            }
            // The cookie with this id is already sealed into the response and
            // cannot be replaced from here, so the id cannot change: refuse
            // rather than hand out someone else's session.
            Ok(CreateOutcome::AlreadyExists) => SaveOutcome::Failed {
                error: Error::IdCollision,
                drop_cookie: true,
            },
            Err(e) => SaveOutcome::Failed {
                error: e.into(),
                drop_cookie: true,
            },
        }
    }

    async fn save_existing(&self, cell: &SessionCell, id: &SessionId, now: u64) -> SaveOutcome {
        let key = self.key(id);
        let (mut envelope, mut version, cleared_empty) = {
            let mut st = cell.lock();
            st.envelope.last_active = now;
            (
                st.envelope.clone(),
                st.version.clone(),
                st.cleared && st.envelope.data.is_empty(),
            )
        };
        if cleared_empty {
            // clear() is a whole-session operation: an emptied session is
            // deleted, whatever concurrent requests did meanwhile.
            return self.delete_emptied(&key).await;
        }
        let versioned = self.store.supports_versioning();
        let attempts = self.config.save_attempts;
        for attempt in 1..=attempts {
            let expected = if versioned { version.as_ref() } else { None };
            let expiry = self.store_expiry(id, now);
            match self
                .store
                .update(&key, &envelope.encode(), expected, expiry)
                .await
            {
                Ok(UpdateOutcome::Updated(new_version)) => {
                    let empty = envelope.data.is_empty();
                    {
                        let mut st = cell.lock();
                        st.version = new_version;
                        st.envelope = envelope;
                        st.mark_saved();
                    }
                    // Every key was removed (and no concurrent request added
                    // one): an empty session is not kept.
                    return if empty {
                        self.delete_emptied(&key).await
                    } else {
                        SaveOutcome::Done
                    };
                }
                Ok(UpdateOutcome::Missing) => {
                    // Destroyed or expired meanwhile: never resurrect it.
                    log::info!("kvsession: session vanished before save; changes dropped");
                    return SaveOutcome::RemoveCookie;
                }
                Ok(UpdateOutcome::Conflict) => {
                    // Full-jitter exponential backoff spreads the retries of
                    // many requests racing on one session.
                    if attempt > 1 {
                        tokio::time::sleep(self.jitter(1 << attempt.min(10))).await;
                    }
                    let current = match self.store.get(&key).await {
                        Ok(Some(record)) => record,
                        Ok(None) => return SaveOutcome::RemoveCookie,
                        Err(e) => {
                            return SaveOutcome::Failed {
                                error: e.into(),
                                drop_cookie: false,
                            }
                        }
                    };
                    let base = match Envelope::decode(&current.value) {
                        Ok(base) => base,
                        Err(error) => {
                            return SaveOutcome::Failed {
                                error,
                                drop_cookie: false,
                            }
                        }
                    };
                    envelope = cell.lock().merge_onto(base);
                    envelope.last_active = now;
                    version = current.version;
                }
                Err(e) => {
                    return SaveOutcome::Failed {
                        error: e.into(),
                        drop_cookie: false,
                    }
                }
            }
        }
        SaveOutcome::Failed {
            error: Error::Conflict { attempts },
            drop_cookie: false,
        }
    }

    async fn delete_emptied(&self, key: &str) -> SaveOutcome {
        match self.store.delete(key).await {
            Ok(()) => SaveOutcome::RemoveCookie,
            Err(e) => SaveOutcome::Failed {
                error: e.into(),
                drop_cookie: false,
            },
        }
    }

    /// Refreshes an unmodified session's activity, at most once per
    /// `touch_after`, when an idle timeout is configured. Failures only log:
    /// the request itself succeeded.
    async fn touch_if_due(&self, cell: &SessionCell, id: &SessionId, now: u64) {
        if self.config.idle_timeout.is_none() {
            return;
        }
        let (activity, envelope, version) = {
            let st = cell.lock();
            (
                self.activity(&st.envelope, st.record_expires_at),
                st.envelope.clone(),
                st.version.clone(),
            )
        };
        if now.saturating_sub(activity) < self.config.touch_after {
            return;
        }
        let key = self.key(id);
        let result = match self.store_expiry(id, now) {
            // Only the expiry moves; the data is not rewritten.
            Some(expiry) => self.store.touch(&key, expiry).await,
            None => {
                let mut envelope = envelope;
                envelope.last_active = now;
                let expected = version
                    .as_ref()
                    .filter(|_| self.store.supports_versioning());
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
