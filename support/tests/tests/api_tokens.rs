//! Sessions carried by a token header.

use rocket::http::{Header, Status};
use rocket::local::asynchronous::Client;
use rocket::{get, post, routes};
use rocket_kvsession::conformance::app::figment;
use rocket_kvsession::{Error, KvSession, MemoryStore, Session, SessionConfig};

#[post("/login/<user>")]
async fn login(session: Session<'_>, user: &str) -> Result<String, Error> {
    session.regenerate().await?;
    session.insert("user", user)?;
    Ok(session.token().unwrap_or_default())
}

#[post("/cookie_login/<user>")]
async fn cookie_login(session: Session<'_>, user: &str) -> Result<(), Error> {
    session.regenerate().await?;
    session.insert("user", user)
}

#[get("/whoami")]
fn whoami(session: Session<'_>) -> Option<String> {
    session.get::<String>("user").ok().flatten()
}

#[post("/regen")]
async fn regen(session: Session<'_>) -> Result<(), Error> {
    session.regenerate().await
}

#[post("/logout")]
async fn logout(session: Session<'_>) -> Result<(), Error> {
    session.destroy().await
}

async fn client() -> Client {
    let rocket = rocket::custom(figment())
        .mount("/", routes![login, cookie_login, whoami, regen, logout])
        .attach(KvSession::new(MemoryStore::new()).config(SessionConfig {
            token_header: Some("x-session-token".into()),
            ..Default::default()
        }));
    Client::untracked(rocket).await.unwrap()
}

fn no_session_cookie(res: &rocket::local::asynchronous::LocalResponse<'_>) {
    for c in res.headers().get("Set-Cookie") {
        assert!(!c.starts_with("session="), "unexpected cookie {c}");
    }
}

/// The token a response sends in the token header.
fn sent_token(res: &rocket::local::asynchronous::LocalResponse<'_>) -> Option<String> {
    res.headers().get_one("x-session-token").map(str::to_owned)
}

async fn who(client: &Client, h: Header<'static>) -> Option<String> {
    let res = client.get("/whoami").header(h).dispatch().await;
    assert!(res.status().code < 500);
    no_session_cookie(&res);
    if res.status() == Status::Ok {
        res.into_string().await
    } else {
        None
    }
}

#[rocket::async_test]
async fn token_lifecycle() {
    let client = client().await;
    let res = client
        .post("/login/alice")
        .header(Header::new("x-session-token", ""))
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::Ok);
    no_session_cookie(&res);
    let token = res.into_string().await.unwrap();
    assert!(!token.is_empty());
    assert_eq!(
        who(&client, Header::new("x-session-token", token.clone()))
            .await
            .as_deref(),
        Some("alice")
    );
    assert_eq!(
        who(
            &client,
            Header::new("Authorization", format!("Bearer {token}"))
        )
        .await
        .as_deref(),
        Some("alice")
    );
    let res = client
        .post("/regen")
        .header(Header::new("x-session-token", token.clone()))
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::Ok);
    no_session_cookie(&res);
    let new = sent_token(&res).expect("new token");
    assert_ne!(new, token);
    assert_eq!(
        who(&client, Header::new("x-session-token", token.clone())).await,
        None
    );
    assert_eq!(
        who(&client, Header::new("x-session-token", new.clone()))
            .await
            .as_deref(),
        Some("alice")
    );
    let res = client
        .post("/logout")
        .header(Header::new("x-session-token", new.clone()))
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::Ok);
    no_session_cookie(&res);
    assert_eq!(
        who(&client, Header::new("x-session-token", new)).await,
        None
    );
}

#[rocket::async_test]
async fn bad_tokens_give_fresh_sessions() {
    let client = client().await;
    let token = client
        .post("/login/alice")
        .header(Header::new("x-session-token", ""))
        .dispatch()
        .await
        .into_string()
        .await
        .unwrap();
    let mut tampered = token.clone().into_bytes();
    tampered[5] = if tampered[5] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    for bad in [
        String::new(),
        "A".repeat(10_000),
        tampered,
        token[..token.len() - 3].to_owned(),
    ] {
        assert_eq!(
            who(&client, Header::new("x-session-token", bad)).await,
            None
        );
    }
    // The real token still works.
    assert_eq!(
        who(&client, Header::new("x-session-token", token))
            .await
            .as_deref(),
        Some("alice")
    );
}

#[rocket::async_test]
async fn a_cookie_value_is_no_token() {
    let client = client().await;
    let res = client.post("/cookie_login/bob").dispatch().await;
    let cookie = res
        .cookies()
        .get("session")
        .expect("cookie")
        .value()
        .to_owned();
    // The same value as a cookie does open the session (so the test can fail).
    let ok = client
        .get("/whoami")
        .cookie(rocket::http::Cookie::new("session", cookie.clone()))
        .dispatch()
        .await;
    assert_eq!(ok.into_string().await.as_deref(), Some("bob"));
    assert_eq!(
        who(&client, Header::new("x-session-token", cookie)).await,
        None
    );
}

