//! Every case of [`app_token_conformance_cases!`](crate::app_token_conformance_cases)
//! run [`over_tokens`](super::app::over_tokens): the same signature as the
//! case of [`app`](super::app) of the same name, so a store crate runs both
//! suites with one macro, naming `app` or `app_tokens`.

use std::sync::Arc;

use crate::KeyValueStore;

macro_rules! over_tokens {
    ($($case:ident),+ $(,)?) => {$(
        #[doc = concat!("[`app::", stringify!($case), "`](super::app::", stringify!($case), ") over tokens.")]
        pub async fn $case(store: Arc<dyn KeyValueStore>) {
            super::app::over_tokens(super::app::$case(store)).await;
        }
    )+};
}

crate::app_token_conformance_cases!(over_tokens);
