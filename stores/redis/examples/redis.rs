//! A login flow with sessions in Redis:
//!
//! ```sh
//! REDIS_URL=redis://127.0.0.1:6379 cargo run -p rocket_kvsession_redis --example redis
//! ```
//!
//! then open <http://127.0.0.1:8000>. For a Redis Cluster, give its nodes
//! instead: `REDIS_CLUSTER_URLS=redis://10.0.0.1:6379,redis://10.0.0.2:6379`.
//! Redis expires each session at its own expiry; run the app on several
//! servers against the same Redis and a user stays logged in whichever
//! server answers.
//!
//! `GET /` shows who is logged in (or the login form), `POST /login` checks
//! the password, regenerates the session id and stores the user,
//! `POST /logout` destroys the session.

use rocket::form::{Form, FromForm};
use rocket::response::content::RawHtml;
use rocket::response::Redirect;
use rocket::{get, post, routes, uri, Build, Rocket};
use rocket_kvsession::{Error, KvSession, Session};
use rocket_kvsession_redis::RedisStore;

/// The demo's one password.
pub const PASSWORD: &str = "rocket";

/// Where the sessions are kept when neither `REDIS_URL` nor
/// `REDIS_CLUSTER_URLS` is set.
pub const DEFAULT_URL: &str = "redis://127.0.0.1:6379";

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

/// The app, keeping its sessions in `store`.
pub fn app(store: RedisStore) -> Rocket<Build> {
    rocket::build()
        .attach(KvSession::new(store))
        .mount("/", routes![index, login, whoami, logout])
}

/// The store the environment names: the cluster of `REDIS_CLUSTER_URLS`,
/// else the server of `REDIS_URL`, else [`DEFAULT_URL`].
pub async fn store_from_env() -> Result<RedisStore, rocket_kvsession::StoreError> {
    match std::env::var("REDIS_CLUSTER_URLS") {
        Ok(urls) if !urls.trim().is_empty() => {
            let urls: Vec<&str> = urls.split(',').map(str::trim).collect();
            RedisStore::connect_cluster(&urls).await
        }
        _ => {
            let url = std::env::var("REDIS_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned());
            RedisStore::connect(&url).await
        }
    }
}

#[rocket::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let store = store_from_env().await?;
    app(store).launch().await?;
    Ok(())
}
