//! The crate's metrics, through the `metrics` crate's facade (feature
//! `metrics`): every name, kind and label is here. Without the feature the
//! functions are empty and nothing of the facade is compiled in.
//!
//! Labels are fixed, small sets (never an id, a key or an owner):
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `kvsession_loads_total` | counter | `outcome`: `found`, `none`, `rejected` |
//! | `kvsession_saves_total` | counter | `kind`: `create`, `update`, `rotate`, `touch`, `end` |
//! | `kvsession_save_conflicts_total` | counter | |
//! | `kvsession_store_errors_total` | counter | `op` |
//! | `kvsession_store_seconds` | histogram | `op`: `get`, `create`, `update`, `touch`, `delete`, `list` |
//! | `kvsession_fallback_key_opens_total` | counter | |
//! | `kvsession_revoked_total` | counter | |
//! | `kvsession_sweep_deleted_total` | counter | |

/// How a load ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Load {
    /// A live record.
    Found,
    /// No cookie (or token).
    None,
    /// A cookie that did not open, parse, or name a live record.
    Rejected,
}

/// Which store write the engine made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Save {
    Create,
    Update,
    Rotate,
    Touch,
    End,
}

/// Which store operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
pub(crate) enum Op {
    Get,
    Create,
    Update,
    Touch,
    Delete,
    List,
}

#[cfg(feature = "metrics")]
mod facade {
    //! Every label value is a literal, so each key is built (and hashed)
    //! at compile time: without a recorder a call costs little more than
    //! the facade's look-up of the recorder.
    use super::{Load, Op, Save};
    use metrics::{counter, histogram};
    use std::time::Duration;

    pub(crate) fn load(outcome: Load) {
        match outcome {
            Load::Found => counter!("kvsession_loads_total", "outcome" => "found").increment(1),
            Load::None => counter!("kvsession_loads_total", "outcome" => "none").increment(1),
            Load::Rejected => {
                counter!("kvsession_loads_total", "outcome" => "rejected").increment(1)
            }
        }
    }

    pub(crate) fn save(kind: Save) {
        match kind {
            Save::Create => counter!("kvsession_saves_total", "kind" => "create").increment(1),
            Save::Update => counter!("kvsession_saves_total", "kind" => "update").increment(1),
            Save::Rotate => counter!("kvsession_saves_total", "kind" => "rotate").increment(1),
            Save::Touch => counter!("kvsession_saves_total", "kind" => "touch").increment(1),
            Save::End => counter!("kvsession_saves_total", "kind" => "end").increment(1),
        }
    }

    pub(crate) fn conflict() {
        counter!("kvsession_save_conflicts_total").increment(1);
    }

    pub(crate) fn store_call(op: Op, elapsed: Duration, failed: bool) {
        let seconds = elapsed.as_secs_f64();
        macro_rules! record {
            ($op:literal) => {{
                histogram!("kvsession_store_seconds", "op" => $op).record(seconds);
                if failed {
                    counter!("kvsession_store_errors_total", "op" => $op).increment(1);
                }
            }};
        }
        match op {
            Op::Get => record!("get"),
            Op::Create => record!("create"),
            Op::Update => record!("update"),
            Op::Touch => record!("touch"),
            Op::Delete => record!("delete"),
            Op::List => record!("list"),
        }
    }

    pub(crate) fn fallback_key_open() {
        counter!("kvsession_fallback_key_opens_total").increment(1);
    }

    pub(crate) fn revoked(n: u64) {
        counter!("kvsession_revoked_total").increment(n);
    }

    pub(crate) fn sweep_deleted(n: u64) {
        counter!("kvsession_sweep_deleted_total").increment(n);
    }
}

#[cfg(not(feature = "metrics"))]
mod facade {
    use super::{Load, Save};

    pub(crate) fn load(_: Load) {}
    pub(crate) fn save(_: Save) {}
    pub(crate) fn conflict() {}
    pub(crate) fn fallback_key_open() {}
    pub(crate) fn revoked(_: u64) {}
    pub(crate) fn sweep_deleted(_: u64) {}
}

pub(crate) use facade::*;

