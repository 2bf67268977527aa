//! [`Session`]: the request guard.

use std::fmt;
use std::sync::Arc;

use rocket::http::{CookieJar, Status};
use rocket::request::{FromRequest, Outcome, Request};
use rocket::{Ignite, Rocket, Sentinel};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::cookie;
use crate::engine::{Engine, SessionCell};
use crate::error::Error;
use crate::state::SessionState;

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
    engine: &'r Arc<Engine>,
    jar: &'r CookieJar<'r>,
}

impl fmt::Debug for Session<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.cell.lock();
        f.debug_struct("Session")
            .field("id", &st.id())
            .field("stored", &st.is_stored())
            .field("keys", &st.keys().collect::<Vec<_>>())
            .field("modified", &st.is_modified())
            .finish()
    }
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for Session<'r> {
    type Error = &'r Error;

    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, Self::Error> {
        let Some(engine) = Engine::fetch(req.rocket()) else {
            return Outcome::Error((Status::InternalServerError, &NOT_ATTACHED));
        };
        match engine.session(req).await {
            Ok(cell) => Outcome::Success(Session {
                cell,
                engine,
                jar: req.cookies(),
            }),
            Err(e) => {
                log::error!("kvsession: cannot load session: {}", crate::error::chain(e));
                Outcome::Error((Status::ServiceUnavailable, e))
            }
        }
    }
}

impl Sentinel for Session<'_> {
    fn abort(rocket: &Rocket<Ignite>) -> bool {
        if Engine::fetch(rocket).is_none() {
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
        self.cell.lock().id().map(ToString::to_string)
    }

    /// Whether the session was loaded from (or already written to) the store.
    pub fn is_stored(&self) -> bool {
        self.cell.lock().is_stored()
    }

    /// Reads a value; `Ok(None)` if the key is absent, `Err` if the stored
    /// value does not deserialize as `T`.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, Error> {
        let st = self.cell.lock();
        let Some(bytes) = st.value(key) else {
            return Ok(None);
        };
        rmp_serde::from_slice(bytes)
            .map(Some)
            .map_err(|source| Error::Deserialize {
                key: key.to_owned(),
                source,
            })
    }

    /// Whether the session holds `key`.
    pub fn contains_key(&self, key: &str) -> bool {
        self.cell.lock().contains_key(key)
    }

    /// The session's keys, sorted.
    pub fn keys(&self) -> Vec<String> {
        self.cell.lock().keys().map(str::to_owned).collect()
    }

    /// How many keys the session holds.
    pub fn len(&self) -> usize {
        self.cell.lock().len()
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
        if st.insert(key, bytes) {
            self.sync_cookie(&mut st);
        }
        Ok(())
    }

    /// Removes `key`; returns whether it was there.
    pub fn remove(&self, key: &str) -> bool {
        let mut st = self.cell.lock();
        let removed = st.remove(key);
        if removed {
            self.sync_cookie(&mut st);
        }
        removed
    }

    /// Removes every key. The session is then empty, so it is deleted from
    /// the store on save (its id is not kept), unless keys are set again.
    /// A clear is a whole-session operation: if a concurrent request changed
    /// the session meanwhile, this request's content wins.
    pub fn clear(&self) {
        let mut st = self.cell.lock();
        if st.clear() {
            self.sync_cookie(&mut st);
        }
    }

    /// Makes the session permanent (a cookie with `Max-Age` of the remaining
    /// lifetime) or a browser-session cookie.
    pub fn set_permanent(&self, permanent: bool) {
        let mut st = self.cell.lock();
        if st.set_permanent(permanent) {
            self.sync_cookie(&mut st);
        }
    }

    /// Whether the session is permanent.
    pub fn is_permanent(&self) -> bool {
        self.cell.lock().is_permanent()
    }

    /// Gives the session a new id, keeping its data; call it after login
    /// (and on any privilege change) against session fixation.
    ///
    /// The new id and its cookie are issued now; the store is written when
    /// the response is saved: the record under the new id first, then the
    /// old record is ended with a compare-and-swap, so a failure never loses
    /// the session. A request that ends in a 5xx changes nothing (the old
    /// cookie keeps working with the old data), and if the session was
    /// logged out by another request meanwhile, it stays logged out (the
    /// new record is not kept). A session that is not stored yet just draws
    /// a new id.
    ///
    /// It does no I/O and does not fail today; it stays `async` and
    /// fallible so it can change without breaking callers.
    pub async fn regenerate(&self) -> Result<(), Error> {
        self.engine.regenerate(self.cell);
        self.sync_cookie(&mut self.cell.lock());
        Ok(())
    }

    /// Ends the session: deletes its record and removes the cookie. The
    /// request continues with a new, empty session.
    ///
    /// The logout stays a logout: a slow request of the same session that
    /// saves afterwards does not bring it back, and a `regenerate()` racing
    /// it in another request (a login in another tab) ends with the session
    /// ended too.
    pub async fn destroy(&self) -> Result<(), Error> {
        self.engine.destroy(self.cell).await?;
        self.jar
            .remove(cookie::removal_for_jar(&self.engine.cookies));
        Ok(())
    }

    /// Puts the cookie the session now needs, if any, into the jar, while
    /// the handler can still set cookies.
    fn sync_cookie(&self, st: &mut SessionState) {
        if let Some(spec) = st.cookie_due(|| self.engine.new_id()) {
            self.jar
                .add_private(cookie::session_cookie(&self.engine.cookies, &spec));
        }
    }
}
