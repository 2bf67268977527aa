//! The core's store conformance suite, every case on the single test server
//! and on the test cluster. The cases use their own key prefixes, so they
//! share the servers and run concurrently.

mod common;

/// One test per conformance case (the list comes from the core).
macro_rules! case_tests {
    ($connect:ident, $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let Some(store) = common::$connect(stringify!($case)).await else {
                    return;
                };
                rocket_kvsession::conformance::$case(&store).await;
            }
        )*
    };
}

mod single {
    use super::common;
    rocket_kvsession::conformance_cases!(case_tests, single);
}

mod cluster {
    use super::common;
    rocket_kvsession::conformance_cases!(case_tests, cluster);
}
