//! A login flow with sessions kept as files in a local directory:
//! `cargo run -p rocket_kvsession_object_store --example filesystem`, then
//! open <http://127.0.0.1:8000>.
//!
//! Sessions live in `$KVSESSION_DIR` (default `./sessions`), one file per
//! session, so they survive a restart of the app (give Rocket a fixed
//! `secret_key`, or the old cookies cannot be decrypted). A sweep deletes
//! the files of expired sessions every minute (`cleanup_interval`).
//!
//! It serves the repository's demo login app (`rocket_kvsession_demo`):
//! `GET /` shows who is logged in (or the login form), `POST /login` checks
//! the password, regenerates the session id and stores the user,
//! `GET /whoami` answers the user's name, `POST /logout` deletes the
//! session's file.

use std::time::Duration;

use rocket::{launch, Build, Rocket};
use rocket_kvsession::KvSession;
use rocket_kvsession_object_store::ObjectStoreKv;

/// The demo's one password.
pub use rocket_kvsession_demo::PASSWORD;

/// The app on `rocket` (its figment holds the `kvsession` table), keeping
/// sessions in `store` and sweeping expired ones every `cleanup_interval`.
pub fn app(
    rocket: Rocket<Build>,
    store: ObjectStoreKv,
    cleanup_interval: Duration,
) -> Rocket<Build> {
    rocket_kvsession_demo::mount(
        rocket,
        KvSession::new(store).cleanup_interval(cleanup_interval),
    )
}

#[launch]
fn rocket() -> _ {
    let dir = std::env::var_os("KVSESSION_DIR").unwrap_or_else(|| "sessions".into());
    let store = match ObjectStoreKv::local_dir(&dir) {
        Ok(store) => store,
        Err(e) => panic!("cannot use session directory {dir:?}: {e}"),
    };
    app(rocket::build(), store, Duration::from_secs(60))
}
