//! MongoDB-specific behaviour of `MongoStore` against the real server: the
//! TTL index, the document layout, round trips, and error mapping.

mod common;

use std::time::{Duration, Instant, SystemTime};

use futures::TryStreamExt;
use rocket_kvsession::{
    Capabilities, CreateOutcome, DeleteOutcome, Expiry, KeyValueStore, SessionConfig, StoreError,
    UpdateOutcome, Version,
};
use rocket_kvsession_mongodb::mongodb::bson::{doc, Bson, DateTime, Document};
use rocket_kvsession_mongodb::mongodb::options::IndexOptions;
use rocket_kvsession_mongodb::mongodb::IndexModel;
use rocket_kvsession_mongodb::{MongoStore, TTL_INDEX_NAME};

fn in_an_hour() -> SystemTime {
    SystemTime::now() + Duration::from_secs(3600)
}

async fn indexes(store: &MongoStore) -> Vec<IndexModel> {
    store
        .collection()
        .list_indexes()
        .await
        .expect("list_indexes")
        .try_collect()
        .await
        .expect("list_indexes")
}

async fn raw(store: &MongoStore, key: &str) -> Option<Document> {
    store
        .collection()
        .find_one(doc! { "_id": key })
        .await
        .expect("find_one")
}

async fn connect_unindexed(test: &str) -> Option<MongoStore> {
    let uri = common::uri(test)?;
    Some(
        MongoStore::connect(&uri, common::DATABASE, &common::unique_collection(test))
            .await
            .expect("connect"),
    )
}

#[tokio::test]
async fn capabilities_are_a_ttl_index_and_compare_and_swap() {
    // No server is contacted: connecting is lazy.
    let store = MongoStore::connect("mongodb://127.0.0.1:1/", "db", "sessions")
        .await
        .expect("connect");
    assert_eq!(
        store.capabilities(),
        Capabilities::new(Expiry::RemovedByBackend).with_compare_and_swap()
    );
    assert!(store.compare_and_delete().is_some());
    assert!(store.expired_deletion().is_none());
}

#[tokio::test]
async fn init_creates_a_ttl_index_idempotently() {
    let Some(store) = common::store("ttl_index").await else {
        return;
    };
    // `common::store` ran init once already; a second run changes nothing.
    store.init().await.expect("second init");
    let ttl: Vec<_> = indexes(&store)
        .await
        .into_iter()
        .filter(|index| index.keys == doc! { "expires_at": 1 })
        .collect();
    assert_eq!(ttl.len(), 1, "{ttl:?}");
    let options = ttl[0].options.as_ref().expect("index options");
    assert_eq!(options.expire_after, Some(Duration::ZERO));
    assert_eq!(options.name.as_deref(), Some(TTL_INDEX_NAME));
    common::drop_collection(store.collection()).await;
}

#[tokio::test]
async fn init_reports_a_conflicting_ttl_index_by_name() {
    let Some(store) = connect_unindexed("ttl_conflict").await else {
        return;
    };
    let wrong = IndexModel::builder()
        .keys(doc! { "expires_at": 1 })
        .options(
            IndexOptions::builder()
                .name("sessions_hourly".to_owned())
                .expire_after(Duration::from_secs(3600))
                .build(),
        )
        .build();
    store
        .collection()
        .create_index(wrong)
        .await
        .expect("create_index");
    let error = store
        .init()
        .await
        .expect_err("a conflicting index must be reported");
    let message = error.to_string();
    assert!(
        matches!(error, StoreError::Misconfigured { .. }),
        "{error:?}"
    );
    assert!(message.contains("sessions_hourly"), "{message}");
    assert!(message.contains("expireAfterSeconds: 3600"), "{message}");
    // Nothing was changed behind the user's back.
    assert_eq!(indexes(&store).await.len(), 2);
    common::drop_collection(store.collection()).await;
}

#[tokio::test]
async fn init_reports_a_plain_index_on_expires_at() {
    let Some(store) = connect_unindexed("plain_index").await else {
        return;
    };
    let plain = IndexModel::builder()
        .keys(doc! { "expires_at": 1 })
        .options(IndexOptions::builder().name("by_expiry".to_owned()).build())
        .build();
    store
        .collection()
        .create_index(plain)
        .await
        .expect("create_index");
    let error = store
        .init()
        .await
        .expect_err("a plain index must be reported");
    let message = error.to_string();
    assert!(
        matches!(error, StoreError::Misconfigured { .. }),
        "{error:?}"
    );
    assert!(
        message.contains("by_expiry") && message.contains("not a TTL index"),
        "{message}"
    );
    common::drop_collection(store.collection()).await;
}

