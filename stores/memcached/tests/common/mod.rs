//! Shared helpers for the memcached store's tests: the server from
//! `MEMCACHED_URL`, throwaway servers of a test's own, and a plain
//! text-protocol connection for looking at what the store wrote
//! (`mg`, `stats`).

#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rocket_kvsession_memcached::MemcachedStore;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// The opt-out: with `KVSESSION_SKIP_MEMCACHED=1` the tests that need a
/// server are skipped (and say so); without it, a missing server fails
/// them.
pub fn skipping(test: &str) -> bool {
    let skip = std::env::var("KVSESSION_SKIP_MEMCACHED").is_ok_and(|v| v == "1");
    if skip {
        eprintln!("{test}: skipped (KVSESSION_SKIP_MEMCACHED=1)");
    }
    skip
}

/// The test server's URL, or `None` when the run opted out.
pub fn url(test: &str) -> Option<String> {
    if skipping(test) {
        return None;
    }
    match std::env::var("MEMCACHED_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => panic!(
            "{test}: MEMCACHED_URL is not set. Start the test server with \
             `eval \"$(bash scripts/memcached-server.sh start STATE_DIR)\"` \
             (or point MEMCACHED_URL at your own), or set KVSESSION_SKIP_MEMCACHED=1 to skip"
        ),
    }
}

/// A store on the test server.
pub async fn store(test: &str) -> Option<MemcachedStore> {
    let url = url(test)?;
    Some(
        MemcachedStore::connect(&url)
            .await
            .expect("connect to MEMCACHED_URL"),
    )
}

/// `host:port` of a `memcache://host:port` URL.
pub fn address(url: &str) -> String {
    url.strip_prefix("memcache://")
        .unwrap_or(url)
        .trim_end_matches('/')
        .to_owned()
}

/// A plain text-protocol connection to one server.
pub struct Raw {
    stream: BufReader<TcpStream>,
}

impl Raw {
    /// Connects to the server of `url`.
    pub async fn connect(url: &str) -> Raw {
        let stream = TcpStream::connect(address(url))
            .await
            .expect("a raw connection to memcached");
        Raw {
            stream: BufReader::new(stream),
        }
    }

    async fn line(&mut self) -> String {
        let mut line = String::new();
        self.stream.read_line(&mut line).await.expect("a reply");
        assert!(line.ends_with('\n'), "connection closed: {line:?}");
        line.trim_end().to_owned()
    }

    /// Sends one command line (and a data block, for `ms`) and returns the
    /// first reply line and, for a `VA` reply, its data.
    pub async fn meta(&mut self, command: &str, data: Option<&[u8]>) -> (String, Option<Vec<u8>>) {
        let mut payload = format!("{command}\r\n").into_bytes();
        if let Some(data) = data {
            payload.extend_from_slice(data);
            payload.extend_from_slice(b"\r\n");
        }
        self.stream.get_mut().write_all(&payload).await.unwrap();
        let head = self.line().await;
        let data = match head.strip_prefix("VA ") {
            Some(rest) => {
                let len: usize = rest.split(' ').next().unwrap().parse().unwrap();
                let mut data = vec![0; len + 2];
                self.stream.read_exact(&mut data).await.unwrap();
                data.truncate(len);
                Some(data)
            }
            None => None,
        };
        (head, data)
    }

    /// The stored bytes of `key` (header included), its CAS value and
    /// remaining TTL in seconds (`-1`: none), or `None`.
    pub async fn item(&mut self, key: &str) -> Option<(Vec<u8>, u64, i64)> {
        let (head, data) = self.meta(&format!("mg {key} v c t"), None).await;
        if head == "EN" {
            return None;
        }
        let flag = |f: char| -> String {
            head.split(' ')
                .find_map(|w| w.strip_prefix(f))
                .unwrap_or_else(|| panic!("no {f} in {head}"))
                .to_owned()
        };
        Some((
            data.expect("a value"),
            flag('c').parse().unwrap(),
            flag('t').parse().unwrap(),
        ))
    }

    /// The counters of `stats`.
    pub async fn stats(&mut self) -> BTreeMap<String, u64> {
        self.try_stats().await.expect("the server's stats")
    }

