//! The core's app-level conformance suite (end-to-end through a Rocket app
//! and `rocket::local`), every case on the single test server and on the
//! test cluster, and over tokens on the single server.

mod common;

/// One test per app-level case (the list comes from the core).
macro_rules! app_tests {
    ($suite:ident, $connect:ident, $($case:ident),* $(,)?) => {
        $(
            #[rocket::async_test]
            async fn $case() {
                let Some(store) = common::$connect(stringify!($case)).await else {
                    return;
                };
                rocket_kvsession::conformance::$suite::$case(std::sync::Arc::new(store)).await;
            }
        )*
    };
}

mod single {
    use super::common;
    rocket_kvsession::app_conformance_cases!(app_tests, app, single);
}

mod single_over_tokens {
    use super::common;
    rocket_kvsession::app_token_conformance_cases!(app_tests, app_tokens, single);
}

mod cluster {
    use super::common;
    rocket_kvsession::app_conformance_cases!(app_tests, app, cluster);
}
