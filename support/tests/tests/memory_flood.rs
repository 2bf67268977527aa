//! `MemoryStore` under a flood of requests that each create a session and
//! never come back: sessions that do come back stay, the store stays within
//! its capacity, and owner indexes keep naming the sessions that stay.

use std::sync::Arc;

use rocket::http::{Cookie, Status};
use rocket::local::asynchronous::Client;
use rocket_kvsession::conformance::app;
use rocket_kvsession::{KeyValueStore, MemoryStore};

/// An untracked client of the conformance app with the owner routes.
async fn client(store: &MemoryStore, case: &str) -> Client {
    let store: Arc<dyn KeyValueStore> = Arc::new(store.clone());
    let rocket = app::app(store, app::config(case)).mount("/", app::owner_routes());
    Client::untracked(rocket)
        .await
        .expect("the conformance app launches")
}

/// Logs in as `user` with an owner; the session cookie.
async fn login(client: &Client, user: &str) -> Cookie<'static> {
    let res = client.post(format!("/owner-login/{user}")).dispatch().await;
    assert_eq!(res.status(), Status::Ok);
    res.cookies()
        .get("session")
        .expect("a session cookie")
        .clone()
        .into_owned()
}

/// A request without a cookie that creates a session.
async fn cookieless_write(client: &Client) {
    let res = client.post("/set/a/1").dispatch().await;
    assert_eq!(res.status(), Status::Ok);
    assert!(res.cookies().get("session").is_some(), "a new session");
}

async fn whoami(client: &Client, cookie: &Cookie<'static>) -> Option<String> {
    let res = client
        .get("/whoami")
        .cookie(cookie.clone())
        .dispatch()
        .await;
    match res.status() {
        Status::Ok => res.into_string().await,
        _ => None,
    }
}

async fn revoke_owner(client: &Client, user: &str) -> String {
    let res = client
        .post(format!("/revoke-owner/{user}"))
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::Ok);
    res.into_string().await.unwrap_or_default()
}

#[rocket::async_test]
async fn an_active_user_outlives_a_flood_of_new_sessions() {
    let store = MemoryStore::with_capacity(50, 1 << 20);
    let client = client(&store, "memory-flood-active").await;
    let cookie = login(&client, "alice").await;
    for n in 0..300 {
        cookieless_write(&client).await;
        // Mostly reads, now and then a write of the active session.
        if n % 10 == 9 {
            let res = client
                .post(format!("/set/n/{n}"))
                .cookie(cookie.clone())
                .dispatch()
                .await;
            assert_eq!(res.status(), Status::Ok, "after {n} new sessions");
        }
        assert_eq!(
            whoami(&client, &cookie).await.as_deref(),
            Some("alice"),
            "logged out after {} new sessions",
            n + 1
        );
        assert!(store.len() <= 50, "{} records", store.len());
    }
    // The flood did fill the store: eviction was at work all along.
    assert!(store.len() >= 45, "{} records", store.len());
    // The owner index still names the session: revoking ends it.
    assert_eq!(revoke_owner(&client, "alice").await, "1");
    assert_eq!(whoami(&client, &cookie).await, None);
}

#[rocket::async_test]
async fn a_flood_many_times_the_capacity_leaves_returning_users_alone() {
    let store = MemoryStore::with_capacity(200, 1 << 20);
    let client = client(&store, "memory-flood-many").await;
    let users = ["alice", "bob", "carol"];
    let mut cookies = Vec::new();
    for user in users {
        cookies.push(login(&client, user).await);
    }
    for n in 0..2_000 {
        cookieless_write(&client).await;
        // Each user comes back every third new session.
        let (user, cookie) = (users[n % 3], &cookies[n % 3]);
        assert_eq!(
            whoami(&client, cookie).await.as_deref(),
            Some(user),
            "{user} logged out after {} new sessions",
            n + 1
        );
    }
    assert!(store.len() <= 200, "{} records", store.len());
    for (user, cookie) in users.iter().zip(&cookies) {
        assert_eq!(revoke_owner(&client, user).await, "1", "{user}");
        assert_eq!(whoami(&client, cookie).await, None, "{user}");
    }
}

#[rocket::async_test]
async fn a_session_not_used_again_is_evicted_before_one_that_is() {
    // The negative control: without coming back, a logged-in session is as
    // evictable as the flood's.
    let store = MemoryStore::with_capacity(50, 1 << 20);
    let client = client(&store, "memory-flood-idle").await;
    let idle = login(&client, "dave").await;
    let active = login(&client, "erin").await;
    for _ in 0..300 {
        cookieless_write(&client).await;
        assert!(whoami(&client, &active).await.is_some());
    }
    assert_eq!(whoami(&client, &idle).await, None);
    // Its owner index went with it or names nothing live.
    assert_eq!(revoke_owner(&client, "dave").await, "0");
    assert_eq!(revoke_owner(&client, "erin").await, "1");
}
