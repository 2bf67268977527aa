//! [`Session`]: the request guard.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use rocket::http::{CookieJar, Status};
use rocket::request::{FromRequest, Outcome, Request};
use rocket::{Ignite, Rocket, Sentinel};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::engine::{unix, Engine, SessionCell, State};
use crate::error::Error;

/// The guard's per-request cache slot: empty until a `Session` guard runs.
pub(crate) struct Loaded(pub(crate) Option<Result<SessionCell, Error>>);

static NOT_ATTACHED: Error = Error::NotAttached;

/// The session of the current request: a request guard.
///
/// Taking a `Session<'_>` loads the session once per request (later guards
/// reuse it); routes that do not take one never touch the store. Values are
/// any `Serialize`/`DeserializeOwned` type, stored as MessagePack. Changes
/// are saved after the handler, only if something changed, and only if the
/// response is not a 5xx (unless `save_on_error`).
///
/// If the store fails while loading, the guard fails with
/// `503 Service Unavailable` (use `Result<Session<'_>, &Error>` to handle it
/// yourself). If the fairing is not attached, launch is refused.
///
/// ```rust,no_run
/// # use rocket::{get, post};
/// use rocket_kvsession::Session;
///
/// #[post("/cart/<item>")]
/// fn add(session: Session<'_>, item: u32) -> Result<String, rocket_kvsession::Error> {
///     let mut cart: Vec<u32> = session.get("cart")?.unwrap_or_default();
///     cart.push(item);
///     session.insert("cart", &cart)?;
///     Ok(format!("{} items", cart.len()))
/// }
/// ```
pub struct Session<'r> {
    cell: &'r SessionCell,
    engine: &'r Engine,
    jar: &'r CookieJar<'r>,
}

impl fmt::Debug for Session<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.cell.lock();
        f.debug_struct("Session")
            .field("id", &st.id)
            .field("stored", &st.stored)
            .field("keys", &st.envelope.data.keys().collect::<Vec<_>>())
            .field("modified", &st.modified)
            .finish()
    }
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for Session<'r> {
    type Error = &'r Error;

    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, Self::Error> {
        let Some(engine) = req.rocket().state::<Arc<Engine>>() else {
            return Outcome::Error((Status::InternalServerError, &NOT_ATTACHED));
        };
        let loaded: &'r Loaded = req
            .local_cache_async(async { Loaded(Some(engine.load(req.cookies()).await)) })
            .await;
        match &loaded.0 {
            Some(Ok(cell)) => Outcome::Success(Session {
                cell,
                engine,
                jar: req.cookies(),
            }),
            Some(Err(e)) => {
                log::error!("kvsession: cannot load session: {}", crate::error::chain(e));
                Outcome::Error((Status::ServiceUnavailable, e))
            }
            None => Outcome::Error((Status::InternalServerError, &NOT_ATTACHED)),
        }
    }
}

impl Sentinel for Session<'_> {
    fn abort(rocket: &Rocket<Ignite>) -> bool {
        if rocket.state::<Arc<Engine>>().is_none() {
            log::error!(
                "kvsession: a route takes `Session`, but the `KvSession` fairing is not attached"
            );
            return true;
        }
        false
    }
}

