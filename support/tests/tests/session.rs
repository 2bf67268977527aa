//! End-to-end session behaviour through `rocket::local`.

mod common;

use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use common::*;
use rocket::http::{Cookie, Status};
use rocket::local::asynchronous::Client;
use rocket_kvsession::conformance::ManualClock;
use rocket_kvsession::{KeyValueStore, KvSession, MemoryStore, SessionConfig};

fn config() -> SessionConfig {
    SessionConfig::default()
}

async fn body(client: &Client, uri: &str) -> (Status, String) {
    let res = client.get(uri).dispatch().await;
    let status = res.status();
    (status, res.into_string().await.unwrap_or_default())
}

/// The encrypted cookie value a client holds.
fn cookie_value(client: &Client) -> String {
    client
        .cookies()
        .get("session")
        .expect("session cookie")
        .value()
        .to_owned()
}

#[rocket::async_test]
async fn whole_lifecycle() {
    let store = TestStore::new();
    let client = client(store.clone(), config()).await;

    assert_eq!(body(&client, "/whoami").await.0, Status::NotFound);
    let res = client.post("/login/alice").dispatch().await;
    assert_eq!(res.status(), Status::Ok);
    let cookies = set_cookies(&res, "session");
    assert_eq!(cookies.len(), 1, "{cookies:?}");
    // The id never travels in clear text.
    let id = body(&client, "/id").await.1;
    assert!(!cookies[0].contains(&id), "{cookies:?} holds {id}");
    assert_eq!(store.inner.len(), 1);

    assert_eq!(body(&client, "/whoami").await, (Status::Ok, "alice".into()));
    client.post("/set/theme/dark").dispatch().await;
    assert_eq!(body(&client, "/get/theme").await.1, "dark");
    assert_eq!(body(&client, "/keys").await.1, "theme,user");
    assert_eq!(
        client
            .post("/remove/theme")
            .dispatch()
            .await
            .into_string()
            .await
            .unwrap(),
        "removed"
    );
    assert_eq!(body(&client, "/get/theme").await.0, Status::NotFound);
    assert_eq!(
        body(&client, "/id").await.1,
        id,
        "the id is stable between requests"
    );

    let res = client.post("/logout").dispatch().await;
    assert_eq!(res.status(), Status::Ok);
    let cookies = set_cookies(&res, "session");
    assert!(
        cookies.iter().any(|c| c.contains("Max-Age=0")),
        "{cookies:?}"
    );
    assert_eq!(store.inner.len(), 0, "destroy() removes the record");
    assert_eq!(body(&client, "/whoami").await.0, Status::NotFound);
}

#[rocket::async_test]
async fn regenerate_gives_new_id_keeps_data_and_drops_old_key() {
    let store = TestStore::new();
    let client = client(store.clone(), config()).await;
    client.post("/set/cart/3").dispatch().await;
    let old_cookie = cookie_value(&client);
    let old_id = body(&client, "/id").await.1;

    client.post("/login/bob").dispatch().await;
    let new_id = body(&client, "/id").await.1;
    assert_ne!(old_id, new_id);
    assert_eq!(
        body(&client, "/get/cart").await.1,
        "3",
        "regenerate keeps data"
    );
    // The old key no longer holds the session: only the short-lived marker
    // (record format 2) that lets a racing logout follow the rotation.
    let old_key = format!("session:{old_id}");
    let old = store
        .inner
        .get(&old_key)
        .await
        .unwrap()
        .expect("the marker");
    assert_eq!(old.value[0], 2, "the old record is an ended marker");
    assert_eq!(store.inner.len(), 2);

    // The old cookie finds nothing, and its id is not adopted.
    let res = client
        .get("/whoami")
        .cookie(Cookie::new("session", old_cookie.clone()))
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::NotFound);
    let res = client
        .post("/set/x/1")
        .cookie(Cookie::new("session", old_cookie))
        .dispatch()
        .await;
    let fresh_id = res.into_string().await.unwrap();
    assert!(!fresh_id.is_empty());
    assert_ne!(fresh_id, old_id, "a stale id must never be adopted");
    assert_ne!(fresh_id, new_id);
}

