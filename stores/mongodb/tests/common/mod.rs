//! Shared helpers for the mongodb store's tests: the server from
//! `MONGODB_URI`, one fresh collection per test, command counting.

#![allow(dead_code, unreachable_pub, unused_imports)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use rocket_kvsession_mongodb::mongodb::bson::Document;
use rocket_kvsession_mongodb::mongodb::event::command::CommandEvent;
use rocket_kvsession_mongodb::mongodb::event::EventHandler;
use rocket_kvsession_mongodb::mongodb::Collection;
use rocket_kvsession_mongodb::MongoStore;

/// The database every test collection lives in.
pub const DATABASE: &str = "rocket_kvsession_test";

/// The opt-out: with `KVSESSION_SKIP_MONGODB=1` the tests that need a server
/// are skipped (and say so); without it, a missing `MONGODB_URI` fails them.
pub fn skipping() -> bool {
    std::env::var("KVSESSION_SKIP_MONGODB").is_ok_and(|v| v == "1")
}

/// The server's URI, or `None` (after printing why) when the run opted out.
///
/// Panics when `MONGODB_URI` is unset and the run did not opt out: a test
/// that needs the server must not pass without one.
pub fn uri(test: &str) -> Option<String> {
    if skipping() {
        eprintln!("{test}: skipped (KVSESSION_SKIP_MONGODB=1)");
        return None;
    }
    match std::env::var("MONGODB_URI") {
        Ok(uri) if !uri.is_empty() => Some(uri),
        _ => panic!(
            "{test}: MONGODB_URI is not set. Start a server with \
             `eval \"$(bash scripts/mongodb-server.sh start STATE_DIR)\"` \
             (or point MONGODB_URI at a MongoDB), or set KVSESSION_SKIP_MONGODB=1 to skip"
        ),
    }
}

/// A collection name no other test (in this or another run) uses.
pub fn unique_collection(test: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{test}_{:x}_{nanos:x}_{n}", std::process::id())
}

/// A store over a fresh collection of the test server, its TTL index ensured.
pub async fn store(test: &str) -> Option<MongoStore> {
    let uri = uri(test)?;
    let store = MongoStore::connect(&uri, DATABASE, &unique_collection(test))
        .await
        .expect("connect");
    rocket_kvsession::KeyValueStore::init(&store)
        .await
        .expect("init");
    Some(store)
}

/// Drops the test's collection.
pub async fn drop_collection(collection: &Collection<Document>) {
    collection.drop().await.expect("drop the test collection");
}

/// The names of the commands a client sent, in order, as seen by the
/// driver's command monitoring.
#[derive(Clone, Default, Debug)]
pub struct CommandLog {
    commands: Arc<Mutex<Vec<(String, Document)>>>,
}

impl CommandLog {
    /// An event handler that records every started command.
    pub fn handler(&self) -> EventHandler<CommandEvent> {
        let commands = Arc::clone(&self.commands);
        EventHandler::callback(move |event| {
            if let CommandEvent::Started(started) = event {
                commands
                    .lock()
                    .unwrap()
                    .push((started.command_name.clone(), started.command.clone()));
            }
        })
    }

    /// The command names recorded so far; clears the log.
    pub fn take(&self) -> Vec<String> {
        self.take_full().into_iter().map(|(name, _)| name).collect()
    }

    /// The commands recorded so far, with their bodies; clears the log.
    pub fn take_full(&self) -> Vec<(String, Document)> {
        std::mem::take(&mut *self.commands.lock().unwrap())
    }
}

/// A store over a fresh collection whose client records every command.
pub async fn counted_store(test: &str) -> Option<(MongoStore, CommandLog)> {
    let uri = uri(test)?;
    let log = CommandLog::default();
    let handler = log.handler();
    let store = MongoStore::builder(&uri, DATABASE, &unique_collection(test))
        .client_options(move |options| options.command_event_handler = Some(handler))
        .connect()
        .await
        .expect("connect");
    rocket_kvsession::KeyValueStore::init(&store)
        .await
        .expect("init");
    log.take();
    Some((store, log))
}

/// Rocket's configuration for the test apps: a fixed secret key, no logs.
pub use rocket_kvsession::conformance::app::figment;

/// A test app keeping its sessions in `store`, with the routes of the
/// core's app-level conformance suite.
pub fn app(
    store: MongoStore,
    config: rocket_kvsession::SessionConfig,
) -> rocket::Rocket<rocket::Build> {
    use rocket_kvsession::conformance::app;
    rocket::custom(app::figment())
        .attach(rocket_kvsession::KvSession::new(store).config(config))
        .mount("/", app::routes())
}
