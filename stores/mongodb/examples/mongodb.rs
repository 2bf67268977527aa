//! A login flow with sessions in MongoDB:
//!
//! ```sh
//! MONGODB_URI='mongodb://127.0.0.1:27017/?directConnection=true' \
//!     cargo run -p rocket_kvsession_mongodb --example mongodb
//! ```
//!
//! then open <http://127.0.0.1:8000>. Sessions are kept in the `sessions`
//! collection of the `rocket_kvsession_example` database; the TTL index on
//! `expires_at` is created at launch. Run it on several app servers against
//! the same database and a user stays logged in whichever server answers.
//!
//! It serves the repository's demo login app (`rocket_kvsession_demo`):
//! `GET /` shows who is logged in (or the login form), `POST /login` checks
//! the password, regenerates the session id and stores the user,
//! `GET /whoami` answers the user's name, `POST /logout` destroys the
//! session.

use rocket::{Build, Rocket};
use rocket_kvsession::KvSession;
use rocket_kvsession_mongodb::MongoStore;

/// The demo's one password.
pub use rocket_kvsession_demo::PASSWORD;

/// Where the sessions are kept when `MONGODB_URI` is not set.
pub const DEFAULT_URI: &str = "mongodb://127.0.0.1:27017/?directConnection=true";

/// The app, keeping its sessions in `store`.
pub fn app(store: MongoStore) -> Rocket<Build> {
    rocket_kvsession_demo::mount(rocket::build(), KvSession::new(store))
}

#[rocket::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let uri = std::env::var("MONGODB_URI").unwrap_or_else(|_| DEFAULT_URI.to_owned());
    let store = MongoStore::connect(&uri, "rocket_kvsession_example", "sessions").await?;
    app(store).launch().await?;
    Ok(())
}
