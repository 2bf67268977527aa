//! Secure cookie defaults, removal cookies that match the session cookie,
//! `__Host-` rules, ids of another layout, and bounded save retries.
//!
//! The logout and rotation races are in the app-level conformance suite,
//! which every store runs (`rocket_kvsession::conformance::app`).

mod common;

use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use rocket::http::{Cookie, Status};
use rocket::local::asynchronous::Client;
use rocket::tokio::sync::Barrier;
use rocket_kvsession::conformance::app::{racing_routes, Gate};
use rocket_kvsession::{KvSession, SessionConfig};

/// An app in Rocket's `profile` ("debug" or "release").
async fn client_in(profile: &str, store: TestStore, config: SessionConfig) -> Client {
    let figment = figment().select(profile);
    let rocket = rocket::custom(figment)
        .attach(KvSession::new(store).config(config))
        .mount("/", routes());
    Client::tracked(rocket).await.expect("launch")
}

fn has_attribute(set_cookie: &str, attribute: &str) -> bool {
    set_cookie
        .split(';')
        .any(|part| part.trim().eq_ignore_ascii_case(attribute))
}

#[rocket::async_test]
async fn unset_cookie_secure_means_secure_outside_the_debug_profile() {
    for (profile, secure) in [("release", true), ("debug", false), ("staging", true)] {
        let client = client_in(profile, TestStore::new(), SessionConfig::default()).await;
        let res = client.post("/set/a/1").dispatch().await;
        let cookies = set_cookies(&res, "session");
        assert_eq!(cookies.len(), 1, "{profile}: {cookies:?}");
        assert_eq!(
            has_attribute(&cookies[0], "Secure"),
            secure,
            "{profile}: {cookies:?}"
        );
    }
}

#[rocket::async_test]
async fn an_explicit_cookie_secure_wins_in_every_profile() {
    for profile in ["release", "debug"] {
        for secure in [true, false] {
            let config = SessionConfig {
                cookie_secure: Some(secure),
                ..SessionConfig::default()
            };
            let client = client_in(profile, TestStore::new(), config).await;
            let res = client.post("/set/a/1").dispatch().await;
            let cookies = set_cookies(&res, "session");
            assert_eq!(
                has_attribute(&cookies[0], "Secure"),
                secure,
                "{profile}, {secure}: {cookies:?}"
            );
        }
    }
}

#[rocket::async_test]
async fn the_removal_cookie_carries_the_session_cookies_attributes() {
    let config = SessionConfig {
        cookie_name: "__Host-session".into(),
        cookie_same_site: rocket_kvsession::SameSitePolicy::Strict,
        ..SessionConfig::default()
    };
    // In the debug profile too: a `__Host-` cookie is always Secure.
    let client = client_in("debug", TestStore::new(), config).await;
    let res = client.post("/login/ann").dispatch().await;
    let issued = set_cookies(&res, "__Host-session");
    assert_eq!(issued.len(), 1, "{issued:?}");
    drop(res);
    let res = client.post("/logout").dispatch().await;
    let removal = set_cookies(&res, "__Host-session");
    assert_eq!(removal.len(), 1, "{removal:?}");
    for cookie in [&issued[0], &removal[0]] {
        for attribute in ["Secure", "HttpOnly", "Path=/", "SameSite=Strict"] {
            assert!(has_attribute(cookie, attribute), "{attribute}: {cookie}");
        }
    }
    assert!(removal[0].contains("Max-Age=0"), "{}", removal[0]);
}

#[rocket::async_test]
async fn the_emptied_sessions_removal_header_matches_too() {
    let config = SessionConfig {
        cookie_path: "/".into(),
        cookie_domain: Some("example.com".into()),
        ..SessionConfig::default()
    };
    let client = client_in("release", TestStore::new(), config).await;
    client.post("/set/a/1").dispatch().await;
    let res = client.post("/clear").dispatch().await;
    let removal = set_cookies(&res, "session");
    assert_eq!(removal.len(), 1, "{removal:?}");
    for attribute in ["Secure", "Domain=example.com", "Path=/", "SameSite=Lax"] {
        assert!(
            has_attribute(&removal[0], attribute),
            "{attribute}: {removal:?}"
        );
    }
}

