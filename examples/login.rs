//! A login flow on the embedded `MemoryStore`:
//! `cargo run --example login`, then open <http://127.0.0.1:8000>.
//!
//! `GET /` shows who is logged in (or the login form), `POST /login` checks
//! the password, regenerates the session id, makes the user the session's
//! owner and stores the user, `POST /logout` destroys the session. Each of
//! them leaves a flash message (welcome, wrong password, logged out) that the
//! next page shows once. `GET /sessions` lists the user's sessions (every
//! browser logged in as that user), with a button to end each one and one to
//! end all the others ("log out everywhere else").
//!
//! The login form has a "remember me" box: without it, the session lasts 12
//! hours and its cookie ends with the browser; with it, the configured
//! `lifetime` (31 days by default) and a permanent cookie. Every session
//! lifecycle event (created, rotated, destroyed, revoked, expired) is logged
//! at info level, with the session's owner and handle, never its id.

use rocket::form::{Form, FromForm};
use rocket::response::content::RawHtml;
use rocket::response::Redirect;
use std::time::{Duration, SystemTime};

use rocket::{get, launch, post, routes, uri, Build, Rocket, State};
use rocket_kvsession::{Error, KvSession, MemoryStore, Session, SessionEvent, SessionManager};

/// The demo's one password.
pub(crate) const PASSWORD: &str = "rocket";

/// How long a session lasts without "remember me".
const SHORT_SESSION: Duration = Duration::from_secs(12 * 3600);

#[derive(FromForm)]
struct Login<'r> {
    user: &'r str,
    password: &'r str,
    remember: bool,
}

#[get("/")]
fn index(session: Session<'_>) -> Result<RawHtml<String>, Error> {
    let flashes: String = session
        .flashes()
        .iter()
        .map(|flash| {
            format!(
                "<p class=\"flash {}\">{}</p>",
                html_escape(flash.kind()),
                html_escape(flash.message())
            )
        })
        .collect();
    let page = match session.get::<String>("user")? {
        Some(user) => format!(
            "<p>Logged in as <b>{}</b>; {} visits in this session.</p>\
             <p><a href=/sessions>Your sessions</a></p>\
             <form method=post action=/logout><button>Log out</button></form>",
            html_escape(&user),
            visits(&session)?
        ),
        None => format!(
            "<p>Not logged in.</p>\
             <form method=post action=/login>\
             <input name=user placeholder=user> \
             <input name=password type=password placeholder=\"password: {PASSWORD}\"> \
             <label><input type=checkbox name=remember value=true> remember me</label> \
             <button>Log in</button></form>"
        ),
    };
    Ok(RawHtml(flashes + &page))
}

fn visits(session: &Session<'_>) -> Result<u64, Error> {
    let visits = session.get::<u64>("visits")?.unwrap_or(0) + 1;
    session.insert("visits", visits)?;
    Ok(visits)
}

#[post("/login", data = "<form>")]
async fn login(session: Session<'_>, form: Form<Login<'_>>) -> Result<Redirect, Error> {
    let user = form.user.trim();
    if form.password != PASSWORD || user.is_empty() {
        session.flash("error", "Wrong user name or password.")?;
        return Ok(Redirect::to(uri!(index)));
    }
    // A new id at every privilege change: a session id planted before login
    // is worthless afterwards.
    session.regenerate().await?;
    // The owner lets the user list and end their sessions (/sessions).
    session.set_owner(user);
    session.insert("user", user)?;
    if !form.remember {
        // Twelve hours, and a cookie that ends with the browser.
        session.set_lifetime(SHORT_SESSION);
        session.set_permanent(false);
    }
    session.flash("success", format!("Welcome, {user}!"))?;
    Ok(Redirect::to(uri!(index)))
}

#[get("/whoami")]
fn whoami(session: Session<'_>) -> Option<String> {
    session.get::<String>("user").ok().flatten()
}

#[post("/logout")]
async fn logout(session: Session<'_>) -> Result<Redirect, Error> {
    session.destroy().await?;
    // The request goes on with a new session, which carries the message.
    session.flash("success", "You are logged out.")?;
    Ok(Redirect::to(uri!(index)))
}

/// The user's sessions: when each started and was last used, which one is
/// this browser, a button to end each other one and one to end them all.
#[get("/sessions")]
async fn sessions(
    session: Session<'_>,
    manager: &State<SessionManager>,
) -> Result<Result<RawHtml<String>, Redirect>, Error> {
    let Some(user) = session.owner() else {
        return Ok(Err(Redirect::to(uri!(index))));
    };
    let flashes: String = session
        .flashes()
        .iter()
        .map(|flash| format!("<p class=\"flash\">{}</p>", html_escape(flash.message())))
        .collect();
    let current = session.handle();
    let rows: String = manager
        .sessions_of(&user)
        .await?
        .iter()
        .map(|info| {
            // Handles are hex: safe in a URL and a page, and they open nothing.
            let action = if Some(&info.handle) == current.as_ref() {
                "<b>this browser</b>".to_owned()
            } else {
                format!(
                    "<form method=post action=/sessions/{}/end><button>End</button></form>",
                    info.handle
                )
            };
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                ago(info.created),
                ago(info.last_active),
                action
            )
        })
        .collect();
    Ok(Ok(RawHtml(format!(
        "{flashes}<h1>Sessions of {}</h1>\
         <table><tr><th>started</th><th>last active</th><th></th></tr>{rows}</table>\
         <form method=post action=/sessions/end-others>\
         <button>Log out everywhere else</button></form>\
         <p><a href=/>Back</a></p>",
        html_escape(&user)
    ))))
}

/// Ends one of the user's sessions, named by its handle.
#[post("/sessions/<handle>/end")]
async fn end_session(
    session: Session<'_>,
    manager: &State<SessionManager>,
    handle: &str,
) -> Result<Redirect, Error> {
    if let Some(user) = session.owner() {
        // Scoped to the user: another user's handle ends nothing.
        if manager.revoke(&user, handle).await? {
            session.flash("success", "That session has ended.")?;
        }
    }
    Ok(Redirect::to(uri!(sessions)))
}

/// Ends every session of the user but this one.
#[post("/sessions/end-others")]
async fn end_other_sessions(session: Session<'_>) -> Result<Redirect, Error> {
    let ended = session.revoke_other_sessions().await?;
    session.flash("success", format!("Ended {ended} other sessions."))?;
    Ok(Redirect::to(uri!(sessions)))
}

/// "N minutes ago", roughly.
fn ago(time: SystemTime) -> String {
    let secs = SystemTime::now()
        .duration_since(time)
        .unwrap_or_default()
        .as_secs();
    match secs {
        0..=59 => format!("{secs} s ago"),
        60..=3599 => format!("{} min ago", secs / 60),
        3600..=86_399 => format!("{} h ago", secs / 3600),
        _ => format!("{} days ago", secs / 86_400),
    }
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The app, on any store; `main` uses a `MemoryStore`.
pub(crate) fn app(sessions: KvSession) -> Rocket<Build> {
    rocket::build().attach(sessions).mount(
        "/",
        routes![
            index,
            login,
            whoami,
            logout,
            sessions,
            end_session,
            end_other_sessions
        ],
    )
}

/// An audit log line for each session event (cheap: it only logs).
pub(crate) fn log_event(event: &SessionEvent) {
    log::info!(
        "session {:?}: owner {:?}, handle {:?}",
        event.kind(),
        event.owner(),
        event.handle()
    );
}

#[launch]
pub(crate) fn rocket() -> _ {
    app(KvSession::new(MemoryStore::new()).on_event(log_event))
}