#[cfg(feature = "metrics")]
pub(crate) use instrumented::Instrumented;

/// A store wrapper that times every call and counts failures.
#[cfg(feature = "metrics")]
mod instrumented {
    use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
    use std::sync::Arc;
    use std::time::{Instant, SystemTime};

    use async_trait::async_trait;
    use futures_util::stream::{self, BoxStream, StreamExt};

    use super::{store_call, Op};
    use crate::error::StoreError;
    use crate::store::{
        Capabilities, CompareAndDelete, CreateOutcome, DeleteOutcome, ExpiredDeletion, KeyInfo,
        KeyValueStore, Record, UpdateOutcome, Version,
    };

    /// The engine's store, measured.
    pub(crate) struct Instrumented(pub(crate) Arc<dyn KeyValueStore>);

    async fn timed<T>(
        op: Op,
        call: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let started = Instant::now();
        let result = call.await;
        store_call(op, started.elapsed(), result.is_err());
        result
    }

    #[async_trait]
    #[deny(clippy::missing_trait_methods)]
    impl KeyValueStore for Instrumented {
        fn name(&self) -> &'static str {
            self.0.name()
        }
        fn capabilities(&self) -> Capabilities {
            self.0.capabilities()
        }
        async fn init(&self) -> Result<(), StoreError> {
            self.0.init().await
        }
        fn check_key(&self, key: &str) -> Result<(), StoreError> {
            self.0.check_key(key)
        }
        async fn get(&self, key: &str) -> Result<Option<Record>, StoreError> {
            timed(Op::Get, self.0.get(key)).await
        }
        async fn create(
            &self,
            key: &str,
            value: &[u8],
            expires_at: Option<SystemTime>,
        ) -> Result<CreateOutcome, StoreError> {
            timed(Op::Create, self.0.create(key, value, expires_at)).await
        }
        async fn update(
            &self,
            key: &str,
            value: &[u8],
            expected: Option<&Version>,
            expires_at: Option<SystemTime>,
        ) -> Result<UpdateOutcome, StoreError> {
            timed(Op::Update, self.0.update(key, value, expected, expires_at)).await
        }
        async fn touch(
            &self,
            key: &str,
            expires_at: SystemTime,
        ) -> Result<UpdateOutcome, StoreError> {
            timed(Op::Touch, self.0.touch(key, expires_at)).await
        }
        async fn delete(&self, key: &str) -> Result<(), StoreError> {
            timed(Op::Delete, self.0.delete(key)).await
        }
        async fn delete_many(&self, keys: Vec<String>) -> Result<(), StoreError> {
            timed(Op::Delete, self.0.delete_many(keys)).await
        }
        fn list<'a>(&'a self, prefix: &'a str) -> BoxStream<'a, Result<KeyInfo, StoreError>> {
            // A listing is a stream: timed from its start to its end.
            let started = Instant::now();
            let failed = Arc::new(AtomicBool::new(false));
            let seen = failed.clone();
            let done = stream::once(async move {
                store_call(Op::List, started.elapsed(), failed.load(Relaxed));
                None
            })
            .filter_map(|item| async move { item });
            self.0
                .list(prefix)
                .inspect(move |item| {
                    if item.is_err() {
                        seen.store(true, Relaxed);
                    }
                })
                .chain(done)
                .boxed()
        }
        fn compare_and_delete(&self) -> Option<&dyn CompareAndDelete> {
            self.0
                .compare_and_delete()
                .map(|_| self as &dyn CompareAndDelete)
        }
        fn expired_deletion(&self) -> Option<&dyn ExpiredDeletion> {
            self.0.expired_deletion()
        }
    }

    #[async_trait]
    impl CompareAndDelete for Instrumented {
        async fn delete_if(
            &self,
            key: &str,
            expected: &Version,
        ) -> Result<DeleteOutcome, StoreError> {
            // Offered only when the inner store has it.
            let Some(inner) = self.0.compare_and_delete() else {
                return Err(StoreError::misconfigured(
                    self.0.name(),
                    "the store no longer offers a compare-and-delete",
                ));
            };
            timed(Op::Delete, inner.delete_if(key, expected)).await
        }
    }
}
