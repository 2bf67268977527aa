//! Drives `examples/login.rs` through `rocket::local`.

#[allow(dead_code)]
#[path = "../examples/login.rs"]
mod login;

use rocket::http::{ContentType, Status};
use rocket::local::asynchronous::Client;
use rocket_kvsession::{testing, KvSession, MemoryStore};

async fn page(client: &Client) -> String {
    let res = client.get("/").dispatch().await;
    assert_eq!(res.status(), Status::Ok);
    res.into_string().await.expect("a body")
}

async fn post_login(client: &Client, user: &str, password: &str) {
    let res = client
        .post("/login")
        .header(ContentType::Form)
        .body(format!("user={user}&password={password}"))
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::SeeOther);
}

#[rocket::async_test]
async fn login_whoami_logout() {
    let store = MemoryStore::new();
    let client = Client::tracked(login::app(KvSession::new(store.clone())))
        .await
        .expect("the example launches");

    let body = page(&client).await;
    assert!(body.contains("Not logged in"), "{body}");
    assert!(!body.contains("flash"), "{body}");
    assert!(store.is_empty());

    // A wrong password logs nobody in, and says so once.
    post_login(&client, "alice", "wrong").await;
    assert_eq!(
        client.get("/whoami").dispatch().await.status(),
        Status::NotFound
    );
    assert_eq!(store.len(), 1, "the message waits in a session");
    let body = page(&client).await;
    assert!(
        body.contains(r#"<p class="flash error">Wrong user name or password.</p>"#),
        "{body}"
    );
    assert!(body.contains("Not logged in"), "{body}");
    assert!(store.is_empty(), "the emptied session is deleted");
    let body = page(&client).await;
    assert!(!body.contains("Wrong user name"), "shown once: {body}");

    post_login(&client, "alice", login::PASSWORD).await;
    assert_eq!(store.len(), 2, "the session and alice's owner index");
    let res = client.get("/whoami").dispatch().await;
    assert_eq!(res.into_string().await.unwrap(), "alice");
    let body = page(&client).await;
    assert!(
        body.contains(r#"<p class="flash success">Welcome, alice!</p>"#),
        "{body}"
    );
    assert!(
        body.contains("Logged in as <b>alice</b>; 1 visits"),
        "{body}"
    );
    let body = page(&client).await;
    assert!(body.contains("2 visits"), "{body}");
    assert!(!body.contains("Welcome"), "shown once: {body}");

    let res = client.post("/logout").dispatch().await;
    assert_eq!(res.status(), Status::SeeOther);
    assert_eq!(
        client.get("/whoami").dispatch().await.status(),
        Status::NotFound
    );
    let body = page(&client).await;
    assert!(
        body.contains(r#"<p class="flash success">You are logged out.</p>"#),
        "{body}"
    );
    assert!(body.contains("Not logged in"), "{body}");
    assert!(
        store.len() <= 1,
        "the logged-out session and the message are gone; alice's emptied index expires"
    );
    assert!(!page(&client).await.contains("logged out"), "shown once");

    // HTML in the user name is escaped, in the page and in the message.
    post_login(&client, "%3Cscript%3E", login::PASSWORD).await;
    let body = page(&client).await;
    assert!(
        body.contains("Welcome, &lt;script&gt;!") && body.contains("<b>&lt;script&gt;</b>"),
        "{body}"
    );
    assert!(!body.contains("<script>"), "{body}");
}

#[rocket::async_test]
async fn a_test_can_start_logged_in() {
    let store = MemoryStore::new();
    let client = Client::tracked(login::app(KvSession::new(store.clone())))
        .await
        .expect("the example launches");

    let cookie = testing::login(&client, [("user", "bob")])
        .await
        .expect("a stored session");
    assert_eq!(store.len(), 1);
    let res = client
        .get("/whoami")
        .cookie(cookie.clone())
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::Ok);
    assert_eq!(res.into_string().await.unwrap(), "bob");

    for visit in 1..=2 {
        let res = client.get("/").cookie(cookie.clone()).dispatch().await;
        let body = res.into_string().await.unwrap();
        assert!(
            body.contains(&format!("Logged in as <b>bob</b>; {visit} visits")),
            "{body}"
        );
    }
    let res = client
        .post("/logout")
        .cookie(cookie.clone())
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::SeeOther);
    let res = client.get("/whoami").cookie(cookie).dispatch().await;
    assert_eq!(res.status(), Status::NotFound, "logged out");
}

#[rocket::async_test]
async fn the_example_main_app_launches_on_the_memory_store() {
    let client = Client::untracked(login::rocket()).await.expect("launches");
    assert_eq!(client.get("/").dispatch().await.status(), Status::Ok);
}

async fn sessions_page(client: &Client) -> String {
    let res = client.get("/sessions").dispatch().await;
    assert_eq!(res.status(), Status::Ok);
    res.into_string().await.expect("a body")
}

async fn alive(client: &Client) -> bool {
    client.get("/whoami").dispatch().await.status() == Status::Ok
}

/// The "your sessions" page: three browsers logged in as alice and one as
/// bob; alice ends one of her sessions by its handle, then all the others.
#[rocket::async_test]
async fn the_sessions_page_lists_and_ends_sessions() {
    let store = MemoryStore::new();
    let launch = || async {
        Client::tracked(login::app(KvSession::new(store.clone())))
            .await
            .expect("the example launches")
    };
    let alice = [launch().await, launch().await, launch().await];
    let bob = launch().await;
    for client in &alice {
        post_login(client, "alice", login::PASSWORD).await;
    }
    post_login(&bob, "bob", login::PASSWORD).await;

    let body = sessions_page(&alice[0]).await;
    assert!(body.contains("Sessions of alice"), "{body}");
    assert_eq!(body.matches("<tr><td>").count(), 3, "{body}");
    assert_eq!(body.matches("this browser").count(), 1, "{body}");
    let ends: Vec<&str> = body
        .match_indices("action=/sessions/")
        .map(|(at, _)| &body[at + "action=/sessions/".len()..])
        .filter_map(|rest| rest.split_once("/end>").map(|(handle, _)| handle))
        .collect();
    assert_eq!(ends.len(), 2, "{body}");

    // Bob cannot end alice's session with her handle.
    let res = bob
        .post(format!("/sessions/{}/end", ends[0]))
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::SeeOther);
    let mut alive_count = 0;
    for client in &alice {
        alive_count += alive(client).await as usize;
    }
    assert_eq!(alive_count, 3);

    let res = alice[0]
        .post(format!("/sessions/{}/end", ends[0]))
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::SeeOther);
    let body = sessions_page(&alice[0]).await;
    assert!(body.contains("That session has ended."), "{body}");
    assert_eq!(body.matches("<tr><td>").count(), 2, "{body}");
    let mut alive_count = 0;
    for client in &alice {
        alive_count += alive(client).await as usize;
    }
    assert_eq!(alive_count, 2);

    let res = alice[0].post("/sessions/end-others").dispatch().await;
    assert_eq!(res.status(), Status::SeeOther);
    let body = sessions_page(&alice[0]).await;
    assert!(body.contains("Ended 1 other sessions."), "{body}");
    assert_eq!(body.matches("<tr><td>").count(), 1, "{body}");
    assert!(alive(&alice[0]).await);
    assert!(!alive(&alice[1]).await && !alive(&alice[2]).await);
    assert!(alive(&bob).await, "bob's session is untouched");

    // Not logged in: back to the front page.
    let res = bob.post("/logout").dispatch().await;
    assert_eq!(res.status(), Status::SeeOther);
    assert_eq!(
        bob.get("/sessions").dispatch().await.status(),
        Status::SeeOther
    );
}

