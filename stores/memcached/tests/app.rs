//! The core's app-level conformance suite (end-to-end through a Rocket app
//! and `rocket::local`), every case on the test server: login, logout wins
//! over slow requests, owners, 100 concurrent writers on one session.

mod common;

/// One test per app-level case (the list comes from the core).
macro_rules! app_tests {
    ($($case:ident),* $(,)?) => {
        $(
            #[rocket::async_test]
            async fn $case() {
                let Some(store) = common::store(stringify!($case)).await else {
                    return;
                };
                rocket_kvsession::conformance::app::$case(std::sync::Arc::new(store)).await;
            }
        )*
    };
}

rocket_kvsession::app_conformance_cases!(app_tests);
