//! Sessions through Rocket (`rocket::local`) on the real server: round trips
//! per request counted with the driver's command monitoring. The login flow,
//! logout and concurrent writers are in the app-level conformance suite
//! (`tests/app.rs`).

mod common;

use std::time::SystemTime;

use rocket::http::Status;
use rocket::local::asynchronous::Client;
use rocket_kvsession::SessionConfig;
use rocket_kvsession_mongodb::mongodb::bson::{doc, Bson, DateTime, Document};

async fn text(client: &Client, uri: &str) -> (Status, String) {
    let response = client.get(uri).dispatch().await;
    let status = response.status();
    (status, response.into_string().await.unwrap_or_default())
}

async fn post(client: &Client, uri: &str) -> Status {
    client.post(uri).dispatch().await.status()
}

#[rocket::async_test]
async fn round_trips_per_request() {
    let Some((store, log)) = common::counted_store("rocket_round_trips").await else {
        return;
    };
    let collection = store.collection().clone();
    let client = Client::tracked(common::app(store, SessionConfig::default()))
        .await
        .expect("launch");
    log.take(); // the index check at ignite

    assert_eq!(post(&client, "/set/a/1").await, Status::Ok);
    assert_eq!(
        log.take(),
        ["insert"],
        "a new session is created, nothing read"
    );

    assert_eq!(text(&client, "/get/a").await, (Status::Ok, "1".into()));
    assert_eq!(log.take(), ["find"], "reading a session is one command");
    assert_eq!(text(&client, "/get/a").await, (Status::Ok, "1".into()));
    assert_eq!(log.take(), ["find"], "an unmodified session is not written");

    assert_eq!(post(&client, "/set/a/2").await, Status::Ok);
    assert_eq!(
        log.take(),
        ["find", "update"],
        "a modified session is one write"
    );

    assert_eq!(
        text(&client, "/plain").await,
        (Status::Ok, "no session here".into())
    );
    assert_eq!(log.take(), Vec::<String>::new(), "no session, no command");

    assert_eq!(post(&client, "/regenerate").await, Status::Ok);
    assert_eq!(
        log.take(),
        ["find", "insert", "update"],
        "regenerate is one insert, then the old record becomes a \"moved\" marker"
    );
    // The new record, and the old one's marker until its TTL (a few minutes).
    assert_eq!(collection.count_documents(doc! {}).await.unwrap(), 2);
    log.take(); // the count above
    assert_eq!(text(&client, "/get/a").await, (Status::Ok, "2".into()));
    assert_eq!(log.take(), ["find"]);

    assert_eq!(post(&client, "/logout").await, Status::Ok);
    assert_eq!(
        log.take(),
        ["find", "delete"],
        "logout ends the record with one compare-and-delete"
    );
    assert_eq!(collection.count_documents(doc! {}).await.unwrap(), 1);
    common::drop_collection(&collection).await;
}

#[rocket::async_test]
async fn an_idle_touch_rewrites_only_the_expiry() {
    let Some((store, log)) = common::counted_store("rocket_touch").await else {
        return;
    };
    let collection = store.collection().clone();
    let config = SessionConfig {
        idle_timeout: Some(3600),
        touch_after: 0,
        ..SessionConfig::default()
    };
    let client = Client::tracked(common::app(store, config))
        .await
        .expect("launch");
    assert_eq!(post(&client, "/set/a/1").await, Status::Ok);
    let before = collection.find_one(doc! {}).await.unwrap().expect("stored");
    log.take();

    // A read-only request past `touch_after` refreshes the expiry only.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(text(&client, "/get/a").await, (Status::Ok, "1".into()));
    let commands = log.take_full();
    let names: Vec<_> = commands.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["find", "update"]);
    let update = commands[1].1.get_array("updates").unwrap()[0]
        .as_document()
        .unwrap()
        .get_document("u")
        .unwrap();
    assert_eq!(update.keys().collect::<Vec<_>>(), ["$set"], "{update}");
    assert_eq!(
        update
            .get_document("$set")
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["expires_at"],
        "{update}"
    );

    let after = collection.find_one(doc! {}).await.unwrap().expect("stored");
    assert_eq!(after.get("value"), before.get("value"));
    assert_eq!(after.get("version"), before.get("version"));
    let expiry = |d: &Document| match d.get("expires_at") {
        Some(Bson::DateTime(at)) => *at,
        other => panic!("no expiry: {other:?}"),
    };
    assert!(expiry(&after) > expiry(&before), "the expiry moved");
    assert!(
        expiry(&after) > DateTime::from_system_time(SystemTime::now()),
        "the expiry is in the future"
    );
    common::drop_collection(&collection).await;
}