#[tokio::test]
async fn init_can_skip_index_creation() {
    let Some(store) = connect_unindexed("skip_index").await else {
        return;
    };
    let store = store.ensure_ttl_index(false);
    store.init().await.expect("init");
    let created = store
        .create("k_1", b"v", Some(in_an_hour()))
        .await
        .expect("create");
    assert!(matches!(created, CreateOutcome::Created(_)), "{created:?}");
    let keys: Vec<_> = indexes(&store).await.into_iter().map(|i| i.keys).collect();
    assert_eq!(keys, vec![doc! { "_id": 1 }], "no index but _id's");
    common::drop_collection(store.collection()).await;
}

#[tokio::test]
async fn documents_have_the_documented_layout() {
    let Some(store) = common::store("layout").await else {
        return;
    };
    let expiry = in_an_hour();
    let _ = store
        .create("k_1", &[0, 1, 2, 255], Some(expiry))
        .await
        .expect("create");
    let document = raw(&store, "k_1").await.expect("stored");
    assert_eq!(document.get("_id"), Some(&Bson::String("k_1".into())));
    match document.get("value") {
        Some(Bson::Binary(binary)) => assert_eq!(binary.bytes, [0, 1, 2, 255]),
        other => panic!("value must be BSON binary: {other:?}"),
    }
    assert_eq!(
        document.get("expires_at"),
        Some(&Bson::DateTime(DateTime::from_system_time(expiry)))
    );
    assert_eq!(document.get("version"), Some(&Bson::Int64(1)));

    // Without an expiry, there is no `expires_at` and the record never expires.
    let _ = store.create("k_2", b"forever", None).await.expect("create");
    let document = raw(&store, "k_2").await.expect("stored");
    assert!(!document.contains_key("expires_at"), "{document:?}");
    let record = store.get("k_2").await.expect("get").expect("live");
    assert_eq!(
        (record.value.as_slice(), record.expires_at),
        (&b"forever"[..], None)
    );
    common::drop_collection(store.collection()).await;
}

#[tokio::test]
async fn touch_rewrites_only_the_expiry() {
    let Some((store, log)) = common::counted_store("touch_only").await else {
        return;
    };
    let _ = store
        .create("k_1", b"data", Some(in_an_hour()))
        .await
        .expect("create");
    let before = raw(&store, "k_1").await.expect("stored");
    log.take();

    let later = SystemTime::now() + Duration::from_secs(7200);
    let outcome = store.touch("k_1", later).await.expect("touch");
    assert!(matches!(outcome, UpdateOutcome::Updated(_)), "{outcome:?}");
    let commands = log.take_full();
    assert_eq!(commands.len(), 1, "{commands:?}");
    let (name, body) = &commands[0];
    assert_eq!(name, "update");
    let update = body.get_array("updates").expect("updates")[0]
        .as_document()
        .expect("update statement")
        .get_document("u")
        .expect("update document");
    assert_eq!(
        update,
        &doc! { "$set": { "expires_at": DateTime::from_system_time(later) } },
        "touch must only $set expires_at"
    );

    let after = raw(&store, "k_1").await.expect("stored");
    assert_eq!(after.get("value"), before.get("value"));
    assert_eq!(
        after.get("version"),
        before.get("version"),
        "touch kept the version"
    );
    assert_eq!(
        after.get("expires_at"),
        Some(&Bson::DateTime(DateTime::from_system_time(later)))
    );
    // The version read before the touch still wins a compare-and-swap.
    let updated = store
        .update("k_1", b"new", Some(&Version::from(1i64)), Some(later))
        .await
        .expect("update");
    assert_eq!(updated, UpdateOutcome::Updated(Some(Version::from(2i64))));
    common::drop_collection(store.collection()).await;
}

