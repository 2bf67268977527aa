//! `cleanup_sessions` on a local directory store, at a small scale: the same
//! files and sweep the benchmark (`scripts/bench-sweep.sh`) runs with a
//! million sessions.

use std::collections::HashSet;

use rocket_kvsession::{cleanup_sessions, KeyValueStore, SessionConfig};
use rocket_kvsession_object_store::ObjectStoreKv;

use rocket_kvsession_bench::sweep_files;

fn files_in(dir: &std::path::Path) -> HashSet<String> {
    std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
        .collect()
}

fn config() -> SessionConfig {
    sweep_files::session_config()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweep_deletes_exactly_the_expired_files() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("sessions");
    let now = sweep_files::unix_now();
    let count = 2000;
    let expired = sweep_files::generate(&dir, count, 100, now, 1, 2).expect("generate");
    assert_eq!(expired, count);
    // A file that is not a session, and a subdirectory: both left alone.
    std::fs::write(dir.join("notes"), b"x").expect("write");
    std::fs::create_dir(dir.join("sub")).expect("mkdir");
    let nested = format!("{:016x}_{:x}", 1, now - 10 * sweep_files::LIFETIME_SECS);
    std::fs::write(dir.join("sub").join(&nested), b"x").expect("write");

    let store = ObjectStoreKv::local_dir(&dir).expect("store");
    let report = cleanup_sessions(&store, &config()).await.expect("sweep");
    assert_eq!(report.scanned, count + 1, "{report:?}");
    assert_eq!(report.deleted, count, "{report:?}");
    assert_eq!(report.skipped, 1, "{report:?}");
    assert_eq!(
        files_in(&dir),
        HashSet::from(["notes".to_owned(), "sub".to_owned()])
    );
    assert!(dir.join("sub").join(nested).exists());

    let again = cleanup_sessions(&store, &config()).await.expect("sweep");
    assert_eq!((again.scanned, again.deleted), (1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweep_with_ten_percent_expired_keeps_the_live_sessions() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("sessions");
    let now = sweep_files::unix_now();
    let count = 2000;
    let expired = sweep_files::generate(&dir, count, 10, now, 2, 2).expect("generate");
    assert_eq!(expired, 200);
    let live: HashSet<String> = (0..count)
        .filter(|&n| !sweep_files::is_expired(n, 10))
        .map(|n| sweep_files::key(2, n, now, 10))
        .collect();

    let store = ObjectStoreKv::local_dir(&dir).expect("store");
    let report = cleanup_sessions(&store, &config()).await.expect("sweep");
    assert_eq!(
        (report.scanned, report.deleted),
        (count, expired),
        "{report:?}"
    );
    assert_eq!(files_in(&dir), live);
    let some_live = live.iter().next().expect("a live session");
    assert!(store.get(some_live).await.expect("get").is_some());
}
