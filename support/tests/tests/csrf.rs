//! CSRF tokens and the `CsrfChecked` guard.

use rocket::http::{Header, Status};
use rocket::local::asynchronous::Client;
use rocket::{get, post, routes};
use rocket_kvsession::conformance::app::figment;
use rocket_kvsession::{CsrfChecked, Error, KvSession, MemoryStore, Session, SessionConfig};

#[post("/login")]
async fn login(session: Session<'_>) -> Result<(), Error> {
    session.regenerate().await?;
    session.insert("user", "alice")
}

#[get("/csrf")]
fn csrf(session: Session<'_>) -> Result<String, Error> {
    session.csrf_token()
}

#[get("/check/<t>")]
fn check(session: Session<'_>, t: &str) -> &'static str {
    if session.verify_csrf_token(t) {
        "yes"
    } else {
        "no"
    }
}

#[post("/act")]
fn act(_c: CsrfChecked) -> &'static str {
    "done"
}

/// The first CSRF token of a session, drawn while another request does the
/// same: both wait for each other after drawing, before either saves.
#[get("/csrf-together")]
async fn csrf_together(
    session: Session<'_>,
    barrier: &rocket::State<std::sync::Arc<rocket::tokio::sync::Barrier>>,
) -> Result<String, Error> {
    let token = session.csrf_token()?;
    barrier.wait().await;
    Ok(token)
}

async fn client(store: MemoryStore) -> Client {
    let rocket = rocket::custom(figment())
        .manage(std::sync::Arc::new(rocket::tokio::sync::Barrier::new(2)))
        .mount("/", routes![login, csrf, check, act, csrf_together])
        .attach(KvSession::new(store).config(SessionConfig {
            token_header: Some("x-session-token".into()),
            ..Default::default()
        }));
    Client::tracked(rocket).await.unwrap()
}

async fn get(client: &Client, uri: &str) -> String {
    client
        .get(uri.to_owned())
        .dispatch()
        .await
        .into_string()
        .await
        .unwrap()
}

#[rocket::async_test]
async fn tokens_differ_and_verify() {
    let client = client(MemoryStore::new()).await;
    client.post("/login").dispatch().await;
    let a = get(&client, "/csrf").await;
    let b = get(&client, "/csrf").await;
    assert_ne!(a, b);
    assert_eq!(get(&client, &format!("/check/{a}")).await, "yes");
    assert_eq!(get(&client, &format!("/check/{b}")).await, "yes");
    assert_eq!(get(&client, "/check/garbage").await, "no");
    client
        .post("/login")
        .header(Header::new("X-CSRF-Token", a.clone()))
        .dispatch()
        .await;
    assert_eq!(get(&client, &format!("/check/{a}")).await, "no");
}

#[rocket::async_test]
async fn guard_rules() {
    let store = MemoryStore::new();
    let client = client(store.clone()).await;
    // No session yet: headers decide.
    assert_eq!(client.post("/act").dispatch().await.status(), Status::Ok);
    let res = client
        .post("/act")
        .header(Header::new("Sec-Fetch-Site", "cross-site"))
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::Forbidden);
    assert!(res.headers().get_one("Set-Cookie").is_none());
    assert_eq!(store.len(), 0);

    client.post("/login").dispatch().await;
    assert_eq!(store.len(), 1);
    let t = get(&client, "/csrf").await;
    assert_eq!(
        client.post("/act").dispatch().await.status(),
        Status::Forbidden
    );
    let res = client
        .post("/act")
        .header(Header::new("X-CSRF-Token", "nope"))
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::Forbidden);
    assert!(res.headers().get_one("Set-Cookie").is_none());
    let ok = client
        .post("/act")
        .header(Header::new("X-CSRF-Token", t.clone()))
        .dispatch()
        .await;
    assert_eq!(ok.status(), Status::Ok);
    let res = client
        .post("/act")
        .header(Header::new("X-CSRF-Token", t.clone()))
        .header(Header::new("Sec-Fetch-Site", "cross-site"))
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::Forbidden);
    let res = client
        .post("/act")
        .header(Header::new("X-CSRF-Token", t.clone()))
        .header(Header::new("Origin", "https://evil.example"))
        .header(Header::new("Host", "localhost"))
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::Forbidden);
    let res = client
        .post("/act")
        .header(Header::new("X-CSRF-Token", t.clone()))
        .header(Header::new("Origin", "http://localhost"))
        .header(Header::new("Host", "localhost"))
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::Ok);
    assert_eq!(store.len(), 1);
    // A GET always passes.
}

#[rocket::async_test]
async fn token_header_sessions_skip_the_token_and_trusted_origins_pass() {
    let store = MemoryStore::new();
    let rocket = rocket::custom(figment())
        .mount("/", routes![login, csrf, check, act])
        .attach(KvSession::new(store.clone()).config(SessionConfig {
            token_header: Some("x-session-token".into()),
            csrf_trusted_origins: vec!["https://app.example".into()],
            ..Default::default()
        }));
    let client = Client::tracked(rocket).await.unwrap();
    client.post("/login").dispatch().await;
    let t = get(&client, "/csrf").await;
    let res = client
        .post("/act")
        .header(Header::new("X-CSRF-Token", t))
        .header(Header::new("Origin", "https://app.example"))
        .header(Header::new("Host", "backend:8000"))
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::Ok);
    let res = client
        .post("/act")
        .header(Header::new("x-session-token", "whatever"))
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::Ok);
}

/// A token of another session (another browser, same app) opens nothing
/// here, and the guard refuses it.
#[rocket::async_test]
async fn a_token_of_another_session_is_refused() {
    let store = MemoryStore::new();
    let alice = client(store.clone()).await;
    let mallory = client(store.clone()).await;
    alice.post("/login").dispatch().await;
    mallory.post("/login").dispatch().await;
    let theirs = get(&mallory, "/csrf").await;
    assert_eq!(get(&mallory, &format!("/check/{theirs}")).await, "yes");
    assert_eq!(get(&alice, &format!("/check/{theirs}")).await, "no");
    assert_eq!(act_with(&alice, theirs).await, Status::Forbidden);
    let ours = get(&alice, "/csrf").await;
    assert_eq!(act_with(&alice, ours).await, Status::Ok);
}

/// The status of `POST /act` with `token` in the CSRF header.
async fn act_with(client: &Client, token: String) -> Status {
    client
        .post("/act")
        .header(Header::new("X-CSRF-Token", token))
        .dispatch()
        .await
        .status()
}

/// Two concurrent requests that both create the session's CSRF secret end
/// with one secret that validates both responses' tokens.
#[rocket::async_test]
async fn concurrent_first_tokens_both_verify() {
    let client = client(MemoryStore::new()).await;
    client.post("/login").dispatch().await;
    let (one, two) = rocket::tokio::time::timeout(std::time::Duration::from_secs(30), async {
        rocket::tokio::join!(
            get(&client, "/csrf-together"),
            get(&client, "/csrf-together")
        )
    })
    .await
    .expect("both requests finish");
    assert_ne!(one, two, "each response carries its own mask");
    assert_eq!(get(&client, &format!("/check/{one}")).await, "yes");
    assert_eq!(get(&client, &format!("/check/{two}")).await, "yes");
    assert_eq!(act_with(&client, one).await, Status::Ok);
}
