//! The commands each kind of request sends to Redis, counted by the server
//! (`INFO commandstats` before and after) on a server of the test's own, so
//! no other test's commands are counted.
//!
//! Redis counts the commands a script runs besides the script call itself:
//! one `EVALSHA` of the update script shows as `evalsha`, `getrange` and
//! `set`. The client sends the `EVALSHA` only.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use rocket::http::Status;
use rocket::local::asynchronous::Client;
use rocket_kvsession::conformance::app;
use rocket_kvsession_redis::redis::aio::MultiplexedConnection;
use rocket_kvsession_redis::RedisStore;

use common::counts;

async fn commands_of(
    raw: &mut MultiplexedConnection,
    request: impl std::future::Future<Output = Status>,
) -> (Status, BTreeMap<String, u64>) {
    let before = common::command_stats(raw).await;
    let status = request.await;
    let after = common::command_stats(raw).await;
    (status, common::delta(&before, &after))
}

async fn get(client: &Client, uri: &str) -> Status {
    app::read(client, uri).await.0
}

#[rocket::async_test]
async fn commands_per_request() {
    let Some(server) = common::TestServer::start("commands_per_request").await else {
        return;
    };
    let store = RedisStore::connect(&server.url()).await.expect("connect");
    let client = app::client(Arc::new(store), app::config("commands")).await;
    let raw = &mut common::raw(&server.url()).await;

    // A route without a session sends nothing.
    let (status, sent) = commands_of(raw, get(&client, "/plain")).await;
    assert_eq!(status, Status::Ok);
    assert_eq!(sent, counts(&[]), "a route without Session");

    // A session guard on a request without a cookie reads nothing either,
    // and an unmodified new session is never stored.
    let (status, sent) = commands_of(raw, get(&client, "/whoami")).await;
    assert_eq!(status, Status::NotFound);
    assert_eq!(sent, counts(&[]), "a new, unmodified session");

    // The first write creates the record: one SET NX PXAT.
    let (status, sent) = commands_of(raw, app::write(&client, "/set/a/1")).await;
    assert_eq!(status, Status::Ok);
    assert_eq!(sent, counts(&[("set", 1)]), "creating a session");

    // The server does not know the update script yet: the first update
    // sends EVALSHA, gets NOSCRIPT and sends EVAL (which caches it).
    let (status, sent) = commands_of(raw, app::write(&client, "/set/b/2")).await;
    assert_eq!(status, Status::Ok);
    assert_eq!(
        sent,
        counts(&[
            ("get", 1),
            ("evalsha", 1),
            ("eval", 1),
            ("getrange", 1),
            ("set", 1)
        ]),
        "the first update on a fresh server"
    );

    // A read of an existing session: one GET.
    let (status, sent) = commands_of(raw, get(&client, "/get/a")).await;
    assert_eq!(status, Status::Ok);
    assert_eq!(sent, counts(&[("get", 1)]), "reading a session");

    // A write: the GET that loads the session, then one EVALSHA (the
    // compare-and-swap update; GETRANGE and SET run inside it).
    let (status, sent) = commands_of(raw, app::write(&client, "/set/c/3")).await;
    assert_eq!(status, Status::Ok);
    assert_eq!(
        sent,
        counts(&[("get", 1), ("evalsha", 1), ("getrange", 1), ("set", 1)]),
        "updating a session"
    );

    // regenerate() then insert: the GET that loads the session; at the
    // save, the record under the new id is created (SET NX, with the user
    // in it) and only then the old record is replaced by a short-lived
    // "moved" marker with one compare-and-swap EVALSHA.
    let (status, sent) = commands_of(raw, app::write(&client, "/login/alice")).await;
    assert_eq!(status, Status::Ok);
    assert_eq!(
        sent,
        counts(&[("get", 1), ("set", 2), ("evalsha", 1), ("getrange", 1)]),
        "logging in (regenerate, then insert)"
    );

    // Logging out: the GET that loads the session, then one compare-and-
    // delete script (GETRANGE and UNLINK run inside it): the record goes
    // only if no concurrent request rewrote it. The server does not know
    // that script yet either: EVALSHA, NOSCRIPT, EVAL.
    let (status, sent) = commands_of(raw, app::write(&client, "/logout")).await;
    assert_eq!(status, Status::Ok);
    assert_eq!(
        sent,
        counts(&[
            ("get", 1),
            ("evalsha", 1),
            ("eval", 1),
            ("getrange", 1),
            ("unlink", 1)
        ]),
        "destroying a session (the first delete script on a fresh server)"
    );

    // The next logout: the GET, then one EVALSHA of the delete script.
    let (status, sent) = commands_of(raw, app::write(&client, "/set/d/4")).await;
    assert_eq!(status, Status::Ok);
    assert_eq!(sent, counts(&[("set", 1)]), "a new session after logout");
    let (status, sent) = commands_of(raw, app::write(&client, "/logout")).await;
    assert_eq!(status, Status::Ok);
    assert_eq!(
        sent,
        counts(&[("get", 1), ("evalsha", 1), ("getrange", 1), ("unlink", 1)]),
        "destroying a session"
    );

    // Removing a session's last key: the GET, the update that writes the
    // emptied record (compare-and-swap), then the delete script with the
    // version just written, so a key a concurrent request added survives.
    let (status, sent) = commands_of(raw, app::write(&client, "/set/e/5")).await;
    assert_eq!(status, Status::Ok);
    assert_eq!(sent, counts(&[("set", 1)]), "a new session");
    let (status, sent) = commands_of(raw, app::write(&client, "/remove/e")).await;
    assert_eq!(status, Status::Ok);
    assert_eq!(
        sent,
        counts(&[
            ("get", 1),
            ("evalsha", 2),
            ("getrange", 2),
            ("set", 1),
            ("unlink", 1)
        ]),
        "removing the last key of a session"
    );
}
