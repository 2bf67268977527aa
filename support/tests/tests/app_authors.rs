//! What app authors build on: `take`, flash messages, values whose type
//! changed after a deploy, optional sessions during a store outage, a
//! failed save after a handler's side effects, and starting a test client
//! logged in (`testing`).

mod common;

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};

use rocket::http::{Cookie, Status};
use rocket::local::asynchronous::Client;
use rocket::response::Redirect;
use rocket::{get, post, routes, uri, Build, Rocket, State};
use rocket_kvsession::testing::{self, TestSession};
use rocket_kvsession::{Error, KvSession, MemoryStore, Session, SessionConfig, FLASH_KEY};

use common::{figment, set_cookies, TestStore};

#[post("/number/<key>/<n>")]
fn put_number(session: Session<'_>, key: &str, n: u64) -> Result<&'static str, Error> {
    session.insert(key, n)?;
    Ok("ok")
}

#[post("/text/<key>/<text>")]
fn put_text(session: Session<'_>, key: &str, text: &str) -> Result<&'static str, Error> {
    session.insert(key, text)?;
    Ok("ok")
}

/// Strict: an `Err` (a 500) if the value is not a number.
#[get("/number/<key>")]
fn get_number(session: Session<'_>, key: &str) -> Result<String, Error> {
    Ok(format!("{:?}", session.get::<u64>(key)?))
}

#[get("/lenient/<key>")]
fn lenient_number(session: Session<'_>, key: &str) -> String {
    format!("{:?}", session.get_or_discard::<u64>(key))
}

#[post("/take/text/<key>")]
fn take_text(session: Session<'_>, key: &str) -> Result<String, Error> {
    Ok(format!("{:?}", session.take::<String>(key)?))
}

/// The error's message, with a 500, if the value is not a number.
#[post("/take/number/<key>")]
fn take_number(session: Session<'_>, key: &str) -> (Status, String) {
    match session.take::<u64>(key) {
        Ok(value) => (Status::Ok, format!("{value:?}")),
        Err(e) => (Status::InternalServerError, e.to_string()),
    }
}

#[get("/keys")]
fn keys(session: Session<'_>) -> String {
    session.keys().join(",")
}

#[post("/flash/<kind>/<message>")]
fn flash(session: Session<'_>, kind: &str, message: &str) -> Result<Redirect, Error> {
    session.flash(kind, message)?;
    Ok(Redirect::to(uri!(plain)))
}

#[get("/flashes")]
fn flashes(session: Session<'_>) -> String {
    session
        .flashes()
        .iter()
        .map(|f| format!("{}:{}", f.kind(), f.message()))
        .collect::<Vec<_>>()
        .join("|")
}

#[get("/plain")]
fn plain() -> &'static str {
    "plain"
}

#[get("/optional")]
fn optional(session: Option<Session<'_>>) -> String {
    match session {
        Some(session) => format!(
            "hello {}",
            session
                .get_or_discard::<String>("user")
                .unwrap_or_else(|| "guest".into())
        ),
        None => "hello guest (sessions are unavailable)".into(),
    }
}

#[get("/result")]
fn result(session: Result<Session<'_>, &Error>) -> String {
    match session {
        Ok(_) => "session".into(),
        Err(e) => format!("no session: {e}"),
    }
}

#[get("/strict")]
fn strict(session: Session<'_>) -> String {
    format!("{:?}", session.get::<String>("user"))
}

/// A handler with a side effect: counts orders, then notes the last one in
/// the session.
#[post("/order")]
fn order(session: Session<'_>, orders: &State<AtomicU64>) -> Result<String, Error> {
    let n = orders.fetch_add(1, SeqCst) + 1;
    session.insert("last_order", n)?;
    Ok(format!("order {n}"))
}

fn app(sessions: KvSession) -> Rocket<Build> {
    rocket::custom(figment())
        .attach(sessions)
        .manage(AtomicU64::new(0))
        .mount(
            "/",
            routes![
                put_number,
                put_text,
                get_number,
                lenient_number,
                take_text,
                take_number,
                keys,
                flash,
                flashes,
                plain,
                optional,
                result,
                strict,
                order
            ],
        )
}

async fn client(store: MemoryStore) -> Client {
    Client::tracked(app(KvSession::new(store)))
        .await
        .expect("the app launches")
}

async fn read(client: &Client, uri: &str) -> (Status, String) {
    let res = client.get(uri.to_owned()).dispatch().await;
    (res.status(), res.into_string().await.unwrap_or_default())
}

async fn post(client: &Client, uri: &str) -> (Status, String) {
    let res = client.post(uri.to_owned()).dispatch().await;
    (res.status(), res.into_string().await.unwrap_or_default())
}

#[rocket::async_test]
async fn take_reads_and_removes_once() {
    let store = MemoryStore::new();
    let client = client(store.clone()).await;
    post(&client, "/text/next/account").await;
    post(&client, "/text/keep/yes").await;

    assert_eq!(
        post(&client, "/take/text/next").await.1,
        r#"Some("account")"#
    );
    assert_eq!(
        read(&client, "/keys").await.1,
        "keep",
        "the removal was saved"
    );
    assert_eq!(post(&client, "/take/text/next").await.1, "None");
    assert_eq!(post(&client, "/take/text/never").await.1, "None");

    // Taking the last key ends the session.
    assert_eq!(post(&client, "/take/text/keep").await.1, r#"Some("yes")"#);
    assert!(store.is_empty(), "an emptied session is not kept");
}

#[rocket::async_test]
async fn take_of_a_value_that_does_not_decode_keeps_it() {
    let client = client(MemoryStore::new()).await;
    post(&client, "/text/n/seven").await;
    let (status, message) = post(&client, "/take/number/n").await;
    assert_eq!(status, Status::InternalServerError);
    assert!(
        message.contains(r#""n""#),
        "the error names the key: {message}"
    );
    assert_eq!(read(&client, "/keys").await.1, "n", "not removed");
    assert_eq!(post(&client, "/take/text/n").await.1, r#"Some("seven")"#);
}

#[rocket::async_test]
async fn flashes_queue_survive_redirects_and_show_once() {
    let store = MemoryStore::new();
    let client = client(store.clone()).await;

    let res = client.post("/flash/info/one").dispatch().await;
    assert_eq!(res.status(), Status::SeeOther);
    assert!(
        !set_cookies(&res, "session").is_empty(),
        "the flash starts a session"
    );
    client.post("/flash/error/two").dispatch().await;
    // Requests that do not read them leave them queued.
    assert_eq!(read(&client, "/plain").await.1, "plain");
    assert_eq!(read(&client, "/keys").await.1, FLASH_KEY);
    post(&client, "/number/visits/3").await;
    client.post("/flash/info/three").dispatch().await;

    assert_eq!(
        read(&client, "/flashes").await.1,
        "info:one|error:two|info:three",
        "every message, oldest first"
    );
    assert_eq!(read(&client, "/flashes").await.1, "", "each shown once");
    assert_eq!(read(&client, "/keys").await.1, "visits", "the rest is kept");
    assert_eq!(read(&client, "/number/visits").await.1, "Some(3)");
}

#[rocket::async_test]
async fn reading_no_flashes_writes_nothing() {
    let store = TestStore::new();
    let counters = store.counters.clone();
    let client = Client::tracked(app(KvSession::new(store)))
        .await
        .expect("launches");
    post(&client, "/number/a/1").await;
    let writes = counters.writes();
    assert_eq!(read(&client, "/flashes").await.1, "");
    assert_eq!(counters.writes(), writes, "no flashes, no write");
}

#[rocket::async_test]
async fn a_flash_only_session_is_deleted_once_read() {
    let store = MemoryStore::new();
    let client = client(store.clone()).await;
    client.post("/flash/error/denied").dispatch().await;
    assert_eq!(store.len(), 1);
    let res = client.get("/flashes").dispatch().await;
    let removal = set_cookies(&res, "session");
    assert_eq!(res.into_string().await.unwrap(), "error:denied");
    assert!(store.is_empty());
    assert!(
        removal.iter().any(|c| c.contains("Max-Age=0")),
        "the cookie is removed: {removal:?}"
    );
}

#[rocket::async_test]
async fn a_value_whose_type_changed_after_a_deploy() {
    let store = MemoryStore::new();
    let client = client(store.clone()).await;
    // The old release stored the cart count as text.
    post(&client, "/text/count/three").await;
    post(&client, "/text/user/alice").await;

    // Strict reads fail, every time, and keep the value.
    assert_eq!(
        read(&client, "/number/count").await.0,
        Status::InternalServerError
    );
    assert_eq!(
        read(&client, "/number/count").await.0,
        Status::InternalServerError
    );
    assert_eq!(read(&client, "/keys").await.1, "count,user");

    // The lenient read drops it; the session keeps working.
    assert_eq!(read(&client, "/lenient/count").await.1, "None");
    assert_eq!(read(&client, "/keys").await.1, "user", "the drop was saved");
    assert_eq!(read(&client, "/number/count").await.1, "None");
    assert_eq!(read(&client, "/strict").await.1, r#"Ok(Some("alice"))"#);
    post(&client, "/number/count/3").await;
    assert_eq!(read(&client, "/lenient/count").await.1, "Some(3)");
    assert_eq!(read(&client, "/number/count").await.1, "Some(3)");
    assert_eq!(read(&client, "/lenient/absent").await.1, "None");
    assert_eq!(store.len(), 1);
}

#[rocket::async_test]
async fn optional_sessions_keep_routes_working_during_an_outage() {
    let store = TestStore::new();
    let failing = store.failing.clone();
    let client = Client::tracked(app(KvSession::new(store)))
        .await
        .expect("launches");
    post(&client, "/text/user/alice").await;
    assert_eq!(read(&client, "/optional").await.1, "hello alice");

    failing.store(true, SeqCst);
    assert_eq!(
        read(&client, "/optional").await,
        (
            Status::Ok,
            "hello guest (sessions are unavailable)".to_owned()
        )
    );
    let (status, body) = read(&client, "/result").await;
    assert_eq!(status, Status::Ok);
    assert!(
        body.starts_with("no session: ") && body.contains("unavailable"),
        "{body}"
    );
    assert_eq!(
        read(&client, "/strict").await.0,
        Status::ServiceUnavailable,
        "a required session fails the request"
    );

    failing.store(false, SeqCst);
    assert_eq!(read(&client, "/optional").await.1, "hello alice");
    assert_eq!(read(&client, "/result").await.1, "session");
}

#[rocket::async_test]
async fn a_failed_save_answers_503_after_the_side_effects() {
    let store = TestStore::new();
    let failing_writes = store.failing_writes.clone();
    let rocket = app(KvSession::new(store.clone()));
    let client = Client::tracked(rocket).await.expect("launches");
    assert_eq!(post(&client, "/order").await.1, "order 1");

    failing_writes.store(true, SeqCst);
    let (status, body) = post(&client, "/order").await;
    assert_eq!(status, Status::ServiceUnavailable);
    assert!(body.contains("could not be saved"), "{body}");
    assert!(!body.contains("order"), "the handler's body is replaced");
    let orders = client.rocket().state::<AtomicU64>().expect("managed");
    assert_eq!(
        orders.load(SeqCst),
        2,
        "the handler ran: its side effect happened"
    );

    failing_writes.store(false, SeqCst);
    assert_eq!(
        read(&client, "/number/last_order").await.1,
        "Some(1)",
        "the session kept what was saved before"
    );
}

#[rocket::async_test]
async fn testing_login_starts_a_stored_session() {
    let store = MemoryStore::new();
    let config = SessionConfig {
        key_prefix: "app:".into(),
        permanent: false,
        ..SessionConfig::default()
    };
    let client = Client::untracked(app(KvSession::new(store.clone()).config(config)))
        .await
        .expect("launches");

    let cookie = testing::login(&client, [("user", "alice")])
        .await
        .expect("a stored session");
    assert_eq!(cookie.name(), "session");
    assert_eq!(
        cookie.max_age(),
        None,
        "a browser-session cookie, as configured"
    );
    let keys: Vec<String> = {
        use futures::TryStreamExt;
        use rocket_kvsession::KeyValueStore;
        store
            .list("")
            .map_ok(|info| info.key)
            .try_collect()
            .await
            .expect("listed")
    };
    assert_eq!(keys.len(), 1);
    assert!(keys[0].starts_with("app:"), "{keys:?}");
    // The cookie carries the id sealed, as the app seals it.
    let raw_id = keys[0]["app:".len()..].to_owned();
    assert!(rocket_kvsession::conformance::is_session_id(&raw_id));
    assert!(!cookie.value().contains(&raw_id), "the id is sealed");

    let res = client
        .get("/strict")
        .cookie(cookie.clone())
        .dispatch()
        .await;
    assert_eq!(res.into_string().await.unwrap(), r#"Ok(Some("alice"))"#);

    // Values of several types, and a permanent session.
    let cookie = TestSession::new()
        .insert("user", "bob")
        .unwrap()
        .insert("count", 5_u64)
        .unwrap()
        .permanent(true)
        .create(&client)
        .await
        .expect("a stored session");
    assert!(cookie.max_age().is_some(), "a permanent cookie");
    let res = client
        .get("/number/count")
        .cookie(cookie.clone())
        .dispatch()
        .await;
    assert_eq!(res.into_string().await.unwrap(), "Some(5)");

    // A cookie the app did not seal opens nothing, even with a real id.
    let forged = Cookie::new("session", raw_id);
    let res = client.get("/strict").cookie(forged).dispatch().await;
    assert_eq!(res.into_string().await.unwrap(), "Ok(None)");
}

#[rocket::async_test]
async fn testing_login_needs_the_fairing() {
    let client = Client::untracked(rocket::custom(figment()))
        .await
        .expect("launches");
    let err = testing::login(&client, [("user", "alice")])
        .await
        .expect_err("no fairing");
    assert!(matches!(err, Error::NotAttached), "{err:?}");
}

/// A client that triggers a flash on every request and never reads them
/// keeps a bounded record: the newest 32 messages, each cut to 1,024 bytes.
#[rocket::async_test]
async fn unread_flashes_do_not_grow_the_record_without_bound() {
    use rocket_kvsession::{KeyValueStore, MAX_FLASHES};
    let store = MemoryStore::new();
    let client = client(store.clone()).await;
    let long = "x".repeat(5000);
    for n in 0..300 {
        let message = if n % 2 == 0 {
            format!("note{n}")
        } else {
            long.clone()
        };
        let res = client
            .post(format!("/flash/info/{message}"))
            .dispatch()
            .await;
        assert!(res.status().class().is_success() || res.status().class().is_redirection());
    }
    let keys: Vec<rocket_kvsession::KeyInfo> = futures::TryStreamExt::try_collect(store.list(""))
        .await
        .unwrap();
    let keys: Vec<String> = keys.into_iter().map(|k| k.key).collect();
    assert_eq!(keys.len(), 1, "{keys:?}");
    let record = store.get(&keys[0]).await.unwrap().expect("the session");
    assert!(
        record.value.len() < MAX_FLASHES * 1100,
        "the record grew to {} bytes",
        record.value.len()
    );
    let res = client.get("/flashes").dispatch().await;
    let shown = res.into_string().await.unwrap_or_default();
    let shown: Vec<&str> = shown.split('|').collect();
    assert_eq!(shown.len(), MAX_FLASHES);
    assert_eq!(
        shown[MAX_FLASHES - 1].len(),
        "info:".len() + 1024,
        "cut to 1,024 bytes"
    );
    assert_eq!(
        shown[MAX_FLASHES - 2],
        "info:note298",
        "the newest are kept"
    );
    assert!(!shown.contains(&"info:note0"), "the oldest are dropped");
}
