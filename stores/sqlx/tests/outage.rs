//! PostgreSQL outage: the test runs its own throwaway server (a second
//! cluster on a free port, from `KVSESSION_POSTGRES_BIN`), stops it under a
//! running app, checks that requests fail with 503 within the pool's acquire
//! timeout and nothing panics, restarts the server on the same port and data
//! directory, and checks that the same app recovers without a restart.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rocket::http::Status;
use rocket_kvsession::conformance::app;
use rocket_kvsession::KeyValueStore;
use rocket_kvsession_sqlx::{sqlx, PostgresStore};

/// The pool's acquire timeout: how long a request waits for the database.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);

/// The directory of `initdb` and `postgres`.
fn bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("KVSESSION_POSTGRES_BIN") {
        return dir.into();
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    found.sort();
    found.pop().expect(
        "no PostgreSQL server binaries: set KVSESSION_POSTGRES_BIN (scripts/postgres-server.sh \
         prints it) or install postgresql",
    )
}

/// The numeric uid and gid of the `postgres` user, from `id`.
fn postgres_ids() -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .expect("run id");
        assert!(
            out.status.success(),
            "no `postgres` user to run the server as"
        );
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("a number")
    };
    (id("-u"), id("-g"))
}

fn is_root() -> bool {
    let out = Command::new("id").arg("-u").output().expect("run id");
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

/// A command run as the cluster's owner: `postgres` when we are root
/// (PostgreSQL refuses to run as root); `setpriv` execs it, so the child's
/// PID is the server's own.
fn as_owner(program: &Path) -> Command {
    if is_root() {
        let mut cmd = Command::new("setpriv");
        cmd.args([
            "--reuid=postgres",
            "--regid=postgres",
            "--init-groups",
            "--",
        ]);
        cmd.arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

/// A throwaway cluster: its directory, port and (while running) server.
struct Cluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    server: Option<Child>,
}

impl Cluster {
    fn create() -> Cluster {
        let bin = bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("kvsession-outage-")
            .tempdir_in("/tmp")
            .expect("temp dir");
        if is_root() {
            let (uid, gid) = postgres_ids();
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown");
        }
        let status = as_owner(&bin.join("initdb"))
            .arg("-D")
            .arg(dir.path().join("data"))
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run initdb");
        assert!(status.success(), "initdb failed");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        Cluster {
            bin,
            dir,
            port,
            server: None,
        }
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the server and waits until it accepts connections.
    async fn start(&mut self) {
        let server = as_owner(&self.bin.join("postgres"))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-k")
            .arg(self.dir.path())
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start postgres");
        self.server = Some(server);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = match sqlx::PgPool::connect(&self.url()).await {
                Ok(pool) => {
                    let ok = sqlx::query("SELECT 1").execute(&pool).await.is_ok();
                    pool.close().await;
                    ok
                }
                Err(_) => false,
            };
            if ready {
                return;
            }
            assert!(Instant::now() < deadline, "the test server did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops the server by its PID (SIGINT: fast shutdown) and waits for it.
    fn stop(&mut self) {
        if let Some(mut server) = self.server.take() {
            let status = Command::new("kill")
                .args(["-INT", &server.id().to_string()])
                .status()
                .expect("run kill");
            assert!(status.success(), "kill -INT {}", server.id());
            server.wait().expect("wait for postgres");
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(mut server) = self.server.take() {
            let _ = Command::new("kill")
                .args(["-INT", &server.id().to_string()])
                .status();
            let _ = server.wait();
        }
    }
}

#[rocket::async_test]
async fn an_outage_gives_503_and_the_same_app_recovers() {
    if common::skipping_postgres() {
        eprintln!("outage: skipped (KVSESSION_SKIP_POSTGRES=1)");
        return;
    }
    let mut cluster = Cluster::create();
    cluster.start().await;

    let pool = sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect(&cluster.url())
        .await
        .expect("connect");
    let store: Arc<dyn KeyValueStore> = Arc::new(PostgresStore::new(pool));
    let client = app::client(store, app::config("outage")).await;

    assert_eq!(app::write(&client, "/login/alice").await, Status::Ok);
    assert_eq!(
        app::read(&client, "/whoami").await,
        (Status::Ok, "alice".into())
    );

    cluster.stop();
    for uri in ["/whoami", "/set/k/v"] {
        let started = Instant::now();
        let status = if uri == "/whoami" {
            app::read(&client, uri).await.0
        } else {
            app::write(&client, uri).await
        };
        let waited = started.elapsed();
        eprintln!("outage: {uri} -> {status} after {waited:?}");
        assert_eq!(
            status,
            Status::ServiceUnavailable,
            "{uri} during the outage"
        );
        assert!(
            waited < ACQUIRE_TIMEOUT + Duration::from_secs(3),
            "{uri} took {waited:?} to fail (acquire timeout {ACQUIRE_TIMEOUT:?})"
        );
    }
    // A route that takes no session does not touch the store.
    assert_eq!(app::read(&client, "/plain").await.0, Status::Ok);

    cluster.start().await;
    assert_eq!(
        app::read(&client, "/whoami").await,
        (Status::Ok, "alice".into()),
        "the app did not recover"
    );
    assert_eq!(app::write(&client, "/set/k/v").await, Status::Ok);
    assert_eq!(app::read(&client, "/get/k").await, (Status::Ok, "v".into()));
    cluster.stop();
}
