//! What a browser and a shared cache see: `Vary`, `Cache-Control`,
//! `Max-Age`, catcher responses, session labels and `CsrfForm`.

use rocket::http::{ContentType, Header, Status};
use rocket::local::asynchronous::Client;
use rocket::{get, post, routes, FromForm, Responder, State};
use rocket_kvsession::conformance::app::figment;
use rocket_kvsession::{
    CsrfForm, Error, KvSession, MemoryStore, Session, SessionConfig, SessionManager, MAX_LABEL_LEN,
};

#[post("/set/<key>")]
fn set(session: Session<'_>, key: &str) -> Result<(), Error> {
    session.insert(key, "1")
}

#[get("/has/<key>")]
fn has(session: Session<'_>, key: &str) -> &'static str {
    if session.contains_key(key) {
        "yes"
    } else {
        "no"
    }
}

/// Changes the stored session, then fails: Rocket's catcher answers.
#[post("/set-then-fail/<key>")]
fn set_then_fail(session: Session<'_>, key: &str) -> Result<(), Status> {
    session
        .insert(key, "1")
        .map_err(|_| Status::InternalServerError)?;
    Err(Status::Unauthorized)
}

/// Changes the stored session and answers 401 itself.
#[post("/set-then-deny/<key>")]
fn set_then_deny(session: Session<'_>, key: &str) -> Result<(Status, &'static str), Error> {
    session.insert(key, "1")?;
    Ok((Status::Unauthorized, "denied"))
}

#[derive(Responder)]
#[response(status = 200)]
struct Cached {
    body: &'static str,
    cache: Header<'static>,
}

/// Starts a session and sets its own `Cache-Control`.
#[post("/cached")]
fn cached(session: Session<'_>) -> Result<Cached, Error> {
    session.insert("k", "v")?;
    Ok(Cached {
        body: "ok",
        cache: Header::new("Cache-Control", "private, max-age=60"),
    })
}

#[get("/plain")]
fn plain() -> &'static str {
    "plain"
}

#[post("/login/<user>/<label>")]
async fn login(session: Session<'_>, user: &str, label: &str) -> Result<(), Error> {
    session.regenerate().await?;
    session.set_owner(user);
    session.set_label(label);
    Ok(())
}

#[get("/labels/<user>")]
async fn labels(manager: &State<SessionManager>, user: &str) -> Result<String, Error> {
    let infos = manager.sessions_of(user).await?;
    Ok(infos
        .into_iter()
        .map(|info| info.label.unwrap_or_default())
        .collect::<Vec<_>>()
        .join("|"))
}

#[get("/csrf")]
fn csrf(session: Session<'_>) -> Result<String, Error> {
    session.csrf_token()
}

#[derive(FromForm)]
struct Transfer {
    to: String,
}

#[post("/transfer", data = "<form>")]
fn transfer(form: CsrfForm<Transfer>) -> String {
    format!("to {}", form.to)
}

async fn client_with(config: SessionConfig) -> (Client, MemoryStore) {
    let store = MemoryStore::new();
    let rocket = rocket::custom(figment())
        .mount(
            "/",
            routes![
                set,
                has,
                set_then_fail,
                set_then_deny,
                cached,
                plain,
                login,
                labels,
                csrf,
                transfer
            ],
        )
        .attach(KvSession::new(store.clone()).config(config));
    (Client::tracked(rocket).await.expect("launch"), store)
}

async fn app() -> (Client, MemoryStore) {
    client_with(SessionConfig::default()).await
}

fn values(res: &rocket::local::asynchronous::LocalResponse<'_>, name: &str) -> Vec<String> {
    res.headers().get(name).map(str::to_owned).collect()
}

#[rocket::async_test]
async fn responses_that_read_the_session_vary_on_the_cookie() {
    let (client, _) = app().await;
    let res = client.get("/has/a").dispatch().await;
    assert_eq!(values(&res, "Vary"), ["Cookie"]);
    // Nothing was set: no cookie, so no Cache-Control of ours.
    assert!(values(&res, "Cache-Control").is_empty());
    let res = client.get("/plain").dispatch().await;
    assert!(values(&res, "Vary").is_empty());
    assert!(values(&res, "Cache-Control").is_empty());
}

#[rocket::async_test]
async fn with_a_token_header_responses_vary_on_it_too() {
    let (client, _) = client_with(SessionConfig {
        token_header: Some("x-session-token".into()),
        ..SessionConfig::default()
    })
    .await;
    let res = client.get("/has/a").dispatch().await;
    let vary = values(&res, "Vary");
    for expected in ["Cookie", "x-session-token", "Authorization"] {
        assert!(vary.iter().any(|v| v == expected), "{vary:?}");
    }
}

