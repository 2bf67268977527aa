//! The metrics (feature `metrics`): every counter moves when its event
//! happens, and only then. Run with `cargo test -p rocket_kvsession_tests
//! --features metrics --test metrics`; the test command does.
#![cfg(feature = "metrics")]

mod common;

use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;

use common::{routes, TestStore, SECRET};
use metrics::{SharedString, Unit};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use metrics_util::CompositeKey;
use rocket::http::{Cookie, Status};
use rocket::local::asynchronous::Client;
use rocket_kvsession::conformance::app::{owner_routes, racing_routes, Gate};
use rocket_kvsession::{KvSession, SessionConfig, SessionManager};

const OLD_KEY: &str = "Rc1+7Q0rLQGZRo/gHFm9JqTIjZoDq0DbzcNx9ku2r1s=";

/// What the recorder holds after a test: one snapshot (taking one drains it).
type Snapshot = Vec<(CompositeKey, Option<Unit>, Option<SharedString>, DebugValue)>;

/// Runs `test` on a current-thread runtime with a recorder of its own, so
/// every metric the engine records lands there, and takes the snapshot.
fn with_recorder<F: std::future::Future<Output = ()>>(test: impl FnOnce() -> F) -> Snapshot {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        rocket::tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
            .block_on(test())
    });
    snapshotter.snapshot().into_vec()
}

/// The value of counter `name` with exactly `labels`.
fn counter(snap: &Snapshot, name: &str, labels: &[(&str, &str)]) -> u64 {
    snap.iter()
        .filter(|(key, ..)| {
            let key = key.key();
            let mut got: Vec<(&str, &str)> = key.labels().map(|l| (l.key(), l.value())).collect();
            let mut want = labels.to_vec();
            got.sort_unstable();
            want.sort_unstable();
            key.name() == name && got == want
        })
        .map(|(.., value)| match value {
            DebugValue::Counter(n) => *n,
            other => panic!("{name} is not a counter: {other:?}"),
        })
        .sum()
}

/// How many samples histogram `name` with `labels` holds.
fn samples(snap: &Snapshot, name: &str, labels: &[(&str, &str)]) -> usize {
    snap.iter()
        .filter(|(key, ..)| {
            let key = key.key();
            key.name() == name
                && labels
                    .iter()
                    .all(|(k, v)| key.labels().any(|l| l.key() == *k && l.value() == *v))
        })
        .map(|(.., value)| match value {
            DebugValue::Histogram(values) => values.len(),
            other => panic!("{name} is not a histogram: {other:?}"),
        })
        .sum()
}

fn app(store: &TestStore, key: &str, fallbacks: &[&str]) -> rocket::Rocket<rocket::Build> {
    let config = SessionConfig {
        secret_key_fallbacks: fallbacks.iter().map(|k| (*k).into()).collect(),
        ..SessionConfig::default()
    };
    rocket::custom(
        rocket::Config::figment()
            .merge(("secret_key", key))
            .merge(("log_level", "off")),
    )
    .attach(KvSession::new(store.clone()).config(config))
    .manage(Arc::new(rocket::tokio::sync::Barrier::new(2)))
    .manage(Arc::new(Gate::default()))
    .mount("/", routes())
    .mount("/", owner_routes())
    .mount("/", racing_routes())
}

async fn client(store: &TestStore) -> Client {
    Client::tracked(app(store, SECRET, &[]))
        .await
        .expect("launch")
}

#[test]
fn loads_count_found_none_and_rejected() {
    let snap = with_recorder(|| async {
        let store = TestStore::new();
        let client = client(&store).await;
        assert_eq!(
            client.get("/whoami").dispatch().await.status(),
            Status::NotFound
        );
        assert_eq!(
            client.post("/login/ann").dispatch().await.status(),
            Status::Ok
        );
        assert_eq!(client.get("/whoami").dispatch().await.status(), Status::Ok);
        let forged = Client::untracked(app(&store, SECRET, &[]))
            .await
            .expect("launch");
        let res = forged
            .get("/whoami")
            .cookie(Cookie::new("session", "not-a-sealed-id"))
            .dispatch()
            .await;
        assert_eq!(res.status(), Status::NotFound);
    });
    // The first /whoami had no cookie; /login loads too (no cookie yet).
    assert_eq!(
        counter(&snap, "kvsession_loads_total", &[("outcome", "none")]),
        2
    );
    assert_eq!(
        counter(&snap, "kvsession_loads_total", &[("outcome", "found")]),
        1
    );
    assert_eq!(
        counter(&snap, "kvsession_loads_total", &[("outcome", "rejected")]),
        1
    );
}

#[test]
fn saves_count_each_kind_and_reads_save_nothing() {
    let snap = with_recorder(|| async {
        let store = TestStore::new();
        let client = client(&store).await;
        assert_eq!(
            client.post("/login/ann").dispatch().await.status(),
            Status::Ok
        );
        for _ in 0..3 {
            assert_eq!(client.get("/whoami").dispatch().await.status(), Status::Ok);
        }
        assert_eq!(
            client.post("/set/k/v").dispatch().await.status(),
            Status::Ok
        );
        assert_eq!(
            client.post("/regenerate").dispatch().await.status(),
            Status::Ok
        );
        assert_eq!(client.post("/logout").dispatch().await.status(), Status::Ok);
    });
    let saves = |kind| counter(&snap, "kvsession_saves_total", &[("kind", kind)]);
    assert_eq!(saves("create"), 1);
    assert_eq!(saves("update"), 1, "the reads saved something");
    assert_eq!(saves("rotate"), 1);
    assert_eq!(saves("end"), 1);
    assert_eq!(saves("touch"), 0, "no idle timeout, no touch");
    assert!(samples(&snap, "kvsession_store_seconds", &[("op", "get")]) >= 4);
    assert!(samples(&snap, "kvsession_store_seconds", &[("op", "create")]) >= 2);
    assert_eq!(counter(&snap, "kvsession_save_conflicts_total", &[]), 0);
}

