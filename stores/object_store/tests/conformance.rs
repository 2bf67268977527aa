//! The core's store conformance suite, every case on every backend: a local
//! directory (`LocalFileSystem` in a temp dir), `InMemory`, and real S3 served
//! by the test server (`scripts/s3-server.sh`).

#[cfg(feature = "aws")]
mod common;

use rocket_kvsession::{Capabilities, Expiry, KeyValueStore};
use rocket_kvsession_object_store::{ObjectStoreKv, UpdateStrategy};

/// One `#[tokio::test]` per conformance case, on the store `$make` returns
/// (`None` means the backend is skipped, and the test says so).
macro_rules! case_tests {
    ($make:expr, $($case:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let Some((store, _guard)) = $make(stringify!($case)) else { return };
                store.init().await.expect("init");
                rocket_kvsession::conformance::$case(&store).await;
            }
        )+
    };
}

macro_rules! all_cases {
    ($make:expr) => {
        rocket_kvsession::conformance_cases!(case_tests, $make);

        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn run_all() {
            let Some((store, _guard)) = $make("run_all") else {
                return;
            };
            store.init().await.expect("init");
            rocket_kvsession::conformance::run_all(&store).await;
        }
    };
}

mod local_dir {
    use super::*;

    fn make(_case: &str) -> Option<(ObjectStoreKv, tempfile::TempDir)> {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = ObjectStoreKv::local_dir(dir.path().join("sessions")).expect("store");
        Some((store, dir))
    }

    all_cases!(make);

    #[tokio::test]
    async fn uses_process_locks() {
        let (store, _dir) = make("strategy").expect("store");
        assert_eq!(
            store.update_strategy().await.expect("strategy"),
            UpdateStrategy::ProcessLocks
        );
        assert_eq!(
            store.capabilities(),
            Capabilities::new(Expiry::Ignored).with_compare_and_swap()
        );
        assert!(store.compare_and_delete().is_none());
        assert!(store.expired_deletion().is_none());
    }
}

mod in_memory {
    use super::*;

    fn make(_case: &str) -> Option<(ObjectStoreKv, ())> {
        Some((ObjectStoreKv::in_memory(), ()))
    }

    all_cases!(make);

    #[tokio::test]
    async fn uses_conditional_put() {
        let store = ObjectStoreKv::in_memory();
        assert_eq!(
            store.update_strategy().await.expect("strategy"),
            UpdateStrategy::ConditionalPut
        );
    }
}

#[cfg(feature = "aws")]
mod s3 {
    use super::*;

    fn make(case: &str) -> Option<(ObjectStoreKv, ())> {
        let server = common::s3_server(case)?;
        Some((server.store(case), ()))
    }

    all_cases!(make);
}
