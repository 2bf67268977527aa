//! Redis goes away under a running app: requests that need the session get
//! 503 within the store's timeout, nothing panics, and once the server is
//! back the same app serves sessions again, the ones Redis kept included.
//!
//! Each test runs its own redis-server (`KVSESSION_REDIS_SERVER`) on a free
//! port and kills it by PID, so the shared test servers are not disturbed.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use rocket::http::Status;
use rocket::local::asynchronous::Client;
use rocket_kvsession::conformance::app;
use rocket_kvsession_redis::RedisStore;

const TIMEOUT: Duration = Duration::from_millis(500);
/// What a request may take beyond the store's timeout on a loaded test
/// machine (Rocket's own work, scheduling).
const SLACK: Duration = Duration::from_millis(1500);

async fn timed_get(client: &Client, uri: &str) -> (Status, String, Duration) {
    let started = Instant::now();
    let (status, body) = app::read(client, uri).await;
    (status, body, started.elapsed())
}

async fn timed_post(client: &Client, uri: &str) -> (Status, Duration) {
    let started = Instant::now();
    let status = app::write(client, uri).await;
    (status, started.elapsed())
}

/// Requests until one answers something else than 503, for up to 10 s.
async fn until_served(client: &Client, uri: &str) -> (Status, String) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = app::read(client, uri).await;
        if status != Status::ServiceUnavailable || Instant::now() > deadline {
            return (status, body);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn assert_unavailable(client: &Client) {
    for _ in 0..3 {
        let (status, _, took) = timed_get(client, "/whoami").await;
        assert_eq!(
            status,
            Status::ServiceUnavailable,
            "a read during the outage"
        );
        assert!(took < TIMEOUT + SLACK, "a read took {took:?}");
        let (status, took) = timed_post(client, "/set/during/outage").await;
        assert_eq!(
            status,
            Status::ServiceUnavailable,
            "a write during the outage"
        );
        assert!(took < TIMEOUT + SLACK, "a write took {took:?}");
    }
    // Routes without a session do not touch the store.
    let (status, _, _) = timed_get(client, "/plain").await;
    assert_eq!(status, Status::Ok, "a route without a session");
}

/// A server with an append-only file synced on every write is killed
/// (SIGKILL, a crash) and restarted on the same port: the session written
/// before the crash is still there, and the app never restarted.
#[rocket::async_test]
async fn outage_then_recovery_with_sessions_kept() {
    let dir = tempfile::tempdir().expect("a data directory");
    let dir_arg = dir.path().to_string_lossy().into_owned();
    let Some(mut server) = common::TestServer::start_with(
        "outage_then_recovery_with_sessions_kept",
        &[
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--dir",
            &dir_arg,
        ],
    )
    .await
    else {
        return;
    };
    let store = RedisStore::builder()
        .timeout(TIMEOUT)
        .connect(&server.url())
        .await
        .expect("connect");
    let client = app::client(Arc::new(store), app::config("outage-kept")).await;

    assert_eq!(app::write(&client, "/login/alice").await, Status::Ok);
    assert_eq!(app::write(&client, "/set/before/1").await, Status::Ok);
    assert_eq!(
        app::read(&client, "/whoami").await,
        (Status::Ok, "alice".into())
    );

    server.kill();
    assert_unavailable(&client).await;
    // Let every reconnection attempt the outage started run out first.
    tokio::time::sleep(Duration::from_secs(1)).await;

    server.restart().await;
    assert_eq!(
        app::read(&client, "/whoami").await,
        (Status::Ok, "alice".into()),
        "the first request after the restart is served, with the session Redis kept"
    );
    assert_eq!(
        app::read(&client, "/get/before").await,
        (Status::Ok, "1".into())
    );
    assert_eq!(
        app::read(&client, "/get/during").await.0,
        Status::NotFound,
        "a write refused during the outage must not appear afterwards"
    );
    assert_eq!(app::write(&client, "/set/after/2").await, Status::Ok);
    assert_eq!(
        app::read(&client, "/get/after").await,
        (Status::Ok, "2".into())
    );
}

/// A server without persistence crashes and comes back empty: the old
/// cookie gets a fresh session (no error, no panic), and logging in works.
#[rocket::async_test]
async fn outage_of_a_server_that_lost_its_data() {
    let Some(mut server) = common::TestServer::start("outage_of_a_server_that_lost_its_data").await
    else {
        return;
    };
    let store = RedisStore::builder()
        .timeout(TIMEOUT)
        .connect(&server.url())
        .await
        .expect("connect");
    let client = app::client(Arc::new(store), app::config("outage-lost")).await;
    assert_eq!(app::write(&client, "/login/bob").await, Status::Ok);

    server.kill();
    assert_unavailable(&client).await;
    server.restart().await;

    assert_eq!(
        until_served(&client, "/whoami").await.0,
        Status::NotFound,
        "the session is gone with the server's data: a fresh, anonymous one"
    );
    assert_eq!(app::write(&client, "/login/bob").await, Status::Ok);
    assert_eq!(
        app::read(&client, "/whoami").await,
        (Status::Ok, "bob".into())
    );
}

/// Connecting to a server that is not there fails fast with `Unavailable`.
#[tokio::test]
async fn connect_to_a_stopped_server_fails_within_the_timeout() {
    let Some(mut server) =
        common::TestServer::start("connect_to_a_stopped_server_fails_within_the_timeout").await
    else {
        return;
    };
    let url = server.url();
    server.kill();
    let started = Instant::now();
    let error = RedisStore::builder()
        .timeout(TIMEOUT)
        .connect(&url)
        .await
        .expect_err("nothing listens");
    assert!(
        matches!(error, rocket_kvsession::StoreError::Unavailable { .. }),
        "{error:?}"
    );
    assert!(started.elapsed() < TIMEOUT + SLACK);
}
