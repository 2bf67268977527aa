//! Session lifecycle events (`KvSession::on_event`) around failures: a
//! failed save emits nothing, and a panicking handler fails no request.
//! (The events of each lifecycle step are an app conformance case, run on
//! every store: `session_events_are_emitted_once`.)

mod common;

use std::sync::atomic::Ordering::SeqCst;
use std::sync::{Arc, Mutex};

use common::{figment, routes, TestStore};
use rocket::http::Status;
use rocket::local::asynchronous::Client;
use rocket_kvsession::{KvSession, SessionConfig, SessionEvent, SessionEventKind};

type Log = Arc<Mutex<Vec<SessionEventKind>>>;

async fn client(store: &TestStore, log: &Log) -> Client {
    let sink = log.clone();
    let sessions = KvSession::new(store.clone())
        .config(SessionConfig::default())
        .on_event(move |e: &SessionEvent| sink.lock().unwrap().push(e.kind()));
    Client::tracked(
        rocket::custom(figment())
            .attach(sessions)
            .mount("/", routes()),
    )
    .await
    .expect("launch")
}

#[rocket::async_test]
async fn a_failed_save_emits_nothing() {
    let store = TestStore::new();
    let log = Log::default();
    let client = client(&store, &log).await;
    store.failing_writes.store(true, SeqCst);
    let res = client.post("/login/ann").dispatch().await;
    assert_eq!(res.status(), Status::ServiceUnavailable);
    assert!(log.lock().unwrap().is_empty(), "{:?}", log.lock().unwrap());
    store.failing_writes.store(false, SeqCst);
    assert_eq!(
        client.post("/login/ann").dispatch().await.status(),
        Status::Ok
    );
    assert_eq!(*log.lock().unwrap(), [SessionEventKind::Created]);
    // A logout whose write fails emits nothing either.
    store.failing_writes.store(true, SeqCst);
    assert_eq!(
        client.post("/logout").dispatch().await.status(),
        Status::ServiceUnavailable
    );
    assert_eq!(log.lock().unwrap().len(), 1);
}

#[rocket::async_test]
async fn a_panicking_handler_fails_no_request() {
    let store = TestStore::new();
    let sessions = KvSession::new(store.clone())
        .config(SessionConfig::default())
        .on_event(|_: &SessionEvent| panic!("the audit log is down"));
    let client = Client::tracked(
        rocket::custom(figment())
            .attach(sessions)
            .mount("/", routes()),
    )
    .await
    .expect("launch");
    assert_eq!(
        client.post("/login/ann").dispatch().await.status(),
        Status::Ok
    );
    let res = client.get("/whoami").dispatch().await;
    assert_eq!(res.into_string().await.as_deref(), Some("ann"));
    assert_eq!(client.post("/logout").dispatch().await.status(), Status::Ok);
    assert_eq!(
        client.get("/whoami").dispatch().await.status(),
        Status::NotFound
    );
}
