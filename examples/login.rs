//! A login flow on the embedded `MemoryStore`:
//! `cargo run --example login`, then open <http://127.0.0.1:8000>.
//!
//! `GET /` shows who is logged in (or the login form), `POST /login` checks
//! the password, regenerates the session id and stores the user,
//! `POST /logout` destroys the session. Each of them leaves a flash message
//! (welcome, wrong password, logged out) that the next page shows once.

use rocket::form::{Form, FromForm};
use rocket::response::content::RawHtml;
use rocket::response::Redirect;
use rocket::{get, launch, post, routes, uri, Build, Rocket};
use rocket_kvsession::{Error, KvSession, MemoryStore, Session};

/// The demo's one password.
pub(crate) const PASSWORD: &str = "rocket";

#[derive(FromForm)]
struct Login<'r> {
    user: &'r str,
    password: &'r str,
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
             <form method=post action=/logout><button>Log out</button></form>",
            html_escape(&user),
            visits(&session)?
        ),
        None => format!(
            "<p>Not logged in.</p>\
             <form method=post action=/login>\
             <input name=user placeholder=user> \
             <input name=password type=password placeholder=\"password: {PASSWORD}\"> \
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
    session.insert("user", user)?;
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

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The app, on any store; `main` uses a `MemoryStore`.
pub(crate) fn app(sessions: KvSession) -> Rocket<Build> {
    rocket::build()
        .attach(sessions)
        .mount("/", routes![index, login, whoami, logout])
}

#[launch]
pub(crate) fn rocket() -> _ {
    app(KvSession::new(MemoryStore::new()))
}
