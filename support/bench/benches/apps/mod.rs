//! The apps the request benchmarks compare, shared by `requests` (in-process)
//! and `http_apps` (over loopback HTTP).
//!
//! Every app serves the same small route, `GET /hello`, which answers
//! `alice`, and `GET /login`, which establishes a session holding
//! `user = "alice"` and a counter `n`. The apps differ only in what `/hello`
//! does with the session; every client sends its session cookie back with
//! each request:
//!
//! | app | `/hello` |
//! |---|---|
//! | `bare` | nothing: no session machinery attached |
//! | `kv-read` | `KvSession` on `MemoryStore`: reads `user` |
//! | `kv-write` | `KvSession` on `MemoryStore`: reads the counter `n`, writes `n + 1`, reads `user` (every request saves) |
//! | `rss-read` | `rocket_session_store` on its memory store: reads the session |
//! | `rss-write` | `rocket_session_store`: reads the session, writes it back with `n + 1` |
//! | `private-read` | Rocket's private cookie (`CookieJar::get_private`) holds the state, `alice:N`: reads it |
//! | `private-write` | the private cookie: reads it, writes `alice:N+1` with `add_private` (a `Set-Cookie` every request) |
//!
//! The private-cookie apps are what a Rocket app does when it keeps its
//! state in an encrypted cookie instead of a server-side session: the same
//! AES-256-GCM per request, no store.
#![allow(dead_code)]

use std::time::Duration;

use rocket::figment::Figment;
use rocket::http::private::cookie::CookieBuilder;
use rocket::http::{CookieJar, SameSite};
use rocket::{get, routes, Build, Rocket};
use rocket_kvsession::{KvSession, MemoryStore, Session};
use rocket_session_store::memory::MemoryStore as RssMemoryStore;
use rocket_session_store::{Session as RssSession, SessionError, SessionStore};

/// A fixed secret key (32 bytes, base64), so every run seals alike.
pub(crate) const SECRET: &str = "hPRYyVRiMyxpw5sBB1XeCMN1kFsDCqKvBi2QJxBVHQk=";

/// The body every `/hello` answers.
pub(crate) const BODY: &str = "alice";

/// The session cookie's name in every app.
pub(crate) const COOKIE: &str = "session";

/// Session lifetime of both session libraries.
const LIFETIME: Duration = Duration::from_secs(31 * 24 * 3600);

/// The apps, in the order they are measured and reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum App {
    Bare,
    KvRead,
    KvWrite,
    RssRead,
    RssWrite,
    PrivateRead,
    PrivateWrite,
}

impl App {
    pub(crate) const ALL: [App; 7] = [
        App::Bare,
        App::KvRead,
        App::KvWrite,
        App::RssRead,
        App::RssWrite,
        App::PrivateRead,
        App::PrivateWrite,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            App::Bare => "bare",
            App::KvRead => "kv-read",
            App::KvWrite => "kv-write",
            App::RssRead => "rss-read",
            App::RssWrite => "rss-write",
            App::PrivateRead => "private-read",
            App::PrivateWrite => "private-write",
        }
    }

    pub(crate) fn label(self) -> &'static str {
        match self {
            App::Bare => "(a) bare Rocket, no sessions",
            App::KvRead => "(b) KvSession + MemoryStore, route reads",
            App::KvWrite => "(c) KvSession + MemoryStore, route writes one key",
            App::RssRead => "(d) rocket_session_store + its MemoryStore, route reads",
            App::RssWrite => "(d') rocket_session_store + its MemoryStore, route writes one key",
            App::PrivateRead => "(e) Rocket private cookie holds the state, route reads",
            App::PrivateWrite => "(e') Rocket private cookie holds the state, route writes it",
        }
    }

    pub(crate) fn from_name(name: &str) -> Option<App> {
        App::ALL.into_iter().find(|app| app.name() == name)
    }

    /// The app on `figment` (see [`figment`]).
    pub(crate) fn build(self, figment: Figment) -> Rocket<Build> {
        let rocket = rocket::custom(figment);
        match self {
            App::Bare => rocket.mount("/", routes![bare_login, bare_hello]),
            App::KvRead => rocket
                .attach(KvSession::new(MemoryStore::new()))
                .mount("/", routes![kv_login, kv_read]),
            App::KvWrite => rocket
                .attach(KvSession::new(MemoryStore::new()))
                .mount("/", routes![kv_login, kv_write]),
            App::RssRead => rocket
                .attach(rss_store().fairing())
                .mount("/", routes![rss_login, rss_read]),
            App::RssWrite => rocket
                .attach(rss_store().fairing())
                .mount("/", routes![rss_login, rss_write]),
            App::PrivateRead => rocket.mount("/", routes![private_login, private_read]),
            App::PrivateWrite => rocket.mount("/", routes![private_login, private_write]),
        }
    }
}

