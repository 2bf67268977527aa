//! Guarantees of the configuration (issue #20): a tightened configuration
//! applies at once to sessions written before it; a `key_prefix` under
//! which another app's keys could parse as ours refuses launch; the launch
//! check of keys covers the owner index keys.

mod common;

use std::time::Duration;

use rocket::http::{Cookie, Status};
use rocket::local::asynchronous::Client;
use rocket_kvsession::conformance::{app, unique_prefix};
use rocket_kvsession::testing::ManualClock;
use rocket_kvsession::{KvSession, MemoryStore, SessionConfig, StoreError};

/// The conformance app on `store` with `config`, reading `clock`.
async fn client(store: MemoryStore, config: SessionConfig, clock: ManualClock) -> Client {
    let rocket = rocket::custom(app::figment())
        .attach(KvSession::new(store).config(config).clock(clock))
        .mount("/", app::routes());
    Client::untracked(rocket).await.expect("launch")
}

/// A session written while no `idle_timeout` was configured, idle for two
/// minutes when the app restarts with a one-minute `idle_timeout`, does not
/// open: the expiry the store holds (the lifetime's end, from the old
/// setting) is not taken for recent activity.
#[rocket::async_test]
async fn a_new_idle_timeout_applies_to_sessions_written_before_it() {
    let store = MemoryStore::new();
    let config = SessionConfig {
        key_prefix: unique_prefix("guarantees-new-idle"),
        ..SessionConfig::default()
    };
    let name = config.cookie_name.clone();
    let clock = ManualClock::new();
    let before = client(store.clone(), config.clone(), clock.clone()).await;
    let res = before.post("/set/user/alice").dispatch().await;
    assert_eq!(res.status(), Status::Ok);
    let cookie: Cookie<'static> = res
        .cookies()
        .get(&name)
        .expect("a session cookie")
        .clone()
        .into_owned();
    drop(res);
    let res = before
        .get("/whoami")
        .cookie(cookie.clone())
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::Ok);
    drop(res);
    drop(before);

    clock.advance(Duration::from_secs(120));
    let tightened = SessionConfig {
        idle_timeout: Some(60),
        touch_after: 10,
        ..config
    };
    let after = client(store, tightened, clock).await;
    let res = after.get("/whoami").cookie(cookie).dispatch().await;
    assert_eq!(
        res.status(),
        Status::NotFound,
        "a session idle past the idle timeout in force opened"
    );
}

/// Whether an app with `config` on `store` launches.
async fn launches<S: rocket_kvsession::KeyValueStore>(store: S, config: SessionConfig) -> bool {
    !common::refused(Client::untracked(common::app_with(store, config)).await)
}

/// A `key_prefix` that is empty or ends in a hex digit refuses launch:
/// another app's keys (a prefix one hex digit longer, or bare
/// Flask-KVSession ids) could parse as this app's sessions and be swept or
/// revoked by it. The default, and prefixes ending in a separator, launch.
#[rocket::async_test]
async fn a_key_prefix_that_could_take_other_keys_for_ours_refuses_launch() {
    for (prefix, expected) in [
        ("", false),
        ("app1", false),
        ("shop:cafe", false),
        ("session:", true),
        ("app1:", true),
        ("app_", true),
        ("myapp", true),
    ] {
        let config = SessionConfig {
            key_prefix: prefix.into(),
            ..SessionConfig::default()
        };
        assert_eq!(
            launches(MemoryStore::new(), config).await,
            expected,
            "{prefix:?}"
        );
    }
    assert!(launches(MemoryStore::new(), SessionConfig::default()).await);
}

/// A store that holds keys of at most `max` bytes.
#[derive(Debug, Clone)]
struct ShortKeys {
    inner: common::TestStore,
    max: usize,
}

#[rocket::async_trait]
impl rocket_kvsession::KeyValueStore for ShortKeys {
    fn name(&self) -> &'static str {
        "short-keys"
    }
    fn capabilities(&self) -> rocket_kvsession::Capabilities {
        self.inner.capabilities()
    }
    fn check_key(&self, key: &str) -> Result<(), StoreError> {
        if key.len() > self.max {
            return Err(StoreError::invalid_key("short-keys", key, "too long"));
        }
        Ok(())
    }
    async fn get(&self, key: &str) -> Result<Option<rocket_kvsession::Record>, StoreError> {
        self.inner.get(key).await
    }
    async fn create(
        &self,
        key: &str,
        value: &[u8],
        expires_at: Option<std::time::SystemTime>,
    ) -> Result<rocket_kvsession::CreateOutcome, StoreError> {
        self.inner.create(key, value, expires_at).await
    }
    async fn update(
        &self,
        key: &str,
        value: &[u8],
        expected: Option<&rocket_kvsession::Version>,
        expires_at: Option<std::time::SystemTime>,
    ) -> Result<rocket_kvsession::UpdateOutcome, StoreError> {
        self.inner.update(key, value, expected, expires_at).await
    }
    async fn touch(
        &self,
        key: &str,
        expires_at: std::time::SystemTime,
    ) -> Result<rocket_kvsession::UpdateOutcome, StoreError> {
        self.inner.touch(key, expires_at).await
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.inner.delete(key).await
    }
    fn list<'a>(
        &'a self,
        prefix: &'a str,
    ) -> futures::stream::BoxStream<'a, Result<rocket_kvsession::KeyInfo, StoreError>> {
        self.inner.list(prefix)
    }
}

/// With the default 64-bit ids, an owner index key (prefix, `owner_`, 32
/// hex digits) is longer than any session key: a prefix whose session keys
/// fit but whose index keys do not refuses launch, instead of failing
/// every `set_owner` with 503.
#[rocket::async_test]
async fn the_launch_check_covers_owner_index_keys() {
    let prefix = "p".repeat(100) + ":";
    // Session keys: prefix, 16 + 1 + 8 characters; index keys: prefix + 38.
    for (max, expected) in [(prefix.len() + 25, false), (prefix.len() + 38, true)] {
        let store = ShortKeys {
            inner: common::TestStore::new(),
            max,
        };
        let config = SessionConfig {
            key_prefix: prefix.clone(),
            ..SessionConfig::default()
        };
        assert_eq!(launches(store, config).await, expected, "max {max}");
    }
}
