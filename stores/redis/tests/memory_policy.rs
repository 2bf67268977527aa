//! The warning at ignite about a `maxmemory-policy` that can evict live
//! sessions, on servers of the test's own (`--maxmemory`,
//! `--maxmemory-policy`, and one that refuses `CONFIG`).

mod common;

use std::sync::{Mutex, OnceLock};

use rocket_kvsession::KeyValueStore;
use rocket_kvsession_redis::RedisStore;

/// Keeps every log line of this test binary.
struct Captured(Mutex<Vec<(log::Level, String)>>);

impl log::Log for Captured {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        if let Ok(mut lines) = self.0.lock() {
            lines.push((record.level(), record.args().to_string()));
        }
    }
    fn flush(&self) {}
}

fn captured() -> &'static Captured {
    static LOGGER: OnceLock<&'static Captured> = OnceLock::new();
    LOGGER.get_or_init(|| {
        let logger: &'static Captured = Box::leak(Box::new(Captured(Mutex::new(Vec::new()))));
        log::set_logger(logger).expect("the only logger of this binary");
        log::set_max_level(log::LevelFilter::Trace);
        logger
    })
}

/// The warnings about `maxmemory-policy` logged while `init` ran on a
/// server started with `args`; `None` when the run opted out.
async fn warnings_at_init(test: &str, args: &[&str]) -> Option<Vec<String>> {
    let logger = captured();
    let server = common::TestServer::start_with(test, args).await?;
    let store = RedisStore::connect(&server.url()).await.expect("connect");
    let url = server.url();
    logger.0.lock().unwrap().clear();
    store.init().await.expect("init never fails on the policy");
    // The store still works.
    let _ = store.get("kvsession-policy-probe").await.expect("get");
    let lines = logger.0.lock().unwrap().clone();
    drop(server);
    Some(
        lines
            .into_iter()
            .filter(|(level, line)| *level == log::Level::Warn && line.contains("maxmemory-policy"))
            .map(|(_, line)| line)
            .inspect(|line| eprintln!("{url}: {line}"))
            .collect(),
    )
}

// One test, so that the cases never share the logger at once.
#[tokio::test]
async fn init_warns_only_when_the_server_may_evict_sessions() {
    let test = "init_warns_only_when_the_server_may_evict_sessions";
    let Some(warned) = warnings_at_init(
        test,
        &["--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru"],
    )
    .await
    else {
        return;
    };
    assert_eq!(warned.len(), 1, "{warned:?}");
    assert!(warned[0].contains("allkeys-lru"), "{}", warned[0]);
    assert!(
        warned[0].contains(&(64u64 << 20).to_string()),
        "{}",
        warned[0]
    );

    let warned = warnings_at_init(
        test,
        &["--maxmemory", "64mb", "--maxmemory-policy", "volatile-ttl"],
    )
    .await
    .expect("a server");
    assert_eq!(warned.len(), 1, "{warned:?}");
    assert!(warned[0].contains("volatile-ttl"), "{}", warned[0]);

    // No limit, or a limit that refuses writes instead of evicting: quiet.
    let warned = warnings_at_init(test, &["--maxmemory-policy", "allkeys-lru"])
        .await
        .expect("a server");
    assert_eq!(warned, Vec::<String>::new());
    let warned = warnings_at_init(
        test,
        &["--maxmemory", "64mb", "--maxmemory-policy", "noeviction"],
    )
    .await
    .expect("a server");
    assert_eq!(warned, Vec::<String>::new());

    // A server that refuses CONFIG: init still succeeds, without a warning.
    let warned = warnings_at_init(
        test,
        &[
            "--maxmemory",
            "64mb",
            "--maxmemory-policy",
            "allkeys-lru",
            "--rename-command",
            "CONFIG",
            "",
        ],
    )
    .await
    .expect("a server");
    assert_eq!(warned, Vec::<String>::new());
}
