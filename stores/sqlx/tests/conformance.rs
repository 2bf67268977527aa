//! The core's store conformance suite, every case on PostgreSQL (a fresh
//! table of the test server), on a SQLite file and on SQLite in memory.

mod common;

/// One test per conformance case (the list comes from the core).
macro_rules! case_tests {
    ($backend:ident, $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let Some(backend) = crate::common::$backend(stringify!($case)).await else {
                    return;
                };
                rocket_kvsession::conformance::$case(backend.store()).await;
                backend.finish().await;
            }
        )*
    };
}

mod postgres {
    rocket_kvsession::conformance_cases!(case_tests, postgres);
}

mod sqlite_file {
    rocket_kvsession::conformance_cases!(case_tests, sqlite_file);
}

mod sqlite_memory {
    rocket_kvsession::conformance_cases!(case_tests, sqlite_memory);
}