#[tokio::test]
async fn each_operation_is_one_round_trip() {
    let Some((store, log)) = common::counted_store("round_trips").await else {
        return;
    };
    let expiry = Some(in_an_hour());

    let v1 = match store.create("k_1", b"v1", expiry).await.expect("create") {
        CreateOutcome::Created(Some(v)) => v,
        other => panic!("{other:?}"),
    };
    assert_eq!(log.take(), ["insert"], "create");

    let record = store.get("k_1").await.expect("get").expect("record");
    assert_eq!(record.version.as_ref(), Some(&v1));
    assert_eq!(log.take(), ["find"], "get");

    assert_eq!(store.get("k_none").await.expect("get"), None);
    assert_eq!(log.take(), ["find"], "get of a missing key");

    let v2 = match store
        .update("k_1", b"v2", Some(&v1), expiry)
        .await
        .expect("update")
    {
        UpdateOutcome::Updated(Some(v)) => v,
        other => panic!("{other:?}"),
    };
    assert_eq!(log.take(), ["update"], "versioned update");

    // Only a failed compare-and-swap reads once more, to tell Conflict from Missing.
    let stale = store
        .update("k_1", b"x", Some(&v1), expiry)
        .await
        .expect("update");
    assert_eq!(stale, UpdateOutcome::Conflict);
    assert_eq!(log.take(), ["update", "find"], "conflicting update");
    let gone = store
        .update("k_none", b"x", Some(&v2), expiry)
        .await
        .expect("update");
    assert_eq!(gone, UpdateOutcome::Missing);
    assert_eq!(log.take(), ["update", "find"], "update of a missing key");

    let unversioned = store
        .update("k_1", b"v3", None, expiry)
        .await
        .expect("update");
    assert_eq!(
        unversioned,
        UpdateOutcome::Updated(Some(Version::from(3i64)))
    );
    assert_eq!(log.take(), ["findAndModify"], "unversioned update");

    let collision = store.create("k_1", b"other", expiry).await.expect("create");
    assert_eq!(collision, CreateOutcome::AlreadyExists);
    assert_eq!(
        log.take(),
        ["insert", "delete"],
        "collision (with the expired-document check)"
    );

    store.delete("k_1").await.expect("delete");
    assert_eq!(log.take(), ["delete"], "delete");

    // A compare-and-delete is one command; only when it deletes nothing does
    // one more read tell Conflict from Missing.
    let cad = store.compare_and_delete().expect("compare-and-delete");
    let v1 = match store.create("k_2", b"v1", expiry).await.expect("create") {
        CreateOutcome::Created(Some(v)) => v,
        other => panic!("{other:?}"),
    };
    let v2 = match store
        .update("k_2", b"v2", Some(&v1), expiry)
        .await
        .expect("update")
    {
        UpdateOutcome::Updated(Some(v)) => v,
        other => panic!("{other:?}"),
    };
    log.take();
    let stale = cad.delete_if("k_2", &v1).await.expect("delete_if");
    assert_eq!(stale, DeleteOutcome::Conflict);
    assert_eq!(log.take(), ["delete", "find"], "conflicting delete_if");
    let deleted = cad.delete_if("k_2", &v2).await.expect("delete_if");
    assert_eq!(deleted, DeleteOutcome::Deleted);
    assert_eq!(log.take(), ["delete"], "delete_if");
    let gone = cad.delete_if("k_2", &v2).await.expect("delete_if");
    assert_eq!(gone, DeleteOutcome::Missing);
    assert_eq!(log.take(), ["delete", "find"], "delete_if of a missing key");

    let keys: Vec<String> = (0..2500).map(|n| format!("bulk_{n}")).collect();
    store.delete_many(keys).await.expect("delete_many");
    assert_eq!(
        log.take(),
        ["delete", "delete", "delete"],
        "one delete per 1,000 keys"
    );
    common::drop_collection(store.collection()).await;
}

#[tokio::test]
async fn list_fetches_only_ids() {
    let Some((store, log)) = common::counted_store("list_ids").await else {
        return;
    };
    for n in 0..5 {
        let _ = store
            .create(&format!("app1_{n}"), &[7; 1024], Some(in_an_hour()))
            .await
            .expect("create");
    }
    log.take();
    let keys: Vec<String> = store
        .list("app1_")
        .map_ok(|info| info.key)
        .try_collect()
        .await
        .expect("list");
    assert_eq!(keys.len(), 5);
    let commands = log.take_full();
    assert_eq!(commands.len(), 1, "{commands:?}");
    assert_eq!(commands[0].0, "find");
    assert_eq!(
        commands[0]
            .1
            .get_document("projection")
            .expect("projection"),
        &doc! { "_id": 1 },
        "list must not fetch the values"
    );
    common::drop_collection(store.collection()).await;
}

