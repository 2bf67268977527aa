//! S3-specific behaviour, against the S3 server of the test command
//! (`scripts/s3-server.sh`, moto): conditional writes, several app servers
//! sharing one bucket, a bucket without conditional writes, URLs, and an
//! unreachable endpoint.

#![cfg(feature = "aws")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use futures::stream::{self, StreamExt};
use rocket_kvsession::conformance::unique_prefix;
use rocket_kvsession::{CreateOutcome, KeyValueStore, StoreError, UpdateOutcome};
use rocket_kvsession_object_store::object_store::aws::{AmazonS3Builder, S3ConditionalPut};
use rocket_kvsession_object_store::object_store::{ClientOptions, RetryConfig};
use rocket_kvsession_object_store::{ObjectStoreKv, UpdateStrategy};

#[tokio::test]
async fn the_server_honours_conditional_writes() {
    let Some(server) = common::s3_server("the_server_honours_conditional_writes") else {
        return;
    };
    let store = server.store("cond");
    let strategy = store.update_strategy().await.expect("probe");
    assert_eq!(
        strategy,
        UpdateStrategy::ConditionalPut,
        "the S3 server at {} does not honour `If-Match` on PutObject: compare-and-swap \
         would only hold within one process",
        server.endpoint
    );
    // `If-None-Match: *` on PutObject: a second create of a key is refused.
    let key = "0123456789abcdef_1";
    let first = store.create(key, b"one", None).await.expect("create");
    assert!(
        matches!(first, CreateOutcome::Created(Some(_))),
        "{first:?}"
    );
    let second = store.create(key, b"two", None).await.expect("create");
    assert_eq!(
        second,
        CreateOutcome::AlreadyExists,
        "the S3 server at {} ignores `If-None-Match: *` on PutObject",
        server.endpoint
    );
    // The probe object was never written.
    let objects: Vec<_> = store
        .object_store()
        .list(Some(store.prefix()))
        .map(|m| m.expect("list").location.to_string())
        .collect()
        .await;
    assert_eq!(objects, vec![format!("{}/{key}", store.prefix())]);
    store.delete(key).await.expect("delete");
}

/// Two app servers (two stores with nothing in common but the bucket) run
/// read-modify-write loops on one session: no update is lost, because S3
/// itself checks the version.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_app_servers_share_a_bucket_without_lost_updates() {
    let Some(server) = common::s3_server("two_app_servers_share_a_bucket") else {
        return;
    };
    let prefix = format!("tests/{}", unique_prefix("shared").trim_end_matches('-'));
    let build = || {
        ObjectStoreKv::new(Arc::new(server.builder().build().expect("s3")), &prefix).expect("store")
    };
    let servers = [build(), build()];
    let key = "00000000000000aa_1";
    let _ = servers[0].create(key, b"", None).await.expect("create");
    let writers = 30u8;
    stream::iter(0..writers)
        .map(|n| {
            let store = &servers[usize::from(n % 2)];
            async move {
                for _ in 0..500 {
                    let record = store.get(key).await.expect("get").expect("record");
                    let mut value = record.value.clone();
                    value.push(n);
                    match store
                        .update(key, &value, record.version.as_ref(), None)
                        .await
                        .expect("update")
                    {
                        UpdateOutcome::Updated(_) => return,
                        UpdateOutcome::Conflict => continue,
                        UpdateOutcome::Missing => panic!("record vanished"),
                    }
                }
                panic!("writer {n} never won");
            }
        })
        .buffer_unordered(usize::from(writers))
        .collect::<()>()
        .await;
    let mut value = servers[1]
        .get(key)
        .await
        .expect("get")
        .expect("record")
        .value;
    value.sort_unstable();
    assert_eq!(
        value,
        (0..writers).collect::<Vec<u8>>(),
        "an update was lost"
    );
    servers[1].delete(key).await.expect("delete");
}

/// With conditional writes switched off, creating a session is refused
/// rather than done unsafely, and updates fall back to in-process locks.
#[tokio::test]
async fn a_bucket_without_conditional_writes_is_refused_for_create() {
    let Some(server) = common::s3_server("without_conditional_writes") else {
        return;
    };
    let s3 = server
        .builder()
        .with_conditional_put(S3ConditionalPut::Disabled)
        .build()
        .expect("s3");
    let prefix = format!("tests/{}", unique_prefix("nocond").trim_end_matches('-'));
    let store = ObjectStoreKv::new(Arc::new(s3), &prefix).expect("store");
    assert_eq!(
        store.update_strategy().await.expect("probe"),
        UpdateStrategy::ProcessLocks
    );
    match store.create("0123abcd_1", b"v", None).await {
        Err(e @ StoreError::Misconfigured { .. }) => {
            assert!(e.to_string().contains("aws_conditional_put"), "{e}");
        }
        other => panic!("create without conditional writes: {other:?}"),
    }
    assert_eq!(store.get("0123abcd_1").await.expect("get"), None);
}

#[tokio::test]
async fn an_s3_url_with_options() {
    let Some(server) = common::s3_server("an_s3_url_with_options") else {
        return;
    };
    let prefix = unique_prefix("url");
    let url = format!(
        "s3://{}/tests/{}",
        server.bucket,
        prefix.trim_end_matches('-')
    );
    let store = ObjectStoreKv::from_url(&url, server.url_options()).expect("store");
    store.init().await.expect("init");
    assert_eq!(
        store.update_strategy().await.expect("strategy"),
        UpdateStrategy::ConditionalPut
    );
    let _ = store
        .create("0123abcd_1", b"v", None)
        .await
        .expect("create");
    let record = store.get("0123abcd_1").await.expect("get").expect("record");
    assert_eq!(record.value, b"v");
    store.delete("0123abcd_1").await.expect("delete");
}

/// Nothing listens on the endpoint: operations fail with `Unavailable`,
/// quickly, and never report success.
#[tokio::test]
async fn an_unreachable_endpoint_is_unavailable() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    // Client options first: they replace `allow_http`.
    let s3 = AmazonS3Builder::new()
        .with_client_options(ClientOptions::new().with_connect_timeout(Duration::from_secs(1)))
        .with_endpoint(format!("http://127.0.0.1:{port}"))
        .with_allow_http(true)
        .with_bucket_name("nowhere")
        .with_access_key_id("key")
        .with_secret_access_key("secret")
        .with_region("us-east-1")
        .with_retry(RetryConfig {
            max_retries: 1,
            retry_timeout: Duration::from_secs(2),
            ..Default::default()
        })
        .build()
        .expect("s3");
    let store = ObjectStoreKv::new(Arc::new(s3), "sessions").expect("store");
    match store.init().await {
        Err(StoreError::Unavailable { store, .. }) => assert_eq!(store, "object_store"),
        other => panic!("init on an unreachable endpoint: {other:?}"),
    }
    match store.get("0123abcd_1").await {
        Err(StoreError::Unavailable { .. }) => {}
        other => panic!("get on an unreachable endpoint: {other:?}"),
    }
}
