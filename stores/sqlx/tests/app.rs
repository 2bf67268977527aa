//! The core's app-level conformance suite (end to end through Rocket), every
//! case on PostgreSQL, on a SQLite file and on SQLite in memory.

mod common;

/// One test per app-level case (the list comes from the core).
macro_rules! app_tests {
    ($backend:ident, $($case:ident),* $(,)?) => {
        $(
            #[rocket::async_test]
            async fn $case() {
                let Some(backend) = crate::common::$backend(stringify!($case)).await else {
                    return;
                };
                rocket_kvsession::conformance::app::$case(backend.shared()).await;
                backend.finish().await;
            }
        )*
    };
}

mod postgres {
    rocket_kvsession::app_conformance_cases!(app_tests, postgres);
}

mod sqlite_file {
    rocket_kvsession::app_conformance_cases!(app_tests, sqlite_file);
}

mod sqlite_memory {
    rocket_kvsession::app_conformance_cases!(app_tests, sqlite_memory);
}
