//! Drives `examples/api.rs` through `rocket::local`.

#[allow(dead_code)]
#[path = "../../../examples/api.rs"]
mod api;

use rocket::http::{ContentType, Header, Status};
use rocket::local::asynchronous::{Client, LocalRequest, LocalResponse};
use rocket::serde::json::{json, Value};
use rocket_kvsession::MemoryStore;

async fn launch(store: &MemoryStore) -> Client {
    // Untracked: nothing but the token carries the session.
    Client::untracked(api::app(api::sessions(store.clone())))
        .await
        .expect("the example launches")
}

/// A response of the API: never a cookie, never a 5xx, always JSON (but a
/// 204's empty body).
struct Answer {
    status: Status,
    token_header: Option<String>,
    www_authenticate: Option<String>,
    cache_control: Option<String>,
    body: Value,
}

async fn send(req: LocalRequest<'_>) -> Answer {
    let res: LocalResponse<'_> = req.dispatch().await;
    let status = res.status();
    assert!(status.code < 500, "{status}");
    let cookies: Vec<&str> = res.headers().get("Set-Cookie").collect();
    assert!(cookies.is_empty(), "no cookie ever: {cookies:?}");
    let header = |name: &str| res.headers().get_one(name).map(str::to_owned);
    let (token_header, www_authenticate, cache_control) = (
        header(api::TOKEN_HEADER),
        header("WWW-Authenticate"),
        header("Cache-Control"),
    );
    let body = if status == Status::NoContent {
        Value::Null
    } else {
        assert_eq!(res.content_type(), Some(ContentType::JSON), "{status}");
        res.into_json().await.expect("a JSON body")
    };
    Answer {
        status,
        token_header,
        www_authenticate,
        cache_control,
        body,
    }
}

async fn login(client: &Client, user: &str, password: &str) -> Answer {
    send(
        client
            .post("/api/login")
            .header(ContentType::JSON)
            .body(json!({ "user": user, "password": password }).to_string()),
    )
    .await
}

/// Logs in and returns the token.
async fn token(client: &Client, user: &str) -> String {
    let answer = login(client, user, api::PASSWORD).await;
    assert_eq!(answer.status, Status::Ok, "{}", answer.body);
    answer.body["token"].as_str().expect("a token").to_owned()
}

fn with_header(token: &str) -> Header<'static> {
    Header::new(api::TOKEN_HEADER, token.to_owned())
}

fn with_bearer(token: &str) -> Header<'static> {
    Header::new("Authorization", format!("Bearer {token}"))
}

async fn me(client: &Client, credential: Header<'static>) -> Answer {
    send(client.get("/api/me").header(credential)).await
}

fn unauthorized(answer: &Answer) {
    assert_eq!(answer.status, Status::Unauthorized, "{}", answer.body);
    assert_eq!(answer.www_authenticate.as_deref(), Some("Bearer"));
    assert!(answer.body["error"].is_string(), "{}", answer.body);
}

