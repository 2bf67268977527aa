//! [`Session`]: the request guard.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use rocket::http::{CookieJar, Status};
use rocket::request::{FromRequest, Outcome, Request};
use rocket::{Ignite, Rocket, Sentinel};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::cookie;
use crate::csrf::CSRF_KEY;
use crate::engine::{Engine, SessionCell};
use crate::error::Error;
use crate::flash::{Flash, FlashQueue, FLASH_KEY};
use crate::manager::LABEL_KEY;
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
/// If the fairing is not attached, launch is refused.
///
/// # When the store fails
///
/// If the store fails while loading, the guard fails with
/// `503 Service Unavailable` and the handler does not run. Routes that can
/// do without a session take `Option<Session<'_>>` (`None` during an
/// outage) or `Result<Session<'_>, &Error>` (the error, to show or log) and
/// keep working; they touch no store after a failed load.
///
/// ```rust,no_run
/// # use rocket::get;
/// use rocket_kvsession::Session;
///
/// #[get("/")]
/// fn home(session: Option<Session<'_>>) -> String {
///     let user = session.and_then(|s| s.get_or_discard::<String>("user"));
///     match user {
///         Some(user) => format!("Hello, {user}"),
///         None => "Hello, guest".to_owned(), // also while the store is down
///     }
/// }
/// ```
///
/// Saving happens after the handler: if the save fails (the store is down,
/// or `save_attempts` compare-and-swap retries all conflict), the response
/// is replaced by `503 Service Unavailable` with a short plain-text body,
/// and a new session's cookie is dropped from it. The handler has run by
/// then, so its side effects (a row inserted, a mail sent) happened even
/// though the client sees a 503 and the session changes were not kept: a
/// failed save never reports success. Handlers whose side effects must not
/// be repeated should make them idempotent, or record them somewhere other
/// than the session.
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
            Ok(cell) => {
                let session = Session {
                    cell,
                    engine,
                    jar: req.cookies(),
                };
                let mut st = cell.lock();
                if st.cookie_missing() {
                    // Opened with a fallback key: re-sealed with the current one.
                    session.sync_cookie(&mut st);
                }
                drop(st);
                Outcome::Success(session)
            }
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
    ///
    /// ```rust,no_run
    /// # use rocket::get;
    /// use rocket_kvsession::Session;
    ///
    /// #[get("/")]
    /// fn started(session: Session<'_>) -> &'static str {
    ///     // The id opens the session: never put it in a page or a log.
    ///     if session.id().is_some() { "a session" } else { "no session yet" }
    /// }
    /// ```
    pub fn id(&self) -> Option<String> {
        self.cell.lock().id().map(ToString::to_string)
    }

    /// Whether the session was loaded from (or already written to) the store.
    ///
    /// ```rust,no_run
    /// # use rocket::get;
    /// use rocket_kvsession::Session;
    ///
    /// #[get("/")]
    /// fn returning(session: Session<'_>) -> &'static str {
    ///     if session.is_stored() { "welcome back" } else { "welcome" }
    /// }
    /// ```
    pub fn is_stored(&self) -> bool {
        self.cell.lock().is_stored()
    }

    /// Reads a value; `Ok(None)` if the key is absent, `Err` if the stored
    /// value does not deserialize as `T`.
    ///
    /// The error ([`Error::Deserialize`]) names the key and keeps the
    /// value: a value stored by an earlier version of the app, under a type
    /// that has changed since, keeps failing. Where such a value should
    /// just be dropped, read it with [`get_or_discard`](Self::get_or_discard).
    ///
    /// ```rust,no_run
    /// # use rocket::get;
    /// use rocket_kvsession::{Error, Session};
    ///
    /// #[get("/whoami")]
    /// fn whoami(session: Session<'_>) -> Result<Option<String>, Error> {
    ///     session.get::<String>("user")
    /// }
    /// ```
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, Error> {
        let st = self.cell.lock();
        let Some(bytes) = st.value(key) else {
            return Ok(None);
        };
        decode(key, bytes).map(Some)
    }

    /// Reads a value, and drops it if it no longer deserializes as `T`:
    /// `None` if the key is absent or its value was dropped.
    ///
    /// For values whose type can change between deployments (a struct that
    /// gained a field, an enum that lost a variant): with [`get`](Self::get)
    /// such a value fails every request of that user until the session
    /// ends; here it is removed (the removal is saved like any change) and
    /// a warning naming the key and the type is logged, never the session
    /// id. The rest of the session is kept. Use it where a missing value has
    /// a sensible default (a cart, preferences), and `get` where it must not
    /// silently disappear.
    ///
    /// ```rust,no_run
    /// # use rocket::get;
    /// use rocket_kvsession::Session;
    /// use serde::Deserialize;
    ///
    /// #[derive(Deserialize, Default)]
    /// struct Preferences {
    ///     theme: String,
    ///     page_size: u32, // added in this release: older values lack it
    /// }
    ///
    /// #[get("/")]
    /// fn index(session: Session<'_>) -> String {
    ///     let prefs: Preferences = session.get_or_discard("prefs").unwrap_or_default();
    ///     format!("theme {:?}, {} per page", prefs.theme, prefs.page_size)
    /// }
    /// ```
    pub fn get_or_discard<T: DeserializeOwned>(&self, key: &str) -> Option<T> {
        self.change(|st| {
            let result = decode::<T>(key, st.value(key)?);
            match result {
                Ok(value) => Some(value),
                // The decoder's message can quote the stored value: not logged.
                Err(_) => {
                    log::warn!(
                        "kvsession: session value {key:?} does not decode as {}; removed",
                        std::any::type_name::<T>()
                    );
                    st.remove(key);
                    None
                }
            }
        })
    }

    /// Reads a value and removes it: `Ok(None)` if the key is absent.
    ///
    /// If the stored value does not deserialize as `T`, it is **not**
    /// removed and the error names the key, as with [`get`](Self::get).
    /// The removal is saved like [`remove`](Self::remove).
    ///
    /// ```rust,no_run
    /// # use rocket::{get, response::Redirect, uri};
    /// use rocket_kvsession::{Error, Session};
    ///
    /// #[get("/after-login")]
    /// fn after_login(session: Session<'_>) -> Result<Redirect, Error> {
    ///     // Where the user wanted to go before the login form, once.
    ///     let next: Option<String> = session.take("next")?;
    ///     Ok(Redirect::to(next.unwrap_or_else(|| "/".into())))
    /// }
    /// ```
    pub fn take<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, Error> {
        self.change(|st| {
            let Some(bytes) = st.value(key) else {
                return Ok(None);
            };
            let value = decode(key, bytes)?;
            st.remove(key);
            Ok(Some(value))
        })
    }

    /// Queues a flash message for a later request: the next page that
    /// calls [`flashes`](Self::flashes) shows it, once.
    ///
    /// Messages stay in the session (across redirects and requests that do
    /// not read them) until `flashes()` takes them. At most
    /// [`MAX_FLASHES`](crate::MAX_FLASHES) (32) wait at once: queuing one
    /// more drops the oldest; a message or kind longer than
    /// [`MAX_FLASH_LEN`](crate::MAX_FLASH_LEN) (1,024 bytes) is cut. They are stored under the reserved key
    /// [`FLASH_KEY`](crate::FLASH_KEY), one list per session: two
    /// concurrent requests that both queue a message keep only one of the
    /// two lists. Queuing a message into a new session starts the session
    /// (it gets a cookie and a record), like any [`insert`](Self::insert).
    ///
    /// ```rust,no_run
    /// # use rocket::{post, response::Redirect};
    /// use rocket_kvsession::{Error, Session};
    ///
    /// #[post("/logout")]
    /// async fn logout(session: Session<'_>) -> Result<Redirect, Error> {
    ///     session.destroy().await?;
    ///     // The request goes on with a new session, which carries the message.
    ///     session.flash("success", "You are logged out.")?;
    ///     Ok(Redirect::to("/"))
    /// }
    /// ```
    pub fn flash(&self, kind: impl Into<String>, message: impl Into<String>) -> Result<(), Error> {
        let (kind, message) = (kind.into(), message.into());
        self.change(|st| {
            let mut queue: FlashQueue = match st.value(FLASH_KEY) {
                Some(bytes) => decode(FLASH_KEY, bytes).unwrap_or_else(|_| {
                    log::warn!("kvsession: unreadable flash messages dropped");
                    FlashQueue::new()
                }),
                None => FlashQueue::new(),
            };
            crate::flash::push(&mut queue, kind, message);
            st.insert(FLASH_KEY.to_owned(), encode(FLASH_KEY, &queue)?);
            Ok(())
        })
    }

    /// Takes the queued flash messages, oldest first: they are removed from
    /// the session, so each is shown once. Empty if none are queued; a
    /// session without messages is not written.
    ///
    /// A queue that does not decode (it cannot be written by this crate) is
    /// dropped with a warning, as with [`get_or_discard`](Self::get_or_discard).
    ///
    /// ```rust,no_run
    /// # use rocket::get;
    /// use rocket::response::content::RawHtml;
    /// use rocket_kvsession::Session;
    ///
    /// #[get("/")]
    /// fn index(session: Session<'_>) -> RawHtml<String> {
    ///     let notes: String = session
    ///         .flashes()
    ///         .iter()
    ///         .map(|f| format!("<p class={}>{}</p>", f.kind(), f.message())) // escape in real code
    ///         .collect();
    ///     RawHtml(format!("{notes}<h1>Home</h1>"))
    /// }
    /// ```
    pub fn flashes(&self) -> Vec<Flash> {
        let queue: Option<FlashQueue> = self.get_or_discard(FLASH_KEY);
        if queue.is_some() {
            self.remove(FLASH_KEY);
        }
        queue
            .unwrap_or_default()
            .into_iter()
            .map(Flash::from)
            .collect()
    }

    /// Whether the session holds `key`.
    ///
    /// ```rust,no_run
    /// # use rocket::get;
    /// use rocket_kvsession::Session;
    ///
    /// #[get("/")]
    /// fn logged_in(session: Session<'_>) -> String {
    ///     session.contains_key("user").to_string()
    /// }
    /// ```
    pub fn contains_key(&self, key: &str) -> bool {
        self.cell.lock().contains_key(key)
    }

    /// The session's keys, sorted.
    ///
    /// ```rust,no_run
    /// # use rocket::get;
    /// use rocket_kvsession::Session;
    ///
    /// #[get("/")]
    /// fn keys(session: Session<'_>) -> String {
    ///     session.keys().join(", ")
    /// }
    /// ```
    pub fn keys(&self) -> Vec<String> {
        self.cell.lock().keys().map(str::to_owned).collect()
    }

    /// How many keys the session holds.
    ///
    /// ```rust,no_run
    /// # use rocket::get;
    /// use rocket_kvsession::Session;
    ///
    /// #[get("/")]
    /// fn size(session: Session<'_>) -> String {
    ///     format!("{} keys", session.len())
    /// }
    /// ```
    pub fn len(&self) -> usize {
        self.cell.lock().len()
    }

    /// Whether the session holds no key.
    ///
    /// ```rust,no_run
    /// # use rocket::get;
    /// use rocket_kvsession::Session;
    ///
    /// #[get("/")]
    /// fn anonymous(session: Session<'_>) -> String {
    ///     session.is_empty().to_string()
    /// }
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sets `key` to `value`. Storing a value equal to the current one is not
    /// a change and causes no write.
    ///
    /// ```rust,no_run
    /// # use rocket::post;
    /// use rocket_kvsession::Session;
    ///
    /// #[post("/theme/<theme>")]
    /// fn pick(session: Session<'_>, theme: &str) -> Result<(), rocket_kvsession::Error> {
    ///     session.insert("theme", theme)
    /// }
    /// ```
    pub fn insert<T: Serialize>(&self, key: impl Into<String>, value: T) -> Result<(), Error> {
        let key = key.into();
        let bytes = encode(&key, &value)?;
        self.change(|st| st.insert(key, bytes));
        Ok(())
    }

    /// Removes `key`; returns whether it was there.
    ///
    /// ```rust,no_run
    /// # use rocket::post;
    /// use rocket_kvsession::Session;
    ///
    /// #[post("/theme/reset")]
    /// fn reset_theme(session: Session<'_>) -> &'static str {
    ///     if session.remove("theme") { "reset" } else { "was not set" }
    /// }
    /// ```
    pub fn remove(&self, key: &str) -> bool {
        self.change(|st| st.remove(key))
    }

    /// Removes every key. The session is then empty, so it is deleted from
    /// the store on save (its id is not kept), unless keys are set again.
    /// A clear is a whole-session operation: if a concurrent request changed
    /// the session meanwhile, this request's content wins.
    ///
    /// ```rust,no_run
    /// # use rocket::post;
    /// use rocket_kvsession::Session;
    ///
    /// #[post("/forget")]
    /// fn forget(session: Session<'_>) {
    ///     session.clear();
    /// }
    /// ```
    pub fn clear(&self) {
        self.change(SessionState::clear);
    }

    /// Makes the session permanent (a cookie with `Max-Age` of the remaining
    /// lifetime) or a browser-session cookie.
    ///
    /// ```rust,no_run
    /// # use rocket::post;
    /// use rocket_kvsession::Session;
    ///
    /// #[post("/remember/<remember>")]
    /// fn remember(session: Session<'_>, remember: bool) {
    ///     // "Remember me" unchecked: the cookie ends with the browser session.
    ///     session.set_permanent(remember);
    /// }
    /// ```
    pub fn set_permanent(&self, permanent: bool) {
        self.change(|st| st.set_permanent(permanent));
    }

    /// Gives this session its own absolute lifetime, counted from its
    /// creation (its current id's): it ends `lifetime` after it started,
    /// or when the configured `lifetime` ends, whichever comes first (the
    /// configured `lifetime` stays the maximum, so a value above it is
    /// capped, and a sweep that judges keys alone never deletes a live
    /// session). Kept in the record and across
    /// [`regenerate`](Self::regenerate); honoured on load, in the expiry
    /// handed to the store, in a permanent cookie's `Max-Age`, and in
    /// [`SessionInfo::expires_at`](crate::SessionInfo::expires_at). Saved
    /// like any change. Whole seconds, at least one.
    ///
    /// The typical "remember me": configure `lifetime` for the longest
    /// session (say 30 days), and at a login without the box give the
    /// session 12 hours and a browser-session cookie:
    ///
    /// ```rust,no_run
    /// # use std::time::Duration;
    /// # use rocket::post;
    /// use rocket_kvsession::Session;
    ///
    /// #[post("/login/<user>?<remember>")]
    /// async fn login(session: Session<'_>, user: &str, remember: bool) -> Result<(), rocket_kvsession::Error> {
    ///     // ... check the credentials first ...
    ///     session.regenerate().await?;
    ///     session.insert("user", user)?;
    ///     if !remember {
    ///         session.set_lifetime(Duration::from_secs(12 * 3600));
    ///         session.set_permanent(false);
    ///     }
    ///     Ok(())
    /// }
    /// ```
    pub fn set_lifetime(&self, lifetime: Duration) {
        let seconds = lifetime.as_secs().max(1);
        self.change(|st| st.set_lifetime(Some(seconds)));
    }

    /// Gives this session its own idle timeout: it ends this long after
    /// its last request (capped at the configured `idle_timeout`, if there
    /// is one, and at its lifetime); `None` goes back to the configured
    /// one. Kept like [`set_lifetime`](Self::set_lifetime). With it, a
    /// read-only request refreshes the session's activity at most every
    /// `touch_after` seconds, or every half of this timeout if that is
    /// shorter. Whole seconds, at least one.
    ///
    /// ```rust,no_run
    /// # use std::time::Duration;
    /// # use rocket::post;
    /// use rocket_kvsession::Session;
    ///
    /// #[post("/admin/enter")]
    /// fn enter_admin(session: Session<'_>) {
    ///     // Fifteen idle minutes end an administrator's session.
    ///     session.set_idle_timeout(Some(Duration::from_secs(15 * 60)));
    /// }
    /// ```
    pub fn set_idle_timeout(&self, idle_timeout: Option<Duration>) {
        let seconds = idle_timeout.map(|d| d.as_secs().max(1));
        self.change(|st| st.set_idle_timeout(seconds));
    }

    /// Whether the session is permanent.
    ///
    /// ```rust,no_run
    /// # use rocket::get;
    /// use rocket_kvsession::Session;
    ///
    /// #[get("/")]
    /// fn remembered(session: Session<'_>) -> String {
    ///     session.is_permanent().to_string()
    /// }
    /// ```
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
    ///
    /// ```rust,no_run
    /// # use rocket::post;
    /// use rocket_kvsession::Session;
    ///
    /// #[post("/login/<user>")]
    /// async fn login(session: Session<'_>, user: &str) -> Result<(), rocket_kvsession::Error> {
    ///     // ... check the credentials first ...
    ///     session.regenerate().await?;
    ///     session.insert("user", user)
    /// }
    /// ```
    pub async fn regenerate(&self) -> Result<(), Error> {
        self.change(|st| {
            st.rotate();
            // A new id, a new CSRF secret: tokens issued before stop working.
            st.remove(CSRF_KEY);
        });
        Ok(())
    }

    /// Ends the session: deletes its record and removes the cookie. The
    /// request continues with a new, empty session.
    ///
    /// The logout stays a logout: a slow request of the same session that
    /// saves afterwards does not bring it back, and a `regenerate()` racing
    /// it in another request (a login in another tab) ends with the session
    /// ended too.
    ///
    /// ```rust,no_run
    /// # use rocket::post;
    /// use rocket_kvsession::Session;
    ///
    /// #[post("/logout")]
    /// async fn logout(session: Session<'_>) -> Result<(), rocket_kvsession::Error> {
    ///     session.destroy().await
    /// }
    /// ```
    pub async fn destroy(&self) -> Result<(), Error> {
        self.engine.destroy(self.cell).await?;
        if !self.cell.uses_token() {
            self.jar
                .remove(cookie::removal_for_jar(&self.engine.cookies));
        }
        Ok(())
    }

    /// This session's token, for an API client to send back as
    /// `<token_header>: <token>` or `Authorization: Bearer <token>`: what a
    /// login endpoint returns in its body. `None` without `token_header`
    /// configured, or for a new session nothing was stored in yet.
    ///
    /// Calling it makes the response answer with a token instead of a
    /// cookie (no `Set-Cookie` for the session), as a request that carried
    /// a token does: when the session's id changes, the response also
    /// carries the new token in the `<token_header>` response header. Call
    /// it after [`regenerate`](Self::regenerate) and after the first
    /// change of a new session, so it names the id the response saves.
    ///
    /// ```rust,no_run
    /// # use rocket::post;
    /// use rocket::serde::json::{json, Value};
    /// use rocket_kvsession::{Error, Session};
    ///
    /// #[post("/api/login/<user>")]
    /// async fn login(session: Session<'_>, user: &str) -> Result<Value, Error> {
    ///     // ... check the credentials first ...
    ///     session.regenerate().await?;
    ///     session.insert("user", user)?;
    ///     Ok(json!({ "token": session.token() }))
    /// }
    /// ```
    pub fn token(&self) -> Option<String> {
        self.engine.config.token_header.as_ref()?;
        self.cell.want_token();
        let id = self.cell.lock().id()?.clone();
        Some(self.cell.token_for(&id, || self.engine.seal_token(&id)))
    }

    /// A CSRF token of this session, for a form's hidden `csrf_token`
    /// field ([`CsrfForm`](crate::CsrfForm)) or a script's `X-CSRF-Token`
    /// header ([`CsrfChecked`](crate::CsrfChecked)).
    ///
    /// The session's CSRF secret (256 bits) is stored in the session on
    /// first use, under the reserved key [`CSRF_KEY`](crate::CSRF_KEY), so
    /// the first call saves a session that was not stored yet. Every call
    /// returns the secret masked with a fresh random pad (base64url, 86
    /// characters): no two responses carry the same token, which defeats
    /// compression side channels (BREACH). Any of them validates while the
    /// session keeps its id; [`regenerate`](Self::regenerate) gives the
    /// session a new secret, so tokens issued before a login stop working.
    ///
    /// The secret is derived from the session's id under a key derived
    /// from the app's `secret_key`, then stored: two concurrent requests
    /// that both create it store the same secret, so the tokens of both
    /// responses validate; a later change of `secret_key` keeps it.
    ///
    /// ```rust,no_run
    /// # use rocket::get;
    /// use rocket::response::content::RawHtml;
    /// use rocket_kvsession::{Error, Session};
    ///
    /// #[get("/transfer")]
    /// fn form(session: Session<'_>) -> Result<RawHtml<String>, Error> {
    ///     let token = session.csrf_token()?;
    ///     Ok(RawHtml(format!(
    ///         r#"<form method="post" action="/transfer">
    ///              <input type="hidden" name="csrf_token" value="{token}">
    ///              <button>Send</button></form>"#
    ///     )))
    /// }
    /// ```
    pub fn csrf_token(&self) -> Result<String, Error> {
        let secret = self.change(|st| {
            if let Some(secret) = st.value(CSRF_KEY).and_then(crate::csrf::decode_secret) {
                return secret;
            }
            let id = st.ensure_id(|| self.engine.new_id()).clone();
            let secret = self.engine.csrf_secret(&id);
            st.insert(CSRF_KEY.to_owned(), crate::csrf::encode_secret(&secret));
            secret
        });
        Ok(crate::csrf::mask(&secret, |pad| {
            self.engine.fill_secret(pad)
        }))
    }

    /// Whether `token` is a valid CSRF token of this session: one that
    /// [`csrf_token`](Self::csrf_token) returned while the session had its
    /// current id. Compared in constant time. [`CsrfChecked`](crate::CsrfChecked)
    /// and [`CsrfForm`](crate::CsrfForm) call it; call it yourself for
    /// tokens that arrive some other way.
    pub fn verify_csrf_token(&self, token: &str) -> bool {
        crate::csrf::verify_state(self.engine, &self.cell.lock(), token)
    }

    /// Gives the session a label that [`SessionInfo::label`](crate::SessionInfo::label)
    /// lists, so a page of the owner's sessions can tell them apart (a
    /// device name from the `User-Agent`, "Firefox on Linux"). Control
    /// characters are dropped, surrounding space trimmed, and the label cut
    /// to [`MAX_LABEL_LEN`](crate::MAX_LABEL_LEN) bytes at a character
    /// boundary; an empty label removes it. Stored under the reserved key
    /// [`LABEL_KEY`](crate::LABEL_KEY) and saved like any change (setting
    /// the same label again is no change). The label is shown to the
    /// owner: it comes from the client, so escape it in pages.
    ///
    /// ```rust,no_run
    /// # use rocket::post;
    /// use rocket::http::Status;
    /// use rocket_kvsession::Session;
    ///
    /// #[post("/login/<user>")]
    /// async fn login(session: Session<'_>, user: &str) -> Result<(), rocket_kvsession::Error> {
    ///     session.regenerate().await?;
    ///     session.set_owner(user);
    ///     session.set_label("Firefox on Linux");
    ///     Ok(())
    /// }
    /// ```
    pub fn set_label(&self, label: &str) {
        let label = crate::manager::clean_label(label);
        if label.is_empty() {
            self.remove(LABEL_KEY);
            return;
        }
        // A string encodes infallibly.
        if let Ok(bytes) = encode(LABEL_KEY, &label) {
            self.change(|st| st.insert(LABEL_KEY.to_owned(), bytes));
        }
    }

    /// The session's label, if [`set_label`](Self::set_label) gave it one.
    pub fn label(&self) -> Option<String> {
        self.get_or_discard(LABEL_KEY)
    }

    /// Makes `owner` (a user id, an email: any string) the session's owner,
    /// so it can be listed and revoked by owner: [`Session::revoke_other_sessions`],
    /// [`SessionManager`](crate::SessionManager). Call it at login, after
    /// [`regenerate`](Self::regenerate). The session gets a handle (see
    /// [`handle`](Self::handle)); setting the same owner again changes
    /// nothing. The owner is stored with the session and counts as data: a
    /// session with an owner and no keys is kept. [`clear`](Self::clear)
    /// and [`destroy`](Self::destroy) remove it.
    ///
    /// Costs one extra write when the session is saved (the owner's index,
    /// which names the session before its record exists); requests that do
    /// not change the owner pay nothing. An owner has at most 1,000 live
    /// sessions: a login beyond that ends the owner's oldest sessions.
    ///
    /// ```rust,no_run
    /// # use rocket::post;
    /// use rocket_kvsession::Session;
    ///
    /// #[post("/login/<user>")]
    /// async fn login(session: Session<'_>, user: &str) -> Result<(), rocket_kvsession::Error> {
    ///     // ... check the credentials first ...
    ///     session.regenerate().await?;
    ///     session.set_owner(user);
    ///     Ok(())
    /// }
    /// ```
    pub fn set_owner(&self, owner: impl Into<String>) {
        let owner = owner.into();
        self.change(|st| st.set_owner(owner, || self.engine.new_handle()));
    }

    /// The session's owner, if [`set_owner`](Self::set_owner) gave it one.
    pub fn owner(&self) -> Option<String> {
        self.cell.lock().owner().map(|o| o.name.clone())
    }

    /// The session's handle, if it has an owner: the value
    /// [`SessionInfo::handle`](crate::SessionInfo::handle) lists for this
    /// session (to mark "this device" on a page of sessions). It is not the
    /// session id and opens nothing.
    pub fn handle(&self) -> Option<String> {
        self.cell.lock().owner().map(|o| o.handle.to_hex())
    }

    /// Ends every other session of this session's owner ("log out my other
    /// devices", e.g. after a password change); this one stays. Returns how
    /// many sessions ended; 0 if the session has no owner. They end with the
    /// compare-and-swap of a logout: a request of one of them saving at the
    /// same moment does not bring it back.
    ///
    /// ```rust,no_run
    /// # use rocket::post;
    /// use rocket_kvsession::Session;
    ///
    /// #[post("/password")]
    /// async fn change_password(session: Session<'_>) -> Result<String, rocket_kvsession::Error> {
    ///     // ... change the password ...
    ///     let ended = session.revoke_other_sessions().await?;
    ///     Ok(format!("signed out of {ended} other sessions"))
    /// }
    /// ```
    pub async fn revoke_other_sessions(&self) -> Result<u64, Error> {
        self.engine.revoke_others(self.cell).await
    }

    /// Changes the session with `change`, then puts the cookie the session
    /// now needs (if any) into the jar, while the handler can still set
    /// cookies: every mutator goes through here, so no change can leave the
    /// browser's cookie behind.
    ///
    /// The first change also puts a probe cookie into the jar: Rocket
    /// drops the jar's cookies when a catcher answers instead of the
    /// handler, so the response fairing tells the two apart by it (and
    /// strips it), and a catcher's response saves nothing.
    fn change<R>(&self, change: impl FnOnce(&mut SessionState) -> R) -> R {
        let mut st = self.cell.lock();
        let result = change(&mut st);
        self.sync_cookie(&mut st);
        if st.has_pending() && self.cell.start_probe() {
            self.jar.add(cookie::probe());
        }
        result
    }

    /// Puts the cookie the session now needs, if any, into the jar; a
    /// session that answers with a token only notes that a new credential
    /// is due (the response fairing sends the token).
    fn sync_cookie(&self, st: &mut SessionState) {
        if let Some(spec) = st.cookie_due(|| self.engine.new_id()) {
            if !self.cell.uses_token() {
                self.jar.add(self.engine.session_cookie(&spec));
            }
        }
    }
}

/// Encodes a session value as MessagePack (structs as maps, so fields can
/// be added later).
pub(crate) fn encode<T: Serialize + ?Sized>(key: &str, value: &T) -> Result<Vec<u8>, Error> {
    rmp_serde::to_vec_named(value).map_err(|source| Error::Serialize {
        key: key.to_owned(),
        source,
    })
}

/// Decodes the session value of `key`.
fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, Error> {
    rmp_serde::from_slice(bytes).map_err(|source| Error::Deserialize {
        key: key.to_owned(),
        source,
    })
}
