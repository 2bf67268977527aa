//! The core's app-level conformance suite (end-to-end through a Rocket app
//! and `rocket::local`), every case on the test server: login, logout wins
//! over slow requests, owners, 100 concurrent writers on one session.

mod common;

/// One test per app-level case (the list comes from the core).
macro_rules! app_tests {
    ($suite:ident, $($case:ident),* $(,)?) => {
        $(
            #[rocket::async_test]
            async fn $case() {
                let Some(store) = common::store(stringify!($case)).await else {
                    return;
                };
                rocket_kvsession::conformance::$suite::$case(std::sync::Arc::new(store)).await;
            }
        )*
    };
}

rocket_kvsession::app_conformance_cases!(app_tests, app);

/// The same cases over tokens.
mod over_tokens {
    use super::common;
    rocket_kvsession::app_token_conformance_cases!(app_tests, app_tokens);
}
