//! [`HookedStore`]: a store wrapper that runs a test's step at an exact
//! point of a request's store calls, so a race is set up, not hoped for.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use async_trait::async_trait;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;

use crate::keys::INDEX_MARK;
use crate::record::FORMAT_MARKER;
use crate::store::{CompareAndDelete, ExpiredDeletion};
use crate::{
    Capabilities, CreateOutcome, KeyInfo, KeyValueStore, Record, StoreError, UpdateOutcome, Version,
};

/// A step of a test, run once inside a store call.
type Step = Box<dyn FnOnce() -> BoxFuture<'static, ()> + Send>;

/// An armed step, taken by the first call that runs it.
#[derive(Clone, Default)]
struct Armed(Arc<Mutex<Option<Step>>>);

impl Armed {
    fn arm(&self, step: impl FnOnce() -> BoxFuture<'static, ()> + Send + 'static) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(Box::new(step));
    }

    async fn run(&self) {
        let step = self.0.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(step) = step {
            step().await;
        }
    }
}

/// The store under test, running a test's step before the next creation
/// of a session record ([`before_create`](Self::before_create)) or after the
/// next successful update of one ([`after_update`](Self::after_update)).
/// It can hide the inner store's compare-and-delete or compare-and-swap,
/// make every "ended" marker written with a compare-and-swap lose to a
/// write of the same session landing just before it
/// ([`interfere`](Self::interfere)), and counts updates and their
/// conflicts. Every other call goes straight through. Clones share their
/// steps and counts.
#[derive(Clone)]
pub struct HookedStore {
    inner: Arc<dyn KeyValueStore>,
    compare_and_delete: bool,
    compare_and_swap: bool,
    before_create: Armed,
    after_update: Armed,
    interfere: Arc<AtomicBool>,
    updates: Arc<AtomicU64>,
    conflicts: Arc<AtomicU64>,
}

impl std::fmt::Debug for HookedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HookedStore")
            .field("inner", &self.inner.name())
            .field("compare_and_delete", &self.compare_and_delete)
            .finish_non_exhaustive()
    }
}

impl HookedStore {
    /// Wraps `inner`, with no step armed.
    pub fn new(inner: Arc<dyn KeyValueStore>) -> Self {
        HookedStore {
            inner,
            compare_and_delete: true,
            compare_and_swap: true,
            before_create: Armed::default(),
            after_update: Armed::default(),
            interfere: Arc::default(),
            updates: Arc::default(),
            conflicts: Arc::default(),
        }
    }

    /// Hides the inner store's compare-and-delete.
    pub fn without_compare_and_delete(mut self) -> Self {
        self.compare_and_delete = false;
        self
    }

    /// Hides the inner store's compare-and-swap (and compare-and-delete):
    /// updates ignore the expected version, as on a store without it.
    pub fn without_compare_and_swap(mut self) -> Self {
        self.compare_and_swap = false;
        self.compare_and_delete = false;
        self
    }

    /// How many updates were asked of the store so far.
    pub fn updates(&self) -> u64 {
        self.updates.load(SeqCst)
    }

    /// How many updates lost their compare-and-swap so far.
    pub fn conflicts(&self) -> u64 {
        self.conflicts.load(SeqCst)
    }

    /// Runs `step` before the next creation of a session record.
    pub fn before_create(&self, step: impl FnOnce() -> BoxFuture<'static, ()> + Send + 'static) {
        self.before_create.arm(step);
    }

    /// Runs `step` after the next successful update of a session record.
    pub fn after_update(&self, step: impl FnOnce() -> BoxFuture<'static, ()> + Send + 'static) {
        self.after_update.arm(step);
    }

    /// While `on`, every "ended" marker written with a compare-and-swap
    /// loses to a write of the session that lands just before it.
    pub fn interfere(&self, on: bool) {
        self.interfere.store(on, SeqCst);
    }
}

/// Whether `key` is a session's, not an owner index's.
fn is_session(key: &str) -> bool {
    !key.contains(INDEX_MARK)
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl KeyValueStore for HookedStore {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            compare_and_swap: self.compare_and_swap && self.inner.capabilities().compare_and_swap,
            ..self.inner.capabilities()
        }
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
        self.updates.fetch_add(1, SeqCst);
        let expected = expected.filter(|_| self.compare_and_swap);
        let marker = value.first() == Some(&FORMAT_MARKER);
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
        if outcome == UpdateOutcome::Conflict {
            self.conflicts.fetch_add(1, SeqCst);
        }
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
