//! A login flow with sessions in memcached:
//!
//! ```sh
//! MEMCACHED_URL=memcache://127.0.0.1:11211 cargo run -p rocket_kvsession_memcached --example memcached
//! ```
//!
//! then open <http://127.0.0.1:8000>. For several servers, list them:
//! `MEMCACHED_URL=memcache://10.0.0.1:11211,10.0.0.2:11211` (give every
//! instance of the app the same list). memcached expires each session at
//! its own expiry; run the app on several servers against the same
//! memcached and a user stays logged in whichever server answers.
//!
//! It serves the demo login app that every store example of this
//! repository shares (`rocket_kvsession_demo`): `GET /` shows who is logged
//! in (or the login form), `POST /login` checks the password (`rocket`),
//! regenerates the session id and stores the user, `GET /whoami` answers
//! the user's name, `POST /logout` destroys the session (in memcached, one
//! `md` with the record's CAS value).

use rocket::{Build, Rocket};
use rocket_kvsession::KvSession;
use rocket_kvsession_memcached::MemcachedStore;

/// Where the sessions are kept when `MEMCACHED_URL` is not set.
pub const DEFAULT_URL: &str = "memcache://127.0.0.1:11211";

/// The demo login app (`rocket_kvsession_demo`), keeping its sessions in
/// `store`.
pub fn app(store: MemcachedStore) -> Rocket<Build> {
    rocket_kvsession_demo::mount(rocket::build(), KvSession::new(store))
}

/// The store of `MEMCACHED_URL`, else of [`DEFAULT_URL`].
pub async fn store_from_env() -> Result<MemcachedStore, rocket_kvsession::StoreError> {
    let url = std::env::var("MEMCACHED_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned());
    MemcachedStore::connect(&url).await
}

#[rocket::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let store = store_from_env().await?;
    app(store).launch().await?;
    Ok(())
}
