//! Drives `examples/sqlite.rs` through `rocket::local` on a real SQLite
//! file: sessions survive a restart of the app on the same file, and the
//! scheduled sweep deletes the rows of expired sessions.

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/sqlite.rs"]
mod example;

use std::path::Path;
use std::time::{Duration, Instant};

use rocket::figment::Figment;
use rocket::http::{ContentType, Cookie, Status};
use rocket::local::asynchronous::Client;
use rocket_kvsession_sqlx::{sqlx, SqliteStore};

/// Rocket's configuration with a fixed secret key (so a restarted app can
/// decrypt the cookies of the previous one) and the given session lifetime.
fn figment(lifetime_secs: u64) -> Figment {
    let key: String = (0..32u8)
        .map(|i| format!("{:02x}", i.wrapping_mul(7).wrapping_add(3)))
        .collect();
    rocket::Config::figment()
        .merge(("secret_key", key))
        .merge(("log_level", "critical"))
        .merge(("kvsession.lifetime", lifetime_secs))
}

fn url(file: &Path) -> String {
    format!("sqlite://{}", file.display())
}

async fn client(file: &Path, lifetime_secs: u64, sweep_every: Duration) -> Client {
    let store = SqliteStore::connect(&url(file)).await.expect("store");
    let rocket = example::app(rocket::custom(figment(lifetime_secs)), store, sweep_every);
    Client::untracked(rocket)
        .await
        .expect("the example launches")
}

/// How many rows the session table holds, read by a connection of its own.
async fn rows(file: &Path) -> i64 {
    let pool = sqlx::SqlitePool::connect(&url(file)).await.expect("open");
    let n = sqlx::query_scalar("SELECT COUNT(*) FROM kvsession")
        .fetch_one(&pool)
        .await
        .expect("count");
    pool.close().await;
    n
}

/// Logs in as `user` and returns the session cookie's (encrypted) value.
async fn log_in(client: &Client, user: &str) -> String {
    let response = client
        .post("/login")
        .header(ContentType::Form)
        .body(format!(
            "user={user}&password={}",
            rocket_kvsession_demo::PASSWORD
        ))
        .dispatch()
        .await;
    assert_eq!(response.status(), Status::SeeOther);
    response
        .cookies()
        .get("session")
        .expect("a session cookie")
        .value()
        .to_owned()
}

async fn whoami(client: &Client, cookie: &str) -> Option<String> {
    let response = client
        .get("/whoami")
        .cookie(Cookie::new("session", cookie.to_owned()))
        .dispatch()
        .await;
    if response.status() != Status::Ok {
        return None;
    }
    response.into_string().await
}

#[rocket::async_test]
async fn sessions_survive_a_restart_of_the_app() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let file = tmp.path().join("sessions.db");

    let first = client(&file, 3600, Duration::from_secs(3600)).await;
    let alice = log_in(&first, "alice").await;
    assert_eq!(whoami(&first, &alice).await.as_deref(), Some("alice"));
    assert_eq!(rows(&file).await, 1);
    let _ = first.terminate().await;

    // A new app on the same file, as after a restart of the process.
    let second = client(&file, 3600, Duration::from_secs(3600)).await;
    assert_eq!(whoami(&second, &alice).await.as_deref(), Some("alice"));
    let page = second
        .get("/")
        .cookie(Cookie::new("session", alice.clone()))
        .dispatch()
        .await
        .into_string()
        .await
        .expect("page");
    assert!(page.contains("Logged in as <b>alice</b>"), "{page}");

    let response = second
        .post("/logout")
        .cookie(Cookie::new("session", alice.clone()))
        .dispatch()
        .await;
    assert_eq!(response.status(), Status::SeeOther);
    assert_eq!(whoami(&second, &alice).await, None);
    assert_eq!(rows(&file).await, 0);
}

#[rocket::async_test]
async fn the_scheduled_sweep_deletes_expired_rows() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let file = tmp.path().join("sessions.db");
    // Sessions live one second; the sweep runs every 200 ms.
    let client = client(&file, 1, Duration::from_millis(200)).await;
    let bob = log_in(&client, "bob").await;
    assert_eq!(rows(&file).await, 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    while rows(&file).await > 0 {
        assert!(
            Instant::now() < deadline,
            "the sweep did not delete the expired row"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(whoami(&client, &bob).await, None);
}