#[tokio::test]
async fn list_treats_the_prefix_literally() {
    let Some(store) = common::store("list_literal").await else {
        return;
    };
    let keys = [
        "a.b*(x)_1",
        "aXb*(x)_2",
        "a.b*(x)_3",
        "a.bb_4",
        "za.b*(x)_5",
        "a\\b_6",
    ];
    for key in keys {
        let _ = store
            .create(key, b"v", Some(in_an_hour()))
            .await
            .expect("create");
    }
    let mut listed: Vec<String> = store
        .list("a.b*(x)")
        .map_ok(|info| info.key)
        .try_collect()
        .await
        .expect("list");
    listed.sort();
    assert_eq!(listed, ["a.b*(x)_1", "a.b*(x)_3"]);
    let listed: Vec<String> = store
        .list("a\\")
        .map_ok(|info| info.key)
        .try_collect()
        .await
        .expect("list");
    assert_eq!(listed, ["a\\b_6"]);
    let all: Vec<String> = store
        .list("")
        .map_ok(|info| info.key)
        .try_collect()
        .await
        .expect("list");
    assert_eq!(all.len(), keys.len());
    common::drop_collection(store.collection()).await;
}

#[tokio::test]
async fn an_expired_unswept_document_does_not_block_create() {
    // No TTL index here, so the server never removes the expired document.
    let Some(store) = connect_unindexed("expired_unswept").await else {
        return;
    };
    let past = DateTime::from_system_time(SystemTime::now() - Duration::from_secs(60));
    store
        .collection()
        .insert_one(doc! { "_id": "k_1", "value": Bson::Binary(rocket_kvsession_mongodb::mongodb::bson::Binary {
            subtype: rocket_kvsession_mongodb::mongodb::bson::spec::BinarySubtype::Generic,
            bytes: b"old".to_vec(),
        }), "expires_at": past, "version": 7i64 })
        .await
        .expect("insert");
    assert_eq!(store.get("k_1").await.expect("get"), None);
    assert_eq!(
        store.touch("k_1", in_an_hour()).await.expect("touch"),
        UpdateOutcome::Missing
    );
    // Even at its own version, an expired document is missing to a
    // compare-and-delete; it is left to the TTL monitor.
    let cad = store.compare_and_delete().expect("compare-and-delete");
    assert_eq!(
        cad.delete_if("k_1", &Version::from(7i64))
            .await
            .expect("delete_if"),
        DeleteOutcome::Missing
    );
    assert!(
        raw(&store, "k_1").await.is_some(),
        "the expired document stays"
    );
    let created = store
        .create("k_1", b"new", Some(in_an_hour()))
        .await
        .expect("create");
    assert_eq!(created, CreateOutcome::Created(Some(Version::from(1i64))));
    let record = store.get("k_1").await.expect("get").expect("record");
    assert_eq!(record.value, b"new");
    common::drop_collection(store.collection()).await;
}

#[tokio::test]
async fn foreign_version_tokens_never_match() {
    let Some(store) = common::store("foreign_version").await else {
        return;
    };
    let _ = store
        .create("k_1", b"v", Some(in_an_hour()))
        .await
        .expect("create");
    let foreign = Version::new("\"etag-1\"");
    let outcome = store
        .update("k_1", b"x", Some(&foreign), Some(in_an_hour()))
        .await
        .expect("update");
    assert_eq!(outcome, UpdateOutcome::Conflict);
    for odd in [i64::MAX.to_string(), "-1".to_owned(), "1e3".to_owned()] {
        let outcome = store
            .update(
                "k_1",
                b"x",
                Some(&Version::new(odd.as_str())),
                Some(in_an_hour()),
            )
            .await
            .expect("update");
        assert_eq!(outcome, UpdateOutcome::Conflict, "{odd}");
    }
    let outcome = store
        .update("k_2", b"x", Some(&foreign), Some(in_an_hour()))
        .await
        .expect("update");
    assert_eq!(outcome, UpdateOutcome::Missing);
    assert_eq!(
        store.get("k_1").await.expect("get").expect("record").value,
        b"v"
    );
    common::drop_collection(store.collection()).await;
}

#[tokio::test]
async fn bad_keys_are_refused() {
    let Some(store) = common::store("bad_keys").await else {
        return;
    };
    let long = "k".repeat(2000);
    for key in ["", "a\0b", long.as_str()] {
        let error = store.get(key).await.expect_err("bad key");
        assert!(matches!(error, StoreError::InvalidKey { .. }), "{error:?}");
        let error = store.create(key, b"v", None).await.expect_err("bad key");
        assert!(matches!(error, StoreError::InvalidKey { .. }), "{error:?}");
    }
    let listed: Result<Vec<_>, _> = store.list("a\0").try_collect().await;
    assert!(
        matches!(listed, Err(StoreError::InvalidKey { .. })),
        "{listed:?}"
    );
    common::drop_collection(store.collection()).await;
}