#[rocket::async_test]
async fn destroyed_id_is_never_adopted() {
    let store = TestStore::new();
    let client = client(store.clone(), config()).await;
    client.post("/login/carol").dispatch().await;
    let stolen = cookie_value(&client);
    let old_id = body(&client, "/id").await.1;
    client.post("/logout").dispatch().await;

    let res = client
        .post("/set/k/v")
        .cookie(Cookie::new("session", stolen.clone()))
        .dispatch()
        .await;
    let id = res.into_string().await.unwrap();
    assert_ne!(id, old_id);
    assert!(store
        .inner
        .get(&format!("session:{old_id}"))
        .await
        .unwrap()
        .is_none());
    let res = client
        .get("/whoami")
        .cookie(Cookie::new("session", stolen))
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::NotFound);
}

#[rocket::async_test]
async fn reading_never_writes_and_sessionless_routes_touch_nothing() {
    let store = TestStore::new();
    let client = client(store.clone(), config()).await;

    assert_eq!(body(&client, "/plain").await.0, Status::Ok);
    assert_eq!(
        store.counters.all(),
        0,
        "a route without Session touched the store"
    );
    // A new session that is only read is neither stored nor given a cookie.
    let res = client.get("/whoami").dispatch().await;
    assert!(set_cookies(&res, "session").is_empty());
    assert_eq!(store.counters.all(), 0, "no cookie, no store access");

    client.post("/login/dave").dispatch().await;
    let writes = store.counters.writes();
    let gets = store.counters.gets.load(SeqCst);
    for _ in 0..3 {
        let res = client.get("/whoami").dispatch().await;
        assert!(
            set_cookies(&res, "session").is_empty(),
            "a read re-sent the cookie"
        );
        assert_eq!(res.into_string().await.unwrap(), "dave");
    }
    assert_eq!(store.counters.writes(), writes, "a read-only request wrote");
    assert_eq!(
        store.counters.gets.load(SeqCst),
        gets + 3,
        "one get per request"
    );
    // Setting a value to what it already is is not a change either.
    client.post("/set/user/dave").dispatch().await;
    assert_eq!(store.counters.writes(), writes);
    assert_eq!(body(&client, "/plain").await.0, Status::Ok);
    assert_eq!(store.counters.gets.load(SeqCst), gets + 4);
}

#[rocket::async_test]
async fn empty_new_sessions_are_never_stored() {
    let store = TestStore::new();
    let client = client(store.clone(), config()).await;
    // Set then remove in one request: nothing to keep.
    let res = client.post("/remove/nothing").dispatch().await;
    assert!(set_cookies(&res, "session").is_empty());
    let res = client.post("/permanent/false").dispatch().await;
    assert!(
        set_cookies(&res, "session").is_empty(),
        "empty session got a cookie"
    );
    assert_eq!(store.counters.writes(), 0);
    assert!(store.inner.is_empty());
}

#[rocket::async_test]
async fn clearing_a_session_deletes_it() {
    let store = TestStore::new();
    let client = client(store.clone(), config()).await;
    client.post("/set/a/1").dispatch().await;
    assert_eq!(store.inner.len(), 1);
    let res = client.post("/clear").dispatch().await;
    assert!(set_cookies(&res, "session")
        .iter()
        .any(|c| c.contains("Max-Age=0")));
    assert!(store.inner.is_empty());
}

#[rocket::async_test]
async fn removing_the_last_key_deletes_the_session() {
    let store = TestStore::new();
    let client = client(store.clone(), config()).await;
    client.post("/set/a/1").dispatch().await;
    assert_eq!(store.inner.len(), 1);
    let res = client.post("/remove/a").dispatch().await;
    assert!(set_cookies(&res, "session")
        .iter()
        .any(|c| c.contains("Max-Age=0")));
    assert!(store.inner.is_empty());
}

