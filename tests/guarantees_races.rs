//! Guarantees under contention (issue #20), beyond the app conformance
//! cases every store runs (`conformance::app::guarantees_*`): removing a
//! session's last key never deletes what a concurrent request just wrote,
//! also on a store without compare-and-delete; a logout that keeps losing
//! to concurrent saves fails instead of reporting success.
//!
//! The races are set up exactly, not hoped for: a store wrapper runs a
//! step of the test at the chosen point of a request's store calls, and
//! the conformance app's gate holds a request between its load and save.

use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use rocket::async_trait;
use rocket::http::Status;
use rocket::local::asynchronous::Client;
use rocket::tokio::sync::{Barrier, Notify};
use rocket::{Build, Rocket};
use rocket_kvsession::conformance::app::{self, Gate};
use rocket_kvsession::conformance::unique_prefix;
use rocket_kvsession::{
    Capabilities, CompareAndDelete, CreateOutcome, ExpiredDeletion, KeyInfo, KeyValueStore,
    KvSession, MemoryStore, Record, SessionConfig, SessionManager, StoreError, UpdateOutcome,
    Version,
};

/// A step of the test, run once inside a store call.
type Hook = Box<dyn FnOnce() -> BoxFuture<'static, ()> + Send>;

/// An armed hook, taken by the first call that runs it.
#[derive(Clone, Default)]
struct Slot(Arc<Mutex<Option<Hook>>>);

impl Slot {
    fn arm(&self, hook: impl FnOnce() -> BoxFuture<'static, ()> + Send + 'static) {
        *self.0.lock().unwrap() = Some(Box::new(hook));
    }

    async fn run(&self) {
        let hook = self.0.lock().unwrap().take();
        if let Some(hook) = hook {
            hook().await;
        }
    }
}

/// A `MemoryStore` that runs a test's step before the next creation of a
/// session record, or after the next successful update of one; with or
/// without the inner store's compare-and-delete.
#[derive(Clone)]
struct Hooked {
    inner: MemoryStore,
    compare_and_delete: bool,
    before_create: Slot,
    after_update: Slot,
    /// While set, every "ended" marker a compare-and-swap would write loses
    /// to a write of the session that lands just before it.
    interfere: Arc<AtomicBool>,
}

impl Hooked {
    fn new(compare_and_delete: bool) -> Self {
        Hooked {
            inner: MemoryStore::new(),
            compare_and_delete,
            before_create: Slot::default(),
            after_update: Slot::default(),
            interfere: Arc::default(),
        }
    }
}

/// Whether `key` is a session's (not an owner index's).
fn is_session(key: &str) -> bool {
    !key.contains("owner_")
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl KeyValueStore for Hooked {
    fn name(&self) -> &'static str {
        "hooked"
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn init(&self) -> Result<(), StoreError> {
        self.inner.init().await
    }
    fn check_key(&self, key: &str) -> Result<(), StoreError> {
        self.inner.check_key(key)
    }
    async fn get(&self, key: &str) -> Result<Option<Record>, StoreError> {
        self.inner.get(key).await
    }
    async fn create(
        &self,
        key: &str,
        value: &[u8],
        expires_at: Option<SystemTime>,
    ) -> Result<CreateOutcome, StoreError> {
        if is_session(key) {
            self.before_create.run().await;
        }
        self.inner.create(key, value, expires_at).await
    }
    async fn update(
        &self,
        key: &str,
        value: &[u8],
        expected: Option<&Version>,
        expires_at: Option<SystemTime>,
    ) -> Result<UpdateOutcome, StoreError> {
        let marker = value.first() == Some(&2);
        if marker && expected.is_some() && self.interfere.load(SeqCst) {
            // Another request's save of the same session wins the race.
            if let Some(current) = self.inner.get(key).await? {
                let _ = self
                    .inner
                    .update(key, &current.value, None, current.expires_at)
                    .await?;
            }
        }
        let outcome = self.inner.update(key, value, expected, expires_at).await?;
        if is_session(key) && matches!(outcome, UpdateOutcome::Updated(_)) {
            self.after_update.run().await;
        }
        Ok(outcome)
    }
    async fn touch(&self, key: &str, expires_at: SystemTime) -> Result<UpdateOutcome, StoreError> {
        self.inner.touch(key, expires_at).await
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.inner.delete(key).await
    }
    async fn delete_many(&self, keys: Vec<String>) -> Result<(), StoreError> {
        self.inner.delete_many(keys).await
    }
    fn list<'a>(&'a self, prefix: &'a str) -> BoxStream<'a, Result<KeyInfo, StoreError>> {
        self.inner.list(prefix)
    }
    fn compare_and_delete(&self) -> Option<&dyn CompareAndDelete> {
        if self.compare_and_delete {
            self.inner.compare_and_delete()
        } else {
            None
        }
    }
    fn expired_deletion(&self) -> Option<&dyn ExpiredDeletion> {
        self.inner.expired_deletion()
    }
}

/// The conformance app (its session, racing and owner routes) on `store`.
fn rocket(store: Hooked, config: SessionConfig) -> Rocket<Build> {
    rocket::custom(app::figment())
        .attach(KvSession::new(store).config(config))
        .manage(Arc::new(Barrier::new(1)))
        .manage(Arc::new(Gate::default()))
        .mount("/", app::routes())
        .mount("/", app::racing_routes())
        .mount("/", app::owner_routes())
}

async fn tracked(store: Hooked, config: SessionConfig) -> Client {
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
        let store = Hooked::new(compare_and_delete);
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
            store.after_update.arm(move || {
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
    let store = Hooked::new(false);
    let client = tracked(store.clone(), config("guarantees-losing")).await;
    assert_eq!(
        client.post("/owner-login/alice").dispatch().await.status(),
        Status::Ok
    );
    store.interfere.store(true, SeqCst);
    assert_eq!(
        client.post("/logout").dispatch().await.status(),
        Status::ServiceUnavailable
    );
    store.interfere.store(false, SeqCst);
    assert_eq!(client.get("/whoami").dispatch().await.status(), Status::Ok);
    let manager = manager(&client);
    assert_eq!(manager.sessions_of("alice").await.expect("list").len(), 1);
    assert_eq!(manager.revoke_owner("alice").await.expect("revoke"), 1);
    assert_eq!(
        client.get("/whoami").dispatch().await.status(),
        Status::NotFound
    );
}