/// A `key_prefix` that makes keys longer than the store takes refuses
/// launch, instead of failing every request.
#[tokio::test]
async fn a_key_prefix_too_long_for_the_store_refuses_launch() {
    let Some(store) = common::store("long_prefix").await else {
        return;
    };
    let collection = store.collection().clone();
    assert!(matches!(
        KeyValueStore::check_key(&store, &"k".repeat(2000)),
        Err(StoreError::InvalidKey { .. })
    ));
    let config = SessionConfig {
        key_prefix: format!("{}:", "p".repeat(1100)),
        ..SessionConfig::default()
    };
    match rocket::local::asynchronous::Client::untracked(common::app(store, config)).await {
        Ok(_) => panic!("a 1,100-byte key prefix launched"),
        // Reading the kind marks the error handled: Rocket panics on
        // dropping an error nobody looked at.
        Err(e) => assert!(
            matches!(e.kind(), rocket::error::ErrorKind::FailedFairings(_)),
            "{e:?}"
        ),
    }
    common::drop_collection(&collection).await;
}

/// The server's own TTL monitor removes a document at its expiry (the store
/// is not involved after the write). mongod sweeps every 60 s; allow 150 s.
#[tokio::test]
async fn the_server_removes_expired_documents() {
    let Some(store) = common::store("ttl_sweep").await else {
        return;
    };
    let expiry = SystemTime::now() + Duration::from_secs(1);
    let _ = store
        .create("k_1", b"brief", Some(expiry))
        .await
        .expect("create");
    let _ = store
        .create("k_2", b"kept", Some(in_an_hour()))
        .await
        .expect("create");
    let start = Instant::now();
    while raw(&store, "k_1").await.is_some() {
        assert!(
            start.elapsed() < Duration::from_secs(150),
            "the expired document was not removed by the server within 150 s"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        raw(&store, "k_2").await.is_some(),
        "an unexpired document was removed"
    );
    common::drop_collection(store.collection()).await;
}

/// `cleanup_sessions` over this store: it lists ids only and deletes the
/// expired sessions of its prefix in batches.
#[tokio::test]
async fn cleanup_sessions_sweeps_expired_keys() {
    let Some((store, log)) = common::counted_store("cleanup").await else {
        return;
    };
    let config = rocket_kvsession::SessionConfig {
        lifetime: 3600,
        key_prefix: "app:".into(),
        ..Default::default()
    };
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let key = |n: u64, created: u64| format!("app:{n:016x}_{created:x}");
    let old: Vec<String> = (0..1200).map(|n| key(n, now - 7200)).collect();
    let live: Vec<String> = (0..5).map(|n| key(10_000 + n, now - 60)).collect();
    let others = ["other:0000000000000001_1", "app:not-a-session-id"];
    let documents = old
        .iter()
        .chain(&live)
        .map(String::as_str)
        .chain(others)
        .map(|id| doc! { "_id": id, "value": Bson::Binary(rocket_kvsession_mongodb::mongodb::bson::Binary {
            subtype: rocket_kvsession_mongodb::mongodb::bson::spec::BinarySubtype::Generic,
            bytes: vec![1],
        }), "version": 1i64 });
    store
        .collection()
        .insert_many(documents)
        .await
        .expect("insert_many");
    log.take();

    let report = rocket_kvsession::cleanup_sessions(&store, &config)
        .await
        .expect("cleanup");
    assert_eq!(
        (report.scanned, report.deleted, report.skipped),
        (1206, 1200, 1)
    );
    let commands = log.take_full();
    let deletes = commands.iter().filter(|(name, _)| name == "delete").count();
    assert_eq!(deletes, 2, "1,200 keys are two delete_many batches");
    for (name, body) in &commands {
        if name == "find" {
            assert_eq!(body.get_document("projection").unwrap(), &doc! { "_id": 1 });
        }
    }
    let left = store.collection().count_documents(doc! {}).await.unwrap();
    assert_eq!(left, 7, "the live sessions and the foreign keys stay");
    for key in &live {
        assert!(
            store.get(key).await.expect("get").is_some(),
            "{key} was swept"
        );
    }
    common::drop_collection(store.collection()).await;
}