#[test]
fn store_errors_count_by_operation() {
    let snap = with_recorder(|| async {
        let store = TestStore::new();
        let client = client(&store).await;
        assert_eq!(
            client.post("/login/ann").dispatch().await.status(),
            Status::Ok
        );
        store.failing_writes.store(true, SeqCst);
        assert_eq!(
            client.post("/set/k/v").dispatch().await.status(),
            Status::ServiceUnavailable
        );
    });
    assert_eq!(
        counter(&snap, "kvsession_store_errors_total", &[("op", "update")]),
        1
    );
    assert_eq!(
        counter(&snap, "kvsession_store_errors_total", &[("op", "get")]),
        0
    );
}

#[test]
fn a_fallback_key_cookie_counts_once_per_open() {
    let snap = with_recorder(|| async {
        let store = TestStore::new();
        let old = Client::untracked(app(&store, OLD_KEY, &[]))
            .await
            .expect("launch");
        let res = old.post("/login/ann").dispatch().await;
        let cookie = res
            .cookies()
            .get("session")
            .expect("a cookie")
            .clone()
            .into_owned();
        drop(res);
        let new = Client::untracked(app(&store, SECRET, &[OLD_KEY]))
            .await
            .expect("launch");
        for _ in 0..2 {
            let res = new.get("/whoami").cookie(cookie.clone()).dispatch().await;
            assert_eq!(res.status(), Status::Ok);
        }
    });
    assert_eq!(counter(&snap, "kvsession_fallback_key_opens_total", &[]), 2);
}

#[test]
fn revocations_and_sweeps_count_what_they_ended() {
    let snap = with_recorder(|| async {
        let store = TestStore::new().without_ttl();
        let rocket = app(&store, SECRET, &[]);
        let a = Client::tracked(rocket).await.expect("launch");
        let b = Client::tracked(app(&store, SECRET, &[]))
            .await
            .expect("launch");
        assert_eq!(
            a.post("/owner-login/ann").dispatch().await.status(),
            Status::Ok
        );
        assert_eq!(
            b.post("/owner-login/ann").dispatch().await.status(),
            Status::Ok
        );
        let res = a.post("/revoke-owner/ann").dispatch().await;
        assert_eq!(res.into_string().await.as_deref(), Some("2"));
        let manager = a.rocket().state::<SessionManager>().expect("managed");
        let report = manager.cleanup().await.expect("sweep");
        assert_eq!(report.deleted, 0, "{report:?}");
    });
    assert_eq!(counter(&snap, "kvsession_revoked_total", &[]), 2);
    assert_eq!(counter(&snap, "kvsession_sweep_deleted_total", &[]), 0);
}

/// Two apps on one store, as two processes would be: the saves of one
/// session in one app take turns and never conflict, but the apps' saves do.
#[test]
fn concurrent_writes_count_their_conflicts() {
    let snap = with_recorder(|| async {
        let store = TestStore::new().with_latency(std::time::Duration::from_millis(5));
        let first = client(&store).await;
        let second = Client::untracked(app(&store, SECRET, &[]))
            .await
            .expect("launch");
        assert_eq!(
            first.post("/set/init/1").dispatch().await.status(),
            Status::Ok
        );
        let cookie = first.cookies().get("session").expect("a cookie").clone();
        let (a, b) = rocket::tokio::join!(
            first.post("/set/a/1").dispatch(),
            second.post("/set/b/1").cookie(cookie).dispatch()
        );
        assert_eq!((a.status(), b.status()), (Status::Ok, Status::Ok));
    });
    assert!(counter(&snap, "kvsession_save_conflicts_total", &[]) >= 1);
}

#[test]
fn touches_and_sweeps_count_when_they_happen() {
    use rocket_kvsession::testing::ManualClock;
    use std::time::Duration;
    let mut deleted = 0;
    let snap = with_recorder(|| async {
        let store = TestStore::new().without_ttl();
        let clock = ManualClock::new();
        let config = SessionConfig {
            lifetime: 3600,
            idle_timeout: Some(600),
            touch_after: 10,
            ..SessionConfig::default()
        };
        let rocket = rocket::custom(common::figment())
            .attach(
                KvSession::new(store.clone())
                    .config(config)
                    .clock(clock.clone()),
            )
            .mount("/", routes());
        let client = Client::tracked(rocket).await.expect("launch");
        assert_eq!(
            client.post("/login/ann").dispatch().await.status(),
            Status::Ok
        );
        clock.advance(Duration::from_secs(5));
        assert_eq!(client.get("/whoami").dispatch().await.status(), Status::Ok);
        clock.advance(Duration::from_secs(20));
        assert_eq!(client.get("/whoami").dispatch().await.status(), Status::Ok);
        clock.advance(Duration::from_secs(7200));
        let manager = client.rocket().state::<SessionManager>().expect("managed");
        deleted = manager.cleanup().await.expect("sweep").deleted;
    });
    assert_eq!(
        counter(&snap, "kvsession_saves_total", &[("kind", "touch")]),
        1,
        "one read was due a touch, the other not"
    );
    assert!(deleted >= 1, "the sweep deleted the expired session");
    assert_eq!(
        counter(&snap, "kvsession_sweep_deleted_total", &[]),
        deleted
    );
}
