//! A store wrapper for tests that interferes with the calls going through
//! it, driven by a seed: before each call it yields to the other tasks a
//! seeded number of times (and, if asked, sleeps a seeded number of
//! milliseconds), so that the store calls of concurrent requests run in an
//! order the seed decides; and it can inject faults (a store error before
//! the call, a store error after the call went through, as a timeout whose
//! reply was lost, and spurious compare-and-swap conflicts).
//!
//! On one current-thread runtime with every request driven from one task
//! (`join_all` of `rocket::local` dispatches), and with the app's own
//! random generator seeded ([`KvSession::rng`](crate::KvSession::rng)), one
//! seed replays one interleaving. Under a paused Tokio clock
//! (`#[tokio::test(start_paused = true)]`) the sleeps, and the engine's
//! retry backoffs, cost no real time.
//!
//! Given a [`ManualClock`] ([`InterferingStore::stamped_by`]), the wrapper
//! also reports the last-modified time of every key it wrote by that clock
//! instead of the backend's, so that a sweep's idle-timeout judgement (which
//! reads last-modified times from the listing) follows the test's clock like
//! the engine does.
//!
//! Set `INTERLEAVE_TRACE=1` to print every call and fault to stderr.
//!
//! Like the rest of `conformance`, this is a test fixture: not covered by
//! semver.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use futures_util::stream::{self, BoxStream, StreamExt, TryStreamExt};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

use crate::clock::ManualClock;
use crate::error::StoreError;
use crate::store::{
    Capabilities, CompareAndDelete, CreateOutcome, DeleteOutcome, ExpiredDeletion, KeyInfo,
    KeyValueStore, Record, UpdateOutcome, Version,
};

/// How often, in calls per thousand, each kind of fault is injected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Faults {
    /// A store error instead of the call: nothing was done.
    pub error_before: u32,
    /// The call goes through, then a store error is returned (a timeout
    /// whose reply was lost): the write may have happened.
    pub error_after: u32,
    /// A conditional write (`update` with an expected version,
    /// `delete_if`) answers a conflict without writing, as if another
    /// writer had just been there.
    pub conflict: u32,
}

impl Faults {
    /// No faults.
    pub const NONE: Faults = Faults {
        error_before: 0,
        error_after: 0,
        conflict: 0,
    };

    /// Whether any fault can be injected.
    pub fn any(&self) -> bool {
        *self != Faults::NONE
    }
}

/// What the wrapper did to one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    ErrorBefore,
    ErrorAfter,
    Conflict,
}

/// The seeded schedule shared by every clone of an [`InterferingStore`].
struct Schedule {
    rng: Mutex<ChaCha20Rng>,
    max_yields: u32,
    max_sleep_ms: u32,
    faults: Mutex<Faults>,
    calm: AtomicBool,
    injected: AtomicU64,
    stamps: Option<(ManualClock, Mutex<HashMap<String, SystemTime>>)>,
    trace: bool,
}

impl Schedule {
    fn below(&self, n: u32) -> u32 {
        if n == 0 {
            return 0;
        }
        self.rng
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .next_u32()
            % n
    }
}

/// A [`KeyValueStore`] over another one that reorders, delays and fails
/// calls as a seed decides. Clones share the schedule.
#[derive(Clone)]
pub struct InterferingStore {
    inner: Arc<dyn KeyValueStore>,
    schedule: Arc<Schedule>,
}

impl fmt::Debug for InterferingStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InterferingStore")
            .field("inner", &self.inner.name())
            .field("injected", &self.injected())
            .finish_non_exhaustive()
    }
}

impl InterferingStore {
    /// A wrapper of `inner` whose schedule is drawn from `seed`: up to 6
    /// yields before each call, no sleeps, no faults.
    pub fn new(inner: Arc<dyn KeyValueStore>, seed: u64) -> Self {
        InterferingStore {
            inner,
            schedule: Arc::new(Schedule {
                rng: Mutex::new(ChaCha20Rng::seed_from_u64(seed)),
                max_yields: 7,
                max_sleep_ms: 0,
                faults: Mutex::new(Faults::NONE),
                calm: AtomicBool::new(false),
                injected: AtomicU64::new(0),
                stamps: None,
                trace: std::env::var_os("INTERLEAVE_TRACE").is_some(),
            }),
        }
    }

    fn schedule_mut(&mut self) -> &mut Schedule {
        Arc::get_mut(&mut self.schedule).expect("configured before it is cloned")
    }

