//! `ObjectStoreKv::from_url`: object_store's URL forms.

use rocket_kvsession::{CreateOutcome, KeyValueStore, StoreError};
use rocket_kvsession_object_store::{ObjectStoreKv, UpdateStrategy};

#[tokio::test]
async fn a_file_url_is_a_local_directory_created_if_missing() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("new/sessions");
    let url = url::Url::from_directory_path(&dir).expect("url");
    let store = ObjectStoreKv::from_url(url.as_str(), [("unused", "x")]).expect("store");
    assert!(dir.is_dir(), "the directory was not created");
    assert_eq!(
        store.update_strategy().await.expect("strategy"),
        UpdateStrategy::ProcessLocks
    );
    let created = store
        .create("0123abcd_1", b"v", None)
        .await
        .expect("create");
    assert!(matches!(created, CreateOutcome::Created(Some(_))));
    assert_eq!(std::fs::read(dir.join("0123abcd_1")).expect("file"), b"v");
}

#[tokio::test]
async fn a_memory_url() {
    let store = ObjectStoreKv::from_url("memory:///sessions", Vec::<(String, String)>::new())
        .expect("store");
    assert_eq!(store.prefix().as_ref(), "sessions");
    assert_eq!(
        store.update_strategy().await.expect("strategy"),
        UpdateStrategy::ConditionalPut
    );
    let _ = store
        .create("0123abcd_1", b"v", None)
        .await
        .expect("create");
    assert_eq!(
        store
            .get("0123abcd_1")
            .await
            .expect("get")
            .expect("record")
            .value,
        b"v"
    );
}

#[test]
fn bad_urls_are_misconfigurations() {
    let none = Vec::<(String, String)>::new;
    for url in ["not a url", "ftp://example.com/x", "s3://"] {
        match ObjectStoreKv::from_url(url, none()) {
            Err(StoreError::Misconfigured { .. }) => {}
            other => panic!("{url}: {other:?}"),
        }
    }
    // object_store's `http` backend is not compiled in.
    match ObjectStoreKv::from_url("http://127.0.0.1:9/sessions", none()) {
        Err(e @ StoreError::Misconfigured { .. }) => {
            assert!(e.to_string().contains("http://127.0.0.1:9/sessions"), "{e}");
        }
        other => panic!("http:// without object_store's http feature: {other:?}"),
    }
}

/// GCS and Azure stores are built from their URLs and options (nothing is
/// contacted until the first request).
#[cfg(all(feature = "gcp", feature = "azure"))]
#[test]
fn gcs_and_azure_urls() {
    let gcs = ObjectStoreKv::from_url(
        "gs://bucket/apps/sessions",
        [("google_skip_signature", "true")],
    )
    .expect("gcs store");
    assert_eq!(gcs.prefix().as_ref(), "apps/sessions");
    let azure = ObjectStoreKv::from_url(
        "az://container/sessions",
        [
            ("azure_storage_account_name", "account"),
            ("azure_storage_account_key", "a2V5"),
        ],
    )
    .expect("azure store");
    assert_eq!(azure.prefix().as_ref(), "sessions");
}
