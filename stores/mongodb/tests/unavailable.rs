//! Failures that need no server: nothing listening, bad connection strings.

use std::time::{Duration, Instant};

use rocket_kvsession::{KeyValueStore, StoreError};
use rocket_kvsession_mongodb::MongoStore;

#[tokio::test]
async fn nothing_listening_is_unavailable_within_the_timeout() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let uri = format!("mongodb://127.0.0.1:{port}/?directConnection=true");
    let store = MongoStore::builder(&uri, "db", "sessions")
        .server_selection_timeout(Duration::from_millis(500))
        .connect()
        .await
        .expect("connecting is lazy");
    let start = Instant::now();
    let error = store.get("k_1").await.expect_err("no server");
    assert!(matches!(error, StoreError::Unavailable { .. }), "{error:?}");
    let error = store.init().await.expect_err("no server");
    assert!(matches!(error, StoreError::Unavailable { .. }), "{error:?}");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "took {:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn the_operation_timeout_bounds_a_silent_server() {
    // A listener that accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let uri = format!("mongodb://127.0.0.1:{port}/?directConnection=true");
    let store = MongoStore::builder(&uri, "db", "sessions")
        .server_selection_timeout(Duration::from_secs(30))
        .connect_timeout(Duration::from_secs(30))
        .operation_timeout(Some(Duration::from_millis(700)))
        .connect()
        .await
        .expect("connect");
    let start = Instant::now();
    let error = store.get("k_1").await.expect_err("no answer");
    assert!(matches!(error, StoreError::Unavailable { .. }), "{error:?}");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "took {:?}",
        start.elapsed()
    );
    silent.abort();
}

#[tokio::test]
async fn a_bad_connection_string_is_misconfigured() {
    for uri in [
        "postgres://127.0.0.1/",
        "mongodb://127.0.0.1:99999999/",
        "not a uri",
    ] {
        let error = MongoStore::connect(uri, "db", "sessions")
            .await
            .expect_err("bad uri");
        assert!(
            matches!(error, StoreError::Misconfigured { .. }),
            "{uri}: {error:?}"
        );
    }
    let error = MongoStore::connect("mongodb://127.0.0.1/", "", "sessions")
        .await
        .expect_err("empty database name");
    assert!(
        matches!(error, StoreError::Misconfigured { .. }),
        "{error:?}"
    );
}
