//! The database goes away while the app runs, then comes back.
//!
//! This test runs its own server process (the launcher of
//! `scripts/mongodb-server.sh`, with the venv python from
//! `KVSESSION_SECANTUS_PYTHON`) on its own port and data directory, stops it
//! by its PID and starts it again on the same data directory.

mod common;

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rocket::http::Status;
use rocket::local::asynchronous::Client;
use rocket_kvsession::SessionConfig;
use rocket_kvsession_mongodb::mongodb::bson::doc;
use rocket_kvsession_mongodb::mongodb::options::ClientOptions;
use rocket_kvsession_mongodb::MongoStore;

const SERVER_SELECTION_TIMEOUT: Duration = Duration::from_secs(1);
const OPERATION_TIMEOUT: Duration = Duration::from_secs(3);

/// A server process of this test's own; killed if the test ends early.
struct OwnServer {
    python: String,
    launcher: PathBuf,
    data: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

impl OwnServer {
    fn uri(&self) -> String {
        format!(
            "mongodb://127.0.0.1:{}/?retryWrites=false&directConnection=true",
            self.port
        )
    }

    fn log_path(&self) -> PathBuf {
        self.data.path().join("server.log")
    }

    async fn start(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("server log");
        let child = Command::new(&self.python)
            .arg(&self.launcher)
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .arg("--storage-path")
            .arg(self.data.path().join("db"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.python));
        self.child = Some(child);
        self.wait_ready().await;
    }

    /// Waits until the server answers a `ping` (60 s at most).
    async fn wait_ready(&mut self) {
        let mut options = ClientOptions::parse(self.uri()).await.expect("uri");
        options.server_selection_timeout = Some(Duration::from_millis(500));
        let client =
            rocket_kvsession_mongodb::mongodb::Client::with_options(options).expect("client");
        let start = Instant::now();
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("the server exited ({status}): {}", self.log());
            }
            if client
                .database("admin")
                .run_command(doc! { "ping": 1 })
                .await
                .is_ok()
            {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "the server did not answer a ping within 60 s: {}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Stops the server by its PID (SIGTERM) and waits for it to exit.
    fn stop(&mut self) {
        let mut child = self.child.take().expect("running");
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -TERM failed");
        let status = child.wait().expect("wait for the server");
        assert!(
            status.success(),
            "the server did not stop cleanly: {status}: {}",
            self.log()
        );
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

async fn get(client: &Client, uri: &str) -> (Status, String, Duration) {
    let start = Instant::now();
    let response = client.get(uri).dispatch().await;
    let status = response.status();
    let body = response.into_string().await.unwrap_or_default();
    (status, body, start.elapsed())
}

#[rocket::async_test]
async fn outage_gives_503_and_sessions_survive_a_restart() {
    if common::uri("fault").is_none() {
        return;
    }
    let python = std::env::var("KVSESSION_SECANTUS_PYTHON").unwrap_or_else(|_| {
        panic!(
            "KVSESSION_SECANTUS_PYTHON is not set: the fault test runs its own server with that \
             python (`bash scripts/mongodb-server.sh start STATE_DIR` prints it), or set \
             KVSESSION_SKIP_MONGODB=1 to skip"
        )
    });
    let launcher = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/mongodb_server.py");
    let mut server = OwnServer {
        python,
        launcher,
        data: tempfile::tempdir().expect("tempdir"),
        port: free_port(),
        child: None,
    };
    server.start().await;

    let store = MongoStore::builder(&server.uri(), "fault", "sessions")
        .server_selection_timeout(SERVER_SELECTION_TIMEOUT)
        .connect_timeout(Duration::from_secs(1))
        .operation_timeout(Some(OPERATION_TIMEOUT))
        .connect()
        .await
        .expect("connect");
    let client = Client::tracked(common::app(store, SessionConfig::default()))
        .await
        .expect("launch");
    let status = client.post("/set/user/alice").dispatch().await.status();
    assert_eq!(status, Status::Ok);
    assert_eq!(get(&client, "/get/user").await.1, "alice");

    server.stop();

    for _ in 0..3 {
        let (status, _, took) = get(&client, "/get/user").await;
        assert_eq!(
            status,
            Status::ServiceUnavailable,
            "a read during the outage"
        );
        assert!(
            took < OPERATION_TIMEOUT + Duration::from_secs(1),
            "a request during the outage took {took:?}"
        );
        let start = Instant::now();
        let status = client.post("/set/user/mallory").dispatch().await.status();
        assert_eq!(
            status,
            Status::ServiceUnavailable,
            "a write during the outage"
        );
        assert!(start.elapsed() < OPERATION_TIMEOUT + Duration::from_secs(1));
        // A route without a session does not need the database.
        assert_eq!(get(&client, "/plain").await.0, Status::Ok);
    }

    server.start().await;
    // The driver finds the server again on its own; until then a request
    // may still get 503, never anything else.
    let start = Instant::now();
    loop {
        match get(&client, "/get/user").await {
            (Status::Ok, body, _) => {
                assert_eq!(body, "alice", "the session saved before the outage");
                break;
            }
            (Status::ServiceUnavailable, _, _) => {}
            other => panic!("unexpected response after the restart: {other:?}"),
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the app did not reach the restarted server within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        client.post("/set/theme/dark").dispatch().await.status(),
        Status::Ok
    );
    assert_eq!(get(&client, "/get/theme").await.1, "dark");
    assert_eq!(get(&client, "/get/user").await.1, "alice");
    server.stop();
}
