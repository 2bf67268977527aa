//! The configuration in force decides the native sweep too (issue #20): a
//! session written under a longer `lifetime`, or without an
//! `idle_timeout`, is deleted by the sweep of the tightened configuration,
//! not kept until the expiry it was written with.

mod common;

use std::time::Duration;

use rocket::http::Status;
use rocket::local::asynchronous::Client;
use rocket_kvsession::conformance::{app, unique_prefix, ManualClock};
use rocket_kvsession::{KvSession, SessionConfig, SessionManager};

use common::Backend;

async fn backends(test: &str) -> Vec<Backend> {
    let mut all = Vec::new();
    if let Some(pg) = common::postgres(test).await {
        all.push(pg);
    }
    all.push(common::sqlite_file(test).await.expect("sqlite file"));
    all.push(common::sqlite_memory(test).await.expect("sqlite memory"));
    all
}

/// The conformance app on `backend` with `config`, reading `clock`.
async fn client(backend: &Backend, config: SessionConfig, clock: &ManualClock) -> Client {
    let rocket = rocket::custom(app::figment())
        .attach(
            KvSession::from_arc(backend.shared())
                .config(config)
                .clock(clock.clone()),
        )
        .mount("/", app::routes());
    Client::tracked(rocket).await.expect("launch")
}

async fn sweep(client: &Client) -> rocket_kvsession::CleanupReport {
    client
        .rocket()
        .state::<SessionManager>()
        .expect("managed")
        .cleanup()
        .await
        .expect("sweep")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tightened_configuration_decides_the_native_sweep() {
    for backend in backends("guarantees_sweep").await {
        let loose = SessionConfig {
            key_prefix: unique_prefix("guarantees-sweep"),
            lifetime: 3600,
            ..SessionConfig::default()
        };
        let tightened = [
            SessionConfig {
                lifetime: 60,
                ..loose.clone()
            },
            SessionConfig {
                idle_timeout: Some(60),
                touch_after: 10,
                ..loose.clone()
            },
        ];
        for config in tightened {
            let clock = ManualClock::new();
            let before = client(&backend, loose.clone(), &clock).await;
            assert_eq!(
                before.post("/set/user/alice").dispatch().await.status(),
                Status::Ok
            );
            // Under the configuration it was written with, it stays.
            assert_eq!(sweep(&before).await.deleted, 0, "{backend:?}");
            clock.advance(Duration::from_secs(120));
            let after = client(&backend, config.clone(), &clock).await;
            let report = sweep(&after).await;
            assert_eq!(
                report.deleted, 1,
                "{report:?} on {backend:?} with {config:?}"
            );
            assert!(
                app::stored_keys(backend.store(), &loose.key_prefix)
                    .await
                    .is_empty(),
                "{backend:?}"
            );
        }
    }
}
