//! `rocket_kvsession::MigratingStore` from the embedded `MemoryStore` to a
//! SQLite file: the core's store and app conformance suites on the pair,
//! and a migration whose sessions then open on SQLite alone.

use std::sync::Arc;

use rocket::http::{Cookie, Status};
use rocket::local::asynchronous::Client;
use rocket_kvsession::conformance::app;
use rocket_kvsession::{KeyValueStore, KvSession, MemoryStore, MigratingStore};
use rocket_kvsession_sqlx::SqliteStore;
use tempfile::TempDir;

/// A `MigratingStore` from a fresh `MemoryStore` to a fresh SQLite file,
/// initialised; the directory lives as long as the returned handle.
async fn memory_to_sqlite() -> (MigratingStore<MemoryStore, SqliteStore>, TempDir) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("sessions.db").display()
    );
    let sqlite = SqliteStore::connect(&url).await.expect("connect");
    let store = MigratingStore::new(MemoryStore::new(), sqlite);
    store.init().await.expect("init");
    (store, dir)
}

mod store_suite {
    macro_rules! case_tests {
        ($($case:ident),+ $(,)?) => {$(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let (store, _dir) = super::memory_to_sqlite().await;
                rocket_kvsession::conformance::$case(&store).await;
            }
        )+};
    }

    rocket_kvsession::conformance_cases!(case_tests);
}

mod app_suite {
    macro_rules! app_tests {
        ($($case:ident),+ $(,)?) => {$(
            #[rocket::async_test]
            async fn $case() {
                let (store, _dir) = super::memory_to_sqlite().await;
                rocket_kvsession::conformance::app::$case(std::sync::Arc::new(store)).await;
            }
        )+};
    }

    rocket_kvsession::app_conformance_cases!(app_tests);
}

async fn client_on(
    store: Arc<dyn KeyValueStore>,
    config: &rocket_kvsession::SessionConfig,
) -> Client {
    let rocket = rocket::custom(app::figment())
        .attach(KvSession::from_arc(store).config(config.clone()))
        .mount("/", app::routes())
        .mount("/", app::owner_routes());
    Client::untracked(rocket).await.expect("the app launches")
}

/// The session cookie a response sets.
fn cookie_of(res: &rocket::local::asynchronous::LocalResponse<'_>) -> Cookie<'static> {
    res.headers()
        .get("Set-Cookie")
        .filter_map(|v| Cookie::parse(v.to_owned()).ok())
        .find(|c| c.name() == "session")
        .expect("a session cookie")
}

/// Sessions logged in on the memory store alone, one moved by its first
/// write through the `MigratingStore`, the rest by `migrate_all`: every one
/// then opens on SQLite alone, with its owner.
#[rocket::async_test]
async fn sessions_moved_to_sqlite_open_there_alone() {
    let (store, _dir) = memory_to_sqlite().await;
    let (old, sqlite) = (store.old_store().clone(), store.new_store().clone());
    let store = Arc::new(store);
    let config = app::config("sqlite-migration");
    let old_app = client_on(Arc::new(old.clone()), &config).await;
    let app = client_on(store.clone(), &config).await;
    let new_app = client_on(Arc::new(sqlite.clone()), &config).await;

    let mut cookies = Vec::new();
    for user in ["ann", "ben", "cat"] {
        let res = old_app
            .post(format!("/owner-login/{user}"))
            .dispatch()
            .await;
        assert_eq!(res.status(), Status::Ok);
        cookies.push((user, cookie_of(&res)));
    }
    let (_, first) = &cookies[0];
    let res = app
        .post("/set/cart/3")
        .cookie(first.clone())
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::Ok);
    let prefix = &config.key_prefix;
    assert_eq!(app::live_sessions(&sqlite, prefix).await.len(), 1);
    assert_eq!(app::live_sessions(&old, prefix).await.len(), 2);

    // Three owner indexes and two sessions are left.
    assert_eq!(store.migrate_all(&config).await.expect("migrate_all"), 5);
    assert!(app::live_sessions(&old, prefix).await.is_empty());
    assert_eq!(app::live_sessions(&sqlite, prefix).await.len(), 3);
    for (user, cookie) in &cookies {
        let res = new_app
            .get("/owner")
            .cookie(cookie.clone())
            .dispatch()
            .await;
        assert_eq!(res.into_string().await.as_deref(), Some(*user));
        let res = new_app.get(format!("/sessions-of/{user}")).dispatch().await;
        let list = res.into_string().await.unwrap_or_default();
        assert_eq!(list.lines().count(), 1, "{list}");
    }
    let res = new_app
        .get("/get/cart")
        .cookie(first.clone())
        .dispatch()
        .await;
    assert_eq!(res.into_string().await.as_deref(), Some("3"));
    assert_eq!(store.migrate_all(&config).await.expect("migrate_all"), 0);
}
