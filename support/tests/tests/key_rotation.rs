//! The session cookie is sealed by the crate with a key derived from
//! Rocket's `secret_key`; `secret_key_fallbacks` rotates that key without
//! logging anyone out, and removing a fallback logs out exactly the sessions
//! still sealed with it.

mod common;

use common::*;
use rocket::http::{Cookie, Status};
use rocket::local::asynchronous::Client;
use rocket_kvsession::{KeyValueStore, KvSession, SessionConfig};

const OLD_KEY: &str = "hPRYyVRiMyxpw5sBB1XeCMN1kFsDCqKvBi2QJxBVHQk=";
const NEW_KEY: &str = "Rc1+7Q0rLQGZRo/gHFm9JqTIjZoDq0DbzcNx9ku2r1s=";

/// An app on `store` whose `secret_key` is `key`, with `fallbacks`.
async fn app(store: &TestStore, key: &str, fallbacks: &[&str]) -> Client {
    let config = SessionConfig {
        secret_key_fallbacks: fallbacks.iter().map(|k| (*k).into()).collect(),
        ..SessionConfig::default()
    };
    let rocket = rocket::custom(
        rocket::Config::figment()
            .merge(("secret_key", key))
            .merge(("log_level", "off")),
    )
    .attach(KvSession::new(store.clone()).config(config))
    .mount("/", routes());
    Client::untracked(rocket).await.expect("launch")
}

/// The session cookie a response sets, if any (exactly one is allowed).
fn sealed_cookie(res: &rocket::local::asynchronous::LocalResponse<'_>) -> Option<Cookie<'static>> {
    let set = set_cookies(res, "session");
    assert!(set.len() <= 1, "one Set-Cookie at most: {set:?}");
    set.first().map(|v| {
        Cookie::parse_encoded(v.clone())
            .expect("a cookie")
            .into_owned()
    })
}

async fn whoami(
    client: &Client,
    cookie: &Cookie<'static>,
) -> (Option<String>, Option<Cookie<'static>>) {
    let res = client
        .get("/whoami")
        .cookie(cookie.clone())
        .dispatch()
        .await;
    let set = sealed_cookie(&res);
    let user = match res.status() {
        Status::Ok => res.into_string().await,
        _ => None,
    };
    (user, set)
}

async fn keys(store: &TestStore) -> Vec<String> {
    use futures::TryStreamExt;
    store
        .list("")
        .map_ok(|info| info.key)
        .try_collect()
        .await
        .expect("list")
}

async fn login(client: &Client, user: &str) -> Cookie<'static> {
    let res = client.post(format!("/login/{user}")).dispatch().await;
    assert_eq!(res.status(), Status::Ok);
    sealed_cookie(&res).expect("a session cookie")
}

#[rocket::async_test]
async fn a_whole_key_rotation() {
    let store = TestStore::new();
    let before = app(&store, OLD_KEY, &[]).await;
    let alice = login(&before, "alice").await;
    let bob = login(&before, "bob").await;
    // The cookie holds no readable id.
    let key = keys(&store).await.into_iter().next().expect("a session");
    let id = key.strip_prefix("session:").expect("the default prefix");
    assert!(!alice.value().contains(id) && !bob.value().contains(id));
    assert!(alice
        .value()
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));

    // Step 1: the new key, the old one as a fallback. Old cookies open, keep
    // their session and come back sealed with the new key, in one Set-Cookie;
    // nothing is written to the store for that.
    let during = app(&store, NEW_KEY, &[OLD_KEY]).await;
    let writes = store.counters.writes();
    let (user, resealed) = whoami(&during, &alice).await;
    assert_eq!(user.as_deref(), Some("alice"));
    let resealed = resealed.expect("the cookie is re-sealed with the current key");
    assert_ne!(resealed.value(), alice.value());
    let (old_age, new_age) = (
        alice.max_age().expect("permanent"),
        resealed.max_age().expect("permanent"),
    );
    assert!(
        (old_age - new_age).whole_seconds().abs() <= 2,
        "{old_age} vs {new_age}"
    );
    assert_eq!(store.counters.writes(), writes, "re-sealing writes nothing");
    // The re-sealed cookie opens with the current key: no further Set-Cookie.
    let (user, again) = whoami(&during, &resealed).await;
    assert_eq!(user.as_deref(), Some("alice"));
    assert!(again.is_none(), "a current cookie is not re-sealed");
    // A cookie sealed with the new key does not open with the old key alone.
    assert_eq!(whoami(&before, &resealed).await.0, None);
    // New logins are sealed with the new key.
    let carol = login(&during, "carol").await;
    assert_eq!(whoami(&during, &carol).await.1, None);

    // Step 2: the fallback removed. Bob never came back while it was there:
    // his cookie, still sealed with the old key, opens nothing (he signs in
    // again). Alice's re-sealed cookie and Carol's keep working.
    let after = app(&store, NEW_KEY, &[]).await;
    let (user, fresh) = whoami(&after, &bob).await;
    assert_eq!(user, None, "a cookie of a removed key opens nothing");
    assert!(fresh.is_none(), "a read of a fresh session sets no cookie");
    assert_eq!(whoami(&after, &resealed).await.0.as_deref(), Some("alice"));
    assert_eq!(whoami(&after, &carol).await.0.as_deref(), Some("carol"));
    assert_eq!(whoami(&after, &alice).await.0, None);
}

