//! The core's app-level conformance suite through Rocket, on a local
//! directory, in memory, and on real S3 (the test server of
//! `scripts/s3-server.sh`); over tokens on the directory and on S3.

#[cfg(feature = "aws")]
mod common;

use std::sync::Arc;

use rocket_kvsession::KeyValueStore;
use rocket_kvsession_object_store::ObjectStoreKv;

/// One test per app-level case, on the store `$make` returns (`None` means
/// the backend is skipped, and the test says so).
macro_rules! app_tests {
    ($suite:ident, $make:expr, $($case:ident),+ $(,)?) => {
        $(
            #[rocket::async_test]
            async fn $case() {
                let Some((store, _guard)) = $make(stringify!($case)) else { return };
                store.init().await.expect("init");
                rocket_kvsession::conformance::$suite::$case(Arc::new(store)).await;
            }
        )+
    };
}

mod local_dir {
    use super::*;

    fn make(_case: &str) -> Option<(ObjectStoreKv, tempfile::TempDir)> {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = ObjectStoreKv::local_dir(dir.path().join("sessions")).expect("store");
        Some((store, dir))
    }

    rocket_kvsession::app_conformance_cases!(app_tests, app, make);

    mod over_tokens {
        use super::*;
        rocket_kvsession::app_token_conformance_cases!(app_tests, app_tokens, make);
    }
}

mod in_memory {
    use super::*;

    fn make(_case: &str) -> Option<(ObjectStoreKv, ())> {
        Some((ObjectStoreKv::in_memory(), ()))
    }

    rocket_kvsession::app_conformance_cases!(app_tests, app, make);
}

#[cfg(feature = "aws")]
mod s3 {
    use super::*;

    fn make(case: &str) -> Option<(ObjectStoreKv, ())> {
        let server = common::s3_server(case)?;
        Some((server.store(case), ()))
    }

    rocket_kvsession::app_conformance_cases!(app_tests, app, make);

    mod over_tokens {
        use super::*;
        rocket_kvsession::app_token_conformance_cases!(app_tests, app_tokens, make);
    }
}
