//! Guarantees under contention (issue #20): a logout wins against a copy
//! of the cookie that keeps rotating the session; a listing, a sweep or a
//! revocation racing a login never unlists the new session; a session
//! missing from its index adds itself back; removing a session's last key
//! never deletes what a concurrent request just wrote.
//!
//! The races are set up exactly, not hoped for: a store wrapper runs a
//! step of the test at the chosen point of a request's store calls, and
//! the conformance app's gate holds a request between its load and save.

use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use futures::future::BoxFuture;
use futures::stream::{BoxStream, TryStreamExt};
use rocket::async_trait;
use rocket::http::{Cookie, Status};
use rocket::local::asynchronous::{Client, LocalResponse};
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

fn set_cookie_of(res: &LocalResponse<'_>, name: &str) -> Option<Cookie<'static>> {
    res.headers()
        .get("Set-Cookie")
        .filter_map(|v| Cookie::parse(v.to_owned()).ok())
        .find(|c| c.name() == name)
}

async fn whoami(client: &Client, cookie: &Cookie<'static>) -> Status {
    client
        .get("/whoami")
        .cookie(cookie.clone())
        .dispatch()
        .await
        .status()
}

/// A logout that loaded the session before a copy of its cookie rotated
/// it many times over (each rotation leaves a "moved to" marker) either
/// ends the session where it moved to, or fails: it never answers 200 and
/// leaves the newest id alive.
#[rocket::async_test]
async fn a_logout_follows_a_session_that_keeps_rotating() {
    let config = config("guarantees-rotating");
    let name = config.cookie_name.clone();
    let store = Hooked::new(true);
    let client = tracked(store.clone(), config.clone()).await;
    // A copy of the cookie, used from another browser on the same store.
    let attacker = Client::untracked(rocket(store, config))
        .await
        .expect("launch");
    assert_eq!(
        client.post("/login/ivy").dispatch().await.status(),
        Status::Ok
    );
    let stolen = client
        .cookies()
        .get(&name)
        .expect("a session cookie")
        .clone()
        .into_owned();
    let gate = gate(&client);

    let logout = async { client.post("/slow-logout").dispatch().await.status() };
    let rotate = async {
        gate.loaded.notified().await;
        let mut cookie = stolen.clone();
        for _ in 0..6 {
            let res = attacker
                .post("/regenerate")
                .cookie(cookie.clone())
                .dispatch()
                .await;
            assert_eq!(res.status(), Status::Ok);
            cookie = set_cookie_of(&res, &name).expect("a rotated cookie");
        }
        gate.release.notify_one();
        cookie
    };
    let (logout, newest) = rocket::tokio::join!(logout, rotate);
    assert_eq!(logout, Status::Ok, "six rotations are followed");
    assert_eq!(
        whoami(&attacker, &newest).await,
        Status::NotFound,
        "the logout answered 200 and the rotated session lives on"
    );
}

/// `sessions_of`, `revoke_owner` and a sweep that run while a login is
/// between indexing its new session and writing its record leave the
/// session listed: a later `revoke_owner` ends it.
#[rocket::async_test]
async fn a_listing_a_revocation_or_a_sweep_during_a_login_keeps_it_listed() {
    for racer in ["sessions_of", "revoke_owner", "cleanup"] {
        let store = Hooked::new(true);
        let config = config("guarantees-login-race");
        let name = config.cookie_name.clone();
        let client = tracked(store.clone(), config).await;
        let manager = manager(&client);
        let during = manager.clone();
        store.before_create.arm(move || {
            Box::pin(async move {
                match racer {
                    "sessions_of" => {
                        let listed = during.sessions_of("alice").await.expect("list");
                        assert!(listed.is_empty(), "not written yet: not listed");
                    }
                    "revoke_owner" => {
                        let _ = during.revoke_owner("alice").await.expect("revoke");
                    }
                    _ => {
                        let _ = during.cleanup().await.expect("sweep");
                    }
                }
            })
        });
        let res = client.post("/owner-login/alice").dispatch().await;
        assert_eq!(res.status(), Status::Ok, "{racer}");
        let cookie = set_cookie_of(&res, &name).expect("a session cookie");
        drop(res);
        assert_eq!(whoami(&client, &cookie).await, Status::Ok, "{racer}");

        assert_eq!(
            manager.sessions_of("alice").await.expect("list").len(),
            1,
            "{racer} unlisted the session it raced"
        );
        assert_eq!(manager.revoke_owner("alice").await.expect("revoke"), 1);
        assert_eq!(whoami(&client, &cookie).await, Status::NotFound, "{racer}");
    }
}

/// A session whose owner index is gone (evicted, or rebuilt without it)
/// names itself again on its next save, so "log out everywhere" reaches it.
#[rocket::async_test]
async fn a_session_missing_from_its_index_adds_itself_back_on_a_save() {
    let store = Hooked::new(true);
    let config = config("guarantees-readd");
    let prefix = config.key_prefix.clone();
    let client = tracked(store.clone(), config).await;
    assert_eq!(
        client.post("/owner-login/alice").dispatch().await.status(),
        Status::Ok
    );
    let indexes: Vec<String> = store
        .list(&prefix)
        .map_ok(|info| info.key)
        .try_filter(|key| futures::future::ready(!is_session(key)))
        .try_collect()
        .await
        .expect("list");
    assert_eq!(indexes.len(), 1);
    store.delete(&indexes[0]).await.expect("evict the index");
    let manager = manager(&client);
    assert!(manager.sessions_of("alice").await.expect("list").is_empty());

    assert_eq!(
        client.post("/set/cart/3").dispatch().await.status(),
        Status::Ok
    );
    assert_eq!(manager.sessions_of("alice").await.expect("list").len(), 1);
    assert_eq!(manager.revoke_owner("alice").await.expect("revoke"), 1);
    assert_eq!(
        client.get("/whoami").dispatch().await.status(),
        Status::NotFound
    );
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