#[rocket::async_test]
async fn permanent_and_browser_session_cookies() {
    let permanent = SessionConfig {
        lifetime: 3600,
        ..config()
    };
    let client = client(TestStore::new(), permanent).await;
    let res = client.post("/set/a/1").dispatch().await;
    let cookie = &set_cookies(&res, "session")[0];
    let max_age: i64 = cookie
        .split("; ")
        .find_map(|attr| attr.strip_prefix("Max-Age="))
        .expect("permanent cookie has Max-Age")
        .parse()
        .unwrap();
    assert!((3590..=3600).contains(&max_age), "{cookie}");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax") && cookie.contains("Path=/")
    );

    let browser = SessionConfig {
        permanent: false,
        cookie_name: "sid".into(),
        cookie_path: "/app".into(),
        cookie_domain: Some("example.com".into()),
        cookie_secure: Some(true),
        cookie_http_only: false,
        cookie_same_site: rocket_kvsession::SameSitePolicy::Strict,
        ..config()
    };
    let browser_client = common::client(TestStore::new(), browser).await;
    let res = browser_client.post("/set/a/1").dispatch().await;
    let cookies = set_cookies(&res, "sid");
    assert_eq!(cookies.len(), 1);
    let cookie = &cookies[0];
    assert!(!cookie.contains("Max-Age"), "{cookie}");
    assert!(!cookie.contains("Expires"), "{cookie}");
    assert!(
        cookie.contains("Path=/app") && cookie.contains("Domain=example.com"),
        "{cookie}"
    );
    assert!(
        cookie.contains("Secure") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(!cookie.contains("HttpOnly"), "{cookie}");
}

#[rocket::async_test]
async fn set_permanent_changes_the_cookie() {
    let client = client(
        TestStore::new(),
        SessionConfig {
            permanent: false,
            ..config()
        },
    )
    .await;
    client.post("/set/a/1").dispatch().await;
    let res = client.post("/permanent/true").dispatch().await;
    let cookies = set_cookies(&res, "session");
    assert!(
        cookies.iter().any(|c| c.contains("Max-Age=")),
        "{cookies:?}"
    );
    let res = client.post("/permanent/false").dispatch().await;
    let cookies = set_cookies(&res, "session");
    assert!(
        cookies.iter().all(|c| !c.contains("Max-Age=")),
        "{cookies:?}"
    );
    assert_eq!(body(&client, "/get/a").await.1, "1");
}

/// A tracked client of the test app whose engine reads `clock`.
async fn clocked_client(store: TestStore, config: SessionConfig, clock: &ManualClock) -> Client {
    Client::tracked(clocked_app(store, config, clock))
        .await
        .expect("launch")
}

/// The test app on `store` whose engine reads `clock`.
fn clocked_app(
    store: TestStore,
    config: SessionConfig,
    clock: &ManualClock,
) -> rocket::Rocket<rocket::Build> {
    rocket::custom(figment())
        .attach(KvSession::new(store).config(config).clock(clock.clone()))
        .mount("/", routes())
}

#[rocket::async_test]
async fn expired_sessions_are_not_loaded() {
    let store = TestStore::new();
    let clock = ManualClock::new();
    let config = SessionConfig {
        lifetime: 60,
        ..config()
    };
    let client = clocked_client(store.clone(), config, &clock).await;
    client.post("/login/erin").dispatch().await;
    assert_eq!(body(&client, "/whoami").await.1, "erin");
    let old_id = body(&client, "/id").await.1;
    // Past the lifetime by the app's clock (plus the second of rounding);
    // the store still holds the record by its own.
    clock.advance(Duration::from_secs(62));
    assert_eq!(body(&client, "/whoami").await.0, Status::NotFound);
    let res = client.post("/set/a/b").dispatch().await;
    assert_ne!(res.into_string().await.unwrap(), old_id);
}

#[rocket::async_test]
async fn expired_sessions_are_not_loaded_from_stores_without_ttl() {
    let store = TestStore::new().without_ttl();
    let clock = ManualClock::new();
    let config = SessionConfig {
        lifetime: 60,
        ..config()
    };
    let client = clocked_client(store.clone(), config, &clock).await;
    client.post("/login/frank").dispatch().await;
    assert_eq!(body(&client, "/whoami").await.1, "frank");
    clock.advance(Duration::from_secs(62));
    assert_eq!(store.inner.len(), 1, "no TTL: the record is still there");
    assert_eq!(body(&client, "/whoami").await.0, Status::NotFound);
}

