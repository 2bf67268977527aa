//! Guarantees under contention (issue #20), beyond the app conformance
//! cases every store runs (`conformance::app::guarantees_*`): removing a
//! session's last key never deletes what a concurrent request just wrote,
//! also on a store without compare-and-delete; a logout that keeps losing
//! to concurrent saves fails instead of reporting success.
//!
//! The races are set up exactly, not hoped for: a store wrapper runs a
//! step of the test at the chosen point of a request's store calls, and
//! the conformance app's gate holds a request between its load and save.

use std::sync::Arc;

use rocket::http::Status;
use rocket::local::asynchronous::Client;
use rocket::tokio::sync::{Barrier, Notify};
use rocket::{Build, Rocket};
use rocket_kvsession::conformance::app::{self, Gate};
use rocket_kvsession::conformance::hooked::HookedStore;
use rocket_kvsession::conformance::unique_prefix;
use rocket_kvsession::{KvSession, MemoryStore, SessionConfig, SessionManager};

/// The conformance app (its session, racing and owner routes) on `store`.
fn rocket(store: HookedStore, config: SessionConfig) -> Rocket<Build> {
    rocket::custom(app::figment())
        .attach(KvSession::new(store).config(config))
        .manage(Arc::new(Barrier::new(1)))
        .manage(Arc::new(Gate::default()))
        .mount("/", app::routes())
        .mount("/", app::racing_routes())
        .mount("/", app::owner_routes())
}

async fn tracked(store: HookedStore, config: SessionConfig) -> Client {
    Client::tracked(rocket(store, config))
        .await
        .expect("launch")
}

fn config(case: &str) -> SessionConfig {
    SessionConfig {
        key_prefix: unique_prefix(case),
        ..SessionConfig::default()
    }
}

fn manager(client: &Client) -> SessionManager {
    client
        .rocket()
        .state::<SessionManager>()
        .expect("the fairing manages a SessionManager")
        .clone()
}

fn gate(client: &Client) -> Arc<Gate> {
    client
        .rocket()
        .state::<Arc<Gate>>()
        .expect("managed gate")
        .clone()
}

/// Removing a session's last key, while a concurrent request of the same
/// session writes a key of its own right after the emptied record: the
/// concurrent write is kept, on stores with and without a
/// compare-and-delete.
#[rocket::async_test]
async fn removing_the_last_key_keeps_a_concurrent_write() {
    for compare_and_delete in [false, true] {
        let store = HookedStore::new(Arc::new(MemoryStore::new()));
        let store = if compare_and_delete {
            store
        } else {
            store.without_compare_and_delete()
        };
        let client = tracked(store.clone(), config("guarantees-emptied")).await;
        assert_eq!(
            client.post("/set/a/1").dispatch().await.status(),
            Status::Ok
        );
        let gate = gate(&client);
        let saved = Arc::new(Notify::new());

        let slow = async {
            let status = client.post("/slow/b").dispatch().await.status();
            saved.notify_one();
            status
        };
        let remove = async {
            gate.loaded.notified().await;
            // Right after the emptied record is written, the slow request
            // saves (merging its key onto the empty record).
            let (gate, saved) = (gate.clone(), saved.clone());
            store.after_update(move || {
                Box::pin(async move {
                    gate.release.notify_one();
                    saved.notified().await;
                })
            });
            client.post("/remove/a").dispatch().await.status()
        };
        let (slow, remove) = rocket::tokio::join!(slow, remove);
        assert_eq!((slow, remove), (Status::Ok, Status::Ok));
        let res = client.get("/get/b").dispatch().await;
        assert_eq!(
            (res.status(), res.into_string().await.as_deref()),
            (Status::Ok, Some("1")),
            "the acknowledged write was deleted (compare-and-delete: {compare_and_delete})"
        );
        assert_eq!(
            client.get("/get/a").dispatch().await.status(),
            Status::NotFound
        );
    }
}

/// With a concurrent save winning every try, a logout fails with 503
/// (never 200 with the session alive) and the session stays in its owner's
/// index, so a later "log out everywhere" still reaches it.
#[rocket::async_test]
async fn a_logout_that_cannot_win_fails_and_keeps_the_index() {
    let store = HookedStore::new(Arc::new(MemoryStore::new())).without_compare_and_delete();
    let client = tracked(store.clone(), config("guarantees-losing")).await;
    assert_eq!(
        client.post("/owner-login/alice").dispatch().await.status(),
        Status::Ok
    );
    store.interfere(true);
    assert_eq!(
        client.post("/logout").dispatch().await.status(),
        Status::ServiceUnavailable
    );
    store.interfere(false);
    assert_eq!(client.get("/whoami").dispatch().await.status(), Status::Ok);
    let manager = manager(&client);
    assert_eq!(manager.sessions_of("alice").await.expect("list").len(), 1);
    assert_eq!(manager.revoke_owner("alice").await.expect("revoke"), 1);
    assert_eq!(
        client.get("/whoami").dispatch().await.status(),
        Status::NotFound
    );
}
