//! Drives `examples/redis.rs` through `rocket::local` on the test servers.

mod common;

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/redis.rs"]
mod example;

use rocket::http::{ContentType, Status};
use rocket::local::asynchronous::Client;
use rocket_kvsession_redis::redis::{self, AsyncCommands};
use rocket_kvsession_redis::RedisStore;

async fn page(client: &Client) -> String {
    client
        .get("/")
        .dispatch()
        .await
        .into_string()
        .await
        .unwrap_or_default()
}

async fn log_in(client: &Client, user: &str, password: &str) -> Status {
    client
        .post("/login")
        .header(ContentType::Form)
        .body(format!("user={user}&password={password}"))
        .dispatch()
        .await
        .status()
}

/// The keys of this app (its own key prefix) on the single server.
async fn stored(raw: &mut redis::aio::MultiplexedConnection, prefix: &str) -> Vec<String> {
    let mut iter: redis::AsyncIter<'_, String> =
        raw.scan_match(format!("{prefix}*")).await.unwrap();
    let mut keys = Vec::new();
    while let Some(key) = iter.next_item().await {
        keys.push(key.unwrap());
    }
    keys
}

/// The example's app with a key prefix of its own and the test secret.
fn figment(prefix: &str) -> rocket::figment::Figment {
    rocket::Config::figment()
        .merge(("secret_key", rocket_kvsession::conformance::app::SECRET_KEY))
        .merge(("log_level", "off"))
        .merge(("kvsession.key_prefix", prefix))
}

#[rocket::async_test]
async fn login_visits_logout() {
    let Some(url) = common::url("example") else {
        return;
    };
    let store = RedisStore::connect(&url).await.expect("connect");
    let prefix = rocket_kvsession::conformance::unique_prefix("example");
    let rocket = example::app(store).configure(figment(&prefix));
    let client = Client::tracked(rocket).await.expect("the example launches");
    let raw = &mut common::raw(&url).await;

    assert!(page(&client).await.contains("Not logged in"));
    assert!(
        stored(raw, &prefix).await.is_empty(),
        "an anonymous visit stores nothing"
    );

    assert_eq!(log_in(&client, "alice", "wrong").await, Status::SeeOther);
    assert_eq!(
        client.get("/whoami").dispatch().await.status(),
        Status::NotFound
    );
    assert!(stored(raw, &prefix).await.is_empty());

    assert_eq!(
        log_in(&client, "alice", rocket_kvsession_demo::PASSWORD).await,
        Status::SeeOther
    );
    let keys = stored(raw, &prefix).await;
    assert_eq!(keys.len(), 1, "{keys:?}");
    let whoami = client.get("/whoami").dispatch().await;
    assert_eq!(whoami.into_string().await.as_deref(), Some("alice"));
    assert!(page(&client)
        .await
        .contains("Logged in as <b>alice</b>; 1 visits"));
    assert!(page(&client).await.contains("2 visits"));

    // Redis expires the session by itself, at the session's lifetime.
    let ttl: i64 = raw.ttl(&keys[0]).await.unwrap();
    let lifetime = 31 * 24 * 3600;
    // (TTL rounds the milliseconds up to a second.)
    assert!(ttl > lifetime - 60 && ttl <= lifetime + 1, "TTL {ttl}");

    let response = client.post("/logout").dispatch().await;
    assert_eq!(response.status(), Status::SeeOther);
    assert!(
        stored(raw, &prefix).await.is_empty(),
        "logout deletes the record"
    );
    assert_eq!(
        client.get("/whoami").dispatch().await.status(),
        Status::NotFound
    );
}

#[rocket::async_test]
async fn login_on_the_cluster() {
    let Some(urls) = common::cluster_urls("example_cluster") else {
        return;
    };
    let store = RedisStore::connect_cluster(&urls).await.expect("connect");
    let prefix = rocket_kvsession::conformance::unique_prefix("example-cluster");
    let rocket = example::app(store).configure(figment(&prefix));
    let client = Client::tracked(rocket).await.expect("the example launches");
    assert_eq!(
        log_in(&client, "bob", rocket_kvsession_demo::PASSWORD).await,
        Status::SeeOther
    );
    assert!(page(&client)
        .await
        .contains("Logged in as <b>bob</b>; 1 visits"));
    assert_eq!(
        client.post("/logout").dispatch().await.status(),
        Status::SeeOther
    );
    assert!(page(&client).await.contains("Not logged in"));
}