#[rocket::async_test]
async fn login_me_notes_logout() {
    let store = MemoryStore::new();
    let client = launch(&store).await;

    let answer = login(&client, "alice", api::PASSWORD).await;
    assert_eq!(answer.status, Status::Ok, "{}", answer.body);
    assert_eq!(answer.body["user"], "alice");
    let token = answer.body["token"].as_str().expect("a token").to_owned();
    assert!(token.len() > 40, "{token}");
    assert_eq!(
        answer.token_header.as_deref(),
        Some(token.as_str()),
        "the new token is in the response header too"
    );
    assert_eq!(answer.cache_control.as_deref(), Some("no-store"));

    // Both ways of carrying it.
    for credential in [with_header(&token), with_bearer(&token)] {
        let answer = me(&client, credential).await;
        assert_eq!(answer.status, Status::Ok, "{}", answer.body);
        assert_eq!(answer.body, json!({ "user": "alice", "notes": [] }));
        assert_eq!(answer.token_header, None, "the token did not change");
    }

    // A token request writes without any CSRF token.
    for (text, credential) in [
        ("buy milk", with_header(&token)),
        ("call bob", with_bearer(&token)),
    ] {
        let answer = send(
            client
                .post("/api/notes")
                .header(credential)
                .header(ContentType::JSON)
                .body(json!({ "text": text }).to_string()),
        )
        .await;
        assert_eq!(answer.status, Status::Created, "{}", answer.body);
    }
    let answer = me(&client, with_header(&token)).await;
    assert_eq!(
        answer.body,
        json!({ "user": "alice", "notes": ["buy milk", "call bob"] })
    );

    let answer = send(client.post("/api/logout").header(with_bearer(&token))).await;
    assert_eq!(answer.status, Status::NoContent);
    for credential in [with_header(&token), with_bearer(&token)] {
        unauthorized(&me(&client, credential).await);
    }
    let answer = send(
        client
            .post("/api/notes")
            .header(with_header(&token))
            .header(ContentType::JSON)
            .body(r#"{"text": "too late"}"#),
    )
    .await;
    unauthorized(&answer);
}

#[rocket::async_test]
async fn bad_logins_are_json_errors() {
    let store = MemoryStore::new();
    let client = launch(&store).await;
    let answer = login(&client, "alice", "wrong").await;
    unauthorized(&answer);
    assert_eq!(answer.body["error"], "wrong user name or password");
    assert!(answer.body.get("token").is_none());

    let long = "a".repeat(api::MAX_USER_LEN + 1);
    for user in ["", "  ", long.as_str(), "a\u{1}b", "a\nb"] {
        let answer = login(&client, user, api::PASSWORD).await;
        assert_eq!(answer.status, Status::UnprocessableEntity, "{user:?}");
        assert!(answer.body["error"].is_string(), "{}", answer.body);
    }

    // Rocket's own errors are JSON too.
    let answer = send(
        client
            .post("/api/login")
            .header(ContentType::JSON)
            .body("{"),
    )
    .await;
    assert_eq!(answer.status, Status::BadRequest);
    assert!(answer.body["error"].is_string(), "{}", answer.body);
    let answer = send(
        client
            .post("/api/login")
            .header(ContentType::JSON)
            .body(r#"{"user": "alice"}"#),
    )
    .await;
    assert_eq!(answer.status, Status::UnprocessableEntity);
    let answer = send(client.get("/api/nothing")).await;
    assert_eq!(answer.status, Status::NotFound);
    assert_eq!(answer.body["error"], "not found");
    assert!(store.is_empty(), "no failed login stored anything");
}

/// Forged, tampered, empty and cookie-shaped tokens open nothing: `401`,
/// never a 5xx, and never a cookie.
#[rocket::async_test]
async fn forged_tokens_get_401() {
    let store = MemoryStore::new();
    let client = launch(&store).await;
    let token = token(&client, "alice").await;
    let mut tampered = token.clone().into_bytes();
    let last = tampered.len() - 1;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let forged = [
        String::new(),
        "forged".to_owned(),
        tampered,
        token[..token.len() - 1].to_owned(),
        format!("{token}A"),
        "A".repeat(10_000),
        "é".repeat(50),
    ];
    for forged in &forged {
        unauthorized(&me(&client, with_header(forged)).await);
        unauthorized(&me(&client, with_bearer(forged)).await);
        let answer = send(
            client
                .post("/api/notes")
                .header(with_header(forged))
                .header(ContentType::JSON)
                .body(r#"{"text": "x"}"#),
        )
        .await;
        unauthorized(&answer);
    }
    // No credential at all, and a session cookie's name with the token in it.
    unauthorized(&send(client.get("/api/me")).await);
    unauthorized(
        &send(
            client
                .get("/api/me")
                .cookie(rocket::http::Cookie::new("session", token.clone())),
        )
        .await,
    );
    // Alice's token still works.
    let answer = me(&client, with_header(&token)).await;
    assert_eq!(answer.body["user"], "alice");
}

/// Two logins are two sessions; logging one out leaves the other.
#[rocket::async_test]
async fn each_login_is_its_own_session() {
    let store = MemoryStore::new();
    let client = launch(&store).await;
    let first = token(&client, "alice").await;
    let second = token(&client, "alice").await;
    assert_ne!(first, second);
    let bob = token(&client, "bob").await;
    let answer = send(client.post("/api/logout").header(with_header(&first))).await;
    assert_eq!(answer.status, Status::NoContent);
    unauthorized(&me(&client, with_header(&first)).await);
    assert_eq!(
        me(&client, with_header(&second)).await.body["user"],
        "alice"
    );
    assert_eq!(me(&client, with_bearer(&bob)).await.body["user"], "bob");

    // A login with a live token starts over: a new token, the old one dead.
    let answer = send(
        client
            .post("/api/login")
            .header(with_header(&second))
            .header(ContentType::JSON)
            .body(json!({ "user": "carol", "password": api::PASSWORD }).to_string()),
    )
    .await;
    assert_eq!(answer.status, Status::Ok);
    let third = answer.body["token"].as_str().unwrap().to_owned();
    assert_ne!(third, second);
    assert_eq!(answer.token_header.as_deref(), Some(third.as_str()));
    assert_eq!(me(&client, with_header(&third)).await.body["user"], "carol");
    unauthorized(&me(&client, with_header(&second)).await);
}

#[rocket::async_test]
async fn notes_are_checked() {
    let store = MemoryStore::new();
    let client = launch(&store).await;
    let token = token(&client, "alice").await;
    let note = |text: String| {
        client
            .post("/api/notes")
            .header(with_header(&token))
            .header(ContentType::JSON)
            .body(json!({ "text": text }).to_string())
    };
    for text in [String::new(), " ".into(), "x".repeat(api::MAX_NOTE_LEN + 1)] {
        let answer = send(note(text)).await;
        assert_eq!(answer.status, Status::UnprocessableEntity);
    }
    for n in 0..api::MAX_NOTES {
        let answer = send(note(format!("note {n}"))).await;
        assert_eq!(answer.status, Status::Created, "{}", answer.body);
    }
    let answer = send(note("one too many".into())).await;
    assert_eq!(answer.status, Status::UnprocessableEntity);
    let answer = me(&client, with_header(&token)).await;
    assert_eq!(
        answer.body["notes"].as_array().unwrap().len(),
        api::MAX_NOTES
    );
}

#[rocket::async_test]
async fn the_example_main_app_launches_on_the_memory_store() {
    let client = Client::untracked(api::rocket()).await.expect("launches");
    unauthorized(&send(client.get("/api/me")).await);
}
