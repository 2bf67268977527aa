//! Keys and prefixes cannot reach outside the store: every unsafe key is
//! refused with `StoreError::InvalidKey` by every operation, and nothing is
//! written anywhere.

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use futures::TryStreamExt;
use rocket_kvsession::{KeyValueStore, StoreError};
use rocket_kvsession_object_store::object_store::local::LocalFileSystem;
use rocket_kvsession_object_store::object_store::memory::InMemory;
use rocket_kvsession_object_store::object_store::ObjectStore;
use rocket_kvsession_object_store::{ObjectStoreKv, MAX_KEY_LEN};

fn unsafe_keys() -> Vec<String> {
    vec![
        String::new(),
        ".".into(),
        "..".into(),
        "../escaped".into(),
        "../../etc/passwd".into(),
        "/absolute".into(),
        "a/b".into(),
        "sub/../../escaped".into(),
        ".hidden".into(),
        "back\\slash".into(),
        "caf\u{e9}_1".into(),
        "\u{2215}slash-lookalike".into(),
        "nul\0byte".into(),
        "new\nline".into(),
        "percent%2F..".into(),
        "a".repeat(MAX_KEY_LEN + 1),
        "x".repeat(10_000),
    ]
}

fn assert_invalid<T: std::fmt::Debug>(result: Result<T, StoreError>, key: &str) {
    match result {
        Err(e @ StoreError::InvalidKey { .. }) => {
            let message = e.to_string();
            assert!(message.contains("invalid key"), "{message}");
        }
        other => panic!("key {key:?} was not refused: {other:?}"),
    }
}

/// Every operation refuses every unsafe key.
async fn refuses_everywhere(store: &ObjectStoreKv) {
    let later = SystemTime::now() + std::time::Duration::from_secs(60);
    for key in unsafe_keys() {
        assert_invalid(store.get(&key).await, &key);
        assert_invalid(store.create(&key, b"evil", Some(later)).await, &key);
        assert_invalid(store.update(&key, b"evil", None, Some(later)).await, &key);
        assert_invalid(store.touch(&key, later).await, &key);
        assert_invalid(store.delete(&key).await, &key);
        assert_invalid(
            store
                .delete_many(vec!["0123abcd_1".to_owned(), key.clone()])
                .await,
            &key,
        );
        assert_invalid(store.path_of(&key), &key);
    }
    for prefix in ["../", "a/b", ".x", "caf\u{e9}"] {
        let listed: Result<Vec<_>, _> = store.list(prefix).try_collect().await;
        assert_invalid(listed, prefix);
    }
}

/// All regular files under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                pending.push(path);
            } else {
                found.push(path);
            }
        }
    }
    found
}

#[tokio::test]
async fn local_dir_refuses_unsafe_keys_and_writes_nothing() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let store = ObjectStoreKv::local_dir(tmp.path().join("inner/sessions")).expect("store");
    store.init().await.expect("init");
    refuses_everywhere(&store).await;
    assert_eq!(files_under(tmp.path()), Vec::<std::path::PathBuf>::new());

    // A valid key lands exactly where it should.
    let created = store
        .create("app:0123abcd_1", b"v", None)
        .await
        .expect("create");
    assert!(matches!(
        created,
        rocket_kvsession::CreateOutcome::Created(_)
    ));
    assert_eq!(
        files_under(tmp.path()),
        vec![tmp.path().join("inner/sessions/app:0123abcd_1")]
    );
}

#[tokio::test]
async fn a_store_prefix_keeps_sessions_in_its_subdirectory() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let local: Arc<dyn ObjectStore> =
        Arc::new(LocalFileSystem::new_with_prefix(tmp.path()).expect("local"));
    let store = ObjectStoreKv::new(local.clone(), "/apps/shop/").expect("store");
    assert_eq!(store.prefix().as_ref(), "apps/shop");
    refuses_everywhere(&store).await;
    let _ = store.create("k_1", b"v", None).await.expect("create");
    assert_eq!(
        files_under(tmp.path()),
        vec![tmp.path().join("apps/shop/k_1")]
    );
    // A neighbouring app's objects are not listed as sessions, nor are
    // objects in subdirectories of the prefix.
    let other = ObjectStoreKv::new(local, "apps/shop-2").expect("store");
    let _ = other.create("k_2", b"v", None).await.expect("create");
    std::fs::create_dir_all(tmp.path().join("apps/shop/nested")).expect("mkdir");
    std::fs::write(tmp.path().join("apps/shop/nested/k_3"), b"v").expect("write");
    let keys: Vec<_> = store
        .list("")
        .map_ok(|info| info.key)
        .try_collect()
        .await
        .expect("list");
    assert_eq!(keys, vec!["k_1".to_owned()]);
}

#[test]
fn unsafe_store_prefixes_are_refused() {
    let memory: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    for prefix in ["..", "../up", "a/../b", "a//b", ".git", "caf\u{e9}", "a b"] {
        assert_invalid(ObjectStoreKv::new(memory.clone(), prefix), prefix);
    }
    assert!(ObjectStoreKv::new(memory, "").is_ok());
}

#[tokio::test]
async fn in_memory_refuses_unsafe_keys() {
    let store = ObjectStoreKv::in_memory();
    refuses_everywhere(&store).await;
    let everything: Vec<_> = store
        .object_store()
        .list(None)
        .try_collect()
        .await
        .expect("list");
    assert!(everything.is_empty(), "{everything:?}");
}

/// A `key_prefix` whose keys this store cannot hold refuses launch, instead
/// of answering 503 on every request; a valid one launches.
#[rocket::async_test]
async fn a_key_prefix_the_store_cannot_hold_refuses_launch() {
    use rocket_kvsession::{conformance::app, KvSession, SessionConfig};
    for (prefix, launches) in [("shop/", false), (".hidden", false), ("shop:", true)] {
        let config = SessionConfig {
            key_prefix: prefix.into(),
            ..SessionConfig::default()
        };
        let rocket = rocket::custom(app::figment())
            .attach(KvSession::new(ObjectStoreKv::in_memory()).config(config))
            .mount("/", app::routes());
        let launched = match rocket::local::asynchronous::Client::untracked(rocket).await {
            Ok(_) => true,
            Err(e) => {
                let _ = e.kind(); // handled: Rocket's error panics if dropped unread
                false
            }
        };
        assert_eq!(launched, launches, "{prefix:?}");
    }
}

/// The directory a local store creates is its owner's only, whatever the
/// umask: other users can neither list the session ids nor read the files.
#[cfg(unix)]
#[tokio::test]
async fn the_session_directory_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().expect("temp dir");
    for dir in [tmp.path().join("new/sessions"), tmp.path().to_owned()] {
        // `tmp` itself exists already (mode 0700 or wider): tightened too.
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let store = ObjectStoreKv::local_dir(&dir).expect("store");
        let _ = store.create("k_1", b"secret", None).await.expect("create");
        let mode = std::fs::metadata(&dir)
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700, "{}", dir.display());
    }
}
