//! What owners cost: requests that do not change the owner pay nothing,
//! `set_owner` costs one write at login, and listing or revoking an owner's
//! sessions reads that owner's sessions only, never the store. (The
//! behaviour itself is in the app conformance suite, run on every store.)

mod common;

use std::sync::atomic::Ordering::SeqCst;

use common::*;
use rocket::http::Status;
use rocket::local::asynchronous::Client;
use rocket_kvsession::conformance::app::owner_routes;
use rocket_kvsession::{KvSession, SessionConfig, SessionManager};

async fn app(store: &TestStore) -> Client {
    let rocket = rocket::custom(figment())
        .attach(KvSession::new(store.clone()).config(SessionConfig::default()))
        .mount("/", routes())
        .mount("/", owner_routes());
    Client::tracked(rocket).await.expect("launch")
}

/// (gets, writes, lists) since `before`.
fn ops(store: &TestStore, before: (u64, u64, u64)) -> (u64, u64, u64) {
    let now = counts(store);
    (now.0 - before.0, now.1 - before.1, now.2 - before.2)
}

fn counts(store: &TestStore) -> (u64, u64, u64) {
    (
        store.counters.gets.load(SeqCst),
        store.counters.writes(),
        store.counters.lists.load(SeqCst),
    )
}

#[rocket::async_test]
async fn owners_cost_nothing_on_ordinary_requests() {
    let store = TestStore::new();
    let plain = app(&store).await;
    let owned = app(&store).await;

    let before = counts(&store);
    assert_eq!(
        plain.post("/login/bob").dispatch().await.status(),
        Status::Ok
    );
    let (_, login_writes, _) = ops(&store, before);
    assert_eq!(login_writes, 1, "a login without an owner: one create");

    let before = counts(&store);
    assert_eq!(
        owned.post("/owner-login/alice").dispatch().await.status(),
        Status::Ok
    );
    let (gets, writes, lists) = ops(&store, before);
    assert_eq!(writes, 2, "set_owner costs one extra write at login");
    assert_eq!((gets, lists), (1, 0), "and one read of the owner's index");

    // A read of an owned session: one get, nothing else.
    let before = counts(&store);
    assert_eq!(owned.get("/whoami").dispatch().await.status(), Status::Ok);
    assert_eq!(ops(&store, before), (1, 0, 0));
    // A write of an owned session: one get, one update, and one read of
    // the owner's index beside the update (a session missing from it adds
    // itself back).
    let before = counts(&store);
    assert_eq!(
        owned.post("/set/theme/dark").dispatch().await.status(),
        Status::Ok
    );
    assert_eq!(ops(&store, before), (2, 1, 0));
    // Logging in again as the same owner rotates the id: the new id goes
    // into the index, then the usual create and marker.
    let before = counts(&store);
    let res = owned.post("/owner-login/alice").dispatch().await;
    assert_eq!(res.status(), Status::Ok);
    drop(res);
    let (_, writes, _) = ops(&store, before);
    assert_eq!(
        writes, 3,
        "a rotation of an owned session: index, create, marker"
    );
}

#[rocket::async_test]
async fn listing_and_revoking_read_only_the_owners_sessions() {
    let store = TestStore::new();
    let crowd = app(&store).await;
    for n in 0..40 {
        let client = app(&store).await;
        let res = client
            .post(format!("/owner-login/user{n}"))
            .dispatch()
            .await;
        assert_eq!(res.status(), Status::Ok);
    }
    assert_eq!(
        crowd.post("/set/cart/1").dispatch().await.status(),
        Status::Ok
    );
    let alice = [app(&store).await, app(&store).await];
    for client in &alice {
        let res = client.post("/owner-login/alice").dispatch().await;
        assert_eq!(res.status(), Status::Ok);
    }
    let manager = alice[0]
        .rocket()
        .state::<SessionManager>()
        .expect("the fairing manages a SessionManager");

    let before = counts(&store);
    let listed = manager.sessions_of("alice").await.expect("listed");
    assert_eq!(listed.len(), 2);
    assert_eq!(
        ops(&store, before),
        (3, 0, 0),
        "the index and her two sessions"
    );

    let before = counts(&store);
    assert_eq!(manager.revoke_owner("alice").await.expect("revoked"), 2);
    let (gets, writes, lists) = ops(&store, before);
    assert_eq!(lists, 0, "no scan");
    assert!(gets <= 5, "{gets} reads");
    assert!(writes <= 5, "{writes} writes");
    for client in &alice {
        assert_eq!(
            client.get("/whoami").dispatch().await.status(),
            Status::NotFound
        );
    }
    assert!(manager
        .sessions_of("alice")
        .await
        .expect("listed")
        .is_empty());
    assert_eq!(manager.sessions_of("user7").await.expect("listed").len(), 1);
}

