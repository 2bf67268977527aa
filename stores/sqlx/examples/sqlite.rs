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
//! The app is the repository's demo login app (`rocket_kvsession_demo`,
//! shared by every store's example): `GET /` shows who is logged in (or the
//! login form), `POST /login` checks the password (`rocket`), regenerates
//! the session id and stores the user, `GET /whoami` answers the user's
//! name, `POST /logout` deletes the session's row.

use std::time::Duration;

use rocket::{launch, Build, Rocket};
use rocket_kvsession::KvSession;
use rocket_kvsession_sqlx::SqliteStore;

/// The app on `rocket` (its figment holds the `kvsession` table), keeping
/// sessions in `store` and sweeping expired ones every `cleanup_interval`.
pub fn app(rocket: Rocket<Build>, store: SqliteStore, cleanup_interval: Duration) -> Rocket<Build> {
    rocket_kvsession_demo::mount(
        rocket,
        KvSession::new(store).cleanup_interval(cleanup_interval),
    )
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
