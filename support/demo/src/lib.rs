//! The demo login app that every store example serves, whatever keeps its
//! sessions: `GET /` shows who is logged in (and counts the visits of the
//! session) or the login form, `POST /login` checks the password,
//! regenerates the session id and stores the user, `GET /whoami` answers
//! the user's name, `POST /logout` destroys the session.
//!
//! ```no_run
//! use rocket_kvsession::{KvSession, MemoryStore};
//!
//! #[rocket::launch]
//! fn rocket() -> _ {
//!     rocket_kvsession_demo::mount(rocket::build(), KvSession::new(MemoryStore::new()))
//! }
//! ```
//!
//! Not published: the store examples of this repository and their tests use
//! it, so that the login routes are written once.

use rocket::form::{Form, FromForm};
use rocket::response::content::RawHtml;
use rocket::response::Redirect;
use rocket::{get, post, routes, uri, Build, Rocket, Route};
use rocket_kvsession::{Error, KvSession, Session};

/// The demo's one password.
pub const PASSWORD: &str = "rocket";

#[derive(FromForm)]
struct Login<'r> {
    user: &'r str,
    password: &'r str,
}

#[get("/")]
fn index(session: Session<'_>) -> Result<RawHtml<String>, Error> {
    let page = match session.get::<String>("user")? {
        Some(user) => {
            let visits = session.get::<u64>("visits")?.unwrap_or(0) + 1;
            session.insert("visits", visits)?;
            format!(
                "<p>Logged in as <b>{}</b>; {visits} visits in this session.</p>\
                 <form method=post action=/logout><button>Log out</button></form>",
                html_escape(&user)
            )
        }
        None => format!(
            "<p>Not logged in.</p>\
             <form method=post action=/login>\
             <input name=user placeholder=user> \
             <input name=password type=password placeholder=\"password: {PASSWORD}\"> \
             <button>Log in</button></form>"
        ),
    };
    Ok(RawHtml(page))
}

#[post("/login", data = "<form>")]
async fn login(session: Session<'_>, form: Form<Login<'_>>) -> Result<Redirect, Error> {
    if form.password != PASSWORD || form.user.trim().is_empty() {
        return Ok(Redirect::to(uri!(index)));
    }
    // A new id at every privilege change: an id planted before login is
    // worthless afterwards.
    session.regenerate().await?;
    session.insert("user", form.user.trim())?;
    Ok(Redirect::to(uri!(index)))
}

#[get("/whoami")]
fn whoami(session: Session<'_>) -> Option<String> {
    session.get::<String>("user").ok().flatten()
}

#[post("/logout")]
async fn logout(session: Session<'_>) -> Result<Redirect, Error> {
    session.destroy().await?;
    Ok(Redirect::to(uri!(index)))
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The demo's routes: `/`, `/login`, `/whoami`, `/logout`.
pub fn routes() -> Vec<Route> {
    routes![index, login, whoami, logout]
}

/// `rocket` with `sessions` attached and the demo's routes mounted at `/`.
pub fn mount(rocket: Rocket<Build>, sessions: KvSession) -> Rocket<Build> {
    rocket.attach(sessions).mount("/", routes())
}