#[rocket::async_test]
async fn setting_the_cookie_forbids_storing_unless_the_handler_chose() {
    let (client, _) = app().await;
    let res = client.post("/set/a").dispatch().await;
    assert!(values(&res, "Set-Cookie")
        .iter()
        .any(|c| c.starts_with("session=")));
    assert_eq!(values(&res, "Cache-Control"), ["no-store"]);
    // A stored session changed without a new cookie: nothing to forbid.
    let res = client.post("/set/b").dispatch().await;
    assert!(values(&res, "Set-Cookie").is_empty());
    assert!(values(&res, "Cache-Control").is_empty());

    let (fresh, _) = app().await;
    let res = fresh.post("/cached").dispatch().await;
    assert!(!values(&res, "Set-Cookie").is_empty());
    assert_eq!(values(&res, "Cache-Control"), ["private, max-age=60"]);
}

#[rocket::async_test]
async fn a_one_second_lifetime_gives_max_age_one() {
    let (client, _) = client_with(SessionConfig {
        lifetime: 1,
        ..SessionConfig::default()
    })
    .await;
    let res = client.post("/set/a").dispatch().await;
    let cookie = values(&res, "Set-Cookie")
        .into_iter()
        .find(|c| c.starts_with("session="))
        .expect("a session cookie");
    assert!(cookie.contains("Max-Age=1"), "{cookie}");
    assert!(!cookie.contains("Max-Age=0"), "{cookie}");
}

#[rocket::async_test]
async fn a_catchers_response_keeps_no_change_of_a_stored_session() {
    let (client, _) = app().await;
    assert_eq!(client.post("/set/a").dispatch().await.status(), Status::Ok);
    let res = client.post("/set-then-fail/b").dispatch().await;
    assert_eq!(res.status(), Status::Unauthorized);
    // The probe never reaches the client.
    assert!(
        values(&res, "Set-Cookie").is_empty(),
        "{:?}",
        values(&res, "Set-Cookie")
    );
    let body = client.get("/has/b").dispatch().await.into_string().await;
    assert_eq!(body.as_deref(), Some("no"));
    // The handler's own 401 is a response like any other: kept.
    let res = client.post("/set-then-deny/c").dispatch().await;
    assert_eq!(res.status(), Status::Unauthorized);
    assert!(values(&res, "Set-Cookie").is_empty());
    let body = client.get("/has/c").dispatch().await.into_string().await;
    assert_eq!(body.as_deref(), Some("yes"));
}

#[rocket::async_test]
async fn labels_are_cleaned_bounded_and_listed() {
    let (client, _) = app().await;
    let res = client
        .post("/login/alice/Firefox%07%20on%20Linux")
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::Ok);
    let body = client
        .get("/labels/alice")
        .dispatch()
        .await
        .into_string()
        .await;
    assert_eq!(body.as_deref(), Some("Firefox on Linux"));

    let (other, _) = app().await;
    let long = "%C3%A9".repeat(500);
    other.post(format!("/login/bob/{long}")).dispatch().await;
    let body = other
        .get("/labels/bob")
        .dispatch()
        .await
        .into_string()
        .await
        .unwrap();
    assert!(
        body.len() <= MAX_LABEL_LEN && body.len() >= MAX_LABEL_LEN - 1,
        "{}",
        body.len()
    );
    assert!(body.chars().all(|c| c == 'é'));
}

#[rocket::async_test]
async fn csrf_forms_need_their_field() {
    let (client, store) = app().await;
    client.post("/set/a").dispatch().await;
    let token = client
        .get("/csrf")
        .dispatch()
        .await
        .into_string()
        .await
        .unwrap();
    let res = client
        .post("/transfer")
        .header(ContentType::Form)
        .body(format!("to=bob&csrf_token={token}"))
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::Ok);
    assert_eq!(res.into_string().await.as_deref(), Some("to bob"));
    for body in ["to=bob", "to=bob&csrf_token=forged", "csrf_token=&to=bob"] {
        let res = client
            .post("/transfer")
            .header(ContentType::Form)
            .body(body)
            .dispatch()
            .await;
        assert_eq!(res.status(), Status::Forbidden, "{body}");
        assert!(values(&res, "Set-Cookie").is_empty());
    }
    // A cross-site form fails before its body is read, token or not.
    let res = client
        .post("/transfer")
        .header(ContentType::Form)
        .header(Header::new("Sec-Fetch-Site", "cross-site"))
        .body(format!("to=bob&csrf_token={token}"))
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::Forbidden);
    assert_eq!(store.len(), 1);
}
