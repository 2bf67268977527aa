//! `delete_many` on a local directory store, on a real directory: the
//! batched unlinks remove exactly the files named, nothing else, accept
//! files that are already gone, and report a file they cannot remove as an
//! error naming its path.

use std::collections::BTreeSet;
use std::path::Path;

use rocket_kvsession::{KeyValueStore, StoreError};
use rocket_kvsession_bench::chain;
use rocket_kvsession_object_store::ObjectStoreKv;

fn names_in(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
        .collect()
}

/// Asserts that `result` is a backend error whose chain names `path`.
fn assert_fails_on(result: Result<(), StoreError>, path: &Path) {
    match result {
        Err(e @ StoreError::Backend { .. }) => {
            let text = chain(&e);
            assert!(
                text.contains(&path.display().to_string()),
                "the error does not name {}: {text}",
                path.display()
            );
        }
        other => panic!("expected a backend error for {}: {other:?}", path.display()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_many_removes_exactly_the_named_files() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("sessions");
    let store = ObjectStoreKv::local_dir(&dir).expect("store");

    let doomed: Vec<String> = (0..3000u64).map(|n| format!("app:{n:016x}_1")).collect();
    let kept: Vec<String> = (0..300u64).map(|n| format!("app:{n:016x}_2")).collect();
    let other_app: Vec<String> = (0..300u64).map(|n| format!("other:{n:016x}_1")).collect();
    for key in doomed.iter().chain(&kept).chain(&other_app) {
        std::fs::write(dir.join(key), key.as_bytes()).expect("write");
    }
    // Files that are not sessions, and a subdirectory holding a file named
    // like a doomed key: none of them is touched.
    std::fs::write(dir.join(".hidden"), b"x").expect("write");
    std::fs::write(dir.join("not a session"), b"x").expect("write");
    std::fs::create_dir(dir.join("sub")).expect("mkdir");
    std::fs::write(dir.join("sub").join(&doomed[0]), b"x").expect("write");
    // Written through the store, so the layout is the store's own.
    let _ = store
        .create("app:through_the_store", b"v", None)
        .await
        .expect("create");

    let mut expected = names_in(&dir);
    for key in &doomed {
        assert!(expected.remove(key), "{key} was not written");
    }

    // Some files are gone already (another sweep got there first), and the
    // batch names some keys twice.
    for key in doomed.iter().step_by(7) {
        std::fs::remove_file(dir.join(key)).expect("remove");
    }
    let mut batch = doomed.clone();
    batch.extend(doomed.iter().take(50).cloned());
    store.delete_many(batch).await.expect("delete_many");

    assert_eq!(names_in(&dir), expected);
    assert!(dir.join("sub").join(&doomed[0]).exists());
    assert_eq!(
        store.get(&kept[0]).await.expect("get").map(|r| r.value),
        Some(kept[0].as_bytes().to_vec())
    );
    assert!(store
        .get("app:through_the_store")
        .await
        .expect("get")
        .is_some());

    // Deleting them again, or nothing, is not an error.
    store.delete_many(doomed).await.expect("delete_many again");
    store.delete_many(Vec::new()).await.expect("delete nothing");
    assert_eq!(names_in(&dir), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_many_reports_a_file_it_cannot_remove() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("sessions");
    let store = ObjectStoreKv::local_dir(&dir).expect("store");

    // A directory named like a session key: unlink refuses it.
    let keys: Vec<String> = (0..600u64).map(|n| format!("{n:016x}_1")).collect();
    for key in &keys {
        std::fs::write(dir.join(key), b"x").expect("write");
    }
    let blocked = dir.join(&keys[300]);
    std::fs::remove_file(&blocked).expect("remove");
    std::fs::create_dir(&blocked).expect("mkdir");
    assert_fails_on(store.delete_many(keys.clone()).await, &blocked);
    assert!(blocked.is_dir(), "the directory was removed");
    // The chunks before the failing one were deleted.
    assert!(!dir.join(&keys[0]).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_many_reports_a_directory_that_is_not_one() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("sessions");
    let store = ObjectStoreKv::local_dir(&dir).expect("store");
    let keys: Vec<String> = (0..100u64).map(|n| format!("{n:016x}_1")).collect();
    for key in &keys {
        std::fs::write(dir.join(key), b"x").expect("write");
    }

    // The directory replaced by a regular file: no file under it can be
    // unlinked (not a directory), and that is an error, not a deletion.
    std::fs::remove_dir_all(&dir).expect("remove dir");
    std::fs::write(&dir, b"not a directory").expect("write");
    assert_fails_on(store.delete_many(keys).await, &dir);
    assert!(dir.is_file());
}