    /// Before each call, yields up to `max` times (`max` = 0: never).
    pub fn yields(mut self, max: u32) -> Self {
        self.schedule_mut().max_yields = max + 1;
        self
    }

    /// Before each call, also sleeps up to `max_ms` milliseconds (meant for
    /// a paused Tokio clock, where it costs no real time).
    pub fn sleeps(mut self, max_ms: u32) -> Self {
        self.schedule_mut().max_sleep_ms = max_ms;
        self
    }

    /// Injects `faults` (until [`calm`](Self::calm)).
    pub fn faults(mut self, faults: Faults) -> Self {
        *self.schedule_mut().faults.get_mut().unwrap() = faults;
        self
    }

    /// Reports the last-modified time of the keys written through this
    /// wrapper by `clock` instead of the backend's clock (keys the backend
    /// reports no time for stay without one).
    pub fn stamped_by(mut self, clock: ManualClock) -> Self {
        self.schedule_mut().stamps = Some((clock, Mutex::default()));
        self
    }

    /// From now on, no more delays or faults (to check the outcome of a
    /// scenario through the same store).
    pub fn calm(&self) {
        self.schedule.calm.store(true, SeqCst);
    }

    /// How many faults were injected so far.
    pub fn injected(&self) -> u64 {
        self.schedule.injected.load(SeqCst)
    }

    /// The wrapped store.
    pub fn inner(&self) -> &Arc<dyn KeyValueStore> {
        &self.inner
    }

    fn trace(&self, op: &str, key: &str, what: &dyn fmt::Debug) {
        if self.schedule.trace {
            eprintln!("store {op} {key}: {what:?}");
        }
    }

    /// Delays the call as the seed says, and draws its fault, if any.
    /// `conditional`: whether a conflict can be injected.
    async fn interfere(&self, op: &str, key: &str, conditional: bool) -> Option<Fault> {
        let s = &*self.schedule;
        if s.calm.load(SeqCst) {
            return None;
        }
        for _ in 0..s.below(s.max_yields) {
            tokio::task::yield_now().await;
        }
        let sleep = s.below(s.max_sleep_ms + 1);
        if sleep > 0 {
            tokio::time::sleep(Duration::from_millis(sleep.into())).await;
        }
        let faults = *s.faults.lock().unwrap_or_else(|e| e.into_inner());
        if !faults.any() {
            return None;
        }
        let draw = s.below(1000);
        let fault = if draw < faults.error_before {
            Some(Fault::ErrorBefore)
        } else if draw < faults.error_before + faults.error_after {
            Some(Fault::ErrorAfter)
        } else if conditional && draw < faults.error_before + faults.error_after + faults.conflict {
            Some(Fault::Conflict)
        } else {
            None
        };
        if let Some(fault) = fault {
            s.injected.fetch_add(1, SeqCst);
            self.trace(op, key, &fault);
        }
        fault
    }

