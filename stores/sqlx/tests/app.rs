//! The core's app-level conformance suite (end to end through Rocket), every
//! case on PostgreSQL, on a SQLite file and on SQLite in memory, and over
//! tokens on PostgreSQL and the SQLite file.

mod common;

/// One test per app-level case (the list comes from the core).
macro_rules! app_tests {
    ($suite:ident, $backend:ident, $($case:ident),* $(,)?) => {
        $(
            #[rocket::async_test]
            async fn $case() {
                let Some(backend) = crate::common::$backend(stringify!($case)).await else {
                    return;
                };
                rocket_kvsession::conformance::$suite::$case(backend.shared()).await;
                backend.finish().await;
            }
        )*
    };
}

mod postgres {
    rocket_kvsession::app_conformance_cases!(app_tests, app, postgres);
}

mod postgres_over_tokens {
    rocket_kvsession::app_token_conformance_cases!(app_tests, app_tokens, postgres);
}

mod sqlite_file {
    rocket_kvsession::app_conformance_cases!(app_tests, app, sqlite_file);
}

mod sqlite_file_over_tokens {
    rocket_kvsession::app_token_conformance_cases!(app_tests, app_tokens, sqlite_file);
}

mod sqlite_memory {
    rocket_kvsession::app_conformance_cases!(app_tests, app, sqlite_memory);
}
