//! The core's store conformance suite, every case against the real server,
//! each in its own collection so the cases run concurrently.

mod common;

use rocket_kvsession::conformance;

/// One test per conformance case (the list comes from the core).
macro_rules! case_tests {
    ($($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let Some(store) = common::store(stringify!($case)).await else {
                    return;
                };
                conformance::$case(&store).await;
                common::drop_collection(store.collection()).await;
            }
        )*
    };
}

rocket_kvsession::conformance_cases!(case_tests);
