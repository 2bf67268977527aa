//! A login flow with sessions kept in a SQLite file:
//! `cargo run -p rocket_kvsession_sqlx --example sqlite`, then open
//! <http://127.0.0.1:8000>.
//!
//! Sessions live in the database at `$KVSESSION_SQLITE_URL` (default
//! `sqlite://sessions.db`, created if missing), in the table `kvsession`,
//! so they survive a restart of the app (give Rocket a fixed `secret_key`,
//! or the old cookies cannot be decrypted). A sweep deletes the rows of
//! expired sessions every minute (`cleanup_interval`).
//!
//! `GET /` shows who is logged in (or the login form), `POST /login` checks
//! the password, regenerates the session id and stores the user,
//! `POST /logout` deletes the session's row.

use std::time::Duration;

use rocket::form::{Form, FromForm};
use rocket::response::content::RawHtml;
use rocket::response::Redirect;
use rocket::{get, launch, post, routes, uri, Build, Rocket};
use rocket_kvsession::{Error, KvSession, Session};
use rocket_kvsession_sqlx::SqliteStore;

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

/// The app on `rocket` (its figment holds the `kvsession` table), keeping
/// sessions in `store` and sweeping expired ones every `cleanup_interval`.
pub fn app(rocket: Rocket<Build>, store: SqliteStore, cleanup_interval: Duration) -> Rocket<Build> {
    rocket
        .attach(KvSession::new(store).cleanup_interval(cleanup_interval))
        .mount("/", routes![index, login, whoami, logout])
}

#[launch]
async fn rocket() -> _ {
    let url =
        std::env::var("KVSESSION_SQLITE_URL").unwrap_or_else(|_| "sqlite://sessions.db".to_owned());
    let store = match SqliteStore::connect(&url).await {
        Ok(store) => store,
        Err(e) => panic!("cannot open the session database {url}: {e}"),
    };
    app(rocket::build(), store, Duration::from_secs(60))
}
