//! The core's app-level conformance suite through Rocket on the real server,
//! each case in its own collection so the cases run concurrently.

mod common;

use std::sync::Arc;

/// One test per app-level case (the list comes from the core).
macro_rules! app_tests {
    ($($case:ident),* $(,)?) => {
        $(
            #[rocket::async_test]
            async fn $case() {
                let Some(store) = common::store(concat!("app_", stringify!($case))).await else {
                    return;
                };
                let collection = store.collection().clone();
                rocket_kvsession::conformance::app::$case(Arc::new(store)).await;
                common::drop_collection(&collection).await;
            }
        )*
    };
}

rocket_kvsession::app_conformance_cases!(app_tests);
