//! The commands each kind of request sends to memcached, counted by the
//! server (`stats` before and after) on a server of the test's own, so no
//! other test's commands are counted: one round trip per `get`, `create`,
//! `update` and `delete`.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rocket::http::Status;
use rocket_kvsession::conformance::app;
use rocket_kvsession::{CreateOutcome, KeyValueStore, UpdateOutcome};
use rocket_kvsession_memcached::MemcachedStore;

use common::Raw;

/// The commands memcached ran: `mg` counts as `get`, `ms` as `set`, `md`
/// as `delete` (hit or miss).
async fn commands_of<T>(
    raw: &mut Raw,
    request: impl std::future::Future<Output = T>,
) -> (T, BTreeMap<&'static str, u64>) {
    let before = raw.stats().await;
    let out = request.await;
    let after = raw.stats().await;
    let grown = common::delta(&before, &after);
    let count = |names: &[&str]| {
        names
            .iter()
            .map(|n| grown.get(*n).copied().unwrap_or(0))
            .sum()
    };
    let sent = [
        ("get", count(&["cmd_get"])),
        ("set", count(&["cmd_set"])),
        ("delete", count(&["delete_hits", "delete_misses"])),
        ("touch", count(&["cmd_touch"])),
    ]
    .into_iter()
    .filter(|(_, n)| *n > 0)
    .collect();
    (out, sent)
}

fn counts(pairs: &[(&'static str, u64)]) -> BTreeMap<&'static str, u64> {
    pairs.iter().copied().collect()
}

fn later() -> Option<SystemTime> {
    Some(SystemTime::now() + Duration::from_secs(600))
}

#[tokio::test]
async fn one_round_trip_per_store_operation() {
    let Some(server) = common::TestServer::start("store_commands").await else {
        return;
    };
    let store = MemcachedStore::connect(&server.url())
        .await
        .expect("connect");
    let raw = &mut Raw::connect(&server.url()).await;
    let key = "s:0011223344556677_65000000";

    let (created, sent) = commands_of(raw, store.create(key, b"v1", later())).await;
    let Ok(CreateOutcome::Created(Some(v1))) = created else {
        panic!("{created:?}");
    };
    assert_eq!(sent, counts(&[("set", 1)]), "create: ms ME");

    let (_, sent) = commands_of(raw, store.get(key)).await;
    assert_eq!(sent, counts(&[("get", 1)]), "get: mg");

    let (updated, sent) = commands_of(raw, store.update(key, b"v2", Some(&v1), later())).await;
    let Ok(UpdateOutcome::Updated(Some(v2))) = updated else {
        panic!("{updated:?}");
    };
    assert_eq!(sent, counts(&[("set", 1)]), "update: ms C");

    // The two read-then-swap operations: the mg that finds the CAS value,
    // then the ms.
    let (_, sent) = commands_of(raw, store.update(key, b"v3", None, later())).await;
    assert_eq!(
        sent,
        counts(&[("get", 1), ("set", 1)]),
        "update without a version"
    );
    let (_, sent) = commands_of(raw, store.touch(key, later().unwrap())).await;
    assert_eq!(sent, counts(&[("get", 1), ("set", 1)]), "touch");

    let cad = store.compare_and_delete().expect("compare-and-delete");
    let (_, sent) = commands_of(raw, cad.delete_if(key, &v2)).await;
    assert_eq!(
        sent,
        counts(&[("delete", 1)]),
        "delete_if: md C (a conflict here)"
    );
    let (_, sent) = commands_of(raw, store.delete(key)).await;
    assert_eq!(sent, counts(&[("delete", 1)]), "delete: md");

    let keys: Vec<String> = (0..600).map(|n| format!("s:{n:016x}_65000000")).collect();
    let (_, sent) = commands_of(raw, store.delete_many(keys)).await;
    assert_eq!(
        sent,
        counts(&[("delete", 600)]),
        "delete_many: pipelined md"
    );
}

#[rocket::async_test]
async fn commands_per_request() {
    let Some(server) = common::TestServer::start("commands_per_request").await else {
        return;
    };
    let store = MemcachedStore::connect(&server.url())
        .await
        .expect("connect");
    let client = app::client(Arc::new(store), app::config("commands")).await;
    let raw = &mut Raw::connect(&server.url()).await;

    // A route without a session sends nothing.
    let ((status, _), sent) = commands_of(raw, app::read(&client, "/plain")).await;
    assert_eq!(status, Status::Ok);
    assert_eq!(sent, counts(&[]), "a route without Session");

    // A session guard on a request without a cookie reads nothing either,
    // and an unmodified new session is never stored.
    let ((status, _), sent) = commands_of(raw, app::read(&client, "/whoami")).await;
    assert_eq!(status, Status::NotFound);
    assert_eq!(sent, counts(&[]), "a new, unmodified session");

    // The first write creates the record: one ms ME.
    let (status, sent) = commands_of(raw, app::write(&client, "/set/a/1")).await;
    assert_eq!(status, Status::Ok);
    assert_eq!(sent, counts(&[("set", 1)]), "creating a session");

    // A read of an existing session: one mg.
    let ((status, _), sent) = commands_of(raw, app::read(&client, "/get/a")).await;
    assert_eq!(status, Status::Ok);
    assert_eq!(sent, counts(&[("get", 1)]), "reading a session");

    // A write: the mg that loads the session, then one compare-and-swap ms.
    let (status, sent) = commands_of(raw, app::write(&client, "/set/b/2")).await;
    assert_eq!(status, Status::Ok);
    assert_eq!(
        sent,
        counts(&[("get", 1), ("set", 1)]),
        "updating a session"
    );

    // regenerate() then insert: the mg that loads the session; at the
    // save, the record under the new id is created (ms ME) and only then
    // the old one is replaced by a short-lived "moved" marker (ms C).
    let (status, sent) = commands_of(raw, app::write(&client, "/login/alice")).await;
    assert_eq!(status, Status::Ok);
    assert_eq!(sent, counts(&[("get", 1), ("set", 2)]), "logging in");

    // Logging out: the mg that loads the session, then one md C: the
    // record goes only if no concurrent request rewrote it.
    let (status, sent) = commands_of(raw, app::write(&client, "/logout")).await;
    assert_eq!(status, Status::Ok);
    assert_eq!(
        sent,
        counts(&[("get", 1), ("delete", 1)]),
        "destroying a session"
    );

    // Removing a session's last key: the mg, the update that writes the
    // emptied record (ms C), then md C with the version just written, so a
    // key a concurrent request added survives.
    let (status, sent) = commands_of(raw, app::write(&client, "/set/e/5")).await;
    assert_eq!(status, Status::Ok);
    assert_eq!(sent, counts(&[("set", 1)]), "a new session");
    let (status, sent) = commands_of(raw, app::write(&client, "/remove/e")).await;
    assert_eq!(status, Status::Ok);
    assert_eq!(
        sent,
        counts(&[("get", 1), ("set", 1), ("delete", 1)]),
        "removing the last key of a session"
    );
}
