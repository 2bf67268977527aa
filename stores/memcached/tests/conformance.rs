//! The core's store conformance suite, every case on the test server. The
//! cases use their own key prefixes, so they share the server and run
//! concurrently.

mod common;

/// One test per conformance case (the list comes from the core).
macro_rules! case_tests {
    ($($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let Some(store) = common::store(stringify!($case)).await else {
                    return;
                };
                rocket_kvsession::conformance::$case(&store).await;
            }
        )*
    };
}

rocket_kvsession::conformance_cases!(case_tests);
