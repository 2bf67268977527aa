//! Drives `examples/filesystem.rs` through `rocket::local` on a real
//! directory: sessions survive a restart of the app, and the scheduled sweep
//! deletes expired session files.

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/filesystem.rs"]
mod example;

use std::path::Path;
use std::time::{Duration, Instant};

use rocket::figment::Figment;
use rocket::http::{ContentType, Cookie, Status};
use rocket::local::asynchronous::Client;
use rocket_kvsession_object_store::ObjectStoreKv;

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

async fn client(dir: &Path, lifetime_secs: u64, sweep_every: Duration) -> Client {
    let store = ObjectStoreKv::local_dir(dir).expect("store");
    let rocket = example::app(rocket::custom(figment(lifetime_secs)), store, sweep_every);
    Client::untracked(rocket)
        .await
        .expect("the example launches")
}

fn session_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
        .collect();
    names.sort();
    names
}

/// Logs in as `user` and returns the session cookie's (encrypted) value.
async fn log_in(client: &Client, user: &str) -> String {
    let response = client
        .post("/login")
        .header(ContentType::Form)
        .body(format!("user={user}&password={}", example::PASSWORD))
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
    let dir = tmp.path().join("sessions");

    let first = client(&dir, 3600, Duration::from_secs(3600)).await;
    assert!(
        session_files(&dir).is_empty(),
        "nothing stored before login"
    );
    let cookie = log_in(&first, "alice").await;
    assert_eq!(whoami(&first, &cookie).await.as_deref(), Some("alice"));
    let files = session_files(&dir);
    assert_eq!(files.len(), 1, "one file per session: {files:?}");
    drop(first);

    // A new Rocket instance, a new store on the same directory: the old
    // cookie still finds its data.
    let second = client(&dir, 3600, Duration::from_secs(3600)).await;
    assert_eq!(whoami(&second, &cookie).await.as_deref(), Some("alice"));
    let page = second
        .get("/")
        .cookie(Cookie::new("session", cookie.clone()))
        .dispatch()
        .await
        .into_string()
        .await
        .expect("page");
    assert!(
        page.contains("Logged in as <b>alice</b>; 1 visits"),
        "{page}"
    );
    assert_eq!(session_files(&dir), files, "the same session file");

    // Logout deletes the file.
    let response = second
        .post("/logout")
        .cookie(Cookie::new("session", cookie.clone()))
        .dispatch()
        .await;
    assert_eq!(response.status(), Status::SeeOther);
    assert!(session_files(&dir).is_empty());
    assert_eq!(whoami(&second, &cookie).await, None);
}

#[rocket::async_test]
async fn expired_session_files_disappear_on_schedule() {
    // The example judges expiry by the system clock (a file's key holds
    // its creation second), so this waits in real time; no assertion
    // depends on the machine's speed: what must hold before the deadline
    // is checked only while the deadline has not passed.
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("sessions");
    let lifetime = Duration::from_secs(3);
    // Sessions live 3 seconds; the sweep runs every 500 ms.
    let client = client(&dir, lifetime.as_secs(), Duration::from_millis(500)).await;
    let logged_in = Instant::now();
    let cookie = log_in(&client, "bob").await;
    // The id holds its creation time in whole seconds: the session may end
    // up to a second before `lifetime` has passed.
    let surely_live = logged_in + lifetime - Duration::from_secs(1);
    let user = whoami(&client, &cookie).await;
    if Instant::now() < surely_live {
        assert_eq!(user.as_deref(), Some("bob"));
    }
    // A file that is not a session is never swept.
    std::fs::write(dir.join("README"), b"not a session").expect("write");

    while session_files(&dir) != ["README"] {
        assert!(
            logged_in.elapsed() < Duration::from_secs(30),
            "the expired session file was not swept: {:?}",
            session_files(&dir)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(Instant::now() >= surely_live, "swept before it expired");
    assert_eq!(whoami(&client, &cookie).await, None);
}
