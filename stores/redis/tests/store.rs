//! What the store writes to Redis and how it handles Redis' edge cases:
//! record layout and TTLs, `touch`, `delete_if`, glob characters in
//! prefixes, foreign values, flushed scripts, large sweeps, passwords,
//! stalls.

mod common;

use std::collections::HashSet;
use std::error::Error as _;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::TryStreamExt;
use rocket_kvsession::conformance::unique_prefix;
use rocket_kvsession::{
    Capabilities, CreateOutcome, DeleteOutcome, Expiry, KeyValueStore, StoreError, UpdateOutcome,
    Version,
};
use rocket_kvsession_redis::redis::{self, AsyncCommands};
use rocket_kvsession_redis::{RedisStore, RedisStoreError};

fn in_secs(secs: u64) -> SystemTime {
    SystemTime::now() + Duration::from_secs(secs)
}

fn unix_ms(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

async fn listed(store: &RedisStore, prefix: &str) -> HashSet<String> {
    store
        .list(prefix)
        .map_ok(|info| info.key)
        .try_collect()
        .await
        .expect("list")
}

fn created_version(outcome: Result<CreateOutcome, StoreError>) -> Version {
    match outcome {
        Ok(CreateOutcome::Created(Some(v))) => v,
        other => panic!("create: {other:?}"),
    }
}

#[tokio::test]
async fn record_layout_and_expiry_to_the_millisecond() {
    let Some(url) = common::url("record_layout") else {
        return;
    };
    let store = RedisStore::connect(&url).await.unwrap();
    let raw = &mut common::raw(&url).await;
    let key = format!("{}0011223344556677_65000000", unique_prefix("layout"));
    let expires = in_secs(600);

    let version = created_version(store.create(&key, b"value", Some(expires)).await);
    let bytes: Vec<u8> = raw.get(&key).await.unwrap();
    assert_eq!(bytes.len(), 17 + 5);
    assert_eq!(bytes[0], 1, "record format");
    assert_eq!(
        u64::from_be_bytes(bytes[1..9].try_into().unwrap()).to_string(),
        version.as_str()
    );
    assert_eq!(
        u64::from_be_bytes(bytes[9..17].try_into().unwrap()) as i64,
        unix_ms(expires)
    );
    assert_eq!(&bytes[17..], b"value");
    let expire_time: i64 = redis::cmd("PEXPIRETIME")
        .arg(&key)
        .query_async(raw)
        .await
        .unwrap();
    assert_eq!(
        expire_time,
        unix_ms(expires),
        "Redis expires the key itself"
    );

    let record = store.get(&key).await.unwrap().expect("record");
    assert_eq!(record.value, b"value");
    assert_eq!(record.version, Some(version.clone()));
    assert_eq!(
        record.expires_at.map(unix_ms),
        Some(unix_ms(expires)),
        "get returns the expiry"
    );

    // An update without an expiry leaves a record Redis never expires.
    let updated = store
        .update(&key, b"forever", Some(&version), None)
        .await
        .unwrap();
    assert!(matches!(updated, UpdateOutcome::Updated(Some(_))));
    let ttl: i64 = raw.pttl(&key).await.unwrap();
    assert_eq!(ttl, -1, "no TTL");
    let record = store.get(&key).await.unwrap().expect("record");
    assert_eq!(record.expires_at, None);
    store.delete(&key).await.unwrap();
    let exists: bool = raw.exists(&key).await.unwrap();
    assert!(!exists);
}

#[tokio::test]
async fn touch_moves_only_the_expiry() {
    let Some(url) = common::url("touch") else {
        return;
    };
    let store = RedisStore::connect(&url).await.unwrap();
    let raw = &mut common::raw(&url).await;
    let key = format!("{}aa_1", unique_prefix("touch"));
    let version = created_version(store.create(&key, b"kept", Some(in_secs(60))).await);

    let later = in_secs(7200);
    let touched = store.touch(&key, later).await.unwrap();
    assert_eq!(touched, UpdateOutcome::Updated(Some(version.clone())));
    let record = store.get(&key).await.unwrap().expect("record");
    assert_eq!(record.value, b"kept");
    assert_eq!(
        record.version,
        Some(version.clone()),
        "touch keeps the version"
    );
    assert_eq!(record.expires_at.map(unix_ms), Some(unix_ms(later)));
    let expire_time: i64 = redis::cmd("PEXPIRETIME")
        .arg(&key)
        .query_async(raw)
        .await
        .unwrap();
    assert_eq!(expire_time, unix_ms(later));

    // The version a request loaded before the touch still wins the CAS.
    let updated = store
        .update(&key, b"new", Some(&version), Some(later))
        .await
        .unwrap();
    assert!(matches!(updated, UpdateOutcome::Updated(_)), "{updated:?}");
    store.delete(&key).await.unwrap();
}

/// The store's compare-and-delete.
fn cad(store: &RedisStore) -> &dyn rocket_kvsession::CompareAndDelete {
    store
        .compare_and_delete()
        .expect("RedisStore has compare-and-delete")
}

#[tokio::test]
async fn capabilities_are_said_once() {
    let Some(store) = common::single("capabilities").await else {
        return;
    };
    assert_eq!(
        store.capabilities(),
        Capabilities::new(Expiry::RemovedByBackend).with_compare_and_swap()
    );
    assert!(store.compare_and_delete().is_some());
    assert!(store.expired_deletion().is_none(), "Redis needs no sweep");
}

/// A record Redis still holds but whose header says it has expired (the
/// app's clock ahead of Redis') is not live: `get` does not return it and
/// `delete_if` finds it missing, with the right version or another.
#[tokio::test]
async fn delete_if_treats_a_record_past_its_header_expiry_as_missing() {
    let Some(url) = common::url("delete_if_expired") else {
        return;
    };
    let store = RedisStore::connect(&url).await.unwrap();
    let raw = &mut common::raw(&url).await;
    let key = format!("{}cc_1", unique_prefix("delete-if-expired"));
    let version = created_version(store.create(&key, b"v", Some(in_secs(600))).await);
    // The header's expiry moved into the past, the Redis TTL kept.
    let past = (unix_ms(SystemTime::now()) - 1000) as u64;
    let _: i64 = raw.setrange(&key, 9, &past.to_be_bytes()).await.unwrap();
    assert_eq!(store.get(&key).await.unwrap(), None);
    for token in [version, Version::from(1u64)] {
        let outcome = cad(&store).delete_if(&key, &token).await.unwrap();
        assert_eq!(outcome, DeleteOutcome::Missing, "{token:?}");
    }
    store.delete(&key).await.unwrap();
}

/// `delete_if` works on the cluster, on keys of every slot.
#[tokio::test]
async fn delete_if_on_the_cluster() {
    let Some(store) = common::cluster("delete_if_cluster").await else {
        return;
    };
    let prefix = unique_prefix("delete-if-cluster");
    let keys: Vec<String> = (0..50).map(|i| format!("{prefix}{i:016x}_1")).collect();
    for key in &keys {
        let v1 = created_version(store.create(key, b"v1", Some(in_secs(600))).await);
        let v2 = match store
            .update(key, b"v2", Some(&v1), Some(in_secs(600)))
            .await
            .unwrap()
        {
            UpdateOutcome::Updated(Some(v)) => v,
            other => panic!("update: {other:?}"),
        };
        assert_eq!(
            cad(&store).delete_if(key, &v1).await.unwrap(),
            DeleteOutcome::Conflict
        );
        assert_eq!(
            cad(&store).delete_if(key, &v2).await.unwrap(),
            DeleteOutcome::Deleted
        );
        assert_eq!(
            cad(&store).delete_if(key, &v2).await.unwrap(),
            DeleteOutcome::Missing
        );
    }
    assert!(listed(&store, &prefix).await.is_empty());
}

#[tokio::test]
async fn foreign_versions_conflict() {
    let Some(store) = common::single("foreign_versions").await else {
        return;
    };
    let key = format!("{}bb_1", unique_prefix("foreign-version"));
    let _ = created_version(store.create(&key, b"v", Some(in_secs(60))).await);
    for token in ["not-a-number", "", "-1", "18446744073709551616"] {
        let outcome = store
            .update(&key, b"x", Some(&Version::new(token)), Some(in_secs(60)))
            .await
            .unwrap();
        assert_eq!(outcome, UpdateOutcome::Conflict, "token {token:?}");
        let outcome = cad(&store)
            .delete_if(&key, &Version::new(token))
            .await
            .unwrap();
        assert_eq!(outcome, DeleteOutcome::Conflict, "token {token:?}");
    }
    let missing = format!("{}bb_2", unique_prefix("foreign-version"));
    let outcome = store
        .update(&missing, b"x", Some(&Version::new("junk")), None)
        .await
        .unwrap();
    assert_eq!(outcome, UpdateOutcome::Missing);
    let outcome = cad(&store)
        .delete_if(&missing, &Version::new("junk"))
        .await
        .unwrap();
    assert_eq!(outcome, DeleteOutcome::Missing);
    assert_eq!(store.get(&key).await.unwrap().unwrap().value, b"v");
    store.delete(&key).await.unwrap();
}

#[tokio::test]
async fn glob_characters_in_prefixes_are_literal() {
    let Some(store) = common::single("glob_prefixes").await else {
        return;
    };
    let base = unique_prefix("glob");
    let tricky = format!("{base}a*[x]?\\-");
    let lookalike = format!("{base}aZ[x]?\\-");
    let literal_class = format!("{base}ax?\\-");
    let mut keys = Vec::new();
    for prefix in [&tricky, &lookalike, &literal_class] {
        let key = format!("{prefix}00_1");
        let _ = created_version(store.create(&key, b"v", Some(in_secs(60))).await);
        keys.push(key);
    }
    assert_eq!(
        listed(&store, &tricky).await,
        HashSet::from([keys[0].clone()])
    );
    assert_eq!(
        listed(&store, &format!("{base}a")).await.len(),
        3,
        "a plain prefix still lists everything under it"
    );
    store.delete_many(keys).await.unwrap();
    assert!(listed(&store, &base).await.is_empty());
}

#[tokio::test]
async fn values_written_by_others_are_errors_not_sessions() {
    let Some(url) = common::url("foreign_values") else {
        return;
    };
    let store = RedisStore::connect(&url).await.unwrap();
    let raw = &mut common::raw(&url).await;
    let prefix = unique_prefix("foreign-value");

    let short = format!("{prefix}short");
    let _: () = raw.set(&short, "garbage").await.unwrap();
    let error = store.get(&short).await.expect_err("not a record");
    assert!(matches!(error, StoreError::Backend { .. }), "{error:?}");
    let source = error.source().expect("source");
    assert!(
        matches!(
            source.downcast_ref::<RedisStoreError>(),
            Some(RedisStoreError::CorruptRecord { .. })
        ),
        "{source}"
    );
    let error = store.touch(&short, in_secs(60)).await.expect_err("touch");
    assert!(matches!(error, StoreError::Backend { .. }), "{error:?}");
    let kept: String = raw.get(&short).await.unwrap();
    assert_eq!(kept, "garbage", "touch must not write into a foreign value");
    let error = cad(&store)
        .delete_if(&short, &Version::from(1u64))
        .await
        .expect_err("delete_if");
    assert!(matches!(error, StoreError::Backend { .. }), "{error:?}");
    let kept: String = raw.get(&short).await.unwrap();
    assert_eq!(kept, "garbage", "delete_if must not delete a foreign value");

    let hash = format!("{prefix}hash");
    let _: () = raw.hset(&hash, "field", "value").await.unwrap();
    let error = store.get(&hash).await.expect_err("wrong type");
    assert!(matches!(error, StoreError::Backend { .. }), "{error:?}");
    let error = cad(&store)
        .delete_if(&hash, &Version::from(1u64))
        .await
        .expect_err("delete_if of a hash");
    assert!(matches!(error, StoreError::Backend { .. }), "{error:?}");

    store.delete_many(vec![short, hash]).await.unwrap();
}

#[tokio::test]
async fn flushed_scripts_are_sent_again() {
    let Some(server) = common::TestServer::start("flushed_scripts").await else {
        return;
    };
    let store = RedisStore::connect(&server.url()).await.unwrap();
    let raw = &mut common::raw(&server.url()).await;
    let key = "flushed_1";
    let mut version = created_version(store.create(key, b"0", Some(in_secs(60))).await);
    for round in 1..=3u8 {
        let _: () = redis::cmd("SCRIPT")
            .arg("FLUSH")
            .query_async(raw)
            .await
            .unwrap();
        version = match store
            .update(key, &[round], Some(&version), Some(in_secs(60)))
            .await
            .unwrap()
        {
            UpdateOutcome::Updated(Some(v)) => v,
            other => panic!("update after SCRIPT FLUSH: {other:?}"),
        };
        let touched = store.touch(key, in_secs(120)).await.unwrap();
        assert_eq!(touched, UpdateOutcome::Updated(Some(version.clone())));
    }
    assert_eq!(store.get(key).await.unwrap().unwrap().value, [3]);
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(raw)
        .await
        .unwrap();
    assert_eq!(
        cad(&store).delete_if(key, &version).await.unwrap(),
        DeleteOutcome::Deleted
    );
    assert_eq!(store.get(key).await.unwrap(), None);
}

async fn sweep(store: &RedisStore, test: &str, n: u64) {
    let prefix = unique_prefix(test);
    let keys: Vec<String> = (0..n).map(|i| format!("{prefix}{i:016x}_1")).collect();
    futures::stream::iter(&keys)
        .map(|key| store.create(key, b"v", Some(in_secs(600))))
        .buffer_unordered(256)
        .try_for_each(|outcome| async move {
            assert!(matches!(outcome, CreateOutcome::Created(_)));
            Ok(())
        })
        .await
        .unwrap();
    let found = listed(store, &prefix).await;
    assert_eq!(
        found.len() as u64,
        n,
        "every key listed, over many SCAN pages"
    );
    assert_eq!(found, keys.iter().cloned().collect::<HashSet<_>>());
    store.delete_many(keys.clone()).await.unwrap();
    assert!(listed(store, &prefix).await.is_empty());
    for key in keys.iter().step_by(997) {
        assert_eq!(store.get(key).await.unwrap(), None);
    }
}

use futures::StreamExt;

#[tokio::test]
async fn large_sweep_single_server() {
    let Some(store) = common::single("large_sweep_single").await else {
        return;
    };
    // More keys than one pipeline of UNLINK batches holds.
    sweep(&store, "sweep-single", 10_000).await;
}

#[tokio::test]
async fn large_sweep_cluster() {
    let Some(store) = common::cluster("large_sweep_cluster").await else {
        return;
    };
    assert!(store.is_cluster());
    sweep(&store, "sweep-cluster", 5_000).await;
}

#[tokio::test]
async fn cluster_keys_live_on_every_primary() {
    let Some(urls) = common::cluster_urls("cluster_primaries") else {
        return;
    };
    let store = RedisStore::connect_cluster(&urls).await.unwrap();
    let prefix = unique_prefix("spread");
    let keys: Vec<String> = (0..300).map(|i| format!("{prefix}{i:016x}_1")).collect();
    for key in &keys {
        let _ = created_version(store.create(key, b"v", Some(in_secs(600))).await);
    }
    // Each node holds only its own slots: the keys are spread over all of
    // them, and list found them all.
    let mut holders = 0;
    for url in &urls {
        let mut node = common::raw(url).await;
        let pattern = format!("{prefix}*");
        let mut iter: redis::AsyncIter<'_, String> = node.scan_match(&pattern).await.unwrap();
        let mut here = 0;
        while let Some(key) = iter.next_item().await {
            key.unwrap();
            here += 1;
        }
        drop(iter);
        if here > 0 {
            holders += 1;
        }
    }
    assert_eq!(holders, urls.len(), "300 random keys land on every primary");
    assert_eq!(listed(&store, &prefix).await.len(), 300);
    store.delete_many(keys).await.unwrap();
    assert!(listed(&store, &prefix).await.is_empty());
}

#[tokio::test]
async fn passwords_in_the_url() {
    let Some(server) =
        common::TestServer::start_with("passwords", &["--requirepass", "s3cr:t@"]).await
    else {
        return;
    };
    let good = format!("redis://:s3cr%3At%40@127.0.0.1:{}", server.port);
    let store = RedisStore::connect(&good)
        .await
        .expect("the right password");
    let _ = created_version(store.create("pw_1", b"v", Some(in_secs(60))).await);

    let wrong = format!("redis://:wrong@127.0.0.1:{}", server.port);
    let error = RedisStore::connect(&wrong)
        .await
        .expect_err("wrong password");
    assert!(
        matches!(error, StoreError::Misconfigured { .. }),
        "{error:?}"
    );
    let error = RedisStore::connect("redis://127.0.0.1:notaport")
        .await
        .expect_err("bad url");
    assert!(
        matches!(error, StoreError::Misconfigured { .. }),
        "{error:?}"
    );
    let error = RedisStore::connect_cluster::<&str>(&[])
        .await
        .expect_err("no nodes");
    assert!(
        matches!(error, StoreError::Misconfigured { .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_stalled_server_times_out() {
    let Some(server) = common::TestServer::start("stalled").await else {
        return;
    };
    let timeout = Duration::from_millis(300);
    let store = RedisStore::builder()
        .timeout(timeout)
        .connect(&server.url())
        .await
        .unwrap();
    assert_eq!(store.timeout(), timeout);
    let raw = &mut common::raw(&server.url()).await;
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(2000)
        .arg("ALL")
        .query_async(raw)
        .await
        .unwrap();
    let started = Instant::now();
    let error = store.get("stalled_1").await.expect_err("paused server");
    let took = started.elapsed();
    assert!(matches!(error, StoreError::Unavailable { .. }), "{error:?}");
    // The store's bound or the client's own response timeout, whichever
    // fired first.
    let source = error.source().expect("source");
    assert!(
        matches!(
            source.downcast_ref::<RedisStoreError>(),
            Some(RedisStoreError::Timeout { .. })
        ) || source
            .downcast_ref::<redis::RedisError>()
            .is_some_and(|e| e.is_timeout()),
        "{error:?}"
    );
    assert!(took < timeout + Duration::from_secs(1), "took {took:?}");
    // The pause ends by itself (CLIENT UNPAUSE would wait in the pause too).
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert_eq!(store.get("stalled_1").await.unwrap(), None, "served again");
}