#[rocket::async_test]
async fn server_errors_do_not_persist_changes() {
    let store = TestStore::new();
    let client = client(store.clone(), config()).await;
    client.post("/set/a/1").dispatch().await;
    let res = client.post("/fail/a/2").dispatch().await;
    assert_eq!(res.status(), Status::InternalServerError);
    assert_eq!(body(&client, "/get/a").await.1, "1");

    // A new session's cookie is not sent with a 5xx either.
    let fresh = Client::untracked(app_with(store.clone(), config()))
        .await
        .unwrap();
    let res = fresh.post("/fail/b/1").dispatch().await;
    assert!(set_cookies(&res, "session").is_empty());

    let client = client_with_save_on_error(store).await;
    client.post("/set/c/1").dispatch().await;
    client.post("/fail/c/3").dispatch().await;
    assert_eq!(body(&client, "/get/c").await.1, "3");
}

async fn client_with_save_on_error(store: TestStore) -> Client {
    client(
        store,
        SessionConfig {
            save_on_error: true,
            ..config()
        },
    )
    .await
}

#[rocket::async_test]
async fn failing_store_gives_503() {
    let store = TestStore::new();
    let client = client(store.clone(), config()).await;
    client.post("/login/gina").dispatch().await;

    store.failing.store(true, SeqCst);
    assert_eq!(body(&client, "/whoami").await.0, Status::ServiceUnavailable);
    assert_eq!(
        body(&client, "/plain").await.0,
        Status::Ok,
        "sessionless routes still work"
    );
    store.failing.store(false, SeqCst);
    assert_eq!(body(&client, "/whoami").await.1, "gina", "nothing was lost");

    // Loading works but the save fails: never reported as success.
    store.failing_writes.store(true, SeqCst);
    let res = client.post("/set/k/v").dispatch().await;
    assert_eq!(res.status(), Status::ServiceUnavailable);
    let res = client.post("/login/hank").dispatch().await;
    assert_eq!(res.status(), Status::ServiceUnavailable);
    store.failing_writes.store(false, SeqCst);
    assert_eq!(body(&client, "/whoami").await.1, "gina");
    assert_eq!(body(&client, "/get/k").await.0, Status::NotFound);

    // A new session whose first save fails gets no cookie.
    let fresh = Client::untracked(app_with(store.clone(), config()))
        .await
        .unwrap();
    store.failing_writes.store(true, SeqCst);
    let res = fresh.post("/set/k/v").dispatch().await;
    assert_eq!(res.status(), Status::ServiceUnavailable);
    assert!(set_cookies(&res, "session").is_empty());
}

#[rocket::async_test]
async fn apps_with_different_prefixes_share_a_store_without_seeing_each_other() {
    let store = TestStore::new();
    let a = client(
        store.clone(),
        SessionConfig {
            key_prefix: "a:".into(),
            ..config()
        },
    )
    .await;
    let b = client(
        store.clone(),
        SessionConfig {
            key_prefix: "b:".into(),
            ..config()
        },
    )
    .await;
    a.post("/login/ann").dispatch().await;
    b.post("/login/ben").dispatch().await;
    assert_eq!(store.inner.len(), 2);
    let keys: Vec<String> = futures::TryStreamExt::try_collect::<Vec<_>>(store.inner.list(""))
        .await
        .unwrap()
        .into_iter()
        .map(|info| info.key)
        .collect();
    assert!(keys.iter().any(|k| k.starts_with("a:")) && keys.iter().any(|k| k.starts_with("b:")));

    // Same secret key, so A's cookie decrypts in B; B must still not see A's session.
    let res = b
        .get("/whoami")
        .cookie(Cookie::new("session", cookie_value(&a)))
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::NotFound);
    assert_eq!(body(&a, "/whoami").await.1, "ann");
    assert_eq!(body(&b, "/whoami").await.1, "ben");
}