impl Session<'_> {
    /// The session id, if the session has one: every stored session does; a
    /// new session gets one when it is first modified.
    pub fn id(&self) -> Option<String> {
        self.cell.lock().id.as_ref().map(ToString::to_string)
    }

    /// Whether the session was loaded from (or already written to) the store.
    pub fn is_stored(&self) -> bool {
        self.cell.lock().stored
    }

    /// Reads a value; `Ok(None)` if the key is absent, `Err` if the stored
    /// value does not deserialize as `T`.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, Error> {
        let st = self.cell.lock();
        match st.envelope.data.get(key) {
            None => Ok(None),
            Some(bytes) => {
                rmp_serde::from_slice(bytes)
                    .map(Some)
                    .map_err(|source| Error::Deserialize {
                        key: key.to_owned(),
                        source,
                    })
            }
        }
    }

    /// Whether the session holds `key`.
    pub fn contains_key(&self, key: &str) -> bool {
        self.cell.lock().envelope.data.contains_key(key)
    }

    /// The session's keys, sorted.
    pub fn keys(&self) -> Vec<String> {
        self.cell.lock().envelope.data.keys().cloned().collect()
    }

    /// How many keys the session holds.
    pub fn len(&self) -> usize {
        self.cell.lock().envelope.data.len()
    }

    /// Whether the session holds no key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sets `key` to `value`. Storing a value equal to the current one is not
    /// a change and causes no write.
    pub fn insert<T: Serialize>(&self, key: impl Into<String>, value: T) -> Result<(), Error> {
        let key = key.into();
        let bytes = rmp_serde::to_vec_named(&value).map_err(|source| Error::Serialize {
            key: key.clone(),
            source,
        })?;
        let mut st = self.cell.lock();
        if st.envelope.data.get(&key) == Some(&bytes) {
            return Ok(());
        }
        st.envelope.data.insert(key.clone(), bytes.clone());
        st.changes.insert(key, Some(bytes));
        self.modified(&mut st);
        Ok(())
    }

    /// Removes `key`; returns whether it was there.
    pub fn remove(&self, key: &str) -> bool {
        let mut st = self.cell.lock();
        if st.envelope.data.remove(key).is_none() {
            return false;
        }
        st.changes.insert(key.to_owned(), None);
        self.modified(&mut st);
        true
    }

    /// Removes every key. The session is then empty, so it is deleted from
    /// the store on save (its id is not kept), unless keys are set again.
    /// A clear is a whole-session operation: if a concurrent request changed
    /// the session meanwhile, this request's content wins.
    pub fn clear(&self) {
        let mut st = self.cell.lock();
        if st.envelope.data.is_empty() && st.changes.is_empty() {
            return;
        }
        st.envelope.data.clear();
        st.changes.clear();
        st.cleared = true;
        self.modified(&mut st);
    }

    /// Makes the session permanent (a cookie with `Max-Age` of the remaining
    /// lifetime) or a browser-session cookie.
    pub fn set_permanent(&self, permanent: bool) {
        let mut st = self.cell.lock();
        if st.envelope.permanent == permanent {
            return;
        }
        st.envelope.permanent = permanent;
        st.permanent_changed = true;
        st.modified = true;
        self.ensure_id(&mut st);
        if st.stored || !st.envelope.data.is_empty() {
            self.issue_cookie(&mut st);
        }
    }

    /// Whether the session is permanent.
    pub fn is_permanent(&self) -> bool {
        self.cell.lock().envelope.permanent
    }

    /// Gives the session a new id, keeping its data; call it after login
    /// (and on any privilege change) against session fixation.
    ///
    /// The record under the new id is written first, then the old key is
    /// deleted, so a failure never loses the session. A session that is not
    /// stored yet just draws a new id.
    pub async fn regenerate(&self) -> Result<(), Error> {
        let (old_id, envelope) = {
            let mut st = self.cell.lock();
            if !st.stored {
                st.id = None;
                if !st.envelope.data.is_empty() || st.modified {
                    self.issue_cookie(&mut st);
                }
                return Ok(());
            }
            st.envelope.last_active = unix(SystemTime::now());
            (st.id.clone(), st.envelope.clone())
        };
        let (new_id, version) = self.engine.create_fresh(&envelope).await?;
        {
            let mut st = self.cell.lock();
            st.id = Some(new_id);
            st.stored = true;
            st.version = version;
            st.envelope = envelope;
            st.record_expires_at = None;
            st.mark_saved();
            self.issue_cookie(&mut st);
        }
        if let Some(old_id) = old_id {
            self.engine.store.delete(&self.engine.key(&old_id)).await?;
        }
        Ok(())
    }

    /// Ends the session: deletes its record and removes the cookie. The
    /// request continues with a new, empty session.
    pub async fn destroy(&self) -> Result<(), Error> {
        let key = {
            let st = self.cell.lock();
            st.id
                .as_ref()
                .filter(|_| st.stored)
                .map(|id| self.engine.key(id))
        };
        if let Some(key) = key {
            self.engine.store.delete(&key).await?;
        }
        let mut st = self.cell.lock();
        *st = State::fresh(self.engine.config.permanent);
        self.jar.remove(self.engine.removal_cookie());
        Ok(())
    }

    /// Marks the session changed; a new session gets its id and cookie now,
    /// while the handler can still set cookies.
    fn modified(&self, st: &mut State) {
        st.modified = true;
        if !st.stored && !st.cookie_set {
            self.issue_cookie(st);
        }
    }

    /// Puts the cookie for the session's id (drawn now if it has none) into
    /// the jar, with the session's current permanence.
    fn issue_cookie(&self, st: &mut State) {
        let id = self.ensure_id(st);
        self.jar
            .add_private(self.engine.cookie(&id, st.envelope.permanent));
        st.cookie_set = true;
    }

    fn ensure_id(&self, st: &mut State) -> crate::id::SessionId {
        st.id.get_or_insert_with(|| self.engine.new_id()).clone()
    }
}
