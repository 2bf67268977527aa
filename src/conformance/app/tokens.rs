//! The app cases over tokens: the same cases, with every request carrying
//! its session in a token header instead of the cookie.
//!
//! [`over_tokens`] runs a case with every app it builds configured with
//! [`TOKEN_HEADER`] as `token_header`, and a fairing between the client and
//! the app that turns the client's session cookie into that request header
//! (an empty one when it has none: a token client that wants a session)
//! and the token a response sends back into a `Set-Cookie` for the client.
//! So the cases' clients keep their sessions the way they always do, while
//! the app sees token requests only: it never reads the cookie (a token
//! request with a cookie uses the token) and sets none of its own.

use std::future::Future;

use rocket::fairing::{Fairing, Info, Kind};
use rocket::http::{Cookie, Header};
use rocket::{Build, Data, Request, Response, Rocket};

use crate::SessionConfig;

/// The token header of the apps of a case run [`over_tokens`].
pub const TOKEN_HEADER: &str = "x-conformance-token";

rocket::tokio::task_local! {
    static OVER_TOKENS: bool;
}

/// Runs `case` (any app conformance case, e.g.
/// `over_tokens(login_whoami_logout(store))`) over tokens.
pub async fn over_tokens<F: Future>(case: F) -> F::Output {
    OVER_TOKENS.scope(true, case).await
}

/// Whether the running case runs [`over_tokens`].
fn tokens() -> bool {
    OVER_TOKENS.try_with(|on| *on).unwrap_or(false)
}

/// `config`, with [`TOKEN_HEADER`] as `token_header` over tokens.
pub(super) fn carried(config: SessionConfig) -> SessionConfig {
    if tokens() {
        SessionConfig {
            token_header: Some(TOKEN_HEADER.into()),
            ..config
        }
    } else {
        config
    }
}

/// `rocket` (with the session fairing attached), with the fairing that
/// carries the session cookie of `config` as a token over tokens.
pub(super) fn carrying(rocket: Rocket<Build>, config: &SessionConfig) -> Rocket<Build> {
    if tokens() {
        rocket.attach(TokenCarrier {
            cookie: config.cookie_name.clone(),
        })
    } else {
        rocket
    }
}

/// Moves the client's session cookie into [`TOKEN_HEADER`] and the
/// response's token back into a cookie. Attached after the session fairing,
/// so it sees the response last.
struct TokenCarrier {
    cookie: String,
}

#[rocket::async_trait]
impl Fairing for TokenCarrier {
    fn info(&self) -> Info {
        Info {
            name: "conformance token carrier",
            kind: Kind::Request | Kind::Response,
        }
    }

    async fn on_request(&self, req: &mut Request<'_>, _: &mut Data<'_>) {
        let token = req
            .cookies()
            .get(&self.cookie)
            .map(|c| c.value().to_owned())
            .unwrap_or_default();
        req.add_header(Header::new(TOKEN_HEADER, token));
    }

    async fn on_response<'r>(&self, _: &'r Request<'_>, res: &mut Response<'r>) {
        for set in res.headers().get("Set-Cookie") {
            assert!(
                !set.starts_with(&format!("{}=", self.cookie)),
                "a token request got a session cookie: {set}"
            );
        }
        if let Some(token) = res.headers().get_one(TOKEN_HEADER).map(str::to_owned) {
            let cookie = Cookie::build((self.cookie.clone(), token)).path("/");
            res.adjoin_header(cookie.build());
        }
    }
}
