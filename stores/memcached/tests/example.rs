//! Drives `examples/memcached.rs` through `rocket::local` on the test
//! server, with the default configuration (sessions of 31 days).

mod common;

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/memcached.rs"]
mod example;

use futures::TryStreamExt;
use rocket::http::{ContentType, Status};
use rocket::local::asynchronous::Client;
use rocket_kvsession::KeyValueStore;
use rocket_kvsession_memcached::MemcachedStore;

use common::Raw;

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

/// The keys of this app (its own key prefix) that hold a live item.
async fn stored(store: &MemcachedStore, prefix: &str) -> Vec<String> {
    store
        .list(prefix)
        .map_ok(|info| info.key)
        .try_collect()
        .await
        .unwrap()
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
    // `url` is MEMCACHED_URL, which the example reads too.
    let store = example::store_from_env().await.expect("connect");
    let prefix = rocket_kvsession::conformance::unique_prefix("example");
    let rocket = example::app(store.clone()).configure(figment(&prefix));
    let client = Client::tracked(rocket).await.expect("the example launches");
    let mut raw = Raw::connect(&url).await;

    assert!(page(&client).await.contains("Not logged in"));
    assert!(
        stored(&store, &prefix).await.is_empty(),
        "an anonymous visit stores nothing"
    );

    assert_eq!(log_in(&client, "alice", "wrong").await, Status::SeeOther);
    assert_eq!(
        client.get("/whoami").dispatch().await.status(),
        Status::NotFound
    );
    assert!(stored(&store, &prefix).await.is_empty());

    assert_eq!(
        log_in(&client, "alice", rocket_kvsession_demo::PASSWORD).await,
        Status::SeeOther
    );
    let keys = stored(&store, &prefix).await;
    assert_eq!(keys.len(), 1, "{keys:?}");
    let whoami = client.get("/whoami").dispatch().await;
    assert_eq!(whoami.into_string().await.as_deref(), Some("alice"));
    assert!(page(&client)
        .await
        .contains("Logged in as <b>alice</b>; 1 visits"));
    assert!(page(&client).await.contains("2 visits"));

    // memcached expires the session by itself, at the session's lifetime
    // of 31 days (sent as an absolute time).
    let (_, _, ttl) = raw.item(&keys[0]).await.expect("a live item");
    let lifetime = 31 * 24 * 3600;
    assert!(ttl > lifetime - 60 && ttl <= lifetime + 4, "TTL {ttl}");

    let response = client.post("/logout").dispatch().await;
    assert_eq!(response.status(), Status::SeeOther);
    assert!(
        stored(&store, &prefix).await.is_empty(),
        "logout deletes the record"
    );
    assert_eq!(
        client.get("/whoami").dispatch().await.status(),
        Status::NotFound
    );
}
