//! The core's app-level conformance suite through Rocket on the real server,
//! each case in its own collection so the cases run concurrently.

mod common;

use std::sync::Arc;

/// One test per app-level case (the list comes from the core).
macro_rules! app_tests {
    ($suite:ident, $($case:ident),* $(,)?) => {
        $(
            #[rocket::async_test]
            async fn $case() {
                let Some(store) = common::store(concat!("app_", stringify!($case))).await else {
                    return;
                };
                let collection = store.collection().clone();
                rocket_kvsession::conformance::$suite::$case(Arc::new(store)).await;
                common::drop_collection(&collection).await;
            }
        )*
    };
}

rocket_kvsession::app_conformance_cases!(app_tests, app);

/// The same cases over tokens.
mod over_tokens {
    use super::{common, Arc};
    rocket_kvsession::app_token_conformance_cases!(app_tests, app_tokens);
}
