//! Drives `examples/mongodb.rs` through `rocket::local` on the real server.

mod common;

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/mongodb.rs"]
mod example;

use rocket::http::{ContentType, Status};
use rocket::local::asynchronous::Client;
use rocket_kvsession_mongodb::mongodb::bson::doc;

async fn page(client: &Client) -> String {
    client
        .get("/")
        .dispatch()
        .await
        .into_string()
        .await
        .unwrap_or_default()
}

async fn log_in(client: &Client, user: &str, password: &str) -> Status {
    client
        .post("/login")
        .header(ContentType::Form)
        .body(format!("user={user}&password={password}"))
        .dispatch()
        .await
        .status()
}

#[rocket::async_test]
async fn login_visits_logout() {
    let Some(store) = common::store("example").await else {
        return;
    };
    let collection = store.collection().clone();
    let rocket = example::app(store).configure(common::figment());
    let client = Client::tracked(rocket).await.expect("the example launches");
    let stored = || async { collection.count_documents(doc! {}).await.unwrap() };

    assert!(page(&client).await.contains("Not logged in"));
    assert_eq!(stored().await, 0, "an anonymous visit stores nothing");

    assert_eq!(log_in(&client, "alice", "wrong").await, Status::SeeOther);
    assert_eq!(
        client.get("/whoami").dispatch().await.status(),
        Status::NotFound
    );
    assert_eq!(stored().await, 0);

    assert_eq!(
        log_in(&client, "alice", example::PASSWORD).await,
        Status::SeeOther
    );
    assert_eq!(stored().await, 1);
    let whoami = client.get("/whoami").dispatch().await;
    assert_eq!(whoami.into_string().await.as_deref(), Some("alice"));
    assert!(page(&client)
        .await
        .contains("Logged in as <b>alice</b>; 1 visits"));
    assert!(page(&client).await.contains("2 visits"));

    // The record is what the store documents: binary value, expiry date, version.
    let document = collection.find_one(doc! {}).await.unwrap().expect("stored");
    assert!(document.get_binary_generic("value").is_ok(), "{document}");
    assert!(document.get_datetime("expires_at").is_ok(), "{document}");
    assert!(document.get_i64("version").unwrap() >= 2, "{document}");

    let response = client.post("/logout").dispatch().await;
    assert_eq!(response.status(), Status::SeeOther);
    assert_eq!(stored().await, 0, "logout deletes the record");
    assert_eq!(
        client.get("/whoami").dispatch().await.status(),
        Status::NotFound
    );
    common::drop_collection(&collection).await;
}