/// The benchmark figment: fixed secret key, no logging.
pub(crate) fn figment() -> Figment {
    rocket::Config::figment()
        .merge(("secret_key", SECRET))
        .merge(("log_level", "off"))
        .merge(("cli_colors", false))
}

#[get("/login")]
fn bare_login() -> &'static str {
    "ok"
}

#[get("/hello")]
fn bare_hello() -> &'static str {
    BODY
}

#[get("/login")]
fn kv_login(session: Session<'_>) -> Result<&'static str, rocket_kvsession::Error> {
    session.insert("user", BODY)?;
    session.insert("n", 0u64)?;
    Ok("ok")
}

#[get("/hello")]
fn kv_read(session: Session<'_>) -> Option<String> {
    session.get::<String>("user").ok().flatten()
}

#[get("/hello")]
fn kv_write(session: Session<'_>) -> Result<Option<String>, rocket_kvsession::Error> {
    let n: u64 = session.get("n")?.unwrap_or(0);
    session.insert("n", n + 1)?;
    session.get::<String>("user")
}

/// The session value of the `rocket_session_store` apps: a typed struct, as
/// that crate's documentation does it.
#[derive(Debug, Clone)]
pub(crate) struct Visitor {
    user: String,
    n: u64,
}

fn rss_store() -> SessionStore<Visitor> {
    SessionStore {
        store: Box::new(RssMemoryStore::new()),
        name: COOKIE.into(),
        duration: LIFETIME,
        cookie_builder: CookieBuilder::new("", "")
            .path("/")
            .http_only(true)
            .same_site(SameSite::Lax),
    }
}

#[get("/login")]
async fn rss_login(session: RssSession<'_, Visitor>) -> Result<&'static str, SessionError> {
    session
        .set(Visitor {
            user: BODY.into(),
            n: 0,
        })
        .await?;
    Ok("ok")
}

#[get("/hello")]
async fn rss_read(session: RssSession<'_, Visitor>) -> Result<Option<String>, SessionError> {
    Ok(session.get().await?.map(|v| v.user))
}

#[get("/hello")]
async fn rss_write(session: RssSession<'_, Visitor>) -> Result<Option<String>, SessionError> {
    let Some(mut visitor) = session.get().await? else {
        return Ok(None);
    };
    visitor.n += 1;
    let user = visitor.user.clone();
    session.set(visitor).await?;
    Ok(Some(user))
}

/// The private cookie's value: the user and the counter, `alice:N`.
fn private_value(user: &str, n: u64) -> String {
    format!("{user}:{n}")
}

#[get("/login")]
fn private_login(jar: &CookieJar<'_>) -> &'static str {
    jar.add_private((COOKIE, private_value(BODY, 0)));
    "ok"
}

#[get("/hello")]
fn private_read(jar: &CookieJar<'_>) -> Option<String> {
    let cookie = jar.get_private(COOKIE)?;
    let (user, _n) = cookie.value().split_once(':')?;
    Some(user.to_owned())
}

#[get("/hello")]
fn private_write(jar: &CookieJar<'_>) -> Option<String> {
    let cookie = jar.get_private(COOKIE)?;
    let (user, n) = cookie.value().split_once(':')?;
    let n: u64 = n.parse().ok()?;
    jar.add_private((COOKIE, private_value(user, n + 1)));
    Some(user.to_owned())
}

/// The (percent-decoded) value of the session cookie in a `Set-Cookie`
/// header, if the header sets it.
pub(crate) fn session_cookie_value(set_cookie: &str) -> Option<String> {
    let cookie = rocket::http::Cookie::parse_encoded(set_cookie).ok()?;
    (cookie.name() == COOKIE && !cookie.value().is_empty()).then(|| cookie.value().to_owned())
}
