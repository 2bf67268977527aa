//! A JSON API whose clients carry their session in a header instead of a
//! cookie, on the embedded `MemoryStore`: `cargo run --example api`, then
//!
//! ```sh
//! curl -si -X POST http://127.0.0.1:8000/api/login \
//!     -H 'Content-Type: application/json' -d '{"user": "alice", "password": "rocket"}'
//! # {"user":"alice","token":"..."}
//! curl -s http://127.0.0.1:8000/api/me -H "X-Session-Token: $TOKEN"
//! curl -s -X POST http://127.0.0.1:8000/api/notes -H "Authorization: Bearer $TOKEN" \
//!     -H 'Content-Type: application/json' -d '{"text": "buy milk"}'
//! curl -si -X POST http://127.0.0.1:8000/api/logout -H "X-Session-Token: $TOKEN"
//! ```
//!
//! The fairing is configured with `token_header = "X-Session-Token"` (here
//! in code, with `KvSession::config`; `[default.kvsession]` in Rocket.toml
//! does the same for `KvSession::new`). `POST /api/login` checks the user
//! name and the password, regenerates the session id, makes the user the
//! session's owner and returns the session's token (`Session::token()`) in
//! its JSON body, and in the `X-Session-Token` response header. The client
//! sends it back as `X-Session-Token: <token>` or `Authorization: Bearer
//! <token>`. `GET /api/me` returns the user and their notes, `POST
//! /api/notes` adds a note to the session, `POST /api/logout` destroys the
//! session: its token opens nothing afterwards.
//!
//! No response sets a cookie. Every error, including Rocket's own (a body
//! that is not JSON, an unknown route), is JSON: `{"error": "..."}`; a
//! request without a live session's token gets `401` with
//! `WWW-Authenticate: Bearer`. A forged or expired token is no error: it
//! gives a fresh, empty session, so `401`, never a 5xx.
//!
//! The unsafe routes take `CsrfChecked`: a request that carries a token
//! needs no CSRF token (a browser never sends that header cross-site by
//! itself), and a browser request without one is refused unless it proves
//! it comes from the app's own pages. An API called from pages of another
//! origin (CORS) would leave the guard out: it refuses cross-site requests
//! whatever they carry.
//!
//! `examples/login.rs` is the same login for browsers: HTML forms and the
//! session cookie.

use std::convert::Infallible;

use rocket::http::Status;
use rocket::request::{self, FromRequest, Request};
use rocket::response::{self, Responder, Response};
use rocket::serde::json::{json, Json, Value};
use rocket::serde::Deserialize;
use rocket::{catch, catchers, get, launch, post, routes, Build, Rocket};
use rocket_kvsession::{CsrfChecked, Error, KvSession, MemoryStore, Session, SessionConfig};

/// The demo's one password.
pub(crate) const PASSWORD: &str = "rocket";

/// The header that carries the session token, both ways.
pub(crate) const TOKEN_HEADER: &str = "X-Session-Token";

/// The longest user name, in characters.
pub(crate) const MAX_USER_LEN: usize = 64;

/// The longest note, in characters.
pub(crate) const MAX_NOTE_LEN: usize = 200;

/// The most notes a session keeps.
pub(crate) const MAX_NOTES: usize = 20;

/// An error answer: `{"error": "..."}` with its status, and for `401` the
/// challenge RFC 6750 asks for.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: Status,
    message: String,
}

impl ApiError {
    fn new(status: Status, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }
}

impl<'r> Responder<'r, 'static> for ApiError {
    fn respond_to(self, req: &'r Request<'_>) -> response::Result<'static> {
        let mut res = Response::build_from(json!({ "error": self.message }).respond_to(req)?);
        res.status(self.status);
        if self.status == Status::Unauthorized {
            res.raw_header("WWW-Authenticate", "Bearer");
        }
        res.ok()
    }
}

/// The logged-in user of the request's session; `401` without one.
pub(crate) struct User(String);

#[rocket::async_trait]
impl<'r> FromRequest<'r> for User {
    type Error = ();

    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, ()> {
        let session = match req.guard::<Session<'r>>().await {
            request::Outcome::Success(session) => session,
            request::Outcome::Error((status, _)) => return request::Outcome::Error((status, ())),
            request::Outcome::Forward(status) => return request::Outcome::Forward(status),
        };
        match session.get::<String>("user") {
            Ok(Some(user)) => request::Outcome::Success(User(user)),
            Ok(None) => request::Outcome::Error((Status::Unauthorized, ())),
            Err(_) => request::Outcome::Error((Status::InternalServerError, ())),
        }
    }
}

/// The `User-Agent` header, if the request sent one.
pub(crate) struct UserAgent<'r>(Option<&'r str>);

