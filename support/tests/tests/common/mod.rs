//! Test support: a real `MemoryStore` behind switches and counters, and app builders.
#![allow(dead_code, unreachable_pub)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::SystemTime;

use futures::stream::BoxStream;
use rocket::async_trait;
use rocket::figment::Figment;
use rocket::local::asynchronous::{Client, LocalResponse};
use rocket::{Build, Rocket};
use rocket_kvsession::conformance::app;
use rocket_kvsession::{
    Capabilities, CreateOutcome, Expiry, KeyInfo, KeyValueStore, KvSession, MemoryStore, Record,
    SessionConfig, StoreError, UpdateOutcome, Version,
};

/// Operation counters of a [`TestStore`].
#[derive(Debug, Default)]
pub struct Counters {
    pub gets: AtomicU64,
    pub creates: AtomicU64,
    pub updates: AtomicU64,
    pub touches: AtomicU64,
    pub deletes: AtomicU64,
    pub lists: AtomicU64,
}

impl Counters {
    pub fn writes(&self) -> u64 {
        self.creates.load(SeqCst)
            + self.updates.load(SeqCst)
            + self.touches.load(SeqCst)
            + self.deletes.load(SeqCst)
    }
    pub fn all(&self) -> u64 {
        self.writes() + self.gets.load(SeqCst) + self.lists.load(SeqCst)
    }
}

/// A `MemoryStore` that counts operations, can fail on demand, and can act
/// as a store without TTL or without versioning.
#[derive(Debug, Clone)]
pub struct TestStore {
    pub inner: MemoryStore,
    pub counters: Arc<Counters>,
    pub failing: Arc<AtomicBool>,
    pub failing_writes: Arc<AtomicBool>,
    pub ttl: bool,
    pub versioning: bool,
    /// Added to every operation, like a round trip to a server.
    pub latency: std::time::Duration,
}

impl TestStore {
    pub fn new() -> Self {
        TestStore {
            inner: MemoryStore::new(),
            counters: Arc::default(),
            failing: Arc::default(),
            failing_writes: Arc::default(),
            ttl: true,
            versioning: true,
            latency: std::time::Duration::ZERO,
        }
    }

    /// Adds `latency` to every operation.
    pub fn with_latency(mut self, latency: std::time::Duration) -> Self {
        self.latency = latency;
        self
    }

    /// Acts as a store without TTL: expiries are not handed on.
    pub fn without_ttl(mut self) -> Self {
        self.ttl = false;
        self
    }

    /// Acts as a store without compare-and-swap.
    pub fn without_versioning(mut self) -> Self {
        self.versioning = false;
        self
    }

    async fn delay(&self) {
        if !self.latency.is_zero() {
            rocket::tokio::time::sleep(self.latency).await;
        }
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.failing.load(SeqCst) {
            let source = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "store down");
            return Err(StoreError::unavailable("test", source));
        }
        Ok(())
    }

    fn check_write(&self) -> Result<(), StoreError> {
        self.check()?;
        if self.failing_writes.load(SeqCst) {
            let source = std::io::Error::new(std::io::ErrorKind::TimedOut, "write timed out");
            return Err(StoreError::unavailable("test", source));
        }
        Ok(())
    }

    fn expiry(&self, at: Option<SystemTime>) -> Option<SystemTime> {
        assert!(
            self.ttl || at.is_none(),
            "a store without TTL was handed an expiry"
        );
        at
    }
}

#[async_trait]
impl KeyValueStore for TestStore {
    fn name(&self) -> &'static str {
        "test"
    }
    fn capabilities(&self) -> Capabilities {
        let expiry = if self.ttl {
            Expiry::RemovedByBackend
        } else {
            Expiry::Ignored
        };
        let caps = Capabilities::new(expiry);
        if self.versioning {
            caps.with_compare_and_swap()
        } else {
            caps
        }
    }
    async fn get(&self, key: &str) -> Result<Option<Record>, StoreError> {
        self.counters.gets.fetch_add(1, SeqCst);
        self.delay().await;
        self.check()?;
        self.inner.get(key).await
    }
    async fn create(
        &self,
        key: &str,
        value: &[u8],
        expires_at: Option<SystemTime>,
    ) -> Result<CreateOutcome, StoreError> {
        self.counters.creates.fetch_add(1, SeqCst);
        self.delay().await;
        self.check_write()?;
        self.inner.create(key, value, self.expiry(expires_at)).await
    }
    async fn update(
        &self,
        key: &str,
        value: &[u8],
        expected: Option<&Version>,
        expires_at: Option<SystemTime>,
    ) -> Result<UpdateOutcome, StoreError> {
        self.counters.updates.fetch_add(1, SeqCst);
        self.delay().await;
        self.check_write()?;
        let expected = if self.versioning { expected } else { None };
        self.inner
            .update(key, value, expected, self.expiry(expires_at))
            .await
    }
    async fn touch(&self, key: &str, expires_at: SystemTime) -> Result<UpdateOutcome, StoreError> {
        self.counters.touches.fetch_add(1, SeqCst);
        self.delay().await;
        self.check_write()?;
        assert!(self.ttl, "touch on a store without TTL");
        self.inner.touch(key, expires_at).await
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.counters.deletes.fetch_add(1, SeqCst);
        self.delay().await;
        self.check_write()?;
        self.inner.delete(key).await
    }
    fn list<'a>(&'a self, prefix: &'a str) -> BoxStream<'a, Result<KeyInfo, StoreError>> {
        self.counters.lists.fetch_add(1, SeqCst);
        self.inner.list(prefix)
    }
}

/// A fixed secret key, so cookies from one app open in another.
pub const SECRET: &str = app::SECRET_KEY;

/// The routes every store's app-level conformance cases use.
pub use app::routes;

/// The figment of a test app: fixed secret key, quiet logs, the given
/// `kvsession` table entries.
pub fn figment() -> Figment {
    rocket::Config::figment()
        .merge(("secret_key", SECRET))
        .merge(("log_level", "off"))
}

/// A test app on `store` with `config`.
pub fn app_with<S: KeyValueStore>(store: S, config: SessionConfig) -> Rocket<Build> {
    rocket::custom(figment())
        .attach(KvSession::new(store).config(config))
        .mount("/", routes())
}

/// A tracked client for a test app.
pub async fn client<S: KeyValueStore>(store: S, config: SessionConfig) -> Client {
    Client::tracked(app_with(store, config))
        .await
        .expect("valid rocket")
}

/// The raw `Set-Cookie` header values of a response for cookie `name`.
pub fn set_cookies(res: &LocalResponse<'_>, name: &str) -> Vec<String> {
    res.headers()
        .get("Set-Cookie")
        .filter(|v| v.starts_with(&format!("{name}=")))
        .map(str::to_owned)
        .collect()
}

/// Whether launching failed (and marks Rocket's error as handled).
pub fn refused<T>(result: Result<T, rocket::Error>) -> bool {
    match result {
        Ok(_) => false,
        Err(e) => {
            let _ = e.kind();
            true
        }
    }
}
