//! memcached goes away under a running app: requests that need the session
//! get 503 within the store's timeout, nothing panics, and once the server
//! is back the same app serves sessions again (memcached keeps nothing
//! across a restart: the old cookie gets a fresh session).
//!
//! Each test runs its own memcached (`KVSESSION_MEMCACHED_SERVER`) on a
//! free port and kills it by PID, so the shared test server is not
//! disturbed.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use rocket::http::Status;
use rocket::local::asynchronous::Client;
use rocket_kvsession::conformance::app;
use rocket_kvsession_memcached::MemcachedStore;

const TIMEOUT: Duration = Duration::from_millis(500);
/// What a request may take beyond the store's timeout on a loaded test
/// machine (Rocket's own work, scheduling).
const SLACK: Duration = Duration::from_millis(1500);

async fn assert_unavailable(client: &Client) {
    for _ in 0..3 {
        let started = Instant::now();
        let (status, _) = app::read(client, "/whoami").await;
        let took = started.elapsed();
        assert_eq!(
            status,
            Status::ServiceUnavailable,
            "a read during the outage"
        );
        assert!(took < TIMEOUT + SLACK, "a read took {took:?}");
        let started = Instant::now();
        let status = app::write(client, "/set/during/outage").await;
        let took = started.elapsed();
        assert_eq!(
            status,
            Status::ServiceUnavailable,
            "a write during the outage"
        );
        assert!(took < TIMEOUT + SLACK, "a write took {took:?}");
    }
    // Routes without a session do not touch the store.
    assert_eq!(app::read(client, "/plain").await.0, Status::Ok);
}

/// The server crashes (SIGKILL) and comes back empty on the same port: the
/// first request after the restart is served (the pooled connections that
/// broke are replaced), with a fresh, anonymous session; logging in works
/// again, and the app never restarted.
#[rocket::async_test]
async fn outage_then_recovery() {
    let Some(mut server) = common::TestServer::start("outage_then_recovery").await else {
        return;
    };
    let store = MemcachedStore::builder()
        .timeout(TIMEOUT)
        .connect(&server.url())
        .await
        .expect("connect");
    let client = app::client(Arc::new(store), app::config("outage")).await;

    assert_eq!(app::write(&client, "/login/alice").await, Status::Ok);
    assert_eq!(app::write(&client, "/set/before/1").await, Status::Ok);
    assert_eq!(
        app::read(&client, "/whoami").await,
        (Status::Ok, "alice".into())
    );

    server.kill();
    assert_unavailable(&client).await;

    server.restart().await;
    assert_eq!(
        app::read(&client, "/whoami").await.0,
        Status::NotFound,
        "the first request after the restart is served: the session went with the server's data"
    );
    assert_eq!(app::write(&client, "/login/bob").await, Status::Ok);
    assert_eq!(
        app::read(&client, "/whoami").await,
        (Status::Ok, "bob".into())
    );
    assert_eq!(app::write(&client, "/set/after/2").await, Status::Ok);
    assert_eq!(
        app::read(&client, "/get/after").await,
        (Status::Ok, "2".into())
    );
    assert_eq!(
        app::read(&client, "/get/during").await.0,
        Status::NotFound,
        "a write refused during the outage must not appear afterwards"
    );
}

/// A stopped server (SIGSTOP: it holds its connections but answers
/// nothing) gives 503 within the timeout too; after SIGCONT the same app
/// serves the session memcached kept.
#[rocket::async_test]
async fn a_stalled_server_then_recovery_with_sessions_kept() {
    let Some(server) = common::TestServer::start("stalled_server").await else {
        return;
    };
    let store = MemcachedStore::builder()
        .timeout(TIMEOUT)
        .connect(&server.url())
        .await
        .expect("connect");
    let client = app::client(Arc::new(store), app::config("stalled")).await;
    assert_eq!(app::write(&client, "/login/carol").await, Status::Ok);

    server.signal("STOP");
    assert_unavailable(&client).await;
    server.signal("CONT");

    assert_eq!(
        app::read(&client, "/whoami").await,
        (Status::Ok, "carol".into()),
        "the session memcached kept"
    );
    assert_eq!(app::write(&client, "/set/after/3").await, Status::Ok);
    assert_eq!(
        app::read(&client, "/get/after").await,
        (Status::Ok, "3".into())
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
    let error = MemcachedStore::builder()
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
