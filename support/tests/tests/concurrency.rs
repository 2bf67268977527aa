//! Concurrent requests on one session lose no update; logout wins over a
//! slow request; idle timeout and cheap touches.

mod common;

use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use rocket::http::Status;
use rocket::local::asynchronous::Client;
use rocket::tokio::sync::Barrier;
use rocket::{post, routes, State};
use rocket_kvsession::conformance::app::{racing_routes, Gate};
use rocket_kvsession::conformance::ManualClock;
use rocket_kvsession::{KvSession, Session, SessionConfig};

/// Removes a key, then waits until the test releases it.
#[post("/slow-remove/<key>")]
async fn slow_remove(session: Session<'_>, gate: &State<Arc<Gate>>, key: &str) -> &'static str {
    session.remove(key);
    gate.loaded.notify_one();
    gate.release.notified().await;
    "slow remove done"
}

async fn app(store: TestStore, config: SessionConfig, writers: usize) -> (Client, Arc<Gate>) {
    let gate = Arc::new(Gate::default());
    let rocket = rocket::custom(figment())
        .attach(KvSession::new(store).config(config))
        .manage(Arc::new(Barrier::new(writers)))
        .manage(gate.clone())
        .mount("/", routes())
        .mount("/", racing_routes())
        .mount("/", routes![slow_remove]);
    (Client::tracked(rocket).await.unwrap(), gate)
}

/// Runs 100 concurrent requests that each set their own key; returns how
/// many keys survived.
async fn hundred_writers(store: TestStore) -> usize {
    let (client, _) = app(store, SessionConfig::default(), 100).await;
    client.post("/set/init/1").dispatch().await;
    let requests = (0..100).map(|n| {
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
    assert!(statuses.iter().all(|s| *s == Status::Ok), "{statuses:?}");
    let keys = client
        .get("/keys")
        .dispatch()
        .await
        .into_string()
        .await
        .unwrap();
    keys.split(',').filter(|k| k.starts_with('k')).count()
}

#[rocket::async_test]
async fn hundred_concurrent_requests_lose_no_update() {
    // Every request loads the session before any saves (the barrier), so
    // each save but the first starts from a stale version. In one process
    // the saves take turns, each merged onto the record the one before
    // wrote: one write each, no conflict.
    let store = TestStore::new();
    assert_eq!(hundred_writers(store.clone()).await, 100);
    assert_eq!(store.counters.updates.load(SeqCst), 100);
}

#[rocket::async_test]
async fn without_version_checks_the_same_requests_lose_updates() {
    // The detector works: with compare-and-swap switched off, last writer wins.
    let survivors = hundred_writers(TestStore::new().without_versioning()).await;
    assert!(
        survivors < 100,
        "no update lost without version checks ({survivors})"
    );
}

#[rocket::async_test]
async fn logout_wins_over_a_slow_request() {
    let store = TestStore::new();
    let (client, gate) = app(store.clone(), SessionConfig::default(), 1).await;
    client.post("/login/ivy").dispatch().await;
    assert_eq!(store.inner.len(), 1);

    let slow = async { client.post("/slow/late").dispatch().await };
    let logout = async {
        gate.loaded.notified().await;
        let res = client.post("/logout").dispatch().await;
        assert_eq!(res.status(), Status::Ok);
        gate.release.notify_one();
    };
    let (slow, ()) = futures::join!(slow, logout);
    // The slow request's save found the record gone and did not bring it
    // back. It leaves the browser's cookie alone: a removal could delete the
    // cookie a concurrent login just issued, and the dead id opens nothing.
    assert_eq!(slow.status(), Status::Ok);
    let cookies = set_cookies(&slow, "session");
    assert!(cookies.is_empty(), "{cookies:?}");
    assert!(
        store.inner.is_empty(),
        "a destroyed session was resurrected"
    );
    assert_eq!(
        client.get("/whoami").dispatch().await.status(),
        Status::NotFound
    );
}

#[rocket::async_test]
async fn clear_wins_over_concurrent_changes() {
    let store = TestStore::new();
    let (client, gate) = app(store.clone(), SessionConfig::default(), 1).await;
    client.post("/set/a/1").dispatch().await;
    client.post("/set/b/2").dispatch().await;
    // A slow request adds `late`; meanwhile another clears and sets `c`.
    let slow = async { client.post("/slow/late").dispatch().await };
    let other = async {
        gate.loaded.notified().await;
        client.post("/clear").dispatch().await;
        gate.release.notify_one();
    };
    futures::join!(slow, other);
    // clear() deleted the (then empty) session; the slow save did not resurrect it.
    assert!(store.inner.is_empty());
}

#[rocket::async_test]
async fn concurrent_changes_merge_key_by_key() {
    let store = TestStore::new();
    let (client, gate) = app(store.clone(), SessionConfig::default(), 1).await;
    client.post("/set/a/1").dispatch().await;
    let slow = async { client.post("/slow/late").dispatch().await };
    let other = async {
        gate.loaded.notified().await;
        client.post("/set/b/2").dispatch().await;
        client.post("/remove/a").dispatch().await;
        gate.release.notify_one();
    };
    futures::join!(slow, other);
    let keys = client
        .get("/keys")
        .dispatch()
        .await
        .into_string()
        .await
        .unwrap();
    assert_eq!(
        keys, "b,late",
        "both requests' changes are kept, the removal too"
    );
}

#[rocket::async_test]
async fn removing_the_last_key_keeps_a_concurrent_addition() {
    let store = TestStore::new();
    let (client, gate) = app(store.clone(), SessionConfig::default(), 1).await;
    client.post("/set/a/1").dispatch().await;
    // A slow request removes `a`, the only key it saw; meanwhile another adds
    // `b`. The slow save merges instead of deleting the whole session.
    let slow = async { client.post("/slow-remove/a").dispatch().await };
    let other = async {
        gate.loaded.notified().await;
        client.post("/set/b/2").dispatch().await;
        gate.release.notify_one();
    };
    let (slow, ()) = futures::join!(slow, other);
    assert_eq!(slow.status(), Status::Ok);
    let keys = client
        .get("/keys")
        .dispatch()
        .await
        .into_string()
        .await
        .unwrap();
    assert_eq!(keys, "b");
    assert_eq!(store.inner.len(), 1);
}

#[rocket::async_test]
async fn persistent_conflicts_fail_loudly() {
    // One attempt only, and a concurrent writer: the save must not report success.
    let store = TestStore::new();
    let config = SessionConfig {
        save_attempts: 1,
        ..SessionConfig::default()
    };
    let (client, gate) = app(store.clone(), config.clone(), 1).await;
    // The concurrent writer is another app on the store (another process):
    // saves in one app take turns and do not conflict.
    let (other_app, _) = app(store.clone(), config, 1).await;
    client.post("/set/a/1").dispatch().await;
    let cookie = client.cookies().get("session").unwrap().clone();
    let slow = async { client.post("/slow/late").dispatch().await };
    let other = async {
        gate.loaded.notified().await;
        other_app.post("/set/b/2").cookie(cookie).dispatch().await;
        gate.release.notify_one();
    };
    let (slow, ()) = futures::join!(slow, other);
    assert_eq!(slow.status(), Status::ServiceUnavailable);
    let keys = client
        .get("/keys")
        .dispatch()
        .await
        .into_string()
        .await
        .unwrap();
    assert_eq!(keys, "a,b");
}

fn idle_config() -> SessionConfig {
    SessionConfig {
        idle_timeout: Some(300),
        touch_after: 60,
        ..SessionConfig::default()
    }
}

/// A tracked client of the test app whose engine reads `clock`.
async fn clocked_client(store: TestStore, config: SessionConfig, clock: &ManualClock) -> Client {
    let rocket = rocket::custom(figment())
        .attach(KvSession::new(store).config(config).clock(clock.clone()))
        .mount("/", routes());
    Client::tracked(rocket).await.expect("launch")
}

/// Reads keep a session alive past its idle timeout, then it ends once
/// idle; returns the store's (touches, updates) while it was kept alive
/// (ending it on the last load writes too).
async fn idle_timeout_ends_idle_sessions_only(store: TestStore) -> (u64, u64) {
    let clock = ManualClock::new();
    let client = clocked_client(store.clone(), idle_config(), &clock).await;
    client.post("/login/jo").dispatch().await;
    // Active: a read every 100 s (by the app's clock) keeps it alive past
    // the 300 s idle timeout.
    for _ in 0..4 {
        clock.advance(Duration::from_secs(100));
        let res = client.get("/whoami").dispatch().await;
        assert_eq!(res.status(), Status::Ok, "an active session timed out");
    }
    let kept_alive = (
        store.counters.touches.load(SeqCst),
        store.counters.updates.load(SeqCst),
    );
    // Idle for longer than the timeout (plus the second of rounding): gone.
    clock.advance(Duration::from_secs(302));
    assert_eq!(
        client.get("/whoami").dispatch().await.status(),
        Status::NotFound
    );
    kept_alive
}

#[rocket::async_test]
async fn idle_timeout_on_a_ttl_store_touches_only_the_expiry() {
    let (touches, updates) = idle_timeout_ends_idle_sessions_only(TestStore::new()).await;
    assert!(touches >= 2, "reads did not refresh activity");
    assert_eq!(updates, 0, "a touch rewrote the data");
}

#[rocket::async_test]
async fn idle_timeout_on_a_store_without_ttl_rewrites_activity() {
    let store = TestStore::new().without_ttl();
    let (touches, updates) = idle_timeout_ends_idle_sessions_only(store).await;
    assert_eq!(touches, 0);
    assert!(updates >= 3, "{updates}");
}

#[rocket::async_test]
async fn touches_happen_at_most_once_per_touch_after() {
    let store = TestStore::new();
    let config = SessionConfig {
        idle_timeout: Some(600),
        touch_after: 60,
        ..SessionConfig::default()
    };
    let clock = ManualClock::new();
    let client = clocked_client(store.clone(), config, &clock).await;
    client.post("/login/kim").dispatch().await;
    for _ in 0..5 {
        client.get("/whoami").dispatch().await;
    }
    // Written less than `touch_after` ago (by the app's clock): no touch yet.
    assert_eq!(store.counters.touches.load(SeqCst), 0);
    clock.advance(Duration::from_secs(61));
    for _ in 0..5 {
        client.get("/whoami").dispatch().await;
    }
    assert_eq!(
        store.counters.touches.load(SeqCst),
        1,
        "one touch per touch_after"
    );
    // The touch moved the store's expiry forward.
    let record = {
        use futures::TryStreamExt;
        use rocket_kvsession::KeyValueStore;
        let key = store.inner.list("").try_collect::<Vec<_>>().await.unwrap()[0]
            .key
            .clone();
        store.inner.get(&key).await.unwrap().unwrap()
    };
    let left = record
        .expires_at
        .unwrap()
        .duration_since(std::time::SystemTime::now())
        .unwrap();
    assert!(left > Duration::from_secs(590), "{left:?}");
}