#[rocket::async_test]
async fn scheduled_sweep_removes_expired_sessions_from_store_without_ttl() {
    let store = TestStore::new().without_ttl();
    let clock = ManualClock::new();
    let config = SessionConfig {
        lifetime: 60,
        ..config()
    };
    let interval = Duration::from_millis(200);
    let rocket = rocket::custom(figment())
        .attach(
            KvSession::new(store.clone())
                .config(config.clone())
                .clock(clock.clone())
                .cleanup_interval(interval),
        )
        .mount("/", routes());
    let client = Client::tracked(rocket).await.unwrap();
    for user in ["a", "b", "c"] {
        let other = Client::untracked(clocked_app(store.clone(), config.clone(), &clock))
            .await
            .unwrap();
        other.post(format!("/login/{user}")).dispatch().await;
    }
    client.post("/login/z").dispatch().await;
    assert_eq!(store.inner.len(), 4);
    // Not yet expired by the app's clock: the scheduled sweeps keep them.
    let lists = store.counters.lists.load(SeqCst);
    wait_until("a sweep ran", || store.counters.lists.load(SeqCst) > lists).await;
    assert_eq!(store.inner.len(), 4, "a sweep deleted live sessions");
    // Past the lifetime (plus the second of rounding): the next sweeps
    // delete them all.
    clock.advance(Duration::from_secs(62));
    wait_until("the sweeps deleted every expired session", || {
        store.inner.is_empty()
    })
    .await;
}

/// Polls `done` until it holds, failing after a minute of real time (the
/// scheduled sweeps run every 200 ms; the minute only bounds a hang).
async fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "never: {what}");
        rocket::tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[rocket::async_test]
async fn sweep_keeps_running_after_a_failed_sweep() {
    #[derive(Debug, Clone)]
    struct FailingList(TestStore, std::sync::Arc<std::sync::atomic::AtomicU64>);
    #[rocket::async_trait]
    impl KeyValueStore for FailingList {
        fn name(&self) -> &'static str {
            "failing-list"
        }
        fn capabilities(&self) -> rocket_kvsession::Capabilities {
            self.0.capabilities()
        }
        async fn get(
            &self,
            key: &str,
        ) -> Result<Option<rocket_kvsession::Record>, rocket_kvsession::StoreError> {
            self.0.get(key).await
        }
        async fn create(
            &self,
            key: &str,
            value: &[u8],
            at: Option<std::time::SystemTime>,
        ) -> Result<rocket_kvsession::CreateOutcome, rocket_kvsession::StoreError> {
            self.0.create(key, value, at).await
        }
        async fn update(
            &self,
            key: &str,
            value: &[u8],
            v: Option<&rocket_kvsession::Version>,
            at: Option<std::time::SystemTime>,
        ) -> Result<rocket_kvsession::UpdateOutcome, rocket_kvsession::StoreError> {
            self.0.update(key, value, v, at).await
        }
        async fn touch(
            &self,
            key: &str,
            at: std::time::SystemTime,
        ) -> Result<rocket_kvsession::UpdateOutcome, rocket_kvsession::StoreError> {
            self.0.touch(key, at).await
        }
        async fn delete(&self, key: &str) -> Result<(), rocket_kvsession::StoreError> {
            self.0.delete(key).await
        }
        fn list<'a>(
            &'a self,
            prefix: &'a str,
        ) -> futures::stream::BoxStream<
            'a,
            Result<rocket_kvsession::KeyInfo, rocket_kvsession::StoreError>,
        > {
            use futures::StreamExt;
            let n = self.1.fetch_add(1, SeqCst);
            if n == 0 {
                let err = rocket_kvsession::StoreError::unavailable(
                    "failing-list",
                    std::io::Error::other("listing failed"),
                );
                return futures::stream::once(async move { Err(err) }).boxed();
            }
            self.0.list(prefix)
        }
    }
    let sweeps = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let store = FailingList(TestStore::new().without_ttl(), sweeps.clone());
    let rocket = rocket::custom(figment())
        .attach(
            KvSession::new(store)
                .config(SessionConfig::default())
                .cleanup_interval(Duration::from_millis(200)),
        )
        .mount("/", routes());
    let _client = Client::tracked(rocket).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while sweeps.load(SeqCst) < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "sweeps stopped after a failure"
        );
        rocket::tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[rocket::async_test]
