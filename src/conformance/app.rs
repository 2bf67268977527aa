//! The app-level conformance suite: end-to-end cases through a real Rocket
//! instance (`rocket::local`), run by every store crate on its store.
//!
//! Each case builds its own app on the given store with [`app`], under a key
//! prefix no other case uses, so the cases can share one backend and run
//! concurrently. Store crates run them all with one macro call:
//!
//! ```
//! use std::sync::Arc;
//!
//! macro_rules! app_tests {
//!     ($make:ident, $($case:ident),+ $(,)?) => {$(
//!         #[rocket::async_test]
//!         async fn $case() {
//!             rocket_kvsession::conformance::app::$case(Arc::new($make())).await;
//!         }
//!     )+};
//! }
//! fn make() -> rocket_kvsession::MemoryStore {
//!     rocket_kvsession::MemoryStore::new()
//! }
//! rocket_kvsession::app_conformance_cases!(app_tests, make);
//! # fn main() {}
//! ```
//!
//! Like the store suite, this module is for this repository's store crates
//! and for authors of other stores; it is not covered by semver and may
//! change in any release.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::TryStreamExt;
use rand_core::SeedableRng;
use rocket::figment::Figment;
use rocket::http::{Cookie, Status};
use rocket::local::asynchronous::{Client, LocalResponse};
use rocket::tokio::sync::{Barrier, Notify};
use rocket::{get, post, routes, Build, Rocket, State};

use super::unique_prefix;

mod expiry;
mod guarantees;
mod interleave;
mod owners;
mod tokens;
use crate::id::SessionId;
use crate::record::Stored;
use crate::{cleanup_sessions, Error, KeyValueStore, KvSession, Session, SessionConfig};
pub use expiry::*;
pub use guarantees::*;
pub use interleave::*;
pub use owners::*;
use tokens::{carried, carrying};
pub use tokens::{over_tokens, TOKEN_HEADER};

/// The secret key of every conformance app, so that a cookie issued by one
/// app opens in another app on the same store (a restart, a second server).
pub const SECRET_KEY: &str = "hPRYyVRiMyxpw5sBB1XeCMN1kFsDCqKvBi2QJxBVHQk=";