    fn injected_error(&self, op: &str) -> StoreError {
        StoreError::unavailable(
            "interfering",
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("injected fault in {op}"),
            ),
        )
    }

    /// Runs `call` under the fault drawn for it.
    async fn run<T: fmt::Debug>(
        &self,
        op: &str,
        key: &str,
        fault: Option<Fault>,
        call: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        if fault == Some(Fault::ErrorBefore) {
            return Err(self.injected_error(op));
        }
        let outcome = call.await;
        self.trace(op, key, &outcome);
        if fault == Some(Fault::ErrorAfter) {
            return Err(self.injected_error(op));
        }
        outcome
    }

    fn stamp(&self, key: &str) {
        if let Some((clock, stamps)) = &self.schedule.stamps {
            stamps
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key.to_owned(), clock.now());
        }
    }

    fn unstamp(&self, key: &str) {
        if let Some((_, stamps)) = &self.schedule.stamps {
            stamps.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
        }
    }

    fn restamp(&self, mut info: KeyInfo) -> KeyInfo {
        if let (Some((_, stamps)), Some(_)) = (&self.schedule.stamps, info.last_modified) {
            let stamps = stamps.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(at) = stamps.get(&info.key) {
                info.last_modified = Some(*at);
            }
        }
        info
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl KeyValueStore for InterferingStore {
    fn name(&self) -> &'static str {
        self.inner.name()
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
        let fault = self.interfere("get", key, false).await;
        self.run("get", key, fault, self.inner.get(key)).await
    }

    async fn create(
        &self,
        key: &str,
        value: &[u8],
        expires_at: Option<SystemTime>,
    ) -> Result<CreateOutcome, StoreError> {
        let fault = self.interfere("create", key, false).await;
        let call = async {
            let outcome = self.inner.create(key, value, expires_at).await;
            if let Ok(CreateOutcome::Created(_)) = outcome {
                self.stamp(key);
            }
            outcome
        };
        self.run("create", key, fault, call).await
    }

    async fn update(
        &self,
        key: &str,
        value: &[u8],
        expected: Option<&Version>,
        expires_at: Option<SystemTime>,
    ) -> Result<UpdateOutcome, StoreError> {
        let conditional = expected.is_some() && self.capabilities().compare_and_swap;
        let fault = self.interfere("update", key, conditional).await;
        if fault == Some(Fault::Conflict) {
            return Ok(UpdateOutcome::Conflict);
        }
        let call = async {
            let outcome = self.inner.update(key, value, expected, expires_at).await;
            if let Ok(UpdateOutcome::Updated(_)) = outcome {
                self.stamp(key);
            }
            outcome
        };
        self.run("update", key, fault, call).await
    }

    async fn touch(&self, key: &str, expires_at: SystemTime) -> Result<UpdateOutcome, StoreError> {
        let fault = self.interfere("touch", key, false).await;
        let call = async {
            let outcome = self.inner.touch(key, expires_at).await;
            if let Ok(UpdateOutcome::Updated(_)) = outcome {
                self.stamp(key);
            }
            outcome
        };
        self.run("touch", key, fault, call).await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let fault = self.interfere("delete", key, false).await;
        let call = async {
            let outcome = self.inner.delete(key).await;
            if outcome.is_ok() {
                self.unstamp(key);
            }
            outcome
        };
        self.run("delete", key, fault, call).await
    }

    async fn delete_many(&self, keys: Vec<String>) -> Result<(), StoreError> {
        let fault = self.interfere("delete_many", "", false).await;
        let call = async {
            let gone = keys.clone();
            let outcome = self.inner.delete_many(keys).await;
            if outcome.is_ok() {
                for key in &gone {
                    self.unstamp(key);
                }
            }
            outcome
        };
        self.run("delete_many", "", fault, call).await
    }

    /// Until [`calm`](Self::calm), the listing is read whole and handed out
    /// in key order, so that the order a backend happens to list keys in
    /// (a hash map's) does not change the interleaving a seed gives.
    fn list<'a>(&'a self, prefix: &'a str) -> BoxStream<'a, Result<KeyInfo, StoreError>> {
        let start = async move {
            if self.schedule.calm.load(SeqCst) {
                return self
                    .inner
                    .list(prefix)
                    .map(move |info| info.map(|info| self.restamp(info)))
                    .boxed();
            }
            if let Some(Fault::ErrorBefore | Fault::ErrorAfter) =
                self.interfere("list", prefix, false).await
            {
                return stream::once(async move { Err(self.injected_error("list")) }).boxed();
            }
            let listed: Result<Vec<KeyInfo>, StoreError> =
                self.inner.list(prefix).try_collect().await;
            match listed {
                Ok(mut infos) => {
                    infos.sort_by(|a, b| a.key.cmp(&b.key));
                    let infos: Vec<_> = infos.into_iter().map(|i| Ok(self.restamp(i))).collect();
                    stream::iter(infos).boxed()
                }
                Err(e) => stream::once(async move { Err(e) }).boxed(),
            }
        };
        stream::once(start).flatten().boxed()
    }

    fn compare_and_delete(&self) -> Option<&dyn CompareAndDelete> {
        self.inner
            .compare_and_delete()
            .map(|_| self as &dyn CompareAndDelete)
    }

    fn expired_deletion(&self) -> Option<&dyn ExpiredDeletion> {
        self.inner.expired_deletion()
    }
}

#[async_trait]
impl CompareAndDelete for InterferingStore {
    async fn delete_if(&self, key: &str, expected: &Version) -> Result<DeleteOutcome, StoreError> {
        let fault = self.interfere("delete_if", key, true).await;
        if fault == Some(Fault::Conflict) {
            return Ok(DeleteOutcome::Conflict);
        }
        let inner = self
            .inner
            .compare_and_delete()
            .expect("handed out only when the inner store has one");
        let call = async {
            let outcome = inner.delete_if(key, expected).await;
            if let Ok(DeleteOutcome::Deleted) = outcome {
                self.unstamp(key);
            }
            outcome
        };
        self.run("delete_if", key, fault, call).await
    }
}