async fn bad_config_refuses_launch() {
    use rocket::figment::providers::{Format, Toml};
    for table in [
        "key_bits = 12",
        "key_bits = 65",
        "lifetime = -5",
        "lifetime = 0",
        "cookie_same_site = \"sometimes\"",
        "cookie_name = \"\"",
        "cookie_nmae = \"typo\"",
        "idle_timeout = 10\ntouch_after = 20",
    ] {
        let toml = format!("[default.kvsession]\n{table}\n");
        let figment = figment().merge(Toml::string(&toml).nested());
        let rocket = rocket::custom(figment)
            .attach(KvSession::new(MemoryStore::new()))
            .mount("/", routes());
        assert!(refused(rocket.ignite().await), "launched with {table}");
    }
    // A valid table is read.
    let figment = figment().merge(
        Toml::string("[default.kvsession]\ncookie_name = \"sid\"\nkey_bits = 128\n").nested(),
    );
    let rocket = rocket::custom(figment)
        .attach(KvSession::new(MemoryStore::new()))
        .mount("/", routes());
    let client = Client::tracked(rocket).await.unwrap();
    let res = client.post("/set/a/1").dispatch().await;
    assert_eq!(set_cookies(&res, "sid").len(), 1);
    let id = body(&client, "/id").await.1;
    assert_eq!(
        id.split_once('_').unwrap().0.len(),
        32,
        "key_bits = 128 gives 32 hex digits"
    );
}

#[rocket::async_test]
async fn missing_fairing_refuses_launch() {
    let rocket = rocket::custom(figment()).mount("/", routes());
    assert!(refused(Client::tracked(rocket).await));
    let rocket = rocket::custom(figment())
        .attach(KvSession::new(MemoryStore::new()))
        .attach(KvSession::new(MemoryStore::new()))
        .mount("/", routes());
    assert!(refused(Client::tracked(rocket).await), "attached twice");
}

#[rocket::async_test]
async fn seeded_rng_gives_reproducible_ids() {
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;
    async fn ids(seed: u64) -> Vec<String> {
        let rocket = rocket::custom(figment())
            .attach(KvSession::new(MemoryStore::new()).rng(ChaCha20Rng::seed_from_u64(seed)))
            .mount("/", routes());
        let client = Client::untracked(rocket).await.unwrap();
        let mut ids = Vec::new();
        for _ in 0..3 {
            let id = client
                .post("/set/a/1")
                .dispatch()
                .await
                .into_string()
                .await
                .unwrap();
            ids.push(id.split_once('_').unwrap().0.to_owned());
        }
        ids
    }
    assert_eq!(ids(9).await, ids(9).await);
    assert_ne!(ids(9).await, ids(10).await);
}

#[rocket::async_test]
async fn id_collision_on_first_save_is_refused_not_shared() {
    /// An RNG that always returns the same bytes: every id collides.
    #[derive(Debug)]
    struct Stuck;
    impl rand_core::RngCore for Stuck {
        fn next_u32(&mut self) -> u32 {
            7
        }
        fn next_u64(&mut self) -> u64 {
            7
        }
        fn fill_bytes(&mut self, dest: &mut [u8]) {
            dest.fill(7);
        }
    }
    impl rand_core::CryptoRng for Stuck {}

    let store = TestStore::new();
    let rocket = rocket::custom(figment())
        .attach(KvSession::new(store.clone()).rng(Stuck))
        .mount("/", routes());
    let client = Client::untracked(rocket).await.unwrap();
    let first = client.post("/set/owner/first").dispatch().await;
    assert_eq!(first.status(), Status::Ok);
    let cookie = set_cookies(&first, "session");
    let second = client.post("/set/owner/second").dispatch().await;
    // Same second, same random bytes: the second session must not take over
    // (or be handed) the first one's record.
    if second.status() == Status::ServiceUnavailable {
        assert!(set_cookies(&second, "session").is_empty());
    } else {
        // The clock ticked between the two requests, so the ids differ.
        assert_ne!(set_cookies(&second, "session"), cookie);
    }
    assert_eq!(
        store.inner.len(),
        1,
        "exactly one record, owned by the first session"
    );
}