    /// The counters of `stats`, or `None` if the connection fails or
    /// closes first (a server that is starting, or exiting).
    async fn try_stats(&mut self) -> Option<BTreeMap<String, u64>> {
        self.stream.get_mut().write_all(b"stats\r\n").await.ok()?;
        let mut stats = BTreeMap::new();
        loop {
            let mut line = String::new();
            if self.stream.read_line(&mut line).await.ok()? == 0 {
                return None;
            }
            let line = line.trim_end();
            if line == "END" {
                return Some(stats);
            }
            let mut words = line.split(' ').skip(1);
            if let (Some(name), Some(value)) = (words.next(), words.next()) {
                if let Ok(n) = value.parse() {
                    stats.insert(name.to_owned(), n);
                }
            }
        }
    }
}

/// The `memcached` binary: `KVSESSION_MEMCACHED_SERVER`, else the one on
/// `PATH`.
pub fn server_binary() -> PathBuf {
    std::env::var_os("KVSESSION_MEMCACHED_SERVER")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("memcached"))
}

/// A memcached of a test's own on a free loopback port. Killed (by its
/// PID) when dropped.
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

    /// Starts a server with extra `memcached` arguments.
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
        panic!("no memcached of this test's own started on a free port (5 tries)");
    }

    /// The server's URL.
    pub fn url(&self) -> String {
        format!("memcache://127.0.0.1:{}", self.port)
    }

    /// Starts the server again on its port and waits until it answers.
    pub async fn restart(&mut self) {
        assert!(
            self.try_start().await,
            "memcached could not bind port {} again (another server took it)",
            self.port
        );
    }

    /// Starts the server on its port and waits until the server that
    /// answers there is this one (its `stats` name the child's PID: another
    /// test's server on the same port must not pass for it). `false` when
    /// the child exited first (the port was taken).
    async fn try_start(&mut self) -> bool {
        assert!(self.child.is_none(), "the server is running");
        let binary = server_binary();
        let child = Command::new(&binary)
            .args(["-l", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", "0", "-m", "64"])
            // memcached refuses to run as root without -u, and ignores it
            // otherwise.
            .args(["-u", "root"])
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {}: {e}. Set KVSESSION_MEMCACHED_SERVER to a memcached binary \
                     (scripts/memcached-server.sh prints it), or KVSESSION_SKIP_MEMCACHED=1 to skip",
                    binary.display()
                )
            });
        let pid = child.id();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if served_by(self.port).await == Some(pid) {
                return true;
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

    /// Sends the server `signal` (`STOP`, `CONT`, ...) by its PID.
    pub fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("the server is running");
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{signal}");
        if signal == "STOP" {
            wait_until_stopped(child.id());
        }
    }

    /// Kills the server (SIGKILL, by its PID) and waits until it is gone:
    /// its data is lost, as in a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // A stopped process dies of SIGKILL all the same.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits until every thread of `pid` is stopped: a signal is delivered
/// asynchronously, and a thread that has not yet taken it could still
/// answer a request.
fn wait_until_stopped(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("the server's threads");
        let stopped = tasks.flatten().all(|task| {
            std::fs::read_to_string(task.path().join("stat")).is_ok_and(|stat| {
                // The state follows the parenthesised command name.
                stat.rsplit_once(") ")
                    .is_some_and(|(_, rest)| rest.starts_with('T'))
            })
        });
        if stopped {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "memcached (pid {pid}) did not stop within 10 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The PID of the memcached that answers on `port` (from its `stats`), or
/// `None` when nothing answers.
async fn served_by(port: u16) -> Option<u32> {
    let read = async {
        let stream = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        let mut raw = Raw {
            stream: BufReader::new(stream),
        };
        let pid = *raw.try_stats().await?.get("pid")?;
        u32::try_from(pid).ok()
    };
    tokio::time::timeout(Duration::from_secs(2), read)
        .await
        .ok()
        .flatten()
}

/// The counters of `stats` that grew between two snapshots, without the
/// `stats` that took the second one.
pub fn delta(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    after
        .iter()
        .filter_map(|(name, n)| {
            let grown = n.saturating_sub(before.get(name).copied().unwrap_or(0));
            (grown > 0).then(|| (name.clone(), grown))
        })
        .collect()
}