/// Regenerates the session id, then stores `user`.
#[post("/login/<user>")]
async fn login(session: Session<'_>, user: &str) -> Result<&'static str, Error> {
    session.regenerate().await?;
    session.insert("user", user)?;
    Ok("ok")
}

/// Gives the session a new id, keeping its data.
#[post("/regenerate")]
async fn regenerate(session: Session<'_>) -> Result<&'static str, Error> {
    session.regenerate().await?;
    Ok("ok")
}

/// The session id, empty if the session has none.
#[get("/id")]
fn id(session: Session<'_>) -> String {
    session.id().unwrap_or_default()
}

/// Removes `key`: `removed` or `absent`.
#[post("/remove/<key>")]
fn remove(session: Session<'_>, key: &str) -> &'static str {
    if session.remove(key) {
        "removed"
    } else {
        "absent"
    }
}

/// Removes every key.
#[post("/clear")]
fn clear(session: Session<'_>) -> &'static str {
    session.clear();
    "cleared"
}

/// The stored user, 404 if none.
#[get("/whoami")]
fn whoami(session: Session<'_>) -> Option<String> {
    session.get::<String>("user").ok().flatten()
}

/// Sets `key` to the string `value`; answers the session id.
#[post("/set/<key>/<value>")]
fn set(session: Session<'_>, key: &str, value: &str) -> Result<String, Error> {
    session.insert(key, value)?;
    Ok(session.id().unwrap_or_default())
}

/// The string under `key`, 404 if none.
#[get("/get/<key>")]
fn get(session: Session<'_>, key: &str) -> Option<String> {
    session.get::<String>(key).ok().flatten()
}

/// The session's keys, comma-separated.
#[get("/keys")]
fn keys(session: Session<'_>) -> String {
    session.keys().join(",")
}

/// Ends the session.
#[post("/logout")]
async fn logout(session: Session<'_>) -> Result<&'static str, Error> {
    session.destroy().await?;
    Ok("bye")
}

/// Makes the session permanent or not.
#[post("/permanent/<on>")]
fn permanent(session: Session<'_>, on: bool) -> &'static str {
    session.set_permanent(on);
    "ok"
}

/// Sets a key, then answers 500: the change must not be saved.
#[post("/fail/<key>/<value>")]
fn fail(session: Session<'_>, key: &str, value: &str) -> Result<(Status, &'static str), Error> {
    session.insert(key, value)?;
    Ok((Status::InternalServerError, "failed"))
}

/// A route without a session.
#[get("/plain")]
fn plain() -> &'static str {
    "no session here"
}

/// Sets its key, then waits until every concurrent request has loaded the
/// session, so their saves really race.
#[post("/together/<key>")]
async fn together(
    session: Session<'_>,
    barrier: &State<Arc<Barrier>>,
    key: &str,
) -> Result<&'static str, Error> {
    session.insert(key, "1")?;
    barrier.wait().await;
    Ok("ok")
}

/// Lets a case hold a request between loading and saving its session.
#[derive(Debug, Default)]
pub struct Gate {
    /// Notified when the slow request has loaded and changed the session.
    pub loaded: Notify,
    /// Notify to let the slow request finish.
    pub release: Notify,
}

/// Sets its key, then waits on the [`Gate`].
#[post("/slow/<key>")]
async fn slow(
    session: Session<'_>,
    gate: &State<Arc<Gate>>,
    key: &str,
) -> Result<&'static str, Error> {
    session.insert(key, "1")?;
    gate.loaded.notify_one();
    gate.release.notified().await;
    Ok("slow done")
}

/// Waits on the [`Gate`], then regenerates the session and stores `user`.
#[post("/slow-login/<user>")]
async fn slow_login(
    session: Session<'_>,
    gate: &State<Arc<Gate>>,
    user: &str,
) -> Result<&'static str, Error> {
    gate.loaded.notify_one();
    gate.release.notified().await;
    session.regenerate().await?;
    session.insert("user", user)?;
    Ok("ok")
}

/// Waits on the [`Gate`], then ends the session.
#[post("/slow-logout")]
async fn slow_logout(session: Session<'_>, gate: &State<Arc<Gate>>) -> Result<&'static str, Error> {
    gate.loaded.notify_one();
    gate.release.notified().await;
    session.destroy().await?;
    Ok("bye")
}

/// Regenerates the session and stores `user`, then answers 500.
#[post("/login-fails/<user>")]
async fn login_fails(session: Session<'_>, user: &str) -> Result<(Status, &'static str), Error> {
    session.regenerate().await?;
    session.insert("user", user)?;
    Ok((Status::InternalServerError, "failed"))
}

/// Regenerates the session and stores `user`, then fails with 401, which
/// Rocket answers with a catcher.
#[post("/login-denied/<user>")]
async fn login_denied(session: Session<'_>, user: &str) -> Result<&'static str, Status> {
    session
        .regenerate()
        .await
        .map_err(|_| Status::ServiceUnavailable)?;
    session
        .insert("user", user)
        .map_err(|_| Status::InternalServerError)?;
    Err(Status::Unauthorized)
}

/// The session routes above, without the racing ones.
pub fn routes() -> Vec<rocket::Route> {
    routes![
        login,
        regenerate,
        whoami,
        id,
        set,
        get,
        keys,
        remove,
        clear,
        logout,
        permanent,
        fail,
        login_fails,
        login_denied,
        plain
    ]
}

/// [`together`], [`slow`], [`slow_login`] and [`slow_logout`]: mount them
/// with a managed `Arc<Barrier>` and `Arc<Gate>`.
pub fn racing_routes() -> Vec<rocket::Route> {
    routes![together, slow, slow_login, slow_logout]
}

/// The figment of a conformance app: [`SECRET_KEY`], quiet logs.
pub fn figment() -> Figment {
    rocket::Config::figment()
        .merge(("secret_key", SECRET_KEY))
        .merge(("log_level", "off"))
}

/// A configuration with a key prefix no other case uses.
pub fn config(case: &str) -> SessionConfig {
    SessionConfig {
        key_prefix: unique_prefix(case),
        ..SessionConfig::default()
    }
}

/// An app with every route of this module on `store`, with `config`
/// ([`routes()`] and [`racing_routes()`], a one-request barrier and a gate).
pub fn app(store: Arc<dyn KeyValueStore>, config: SessionConfig) -> Rocket<Build> {
    app_with(store, config, 1, Arc::default())
}

fn app_with(
    store: Arc<dyn KeyValueStore>,
    config: SessionConfig,
    writers: usize,
    gate: Arc<Gate>,
) -> Rocket<Build> {
    let config = carried(config);
    let rocket =
        rocket::custom(figment()).attach(KvSession::from_arc(store).config(config.clone()));
    carrying(rocket, &config)
        .manage(Arc::new(Barrier::new(writers)))
        .manage(gate)
        .mount("/", routes())
        .mount("/", racing_routes())
}

/// [`app_with`] for one writer, on a clock the case moves.
fn clocked_app(
    store: Arc<dyn KeyValueStore>,
    config: SessionConfig,
    clock: crate::clock::ManualClock,
) -> Rocket<Build> {
    let config = carried(config);
    let sessions = KvSession::from_arc(store)
        .config(config.clone())
        .clock(clock);
    carrying(rocket::custom(figment()).attach(sessions), &config)
        .manage(Arc::new(Barrier::new(1)))
        .manage(Arc::new(Gate::default()))
        .mount("/", routes())
        .mount("/", racing_routes())
}

/// A client of [`app`] that keeps no cookies: each request sends only the
/// cookies given to it.
pub async fn untracked(store: Arc<dyn KeyValueStore>, config: SessionConfig) -> Client {
    Client::untracked(app(store, config))
        .await
        .expect("the conformance app launches")
}

/// A tracked client of [`app`].
pub async fn client(store: Arc<dyn KeyValueStore>, config: SessionConfig) -> Client {
    Client::tracked(app(store, config))
        .await
        .expect("the conformance app launches")
}

/// The keys the store holds under `prefix`.
pub async fn stored_keys(store: &dyn KeyValueStore, prefix: &str) -> HashSet<String> {
    store
        .list(prefix)
        .map_ok(|info| info.key)
        .try_collect()
        .await
        .expect("list")
}

/// The keys under `prefix` that hold a live session (not the short-lived
/// marker a rotated or ended session leaves behind).
pub async fn live_sessions(store: &dyn KeyValueStore, prefix: &str) -> HashSet<String> {
    let mut live = HashSet::new();
    for key in stored_keys(store, prefix).await {
        let Some(record) = store.get(&key).await.expect("get") else {
            continue;
        };
        if matches!(Stored::decode(&record.value), Ok(Stored::Live(_))) {
            live.insert(key);
        }
    }
    live
}

/// The status and body of a GET.
pub async fn read(client: &Client, uri: &str) -> (Status, String) {
    let res = client.get(uri.to_owned()).dispatch().await;
    (res.status(), res.into_string().await.unwrap_or_default())
}

/// The status of a POST.
pub async fn write(client: &Client, uri: &str) -> Status {
    client.post(uri.to_owned()).dispatch().await.status()
}

/// The session cookie's raw value as the browser holds it.
fn cookie_of(client: &Client, name: &str) -> Option<Cookie<'static>> {
    client.cookies().get(name).map(|c| c.clone().into_owned())
}

fn set_cookie_names(res: &LocalResponse<'_>) -> Vec<String> {
    res.headers()
        .get("Set-Cookie")
        .filter_map(|v| v.split_once('=').map(|(name, _)| name.trim().to_owned()))
        .collect()
}

/// Calls `$callback!` with the name of every app-level case, like
/// [`conformance_cases!`](crate::conformance_cases): those of
/// [`app_token_conformance_cases!`](crate::app_token_conformance_cases),
/// then the ones about the cookie's own attributes.
#[macro_export]
macro_rules! app_conformance_cases {
    ($callback:ident $(, $arg:tt)* $(,)?) => {
        $crate::app_token_conformance_cases!($callback $(, $arg)*);
        $callback!(
            $($arg,)*
            per_session_lifetime_ends_on_time,
            per_session_lifetime_is_capped_and_can_change,
        );
    };
}

/// Calls `$callback!` with the name of every app-level case that also runs
/// [`over_tokens`] (all but those about the cookie's `Max-Age`).
#[macro_export]
macro_rules! app_token_conformance_cases {
    ($callback:ident $(, $arg:tt)* $(,)?) => {
        $callback!(
            $($arg,)*
            login_whoami_logout,
            regenerate_retires_the_old_id,
            read_only_requests_write_nothing,
            failed_requests_save_nothing,
            hostile_cookies_get_a_fresh_session,
            sessions_survive_a_restart,
            logout_wins_over_a_slow_request,
            a_logout_before_a_rotation_wins,
            a_logout_after_a_rotation_wins,
            a_stale_save_keeps_the_cookie_of_a_concurrent_login,
            racing_logins_of_one_session_one_wins,
            a_failed_rotation_changes_nothing,
            hundred_concurrent_writers,
            sweep_deletes_only_expired_sessions,
            sessions_kept_alive_by_reads_survive_the_sweep,
            owners_revoke_other_sessions,
            owners_revoke_one_session,
            owners_revoke_owner,
            owners_revoke_all,
            owners_revoke_wins_over_a_slow_write,
            owners_expired_sessions_drop_out,
            guarantees_a_logout_follows_a_session_that_keeps_rotating,
            guarantees_a_login_raced_by_a_listing_stays_listed,
            guarantees_a_session_missing_from_its_index_adds_itself_back,
            guarantees_removing_the_last_key_keeps_a_concurrent_write,
            per_session_idle_timeout,
            session_events_are_emitted_once,
            interleavings_keep_the_guarantees,
            interleavings_with_faults_keep_the_guarantees,
        );
    };
}

/// Calls each case named by [`app_conformance_cases!`] in turn.
macro_rules! run_app_cases {
    ($store:ident, $($case:ident),+ $(,)?) => {
        // Each case on the heap: one future holding every case's state
        // would overflow a test thread's stack.
        $(Box::pin($case($store.clone())).await;)+
    };
}

/// Runs every app-level case, one after the other.
pub async fn run_all(store: Arc<dyn KeyValueStore>) {
    app_conformance_cases!(run_app_cases, store);
}

/// Anonymous data, login (a new id, the pre-login record gone, data kept),
/// reading it back, logout (no record left, the user gone).
pub async fn login_whoami_logout(store: Arc<dyn KeyValueStore>) {
    let config = config("app-login");
    let prefix = config.key_prefix.clone();
    let client = client(store.clone(), config).await;

    assert_eq!(read(&client, "/whoami").await.0, Status::NotFound);
    assert_eq!(write(&client, "/set/cart/3").await, Status::Ok);
    let anonymous = live_sessions(&*store, &prefix).await;
    assert_eq!(anonymous.len(), 1, "the anonymous session is stored");

    assert_eq!(write(&client, "/login/alice").await, Status::Ok);
    assert_eq!(read(&client, "/whoami").await, (Status::Ok, "alice".into()));
    assert_eq!(read(&client, "/get/cart").await, (Status::Ok, "3".into()));
    let logged_in = live_sessions(&*store, &prefix).await;
    assert_eq!(logged_in.len(), 1, "exactly one live session after login");
    assert!(
        anonymous.is_disjoint(&logged_in),
        "login gave the session a new id and ended the old record"
    );

    assert_eq!(write(&client, "/logout").await, Status::Ok);
    assert_eq!(read(&client, "/whoami").await.0, Status::NotFound);
    assert!(
        live_sessions(&*store, &prefix).await.is_empty(),
        "logout left no live session"
    );
}

/// After `regenerate()`, the old cookie opens nothing: a fresh session.
pub async fn regenerate_retires_the_old_id(store: Arc<dyn KeyValueStore>) {
    let config = config("app-regenerate");
    let name = config.cookie_name.clone();
    let client = client(store.clone(), config.clone()).await;

    assert_eq!(
        write(&client, "/set/user/mallory-planted").await,
        Status::Ok
    );
    let planted = cookie_of(&client, &name).expect("a session cookie");
    assert_eq!(write(&client, "/login/bob").await, Status::Ok);
    let rotated = cookie_of(&client, &name).expect("a session cookie");
    assert_ne!(
        planted.value(),
        rotated.value(),
        "login issued a new cookie"
    );
    assert_eq!(read(&client, "/whoami").await, (Status::Ok, "bob".into()));

    // The pre-login cookie, replayed by another browser: a new, empty session.
    let attacker = untracked(store, config).await;
    let replay = attacker.get("/keys").cookie(planted).dispatch().await;
    assert_eq!(replay.status(), Status::Ok);
    assert_eq!(replay.into_string().await.unwrap_or_default(), "");
    let current = attacker.get("/whoami").cookie(rotated).dispatch().await;
    assert_eq!(current.into_string().await.as_deref(), Some("bob"));
}

/// Reading a session, or a route without one, writes nothing and sets no
/// cookie; a session that was never modified is never stored.
pub async fn read_only_requests_write_nothing(store: Arc<dyn KeyValueStore>) {
    let config = config("app-read-only");
    let prefix = config.key_prefix.clone();
    let client = client(store.clone(), config).await;

    let res = client.get("/keys").dispatch().await;
    assert_eq!(res.status(), Status::Ok);
    assert!(set_cookie_names(&res).is_empty(), "no cookie for a read");
    drop(res);
    let res = client.get("/plain").dispatch().await;
    assert!(set_cookie_names(&res).is_empty());
    drop(res);
    assert!(stored_keys(&*store, &prefix).await.is_empty());

    assert_eq!(write(&client, "/set/a/1").await, Status::Ok);
    let stored = stored_keys(&*store, &prefix).await;
    let res = client.get("/get/a").dispatch().await;
    assert!(set_cookie_names(&res).is_empty(), "no cookie for a read");
    assert_eq!(res.into_string().await.as_deref(), Some("1"));
    assert_eq!(stored_keys(&*store, &prefix).await, stored);
}

/// A 5xx response persists none of the request's changes.
pub async fn failed_requests_save_nothing(store: Arc<dyn KeyValueStore>) {
    let config = config("app-failed");
    let prefix = config.key_prefix.clone();
    let client = client(store.clone(), config).await;

    assert_eq!(
        write(&client, "/fail/a/1").await,
        Status::InternalServerError
    );
    assert!(stored_keys(&*store, &prefix).await.is_empty());
    assert_eq!(write(&client, "/set/a/1").await, Status::Ok);
    assert_eq!(
        write(&client, "/fail/a/2").await,
        Status::InternalServerError
    );
    assert_eq!(read(&client, "/get/a").await, (Status::Ok, "1".into()));
}

/// Garbage, forged and tampered cookies never fail the request and never
/// adopt the client's id.
pub async fn hostile_cookies_get_a_fresh_session(store: Arc<dyn KeyValueStore>) {
    let config = config("app-hostile");
    let name = config.cookie_name.clone();
    let prefix = config.key_prefix.clone();
    let client = client(store.clone(), config.clone()).await;

    assert_eq!(write(&client, "/set/user/victim").await, Status::Ok);
    let victim = stored_keys(&*store, &prefix).await;
    let stored_id = victim
        .iter()
        .next()
        .and_then(|key| key.strip_prefix(&prefix))
        .expect("one stored session")
        .to_owned();
    let sealed = cookie_of(&client, &name).expect("a session cookie");
    let mut tampered = sealed.value().to_owned().into_bytes();
    let middle = tampered.len() / 2;
    tampered[middle] = if tampered[middle] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).expect("ascii cookie");

    let fresh = untracked(store.clone(), config).await;
    for value in [
        stored_id.as_str(),
        tampered.as_str(),
        "",
        "%%%",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ] {
        let res = fresh
            .get("/whoami")
            .cookie(Cookie::new(name.clone(), value.to_owned()))
            .dispatch()
            .await;
        assert_eq!(res.status(), Status::NotFound, "cookie {value:?}");
    }
    let genuine = fresh.get("/whoami").cookie(sealed).dispatch().await;
    assert_eq!(genuine.into_string().await.as_deref(), Some("victim"));
    assert_eq!(stored_keys(&*store, &prefix).await, victim);
}

/// A cookie issued by one app instance opens the same session in another
/// instance on the same store (a restart, or a second server).
pub async fn sessions_survive_a_restart(store: Arc<dyn KeyValueStore>) {
    let config = config("app-restart");
    let name = config.cookie_name.clone();
    let first = client(store.clone(), config.clone()).await;
    assert_eq!(write(&first, "/login/carol").await, Status::Ok);
    let cookie = cookie_of(&first, &name).expect("a session cookie");
    drop(first);

    let second = client(store.clone(), config).await;
    let res = second.get("/whoami").cookie(cookie).dispatch().await;
    assert_eq!(res.status(), Status::Ok);
    assert_eq!(res.into_string().await.as_deref(), Some("carol"));
}

/// A logout during a slow request of the same session stays a logout: the
/// slow request's save does not bring the session back.
pub async fn logout_wins_over_a_slow_request(store: Arc<dyn KeyValueStore>) {
    let config = config("app-logout-slow");
    let prefix = config.key_prefix.clone();
    let gate = Arc::new(Gate::default());
    let client = Client::tracked(app_with(store.clone(), config, 1, gate.clone()))
        .await
        .expect("launch");
    assert_eq!(write(&client, "/login/ivy").await, Status::Ok);
    assert_eq!(stored_keys(&*store, &prefix).await.len(), 1);

    let slow = async { client.post("/slow/late").dispatch().await.status() };
    let logout = async {
        gate.loaded.notified().await;
        let status = client.post("/logout").dispatch().await.status();
        gate.release.notify_one();
        status
    };
    let (slow, logout) = within(async { rocket::tokio::join!(slow, logout) }).await;
    assert_eq!(logout, Status::Ok);
    assert_eq!(slow, Status::Ok);
    assert!(
        stored_keys(&*store, &prefix).await.is_empty(),
        "the slow request resurrected the session"
    );
    assert_eq!(read(&client, "/whoami").await.0, Status::NotFound);
}

/// Awaits a race between gated requests, failing the case (instead of
/// hanging) if they deadlock.
pub(crate) async fn within<F: std::future::Future>(race: F) -> F::Output {
    rocket::tokio::time::timeout(Duration::from_secs(120), race)
        .await
        .expect("the racing requests finished within 2 minutes")
}

/// The session cookie a response sets, if any.
fn set_cookie_of(res: &LocalResponse<'_>, name: &str) -> Option<Cookie<'static>> {
    res.headers()
        .get("Set-Cookie")
        .filter_map(|v| Cookie::parse(v.to_owned()).ok())
        .find(|c| c.name() == name)
}

/// A logout gated app: a tracked client logged in as `user`, its gate,
/// the cookie it holds.
async fn logged_in(
    store: &Arc<dyn KeyValueStore>,
    config: &SessionConfig,
    user: &str,
) -> (Client, Arc<Gate>, Cookie<'static>) {
    let gate = Arc::new(Gate::default());
    let client = Client::tracked(app_with(store.clone(), config.clone(), 1, gate.clone()))
        .await
        .expect("launch");
    assert_eq!(write(&client, &format!("/login/{user}")).await, Status::Ok);
    let cookie = cookie_of(&client, &config.cookie_name).expect("a session cookie");
    (client, gate, cookie)
}

/// A login (`regenerate()`) that loaded the session before a logout in
/// another request, and saves after it, does not bring the session back.
pub async fn a_logout_before_a_rotation_wins(store: Arc<dyn KeyValueStore>) {
    let config = config("app-logout-then-rotation");
    let prefix = config.key_prefix.clone();
    let name = config.cookie_name.clone();
    let (client, gate, cookie) = logged_in(&store, &config, "ivy").await;

    let login = async { client.post("/slow-login/mallory").dispatch().await };
    let logout = async {
        gate.loaded.notified().await;
        let status = write(&client, "/logout").await;
        gate.release.notify_one();
        status
    };
    let (login, logout) = within(async { rocket::tokio::join!(login, logout) }).await;
    assert_eq!(logout, Status::Ok);
    let rotated = set_cookie_of(&login, &name);
    drop(login);
    assert!(
        live_sessions(&*store, &prefix).await.is_empty(),
        "the rotation resurrected a logged-out session"
    );
    let other = untracked(store.clone(), config.clone()).await;
    for cookie in rotated.into_iter().chain([cookie]) {
        let res = other.get("/whoami").cookie(cookie).dispatch().await;
        assert_eq!(res.status(), Status::NotFound);
    }
}

/// A logout that loaded the session before a login (`regenerate()`) in
/// another request, and ends it after the login saved, ends the rotated
/// session too.
pub async fn a_logout_after_a_rotation_wins(store: Arc<dyn KeyValueStore>) {
    let config = config("app-rotation-then-logout");
    let prefix = config.key_prefix.clone();
    let name = config.cookie_name.clone();
    let (client, gate, cookie) = logged_in(&store, &config, "ivy").await;
    let other = untracked(store.clone(), config.clone()).await;

    // The browser's tab logs out slowly; a second app server (same store,
    // same key) logs the same cookie in meanwhile.
    let logout = async { client.post("/slow-logout").dispatch().await.status() };
    let login = async {
        gate.loaded.notified().await;
        let res = other
            .post("/login/ivy")
            .cookie(cookie.clone())
            .dispatch()
            .await;
        let status = res.status();
        let rotated = set_cookie_of(&res, &name);
        drop(res);
        gate.release.notify_one();
        (status, rotated)
    };
    let (logout, (login, rotated)) = within(async { rocket::tokio::join!(logout, login) }).await;
    assert_eq!((logout, login), (Status::Ok, Status::Ok));
    let rotated = rotated.expect("the login issued a new cookie");
    assert!(
        live_sessions(&*store, &prefix).await.is_empty(),
        "the rotated session outlived the logout"
    );
    let res = other.get("/whoami").cookie(rotated).dispatch().await;
    assert_eq!(res.status(), Status::NotFound);
}

/// A slow request whose session was rotated by a concurrent login does not
/// remove the browser's cookie (it would log the user out): it sends no
/// session cookie at all, and since its changes cannot be kept (they are
/// not carried over to the new id) it answers 409, not a success.
pub async fn a_stale_save_keeps_the_cookie_of_a_concurrent_login(store: Arc<dyn KeyValueStore>) {
    let config = config("app-stale-save");
    let name = config.cookie_name.clone();
    let (client, gate, _) = logged_in(&store, &config, "ivy").await;

    let slow = async {
        let res = client.post("/slow/late").dispatch().await;
        (res.status(), set_cookie_of(&res, &name))
    };
    let login = async {
        gate.loaded.notified().await;
        let status = write(&client, "/login/ivy").await;
        gate.release.notify_one();
        status
    };
    let ((slow, slow_cookie), login) = within(async { rocket::tokio::join!(slow, login) }).await;
    assert_eq!((slow, login), (Status::Conflict, Status::Ok));
    assert_eq!(slow_cookie, None, "the stale save touched the cookie");
    assert_eq!(read(&client, "/whoami").await, (Status::Ok, "ivy".into()));
    assert_eq!(read(&client, "/get/late").await.0, Status::NotFound);
}

/// Two logins of one session race (two tabs): the one that saves first
/// wins; the other finds the session moved to the winner's id and answers
/// 409 with no cookie and no record of its own (it never answers 200 with
/// its user dropped, and never writes into the winner's session).
pub async fn racing_logins_of_one_session_one_wins(store: Arc<dyn KeyValueStore>) {
    let config = config("app-racing-logins");
    let prefix = config.key_prefix.clone();
    let name = config.cookie_name.clone();
    let (client, gate, _) = logged_in(&store, &config, "ivy").await;

    let slow = async {
        let res = client.post("/slow-login/mallory").dispatch().await;
        (res.status(), set_cookie_of(&res, &name))
    };
    let login = async {
        gate.loaded.notified().await;
        let status = write(&client, "/login/zoe").await;
        gate.release.notify_one();
        status
    };
    let ((slow, slow_cookie), login) = within(async { rocket::tokio::join!(slow, login) }).await;
    assert_eq!((slow, login), (Status::Conflict, Status::Ok));
    assert_eq!(slow_cookie, None, "the losing login issued a cookie");
    assert_eq!(read(&client, "/whoami").await, (Status::Ok, "zoe".into()));
    assert_eq!(
        live_sessions(&*store, &prefix).await.len(),
        1,
        "the losing login left a record"
    );
}

/// A login that ends in a 5xx, or in a catcher, leaves the session exactly
/// as it was: the old cookie works with the old data, no new record.
pub async fn a_failed_rotation_changes_nothing(store: Arc<dyn KeyValueStore>) {
    let config = config("app-failed-rotation");
    let prefix = config.key_prefix.clone();
    let name = config.cookie_name.clone();
    let client = client(store.clone(), config).await;
    assert_eq!(write(&client, "/set/cart/3").await, Status::Ok);
    let before = live_sessions(&*store, &prefix).await;
    let cookie = cookie_of(&client, &name).expect("a session cookie");

    for (uri, status) in [
        ("/login-fails/eve", Status::InternalServerError),
        ("/login-denied/eve", Status::Unauthorized),
    ] {
        let res = client.post(uri).dispatch().await;
        assert_eq!(res.status(), status);
        assert_eq!(set_cookie_of(&res, &name), None, "{uri} issued a cookie");
        drop(res);
        assert_eq!(
            cookie_of(&client, &name).map(|c| c.value().to_owned()),
            Some(cookie.value().to_owned())
        );
        assert_eq!(read(&client, "/whoami").await.0, Status::NotFound, "{uri}");
        assert_eq!(read(&client, "/get/cart").await, (Status::Ok, "3".into()));
        assert_eq!(stored_keys(&*store, &prefix).await, before, "{uri} wrote");
    }
}

/// 100 concurrent requests, each setting its own key on one session, lose
/// no update.
pub async fn hundred_concurrent_writers(store: Arc<dyn KeyValueStore>) {
    let writers = 100;
    // Enough compare-and-swap rounds for slow test servers: what is checked
    // is that no update is lost, not how fast the saves converge.
    let config = SessionConfig {
        save_attempts: 200,
        save_timeout: 600,
        ..config("app-hundred")
    };
    let client = Client::tracked(app_with(store, config, writers, Arc::default()))
        .await
        .expect("launch");
    assert_eq!(write(&client, "/set/init/1").await, Status::Ok);

    let requests = (0..writers).map(|n| {
        let client = &client;
        async move { write(client, &format!("/together/k{n:03}")).await }
    });
    let statuses = futures_util::future::join_all(requests).await;
    assert!(statuses.iter().all(|s| *s == Status::Ok), "{statuses:?}");
    let (status, keys) = read(&client, "/keys").await;
    assert_eq!(status, Status::Ok);
    let kept = keys.split(',').filter(|k| k.starts_with('k')).count();
    assert_eq!(kept, writers, "updates were lost: {keys}");
}

/// With an idle timeout, a session kept alive by reads alone (each read
/// refreshes its activity at most once per `touch_after`) is not swept as
/// idle: `touch` moves what the sweep reads as activity. On a clock the
/// case moves ([`ManualClock`](crate::clock::ManualClock)), with the
/// store's last-modified times taken from it too
/// ([`InterferingStore::stamped_by`](crate::conformance::interference::InterferingStore::stamped_by)).
pub async fn sessions_kept_alive_by_reads_survive_the_sweep(store: Arc<dyn KeyValueStore>) {
    use crate::clock::ManualClock;
    use crate::conformance::interference::InterferingStore;
    use crate::SessionManager;

    let config = SessionConfig {
        idle_timeout: Some(400),
        touch_after: 100,
        ..config("app-idle-touch")
    };
    let prefix = config.key_prefix.clone();
    let clock = ManualClock::new();
    let stamped = InterferingStore::new(store.clone(), 0)
        .yields(0)
        .stamped_by(clock.clone());
    let rocket = clocked_app(Arc::new(stamped), config, clock.clone());
    let client = Client::tracked(rocket).await.expect("launch");
    assert_eq!(write(&client, "/login/erin").await, Status::Ok);
    for _ in 0..2 {
        clock.advance(Duration::from_secs(200));
        assert_eq!(read(&client, "/whoami").await, (Status::Ok, "erin".into()));
    }
    // 500 seconds after the login, 100 after the last read: idle by the
    // login's time, active by the reads'.
    clock.advance(Duration::from_secs(100));
    let manager = client
        .rocket()
        .state::<SessionManager>()
        .expect("the fairing manages a SessionManager");
    let report = manager.cleanup().await.expect("sweep");
    assert_eq!(report.deleted, 0, "{report:?}");
    assert_eq!(live_sessions(&*store, &prefix).await.len(), 1);
    assert_eq!(read(&client, "/whoami").await, (Status::Ok, "erin".into()));
}

/// `cleanup_sessions` deletes the sessions whose lifetime has passed (as a
/// store without TTL holds them), keeps live ones and keys it does not own.
pub async fn sweep_deletes_only_expired_sessions(store: Arc<dyn KeyValueStore>) {
    let config = SessionConfig {
        lifetime: 3600,
        ..config("app-sweep")
    };
    let prefix = config.key_prefix.clone();
    let client = client(store.clone(), config.clone()).await;
    assert_eq!(write(&client, "/login/dave").await, Status::Ok);
    let live = stored_keys(&*store, &prefix).await;
    assert_eq!(live.len(), 1);

    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
    let two_hours_ago = SystemTime::now() - Duration::from_secs(7200);
    let mut expired = HashSet::new();
    for _ in 0..25 {
        let id = SessionId::generate(&mut rng, config.key_bits, two_hours_ago);
        let key = format!("{prefix}{id}");
        let created = store.create(&key, b"old", None).await.expect("create");
        assert!(matches!(created, crate::CreateOutcome::Created(_)));
        expired.insert(key);
    }
    let other_app = unique_prefix("app-sweep-other");
    let foreign = format!(
        "{other_app}{}",
        SessionId::generate(&mut rng, 64, two_hours_ago)
    );
    let _ = store
        .create(&foreign, b"theirs", None)
        .await
        .expect("create");

    let report = cleanup_sessions(&*store, &config).await.expect("sweep");
    assert_eq!(report.deleted, 25, "{report:?}");
    assert_eq!(stored_keys(&*store, &prefix).await, live);
    assert_eq!(read(&client, "/whoami").await, (Status::Ok, "dave".into()));
    assert!(
        store.get(&foreign).await.expect("get").is_some(),
        "the sweep deleted another prefix's key"
    );
    store.delete(&foreign).await.expect("delete");
}
