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
//! It serves the demo login app that every store example of this
//! repository shares (`rocket_kvsession_demo`): `GET /` shows who is logged
//! in (or the login form), `POST /login` checks the password (`rocket`),
//! regenerates the session id and stores the user, `GET /whoami` answers
//! the user's name, `POST /logout` destroys the session (in Redis, one
//! compare-and-delete script).

use rocket::{Build, Rocket};
use rocket_kvsession::KvSession;
use rocket_kvsession_redis::RedisStore;

/// Where the sessions are kept when neither `REDIS_URL` nor
/// `REDIS_CLUSTER_URLS` is set.
pub const DEFAULT_URL: &str = "redis://127.0.0.1:6379";

/// The demo login app (`rocket_kvsession_demo`), keeping its sessions in
/// `store`.
pub fn app(store: RedisStore) -> Rocket<Build> {
    rocket_kvsession_demo::mount(rocket::build(), KvSession::new(store))
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