#[rocket::async_test]
async fn host_prefixed_cookies_that_break_the_rules_refuse_launch() {
    for config in [
        SessionConfig {
            cookie_name: "__Host-session".into(),
            cookie_domain: Some("example.com".into()),
            ..SessionConfig::default()
        },
        SessionConfig {
            cookie_name: "__Host-session".into(),
            cookie_path: "/app".into(),
            ..SessionConfig::default()
        },
        SessionConfig {
            cookie_name: "__Host-session".into(),
            cookie_secure: Some(false),
            ..SessionConfig::default()
        },
    ] {
        let rocket = rocket::custom(figment())
            .attach(KvSession::new(TestStore::new()).config(config.clone()))
            .mount("/", routes());
        assert!(refused(Client::untracked(rocket).await), "{config:?}");
    }
}

#[rocket::async_test]
async fn a_cookie_with_an_id_of_another_key_size_is_not_adopted() {
    let store = TestStore::new();
    let client = client(store.clone(), SessionConfig::default()).await;
    client.post("/login/ann").dispatch().await;
    let cookie = client
        .cookies()
        .get("session")
        .expect("a session cookie")
        .value()
        .to_owned();
    let wider = Client::untracked(app_with(
        store,
        SessionConfig {
            key_bits: 128,
            ..SessionConfig::default()
        },
    ))
    .await
    .expect("launch");
    let res = wider
        .get("/whoami")
        .cookie(Cookie::new("session", cookie))
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::NotFound);
}

/// 200 concurrent requests on one session over a store that takes 2 ms per
/// operation: every request keeps its key or fails cleanly with 503, and no
/// save spends more than 3 store calls per attempt.
#[rocket::async_test]
async fn save_retries_are_bounded_in_calls_and_time() {
    let writers = 200;
    let store = TestStore::new().with_latency(Duration::from_millis(2));
    let config = SessionConfig {
        save_attempts: 10,
        save_timeout: 2,
        ..SessionConfig::default()
    };
    let rocket = rocket::custom(figment())
        .attach(KvSession::new(store.clone()).config(config))
        .manage(Arc::new(Barrier::new(writers)))
        .manage(Arc::new(Gate::default()))
        .mount("/", routes())
        .mount("/", racing_routes());
    let client = Client::tracked(rocket).await.expect("launch");
    client.post("/set/init/1").dispatch().await;
    let before = store.counters.all();

    let requests = (0..writers).map(|n| {
        let client = &client;
        async move {
            client
                .post(format!("/together/k{n:03}"))
                .dispatch()
                .await
                .status()
        }
    });
    let statuses = futures::future::join_all(requests).await;
    let updates = store.counters.updates.load(SeqCst);
    let calls = store.counters.all() - before;
    let ok = statuses.iter().filter(|s| **s == Status::Ok).count();
    let unavailable = statuses
        .iter()
        .filter(|s| **s == Status::ServiceUnavailable)
        .count();
    assert_eq!(ok + unavailable, writers, "{statuses:?}");

    // Every 200 is kept; every 503 wrote nothing of its own.
    let keys = client
        .get("/keys")
        .dispatch()
        .await
        .into_string()
        .await
        .unwrap();
    let kept = keys.split(',').filter(|k| k.starts_with('k')).count();
    assert_eq!(kept, ok, "a request answered 200 but its key is gone");

    // Store calls: one load per request, then per attempt one update and
    // at most one re-read; never more attempts than `save_attempts`.
    assert!(
        calls <= writers as u64 + 2 * updates,
        "{calls} store calls for {updates} attempts"
    );
    assert!(
        calls <= 3 * updates,
        "{calls} store calls for {updates} attempts"
    );
    assert!(
        updates <= writers as u64 * 10,
        "{updates} attempts for {writers} writers"
    );
}