/// A browser sending each request to the next of `servers` in turn (a load
/// balancer), keeping the newest cookie: how many of `rounds` requests
/// found the session logged out.
async fn logged_out_while_alternating(
    servers: &[&Client],
    mut cookie: Cookie<'static>,
    user: &str,
    rounds: usize,
) -> usize {
    let mut out = 0;
    for round in 0..rounds {
        let (found, set) = whoami(servers[round % servers.len()], &cookie).await;
        if found.as_deref() != Some(user) {
            out += 1;
        }
        if let Some(set) = set {
            cookie = set;
        }
    }
    out
}

/// A rolling deploy of a new `secret_key` in two phases logs no one out,
/// whatever server each request reaches: first every server gets the new key
/// as a fallback (still sealing with the old one), then every server makes it
/// current (the old one as a fallback). Done in one phase, servers still on
/// the old key alone cannot open what the new ones re-sealed.
#[rocket::async_test]
async fn a_rolling_key_rotation_in_two_phases_logs_no_one_out() {
    let store = TestStore::new();
    let old = app(&store, OLD_KEY, &[]).await;
    let phase1 = app(&store, OLD_KEY, &[NEW_KEY]).await;
    let phase2 = app(&store, NEW_KEY, &[OLD_KEY]).await;
    let alice = login(&old, "alice").await;

    // Phase 1 rolls out: old and phase-1 servers side by side.
    assert_eq!(
        logged_out_while_alternating(&[&old, &phase1], alice.clone(), "alice", 8).await,
        0
    );
    let bob = login(&phase1, "bob").await;
    assert_eq!(
        logged_out_while_alternating(&[&phase1, &old], bob.clone(), "bob", 8).await,
        0
    );
    // Phase 2 rolls out once every server is on phase 1.
    for (cookie, user) in [(&alice, "alice"), (&bob, "bob")] {
        assert_eq!(
            logged_out_while_alternating(&[&phase2, &phase1], cookie.clone(), user, 8).await,
            0,
            "{user}"
        );
    }
    let carol = login(&phase2, "carol").await;
    assert_eq!(
        logged_out_while_alternating(&[&phase1, &phase2], carol, "carol", 8).await,
        0
    );

    // In one phase (old servers beside phase-2 ones), the browser flaps.
    assert!(logged_out_while_alternating(&[&phase2, &old], alice, "alice", 8).await > 0);
}

/// A write request with an old-key cookie saves and re-seals once.
#[rocket::async_test]
async fn a_write_with_an_old_cookie_saves_and_reseals_once() {
    let store = TestStore::new();
    let before = app(&store, OLD_KEY, &[]).await;
    let alice = login(&before, "alice").await;
    let during = app(&store, NEW_KEY, &[OLD_KEY]).await;
    let res = during
        .post("/set/theme/dark")
        .cookie(alice.clone())
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::Ok);
    let resealed = sealed_cookie(&res).expect("re-sealed");
    drop(res);
    let res = during.get("/get/theme").cookie(resealed).dispatch().await;
    assert_eq!(res.into_string().await.as_deref(), Some("dark"));
}

/// Cookies of earlier versions (sealed by Rocket's private cookie jar)
/// no longer open: a fresh session, never an error.
#[rocket::async_test]
async fn cookies_sealed_by_rocket_private_jar_no_longer_open() {
    let store = TestStore::new();
    let client = app(&store, OLD_KEY, &[]).await;
    let _ = login(&client, "alice").await;
    let key = keys(&store).await.into_iter().next().expect("a session");
    let id = key.strip_prefix("session:").unwrap().to_owned();
    let res = client
        .get("/whoami")
        .private_cookie(Cookie::new("session", id.clone()))
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::NotFound, "a fresh session");
    let res = client
        .get("/whoami")
        .cookie(Cookie::new("session", id))
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::NotFound, "a bare id opens nothing");
}

/// A fallback that is not a key refuses launch; the message names the key
/// and never repeats it.
#[rocket::async_test]
async fn a_bad_fallback_refuses_launch() {
    for bad in [
        "short",
        "not base64 at all, but long enough to be something",
        "",
    ] {
        let config = SessionConfig {
            secret_key_fallbacks: vec![OLD_KEY.into(), bad.into()],
            ..SessionConfig::default()
        };
        assert!(config.validate().is_err(), "{bad:?}");
        let rocket = rocket::custom(figment())
            .attach(KvSession::new(TestStore::new()).config(config))
            .mount("/", routes());
        assert!(refused(rocket.ignite().await), "{bad:?}");
    }
    let config = SessionConfig {
        secret_key_fallbacks: vec![OLD_KEY.into()],
        ..SessionConfig::default()
    };
    let shown = format!("{config:?}");
    assert!(!shown.contains(OLD_KEY), "{shown}");
}
