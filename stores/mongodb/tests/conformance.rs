//! The core's store conformance suite, every case against the real server,
//! each in its own collection so the cases run concurrently.

mod common;

use rocket_kvsession::conformance;

macro_rules! conformance_cases {
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

conformance_cases!(
    create_get_update_delete,
    create_collision,
    update_of_vanished_record,
    versioned_update,
    expiry_invisible_on_read,
    touch_keeps_value,
    list_by_prefix,
    prefix_isolation,
    large_value,
    binary_values,
    delete_many,
    concurrent_creates,
    concurrent_versioned_updates,
);