/// The login's log line for "remember me": without the box, a 12-hour
/// session with a browser-session cookie; with it, a permanent cookie of
/// the configured lifetime.
#[rocket::async_test]
async fn remember_me_decides_the_cookie() {
    let client = Client::untracked(login::app(KvSession::new(MemoryStore::new())))
        .await
        .expect("the example launches");
    for (remember, permanent) in [("", false), ("&remember=true", true)] {
        let res = client
            .post("/login")
            .header(ContentType::Form)
            .body(format!("user=ann&password={}{remember}", login::PASSWORD))
            .dispatch()
            .await;
        assert_eq!(res.status(), Status::SeeOther);
        let cookie = res
            .cookies()
            .get("session")
            .expect("a session cookie")
            .clone();
        let max_age = cookie.max_age().map(|d| d.whole_seconds());
        if permanent {
            let age = max_age.expect("a permanent cookie");
            assert!((31 * 86_400 - 5..=31 * 86_400).contains(&age), "{age}");
        } else {
            assert_eq!(max_age, None, "a browser-session cookie");
        }
    }
}

/// The example's event handler only logs: it takes every kind of event.
#[rocket::async_test]
async fn every_event_is_logged_without_failing_a_request() {
    let client = Client::tracked(login::app(
        KvSession::new(MemoryStore::new()).on_event(login::log_event),
    ))
    .await
    .expect("the example launches");
    post_login(&client, "bob", login::PASSWORD).await;
    let res = client.post("/logout").dispatch().await;
    assert_eq!(res.status(), Status::SeeOther);
}
