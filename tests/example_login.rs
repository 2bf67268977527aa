//! Drives `examples/login.rs` through `rocket::local`.

#[allow(dead_code)]
#[path = "../examples/login.rs"]
mod login;

use rocket::http::{ContentType, Status};
use rocket::local::asynchronous::Client;
use rocket_kvsession::{KvSession, MemoryStore};

#[rocket::async_test]
async fn login_whoami_logout() {
    let store = MemoryStore::new();
    let client = Client::tracked(login::app(KvSession::new(store.clone())))
        .await
        .expect("the example launches");

    let page = client
        .get("/")
        .dispatch()
        .await
        .into_string()
        .await
        .unwrap();
    assert!(page.contains("Not logged in"), "{page}");
    assert!(store.is_empty());

    // A wrong password changes nothing.
    let res = client
        .post("/login")
        .header(ContentType::Form)
        .body("user=alice&password=wrong")
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::SeeOther);
    assert_eq!(
        client.get("/whoami").dispatch().await.status(),
        Status::NotFound
    );
    assert!(store.is_empty());

    let res = client
        .post("/login")
        .header(ContentType::Form)
        .body(format!("user=alice&password={}", login::PASSWORD))
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::SeeOther);
    assert_eq!(store.len(), 1);
    let res = client.get("/whoami").dispatch().await;
    assert_eq!(res.into_string().await.unwrap(), "alice");
    let page = client
        .get("/")
        .dispatch()
        .await
        .into_string()
        .await
        .unwrap();
    assert!(
        page.contains("Logged in as <b>alice</b>; 1 visits"),
        "{page}"
    );
    let page = client
        .get("/")
        .dispatch()
        .await
        .into_string()
        .await
        .unwrap();
    assert!(page.contains("2 visits"), "{page}");

    let res = client.post("/logout").dispatch().await;
    assert_eq!(res.status(), Status::SeeOther);
    assert!(store.is_empty(), "logout destroys the record");
    assert_eq!(
        client.get("/whoami").dispatch().await.status(),
        Status::NotFound
    );

    // HTML in the user name is escaped.
    client
        .post("/login")
        .header(ContentType::Form)
        .body(format!("user=%3Cscript%3E&password={}", login::PASSWORD))
        .dispatch()
        .await;
    let page = client
        .get("/")
        .dispatch()
        .await
        .into_string()
        .await
        .unwrap();
    assert!(
        page.contains("&lt;script&gt;") && !page.contains("<script>"),
        "{page}"
    );
}

#[rocket::async_test]
async fn the_example_main_app_launches_on_the_memory_store() {
    let client = Client::untracked(login::rocket()).await.expect("launches");
    assert_eq!(client.get("/").dispatch().await.status(), Status::Ok);
}