const OLD_KEY: &str = "hPRYyVRiMyxpw5sBB1XeCMN1kFsDCqKvBi2QJxBVHQk=";
const NEW_KEY: &str = "Rc1+7Q0rLQGZRo/gHFm9JqTIjZoDq0DbzcNx9ku2r1s=";

/// A token app on `store` whose `secret_key` is `key`, with `fallbacks`.
async fn keyed(store: &MemoryStore, key: &str, fallbacks: &[&str]) -> Client {
    let rocket = rocket::custom(figment().merge(("secret_key", key)))
        .mount("/", routes![login, cookie_login, whoami, regen, logout])
        .attach(KvSession::new(store.clone()).config(SessionConfig {
            token_header: Some("x-session-token".into()),
            secret_key_fallbacks: fallbacks.iter().map(|k| (*k).into()).collect(),
            ..Default::default()
        }));
    Client::untracked(rocket).await.unwrap()
}

/// A token sealed with a fallback key opens and comes back re-sealed with
/// the current key (in the token header, never as a cookie); without the
/// fallback, only the re-sealed token opens.
#[rocket::async_test]
async fn tokens_rotate_with_the_secret_key() {
    let store = MemoryStore::new();
    let old = keyed(&store, OLD_KEY, &[]).await;
    let token = old
        .post("/login/alice")
        .header(Header::new("x-session-token", ""))
        .dispatch()
        .await
        .into_string()
        .await
        .unwrap();

    let rotating = keyed(&store, NEW_KEY, &[OLD_KEY]).await;
    let res = rotating
        .get("/whoami")
        .header(Header::new("x-session-token", token.clone()))
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::Ok);
    no_session_cookie(&res);
    let resealed = sent_token(&res).expect("the token re-sealed with the current key");
    assert_ne!(resealed, token);
    assert_eq!(res.into_string().await.as_deref(), Some("alice"));

    let new = keyed(&store, NEW_KEY, &[]).await;
    assert_eq!(
        who(&new, Header::new("x-session-token", resealed))
            .await
            .as_deref(),
        Some("alice")
    );
    assert_eq!(who(&new, Header::new("x-session-token", token)).await, None);
}

/// A request carrying both a token and a cookie uses the token (and sets
/// no cookie), also when the token opens nothing; `Authorization` with
/// another scheme than `Bearer` is no token.
#[rocket::async_test]
async fn a_token_wins_over_a_cookie_and_only_bearer_counts() {
    let client = client().await;
    let res = client.post("/cookie_login/bob").dispatch().await;
    let cookie = res.cookies().get("session").expect("cookie").clone();
    let token = client
        .post("/login/alice")
        .header(Header::new("x-session-token", ""))
        .dispatch()
        .await
        .into_string()
        .await
        .unwrap();
    let both = |h: Header<'static>| {
        let client = &client;
        let cookie = cookie.clone();
        async move {
            let res = client
                .get("/whoami")
                .cookie(cookie)
                .header(h)
                .dispatch()
                .await;
            assert!(res.status().code < 500);
            no_session_cookie(&res);
            if res.status() == Status::Ok {
                res.into_string().await
            } else {
                None
            }
        }
    };
    assert_eq!(
        both(Header::new("x-session-token", token.clone()))
            .await
            .as_deref(),
        Some("alice")
    );
    assert_eq!(
        both(Header::new("Authorization", format!("Bearer {token}")))
            .await
            .as_deref(),
        Some("alice")
    );
    assert_eq!(both(Header::new("x-session-token", "forged")).await, None);
    // Basic credentials are not a session token: the cookie decides.
    assert_eq!(
        both(Header::new("Authorization", "Basic YWxpY2U6cGFzcw=="))
            .await
            .as_deref(),
        Some("bob")
    );
    assert_eq!(
        who(
            &client,
            Header::new("Authorization", format!("Basic {token}"))
        )
        .await,
        None
    );
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    thread_local! {
        static C: rocket::local::blocking::Client = {
            let rocket = rocket::custom(figment())
                .mount("/", routes![login, whoami])
                .attach(KvSession::new(MemoryStore::new()).config(SessionConfig {
                    token_header: Some("x-session-token".into()),
                    ..Default::default()
                }));
            rocket::local::blocking::Client::untracked(rocket).unwrap()
        };
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]
        #[test]
        fn arbitrary_tokens_are_harmless(s in "[ -~]{0,200}") {
            let (code, cookies) = C.with(|c| {
                let res = c.get("/whoami").header(Header::new("x-session-token", s)).dispatch();
                let cookies: Vec<String> = res.headers().get("Set-Cookie").map(str::to_owned).collect();
                (res.status().code, cookies)
            });
            prop_assert_eq!(code, 404);
            prop_assert!(cookies.iter().all(|h| !h.starts_with("session=")), "{:?}", cookies);
        }
    }
}
