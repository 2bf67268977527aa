//! Shared helpers for the redis store's tests: the servers from `REDIS_URL`
//! and `REDIS_CLUSTER_URLS`, throwaway servers of a test's own, and
//! `INFO commandstats`.

#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rocket_kvsession_redis::redis;
use rocket_kvsession_redis::RedisStore;

/// The opt-out: with `KVSESSION_SKIP_REDIS=1` the tests that need a server
/// are skipped (and say so); without it, a missing server fails them.
pub fn skipping(test: &str) -> bool {
    let skip = std::env::var("KVSESSION_SKIP_REDIS").is_ok_and(|v| v == "1");
    if skip {
        eprintln!("{test}: skipped (KVSESSION_SKIP_REDIS=1)");
    }
    skip
}

fn required(var: &str, test: &str) -> String {
    match std::env::var(var) {
        Ok(value) if !value.is_empty() => value,
        _ => panic!(
            "{test}: {var} is not set. Start the test servers with \
             `eval \"$(bash scripts/redis-server.sh start STATE_DIR)\"` \
             (or point {var} at your own), or set KVSESSION_SKIP_REDIS=1 to skip"
        ),
    }
}

/// The single server's URL, or `None` when the run opted out.
pub fn url(test: &str) -> Option<String> {
    (!skipping(test)).then(|| required("REDIS_URL", test))
}

/// The cluster nodes' URLs, or `None` when the run opted out.
pub fn cluster_urls(test: &str) -> Option<Vec<String>> {
    (!skipping(test)).then(|| {
        required("REDIS_CLUSTER_URLS", test)
            .split(',')
            .map(|u| u.trim().to_owned())
            .filter(|u| !u.is_empty())
            .collect()
    })
}

/// A store on the single test server.
pub async fn single(test: &str) -> Option<RedisStore> {
    let url = url(test)?;
    Some(
        RedisStore::connect(&url)
            .await
            .expect("connect to REDIS_URL"),
    )
}

/// A store on the test cluster.
pub async fn cluster(test: &str) -> Option<RedisStore> {
    let urls = cluster_urls(test)?;
    Some(
        RedisStore::connect_cluster(&urls)
            .await
            .expect("connect to REDIS_CLUSTER_URLS"),
    )
}

/// A plain client connection to the single test server, for looking at
/// what the store wrote.
pub async fn raw(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("raw connection")
}

/// The `redis-server` binary: `KVSESSION_REDIS_SERVER`, else the one on
/// `PATH`.
pub fn server_binary() -> PathBuf {
    std::env::var_os("KVSESSION_REDIS_SERVER")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("redis-server"))
}

/// A redis-server of a test's own on a free loopback port, without
/// persistence. Killed (by its PID) when dropped.
pub struct TestServer {
    pub port: u16,
    args: Vec<String>,
    child: Option<Child>,
}

impl TestServer {
    /// Starts a server on a free port, or `None` when the run opted out.
    pub async fn start(test: &str) -> Option<TestServer> {
        Self::start_with(test, &[]).await
    }

    /// Starts a server with extra `redis-server` arguments.
    pub async fn start_with(test: &str, args: &[&str]) -> Option<TestServer> {
        if skipping(test) {
            return None;
        }
        let mut server = TestServer {
            port: 0,
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            child: None,
        };
        // A port found free can be taken by another test's server before
        // this one binds it (the tests of a binary run in parallel): the
        // server then exits, and another port is tried.
        for _ in 0..5 {
            server.port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            if server.try_start().await {
                return Some(server);
            }
        }
        panic!("no redis-server of this test's own started on a free port (5 tries)");
    }

    /// The server's URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server again on its port and waits until it answers.
    pub async fn restart(&mut self) {
        assert!(
            self.try_start().await,
            "redis-server could not bind port {} again (another server took it)",
            self.port
        );
    }

    /// Starts the server on its port and waits until the server that
    /// answers there is this one (another test's server on the same port
    /// must not pass for it). `false` when the child exited first (the
    /// port was taken).
    async fn try_start(&mut self) -> bool {
        assert!(self.child.is_none(), "the server is running");
        let binary = server_binary();
        let child = Command::new(&binary)
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(["--dir", &std::env::temp_dir().to_string_lossy()])
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {}: {e}. Set KVSESSION_REDIS_SERVER to a redis-server binary \
                     (scripts/redis-server.sh prints it), or KVSESSION_SKIP_REDIS=1 to skip",
                    binary.display()
                )
            });
        let pid = child.id();
        self.child = Some(child);
        // A server started with a password answers INFO only after AUTH.
        let password = self
            .args
            .iter()
            .position(|a| a == "--requirepass")
            .and_then(|i| self.args.get(i + 1))
            .cloned();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(client) = redis::Client::open(self.url()) {
                if let Ok(mut conn) = client.get_multiplexed_async_connection().await {
                    if let Some(password) = &password {
                        let _: redis::RedisResult<redis::Value> = redis::cmd("AUTH")
                            .arg(password)
                            .query_async(&mut conn)
                            .await;
                    }
                    let info: redis::RedisResult<String> = redis::cmd("INFO")
                        .arg("server")
                        .query_async(&mut conn)
                        .await;
                    let serving = info.ok().and_then(|info| {
                        info.lines().find_map(|l| {
                            l.strip_prefix("process_id:")
                                .and_then(|n| n.trim().parse::<u32>().ok())
                        })
                    });
                    if serving == Some(pid) {
                        return true;
                    }
                }
            }
            let child = self.child.as_mut().expect("started above");
            if child.try_wait().expect("the child's status").is_some() {
                self.child = None;
                return false;
            }
            assert!(
                Instant::now() < deadline,
                "the test server on port {} did not answer within 10 s",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills the server (SIGKILL, by its PID) and waits until it is gone:
    /// its data is lost, as in a crash without persistence.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether the server was started and not killed since.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Command counts from `INFO commandstats`: command name to calls.
///
/// Redis counts the commands a script runs as well as the script call
/// itself (a write shows as `evalsha` plus the `getrange` and `set` inside
/// it), so tests compare whole maps.
pub async fn command_stats(conn: &mut redis::aio::MultiplexedConnection) -> BTreeMap<String, u64> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await
        .expect("INFO commandstats");
    let mut stats = BTreeMap::new();
    for line in info.lines() {
        let Some(rest) = line.strip_prefix("cmdstat_") else {
            continue;
        };
        let Some((name, fields)) = rest.split_once(':') else {
            continue;
        };
        let calls = fields
            .split(',')
            .find_map(|f| f.strip_prefix("calls="))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        stats.insert(name.to_owned(), calls);
    }
    stats
}

/// The commands run between two [`command_stats`] snapshots, without the
/// `INFO` that took the second one.
pub fn delta(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    let mut delta = BTreeMap::new();
    for (name, calls) in after {
        let n = calls - before.get(name).copied().unwrap_or(0);
        let n = if name == "info" {
            n.saturating_sub(1)
        } else {
            n
        };
        if n > 0 {
            delta.insert(name.clone(), n);
        }
    }
    delta
}

/// A map from `(command, calls)` pairs, for assertions.
pub fn counts(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
}
