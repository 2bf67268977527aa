//! Test support for apps (feature `testing`): start a `rocket::local`
//! client's session with given values, e.g. logged in, without going
//! through the app's login form.
//!
//! The session is written through the app's own store and configuration
//! (the same key prefix, record format and expiry as a session created by a
//! request), and the returned cookie carries its id sealed with the app's
//! key, as the fairing would have sealed it. Attach it with
//! [`LocalRequest::cookie`].
//!
//! Enable the feature for tests only:
//!
//! ```toml
//! [dev-dependencies]
//! rocket_kvsession = { version = "0.1", features = ["testing"] }
//! ```
//!
//! ```rust,no_run
//! use rocket::http::Status;
//! use rocket::local::asynchronous::Client;
//! use rocket::{get, routes};
//! use rocket_kvsession::{testing, KvSession, MemoryStore, Session};
//!
//! #[get("/account")]
//! fn account(session: Session<'_>) -> Option<String> {
//!     session.get::<String>("user").ok().flatten()
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let app = rocket::build()
//!     .attach(KvSession::new(MemoryStore::new()))
//!     .mount("/", routes![account]);
//! let client = Client::tracked(app).await?;
//!
//! let cookie = testing::login(&client, [("user", "alice")]).await?;
//! let res = client.get("/account").cookie(cookie).dispatch().await;
//! assert_eq!(res.status(), Status::Ok);
//! assert_eq!(res.into_string().await.as_deref(), Some("alice"));
//! # Ok(())
//! # }
//! ```
//!
//! Attach the cookie to every request of the test (clone it): a tracked
//! client keeps only the cookies responses set, and the session's cookie is
//! set again only when it changes (`regenerate()`, `set_permanent`).
//! Only the asynchronous client is supported:
//! the store may need the client's runtime, which a blocking client only
//! drives inside its own calls.
//!
//! [`LocalRequest::cookie`]: rocket::local::asynchronous::LocalRequest::cookie

use std::collections::BTreeMap;

use rocket::http::Cookie;
use rocket::local::asynchronous::Client;
use serde::Serialize;

use crate::engine::Engine;
use crate::error::Error;
use crate::session::encode;
use crate::state::CookieSpec;

pub use crate::clock::ManualClock;

/// Stores a new session holding `values` in the app of `client`, and
/// returns the session cookie to attach with
/// [`LocalRequest::cookie`](rocket::local::asynchronous::LocalRequest::cookie).
///
/// The values all have one type; for values of several types, use
/// [`TestSession`]. The session is permanent or not as the app's
/// `permanent` setting says.
///
/// # Errors
///
/// [`Error::NotAttached`] if the app has no `KvSession` fairing,
/// [`Error::Serialize`] if a value cannot be serialized, and the store's
/// error if it fails.
///
/// ```rust,no_run
/// # async fn run(client: rocket::local::asynchronous::Client) -> Result<(), rocket_kvsession::Error> {
/// use rocket_kvsession::testing;
///
/// let cookie = testing::login(&client, [("user", "alice"), ("role", "admin")]).await?;
/// let res = client.get("/admin").cookie(cookie).dispatch().await;
/// # Ok(())
/// # }
/// ```
pub async fn login<I, K, V>(client: &Client, values: I) -> Result<Cookie<'static>, Error>
where
    I: IntoIterator<Item = (K, V)>,
    K: Into<String>,
    V: Serialize,
{
    let mut session = TestSession::new();
    for (key, value) in values {
        session = session.insert(key, value)?;
    }
    session.create(client).await
}

/// A session to store for a test, built value by value: values of any
/// types, and a choice of permanence.
///
/// ```rust,no_run
/// # async fn run(client: rocket::local::asynchronous::Client) -> Result<(), rocket_kvsession::Error> {
/// use rocket_kvsession::testing::TestSession;
///
/// let cookie = TestSession::new()
///     .insert("user", "alice")?
///     .insert("cart", vec![3_u32, 14])?
///     .permanent(false)
///     .create(&client)
///     .await?;
/// let res = client.get("/cart").cookie(cookie).dispatch().await;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct TestSession {
    data: BTreeMap<String, Vec<u8>>,
    permanent: Option<bool>,
    owner: Option<String>,
}

impl TestSession {
    /// An empty session.
    pub fn new() -> Self {
        TestSession::default()
    }

    /// Sets `key` to `value`, as [`Session::insert`](crate::Session::insert) would.
    pub fn insert<T: Serialize>(mut self, key: impl Into<String>, value: T) -> Result<Self, Error> {
        let key = key.into();
        let bytes = encode(&key, &value)?;
        self.data.insert(key, bytes);
        Ok(self)
    }

    /// Gives the session an owner, as
    /// [`Session::set_owner`](crate::Session::set_owner) would (the session
    /// gets a handle and is listed by
    /// [`SessionManager::sessions_of`](crate::SessionManager::sessions_of)).
    pub fn owner(mut self, owner: impl Into<String>) -> Self {
        self.owner = Some(owner.into());
        self
    }

    /// Makes the session permanent or not; by default as the app's
    /// `permanent` setting says.
    pub fn permanent(mut self, permanent: bool) -> Self {
        self.permanent = Some(permanent);
        self
    }

    /// Stores the session in the app of `client` (its store, key prefix and
    /// expiry) under a new id, and returns the cookie that carries the id,
    /// unsealed: attach it with
    /// [`LocalRequest::cookie`](rocket::local::asynchronous::LocalRequest::cookie).
    ///
    /// # Errors
    ///
    /// [`Error::NotAttached`] if the app has no `KvSession` fairing, and the
    /// store's error if it fails.
    pub async fn create(self, client: &Client) -> Result<Cookie<'static>, Error> {
        let engine = Engine::fetch(client.rocket()).ok_or(Error::NotAttached)?;
        let permanent = self.permanent.unwrap_or(engine.config.permanent);
        let id = engine
            .create_session(self.data, permanent, self.owner)
            .await?;
        Ok(engine.session_cookie(&CookieSpec {
            id,
            permanent,
            lifetime: None,
        }))
    }
}