#[rocket::async_trait]
impl<'r> FromRequest<'r> for UserAgent<'r> {
    type Error = Infallible;

    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, Infallible> {
        request::Outcome::Success(UserAgent(req.headers().get_one("User-Agent")))
    }
}

#[derive(Deserialize)]
#[serde(crate = "rocket::serde")]
struct Credentials {
    user: String,
    password: String,
}

#[derive(Deserialize)]
#[serde(crate = "rocket::serde")]
struct Note {
    text: String,
}

/// Why `user` cannot be a user name, if it cannot.
fn user_name_problem(user: &str) -> Option<String> {
    if user.is_empty() {
        Some("a user name is required".to_owned())
    } else if user.chars().count() > MAX_USER_LEN {
        Some(format!("a user name has at most {MAX_USER_LEN} characters"))
    } else if user.chars().any(char::is_control) {
        Some("a user name cannot contain control characters".to_owned())
    } else {
        None
    }
}

/// Logs in: `{"user", "password"}` in, `{"user", "token"}` out.
#[post("/api/login", format = "json", data = "<credentials>")]
async fn login(
    _csrf: CsrfChecked,
    session: Session<'_>,
    agent: UserAgent<'_>,
    credentials: Json<Credentials>,
) -> Result<Result<Value, ApiError>, Error> {
    let user = credentials.user.trim();
    if let Some(problem) = user_name_problem(user) {
        return Ok(Err(ApiError::new(Status::UnprocessableEntity, problem)));
    }
    if credentials.password != PASSWORD {
        return Ok(Err(ApiError::new(
            Status::Unauthorized,
            "wrong user name or password",
        )));
    }
    // A new id at every privilege change, as for a cookie.
    session.regenerate().await?;
    session.set_owner(user);
    session.set_label(agent.0.unwrap_or_default());
    session.insert("user", user)?;
    // After the changes, so it names the id this response saves; from
    // now on the response answers with a token, not a cookie.
    let token = session.token();
    Ok(Ok(json!({ "user": user, "token": token })))
}

/// Who is logged in, and their notes.
#[get("/api/me")]
fn me(user: User, session: Session<'_>) -> Result<Value, Error> {
    let notes: Vec<String> = session.get("notes")?.unwrap_or_default();
    Ok(json!({ "user": user.0, "notes": notes }))
}

/// Adds a note to the session: `{"text"}` in, the notes out.
#[post("/api/notes", format = "json", data = "<note>")]
fn add_note(
    _csrf: CsrfChecked,
    _user: User,
    session: Session<'_>,
    note: Json<Note>,
) -> Result<Result<(Status, Value), ApiError>, Error> {
    let text = note.text.trim();
    if text.is_empty() || text.chars().count() > MAX_NOTE_LEN {
        return Ok(Err(ApiError::new(
            Status::UnprocessableEntity,
            format!("a note has 1 to {MAX_NOTE_LEN} characters"),
        )));
    }
    let mut notes: Vec<String> = session.get("notes")?.unwrap_or_default();
    if notes.len() >= MAX_NOTES {
        return Ok(Err(ApiError::new(
            Status::UnprocessableEntity,
            format!("a session keeps at most {MAX_NOTES} notes"),
        )));
    }
    notes.push(text.to_owned());
    session.insert("notes", &notes)?;
    Ok(Ok((Status::Created, json!({ "notes": notes }))))
}

/// Ends the session (if there is one): its token opens nothing afterwards.
#[post("/api/logout")]
async fn logout(_csrf: CsrfChecked, session: Session<'_>) -> Result<Status, Error> {
    session.destroy().await?;
    Ok(Status::NoContent)
}

/// Every error as JSON: a failed guard (`401`), a refused CSRF check
/// (`403`), a body that is not JSON, an unknown route, a store failure.
#[catch(default)]
fn error(status: Status, _req: &Request<'_>) -> ApiError {
    let message = match status.code {
        401 => "log in first: send the token of POST /api/login".to_owned(),
        _ => status.reason_lossy().to_lowercase(),
    };
    ApiError::new(status, message)
}

/// The fairing, on `store`, with sessions carried in `X-Session-Token`.
pub(crate) fn sessions(store: MemoryStore) -> KvSession {
    KvSession::new(store).config(SessionConfig {
        token_header: Some(TOKEN_HEADER.to_owned()),
        ..SessionConfig::default()
    })
}

/// The app, on any fairing; `main` uses [`sessions`] on a `MemoryStore`.
pub(crate) fn app(sessions: KvSession) -> Rocket<Build> {
    rocket::build()
        .attach(sessions)
        .mount("/", routes![login, me, add_note, logout])
        .register("/", catchers![error])
}

#[launch]
pub(crate) fn rocket() -> _ {
    app(sessions(MemoryStore::new()))
}
