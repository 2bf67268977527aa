//! The default configuration end to end, through a Rocket app: a session
//! of the default 31-day lifetime is stored live, with memcached's expiry
//! sent as an absolute time (as a duration, memcached would read it as a
//! time in 1970 and drop every session at once); and a session that grows
//! past memcached's item size limit answers 503 and saves nothing, never a
//! panic or a truncated record.

mod common;

use futures::TryStreamExt;
use rocket::http::Status;
use rocket::local::asynchronous::Client;
use rocket::{post, routes};
use rocket_kvsession::conformance::{app, unique_prefix};
use rocket_kvsession::{KeyValueStore, KvSession, Session, SessionConfig};
use rocket_kvsession_memcached::MemcachedStore;

use common::Raw;

const MONTH: i64 = 31 * 24 * 3600;

#[post("/grow/<bytes>")]
fn grow(session: Session<'_>, bytes: usize) -> Result<&'static str, rocket_kvsession::Error> {
    session.insert("filler", "x".repeat(bytes))?;
    Ok("grown")
}

async fn client(store: MemcachedStore, prefix: &str) -> Client {
    let config = SessionConfig {
        key_prefix: prefix.to_owned(),
        ..SessionConfig::default()
    };
    let rocket = rocket::custom(app::figment())
        .attach(KvSession::new(store).config(config))
        .mount("/", app::routes())
        .mount("/", routes![grow]);
    Client::tracked(rocket).await.expect("the app launches")
}

async fn keys(store: &MemcachedStore, prefix: &str) -> Vec<String> {
    store
        .list(prefix)
        .map_ok(|info| info.key)
        .try_collect()
        .await
        .expect("list")
}

#[rocket::async_test]
async fn sessions_of_the_default_lifetime_live_31_days() {
    let Some(url) = common::url("default_lifetime") else {
        return;
    };
    let store = MemcachedStore::connect(&url).await.expect("connect");
    assert_eq!(
        SessionConfig::default().lifetime,
        MONTH as u64,
        "the default"
    );
    let prefix = unique_prefix("default-lifetime");
    let client = client(store.clone(), &prefix).await;

    assert_eq!(app::write(&client, "/login/alice").await, Status::Ok);
    assert_eq!(
        app::read(&client, "/whoami").await,
        (Status::Ok, "alice".into())
    );
    assert_eq!(app::write(&client, "/set/cart/3").await, Status::Ok);
    assert_eq!(
        app::read(&client, "/get/cart").await,
        (Status::Ok, "3".into())
    );

    let mut raw = Raw::connect(&url).await;
    let mut live = 0;
    for key in keys(&store, &prefix).await {
        let (_, _, ttl) = raw.item(&key).await.expect("a live item");
        // The session (31 days) or the short-lived marker of its pre-login id.
        if ttl > MONTH - 120 {
            assert!(ttl <= MONTH + 4, "TTL {ttl}");
            live += 1;
        }
    }
    assert_eq!(live, 1, "one session, held by memcached for 31 days");
    assert_eq!(app::write(&client, "/logout").await, Status::Ok);
    assert_eq!(app::read(&client, "/whoami").await.0, Status::NotFound);
}

#[rocket::async_test]
async fn a_session_over_the_item_size_limit_answers_503_and_saves_nothing() {
    let Some(store) = common::store("session_too_large").await else {
        return;
    };
    let prefix = unique_prefix("too-large");
    let client = client(store.clone(), &prefix).await;
    assert_eq!(app::write(&client, "/login/bob").await, Status::Ok);
    let before = keys(&store, &prefix).await;

    let status = app::write(&client, &format!("/grow/{}", 2 * 1024 * 1024)).await;
    assert_eq!(status, Status::ServiceUnavailable);
    assert_eq!(keys(&store, &prefix).await, before, "nothing written");
    assert_eq!(
        app::read(&client, "/whoami").await,
        (Status::Ok, "bob".into())
    );
    assert_eq!(app::read(&client, "/get/filler").await.0, Status::NotFound);

    // Just under the limit still fits.
    assert_eq!(
        app::write(&client, &format!("/grow/{}", 900 * 1024)).await,
        Status::Ok
    );
}