/// `TestSession::owner` starts a session as a login with `set_owner` would.
#[rocket::async_test]
async fn a_test_session_can_have_an_owner() {
    use rocket_kvsession::testing::TestSession;
    let store = TestStore::new();
    let client = app(&store).await;
    let cookie = TestSession::new()
        .insert("user", "alice")
        .unwrap()
        .owner("alice")
        .create(&client)
        .await
        .expect("a stored session");
    let res = client.get("/owner").cookie(cookie.clone()).dispatch().await;
    assert_eq!(res.into_string().await.as_deref(), Some("alice"));
    let res = client
        .get("/handle")
        .cookie(cookie.clone())
        .dispatch()
        .await;
    let handle = res.into_string().await.expect("a handle");
    let manager = client.rocket().state::<SessionManager>().unwrap();
    let listed = manager.sessions_of("alice").await.expect("listed");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].handle, handle);
    assert!(manager.revoke("alice", &handle).await.expect("revoked"));
    let res = client.get("/owner").cookie(cookie).dispatch().await;
    assert_eq!(res.status(), Status::NotFound);
}

/// An owner has at most 1,000 live sessions: a login beyond that first drops
/// what has ended from the index, then ends the owner's oldest sessions.
#[rocket::async_test]
async fn an_owner_keeps_at_most_a_thousand_sessions() {
    use rocket_kvsession::testing::TestSession;
    let store = TestStore::new();
    let client = app(&store).await;
    let start = || TestSession::new().owner("mallory").create(&client);
    let first = start().await.expect("stored");
    let second = start().await.expect("stored");
    for _ in 2..1000 {
        start().await.expect("stored");
    }
    let manager = client.rocket().state::<SessionManager>().unwrap();
    assert_eq!(manager.sessions_of("mallory").await.unwrap().len(), 1000);

    // A session that ended (`clear()` ends it and takes it out of the
    // index) makes room.
    let res = client
        .post("/clear")
        .cookie(second.clone())
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::Ok);
    let newest = start().await.expect("stored");
    let owner_of = |cookie: rocket::http::Cookie<'static>| {
        let client = &client;
        async move {
            client
                .get("/owner")
                .cookie(cookie)
                .dispatch()
                .await
                .status()
        }
    };
    assert_eq!(
        owner_of(first.clone()).await,
        Status::Ok,
        "nothing evicted yet"
    );

    // Full again: the oldest session ends.
    let newer = start().await.expect("stored");
    assert_eq!(owner_of(first).await, Status::NotFound, "the oldest ended");
    assert_eq!(owner_of(newest).await, Status::Ok);
    assert_eq!(owner_of(newer).await, Status::Ok);
    assert_eq!(manager.sessions_of("mallory").await.unwrap().len(), 1000);
}

/// Fifty logins of one owner at once, on a store with a round trip of a
/// millisecond: every session is in the owner's index (its compare-and-swap
/// retries, with backoff, until each login's entry is in). The retry budget
/// is raised so that what is checked is that no entry is lost, not how fast
/// fifty writers of one index converge on a loaded machine.
#[rocket::async_test]
async fn concurrent_logins_of_one_owner_are_all_listed() {
    let store = TestStore::new().with_latency(std::time::Duration::from_millis(1));
    let config = rocket_kvsession::SessionConfig {
        save_attempts: 200,
        save_timeout: 600,
        ..Default::default()
    };
    // Untracked: each request is a new browser, with no cookie.
    let rocket = rocket::custom(figment())
        .attach(KvSession::new(store.clone()).config(config))
        .mount("/", routes())
        .mount("/", owner_routes());
    let client = Client::untracked(rocket).await.expect("launch");
    let logins = (0..50).map(|_| {
        let client = &client;
        async move { client.post("/owner-login/alice").dispatch().await.status() }
    });
    let statuses = futures::future::join_all(logins).await;
    assert!(statuses.iter().all(|s| *s == Status::Ok), "{statuses:?}");
    let manager = client.rocket().state::<SessionManager>().unwrap();
    assert_eq!(manager.sessions_of("alice").await.unwrap().len(), 50);
    assert_eq!(manager.revoke_owner("alice").await.unwrap(), 50);
}
