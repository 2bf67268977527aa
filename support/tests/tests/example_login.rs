//! Drives `examples/login.rs` through `rocket::local`.

#[allow(dead_code)]
#[path = "../../../examples/login.rs"]
mod login;

use rocket::http::{ContentType, Cookie, Header, Status};
use rocket::local::asynchronous::{Client, LocalResponse};
use rocket_kvsession::{testing, KvSession, MemoryStore};

const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 \
                      (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36";

async fn launch(store: &MemoryStore) -> Client {
    Client::tracked(login::app(KvSession::new(store.clone())))
        .await
        .expect("the example launches")
}

async fn page(client: &Client) -> String {
    let res = client.get("/").dispatch().await;
    assert_eq!(res.status(), Status::Ok);
    res.into_string().await.expect("a body")
}

/// The value of the first `csrf_token` field of a page's forms.
fn csrf_token(body: &str) -> String {
    let marker = r#"name="csrf_token" value=""#;
    let at = body.find(marker).expect("a form with a csrf_token field") + marker.len();
    let len = body[at..].find('"').expect("a closing quote");
    body[at..at + len].to_owned()
}

/// Posts a form with `fields` (already URL-encoded) and the CSRF token of
/// the client's front page.
async fn post_form<'c>(client: &'c Client, path: &str, fields: &str) -> LocalResponse<'c> {
    let token = csrf_token(&page(client).await);
    client
        .post(path.to_owned())
        .header(ContentType::Form)
        .body(format!("csrf_token={token}&{fields}"))
        .dispatch()
        .await
}

async fn post_login(client: &Client, user: &str, password: &str) {
    let res = post_form(
        client,
        "/login",
        &format!("user={user}&password={password}"),
    )
    .await;
    assert_eq!(res.status(), Status::SeeOther);
}

async fn post_logout(client: &Client) {
    let res = post_form(client, "/logout", "").await;
    assert_eq!(res.status(), Status::SeeOther);
}

fn no_set_cookie(res: &LocalResponse<'_>) {
    let cookies: Vec<&str> = res.headers().get("Set-Cookie").collect();
    assert!(cookies.is_empty(), "{cookies:?}");
}

async fn whoami(client: &Client) -> Option<String> {
    let res = client.get("/whoami").dispatch().await;
    match res.status() {
        Status::Ok => res.into_string().await,
        _ => None,
    }
}

#[rocket::async_test]
async fn login_whoami_logout() {
    let store = MemoryStore::new();
    let client = launch(&store).await;

    let body = page(&client).await;
    assert!(body.contains("Not logged in"), "{body}");
    assert!(!body.contains("class=\"flash"), "{body}");
    assert_eq!(
        store.len(),
        1,
        "the login form's session holds its CSRF secret"
    );

    // A wrong password logs nobody in, and says so once.
    post_login(&client, "alice", "wrong").await;
    assert_eq!(whoami(&client).await, None);
    let body = page(&client).await;
    assert!(
        body.contains(r#"<p class="flash error" role="alert">Wrong user name or password.</p>"#),
        "{body}"
    );
    assert!(body.contains("Not logged in"), "{body}");
    let body = page(&client).await;
    assert!(!body.contains("Wrong user name"), "shown once: {body}");

    post_login(&client, "alice", login::PASSWORD).await;
    assert_eq!(
        store.len(),
        3,
        "the session, alice's owner index, and the old id's moved-to marker"
    );
    assert_eq!(whoami(&client).await.as_deref(), Some("alice"));
    let body = page(&client).await;
    assert!(
        body.contains(r#"<p class="flash success" role="alert">Welcome, alice!</p>"#),
        "{body}"
    );
    assert!(
        body.contains("Logged in as <b>alice</b>; 1 visit in this session."),
        "{body}"
    );
    let body = page(&client).await;
    assert!(body.contains("; 2 visits in this session."), "{body}");
    assert!(!body.contains("Welcome"), "shown once: {body}");

    post_logout(&client).await;
    assert_eq!(whoami(&client).await, None);
    let body = page(&client).await;
    assert!(
        body.contains(r#"<p class="flash success" role="alert">You are logged out.</p>"#),
        "{body}"
    );
    assert!(body.contains("Not logged in"), "{body}");
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
    let client = launch(&store).await;

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

    let mut token = String::new();
    for (visit, visits) in [(1, "1 visit"), (2, "2 visits")] {
        let res = client.get("/").cookie(cookie.clone()).dispatch().await;
        let body = res.into_string().await.unwrap();
        assert!(
            body.contains(&format!("Logged in as <b>bob</b>; {visits} in")),
            "visit {visit}: {body}"
        );
        token = csrf_token(&body);
    }
    let res = client
        .post("/logout")
        .cookie(cookie.clone())
        .header(ContentType::Form)
        .body(format!("csrf_token={token}"))
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

/// A POST of the user's own session with `headers` and `body`.
async fn post_with<'c>(
    client: &'c Client,
    path: &str,
    headers: &[(&'static str, &'static str)],
    body: String,
) -> LocalResponse<'c> {
    let mut req = client.post(path.to_owned()).header(ContentType::Form);
    for &(name, value) in headers {
        req = req.header(Header::new(name, value));
    }
    req.body(body).dispatch().await
}

/// Another site's form posting to the app, with the user's cookie or
/// without it, with a valid token or none: refused, and the user stays
/// logged in.
#[rocket::async_test]
async fn cross_site_and_tokenless_posts_change_nothing() {
    let store = MemoryStore::new();
    let alice = launch(&store).await;
    let other = launch(&store).await;
    post_login(&alice, "alice", login::PASSWORD).await;
    // A second session, so "log out everywhere else" would end something.
    post_login(&other, "alice", login::PASSWORD).await;
    let other_token = csrf_token(&page(&other).await);

    let cross_site: [&[(&str, &str)]; 4] = [
        &[("Sec-Fetch-Site", "cross-site")],
        &[("Origin", "https://evil.example")],
        &[("Origin", "null")],
        &[
            ("Sec-Fetch-Site", "cross-site"),
            ("Origin", "https://evil.example"),
        ],
    ];
    for path in ["/logout", "/sessions/end-others"] {
        for headers in cross_site {
            // Even a valid token of the session does not help a
            // cross-site request.
            let token = csrf_token(&page(&alice).await);
            let res = post_with(&alice, path, headers, format!("csrf_token={token}")).await;
            assert_eq!(res.status(), Status::Forbidden, "{path} {headers:?}");
            no_set_cookie(&res);
            let body = res.into_string().await.unwrap();
            assert!(body.contains("Form refused"), "{body}");
        }
        let bodies = [
            String::new(),
            "csrf_token=".to_owned(),
            "csrf_token=forged".to_owned(),
            format!("csrf_token={}", "A".repeat(86)),
            // A valid token, of another session.
            format!("csrf_token={other_token}"),
        ];
        for body in bodies {
            let res = post_with(&alice, path, &[], body.clone()).await;
            assert_eq!(res.status(), Status::Forbidden, "{path} {body}");
            no_set_cookie(&res);
        }
        assert_eq!(whoami(&alice).await.as_deref(), Some("alice"), "{path}");
        assert_eq!(whoami(&other).await.as_deref(), Some("alice"), "{path}");
    }

    // The same POST from the app's own page (a same-origin browser says
    // so) goes through.
    let token = csrf_token(&page(&alice).await);
    let res = post_with(
        &alice,
        "/logout",
        &[("Sec-Fetch-Site", "same-origin")],
        format!("csrf_token={token}"),
    )
    .await;
    assert_eq!(res.status(), Status::SeeOther);
    assert_eq!(whoami(&alice).await, None);
}

/// Login CSRF: another site posts its own credentials to /login, to log
/// the victim's browser in as the attacker.
#[rocket::async_test]
async fn a_cross_site_login_logs_nobody_in() {
    let store = MemoryStore::new();
    let attacker = format!("user=mallory&password={}", login::PASSWORD);

    // A browser that has never visited: refused by its headers, or, when
    // it sends none, because there is no stored session to check against.
    let headers: [&[(&str, &str)]; 3] = [
        &[("Sec-Fetch-Site", "cross-site")],
        &[("Origin", "https://evil.example")],
        &[],
    ];
    for headers in headers {
        let client = launch(&store).await;
        let res = post_with(&client, "/login", headers, attacker.clone()).await;
        assert_eq!(res.status(), Status::Forbidden, "{headers:?}");
        no_set_cookie(&res);
        assert!(store.is_empty(), "{headers:?}: no session was created");
        assert_eq!(whoami(&client).await, None);
    }

    // A browser that shows the login form (its session is stored): the
    // form of another site has no token of it.
    let client = launch(&store).await;
    let token = csrf_token(&page(&client).await);
    let bodies = [
        attacker.clone(),
        format!("csrf_token=forged&{attacker}"),
        format!("csrf_token={}&{attacker}", &token[..85]),
    ];
    for body in bodies {
        let res = post_with(&client, "/login", &[], body.clone()).await;
        assert_eq!(res.status(), Status::Forbidden, "{body}");
        no_set_cookie(&res);
    }
    let res = post_with(
        &client,
        "/login",
        &[("Sec-Fetch-Site", "cross-site")],
        format!("csrf_token={token}&{attacker}"),
    )
    .await;
    assert_eq!(res.status(), Status::Forbidden);
    assert_eq!(whoami(&client).await, None);

    // The app's own form logs in, and tokens issued before the login stop
    // working after it (the session has a new CSRF secret).
    let res = post_with(
        &client,
        "/login",
        &[],
        format!("csrf_token={token}&{attacker}"),
    )
    .await;
    assert_eq!(res.status(), Status::SeeOther);
    assert_eq!(whoami(&client).await.as_deref(), Some("mallory"));
    let res = post_with(&client, "/logout", &[], format!("csrf_token={token}")).await;
    assert_eq!(res.status(), Status::Forbidden);
    assert_eq!(whoami(&client).await.as_deref(), Some("mallory"));
}

fn no_store(res: &LocalResponse<'_>) {
    assert_eq!(
        res.headers().get_one("Cache-Control"),
        Some("no-store"),
        "{:?}",
        res.headers()
    );
}

/// Back after a logout shows no logged-in page from the browser's cache.
#[rocket::async_test]
async fn pages_are_never_cached() {
    let store = MemoryStore::new();
    let client = launch(&store).await;
    // The login form, its session already stored: nothing else would
    // send no-store.
    page(&client).await;
    let res = client.get("/").dispatch().await;
    no_set_cookie(&res);
    no_store(&res);

    post_login(&client, "alice", login::PASSWORD).await;
    for path in ["/", "/", "/sessions", "/sessions"] {
        let res = client.get(path).dispatch().await;
        assert_eq!(res.status(), Status::Ok, "{path}");
        no_store(&res);
    }
    let token = csrf_token(&page(&client).await);
    let res = post_with(&client, "/logout", &[], format!("csrf_token=x{token}")).await;
    assert_eq!(res.status(), Status::Forbidden);
    no_store(&res);
}

#[rocket::async_test]
async fn pages_are_complete_html() {
    let store = MemoryStore::new();
    let client = launch(&store).await;
    let login_form = page(&client).await;
    post_login(&client, "alice", login::PASSWORD).await;
    let logged_in = page(&client).await;
    let res = client.get("/sessions").dispatch().await;
    assert_eq!(
        res.content_type(),
        Some(ContentType::HTML),
        "{:?}",
        res.headers()
    );
    let sessions = res.into_string().await.unwrap();
    for (name, body) in [
        ("login", &login_form),
        ("logged in", &logged_in),
        ("sessions", &sessions),
    ] {
        assert!(body.starts_with("<!doctype html>\n"), "{name}: {body}");
        for part in [
            r#"<html lang="en">"#,
            r#"<meta charset="utf-8">"#,
            r#"<meta name="viewport" content="width=device-width, initial-scale=1">"#,
            "<style>",
            "</html>",
        ] {
            assert!(body.contains(part), "{name}: {part} in {body}");
        }
        assert_eq!(body.matches("<title>").count(), 1, "{name}: {body}");
    }
    assert!(login_form.contains("<title>Log in</title>"), "{login_form}");
    assert!(
        sessions.contains("<title>Sessions of alice</title>"),
        "{sessions}"
    );
    for part in [
        r#"<label for="user">"#,
        r#"<input id="user" name="user" autocomplete="username" required maxlength="64">"#,
        r#"<label for="password">"#,
        r#"autocomplete="current-password""#,
        r#"<label class="check" for="remember">"#,
        r#"id="remember""#,
        r#"type="hidden" name="csrf_token""#,
    ] {
        assert!(login_form.contains(part), "{part} in {login_form}");
    }
    assert!(
        logged_in.contains(r#"<p class="flash success" role="alert">"#),
        "{logged_in}"
    );
    assert!(
        logged_in.contains(
            r#"<form method="post" action="/logout"><input type="hidden" name="csrf_token""#
        ),
        "{logged_in}"
    );
}

#[rocket::async_test]
async fn bad_user_names_are_refused() {
    let store = MemoryStore::new();
    let client = launch(&store).await;
    let long = "a".repeat(login::MAX_USER_LEN + 1);
    let wide = "é".repeat(login::MAX_USER_LEN);
    let cases = [
        ("", "Enter a user name."),
        ("%20%20", "Enter a user name."),
        (long.as_str(), "A user name has at most 64 characters."),
        ("a%01b", "A user name cannot contain control characters."),
        ("a%0Ab", "A user name cannot contain control characters."),
        ("a%7Fb", "A user name cannot contain control characters."),
    ];
    for (user, message) in cases {
        post_login(&client, user, login::PASSWORD).await;
        assert_eq!(whoami(&client).await, None, "{user:?}");
        let body = page(&client).await;
        assert!(
            body.contains(&format!(
                r#"<p class="flash error" role="alert">{message}</p>"#
            )),
            "{user:?}: {body}"
        );
    }
    // At most 64 characters, not bytes.
    assert_eq!(login::user_name_problem(&wide), None);
    post_login(&client, &wide, login::PASSWORD).await;
    assert_eq!(whoami(&client).await.as_deref(), Some(wide.as_str()));
}

#[test]
fn plurals_and_device_names() {
    assert_eq!(login::plural(0, "visit", "visits"), "0 visits");
    assert_eq!(login::plural(1, "visit", "visits"), "1 visit");
    assert_eq!(login::plural(2, "visit", "visits"), "2 visits");
    assert_eq!(login::device_name(FIREFOX), "Firefox on Linux");
    assert_eq!(login::device_name(CHROME), "Chrome on Windows");
    assert_eq!(
        login::device_name(
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 \
             (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
        ),
        "Safari on iOS"
    );
    assert_eq!(login::device_name("curl/8.5.0"), "curl/8.5.0");
    assert_eq!(login::device_name(""), "");
}

async fn sessions_page(client: &Client) -> String {
    let res = client.get("/sessions").dispatch().await;
    assert_eq!(res.status(), Status::Ok);
    res.into_string().await.expect("a body")
}

/// The handles of the sessions a sessions page offers to end.
fn end_handles(body: &str) -> Vec<String> {
    let marker = r#"name="handle" value=""#;
    body.match_indices(marker)
        .map(|(at, _)| &body[at + marker.len()..])
        .filter_map(|rest| rest.split_once('"').map(|(handle, _)| handle.to_owned()))
        .collect()
}

async fn login_with_agent(client: &Client, user: &str, agent: &'static str) {
    let token = csrf_token(&page(client).await);
    let res = post_with(
        client,
        "/login",
        &[("User-Agent", agent)],
        format!(
            "csrf_token={token}&user={user}&password={}",
            login::PASSWORD
        ),
    )
    .await;
    assert_eq!(res.status(), Status::SeeOther);
}

async fn end_session<'c>(client: &'c Client, handle: &str) -> LocalResponse<'c> {
    let token = csrf_token(&page(client).await);
    client
        .post("/sessions/end")
        .header(ContentType::Form)
        .body(format!("csrf_token={token}&handle={handle}"))
        .dispatch()
        .await
}

async fn alive_count(clients: &[Client]) -> usize {
    let mut alive = 0;
    for client in clients {
        alive += whoami(client).await.is_some() as usize;
    }
    alive
}

/// The "your sessions" page: three browsers logged in as alice and one as
/// bob; alice ends one of her sessions by its handle, then all the others.
#[rocket::async_test]
async fn the_sessions_page_lists_and_ends_sessions() {
    let store = MemoryStore::new();
    let alice = [
        launch(&store).await,
        launch(&store).await,
        launch(&store).await,
        launch(&store).await,
    ];
    let bob = launch(&store).await;
    login_with_agent(&alice[0], "alice", FIREFOX).await;
    login_with_agent(&alice[1], "alice", CHROME).await;
    login_with_agent(&alice[2], "alice", "curl/8.5.0").await;
    post_login(&bob, "bob", login::PASSWORD).await;

    let body = sessions_page(&alice[0]).await;
    assert!(body.contains("<h1>Sessions of alice</h1>"), "{body}");
    assert!(
        body.contains("3 sessions logged in as <b>alice</b>"),
        "{body}"
    );
    assert_eq!(body.matches("<tr><td>").count(), 2, "{body}");
    assert_eq!(body.matches("this browser").count(), 1, "{body}");
    assert!(
        body.contains(
            "<tr class=\"current\"><td>Firefox on Linux</td><td>just now</td><td>just now</td>"
        ),
        "the current session, by its label: {body}"
    );
    assert!(
        body.contains("<tr><td>Chrome on Windows</td>") && body.contains("<tr><td>curl/8.5.0</td>"),
        "{body}"
    );
    assert!(
        body.contains("in 12 hours or when the browser closes"),
        "{body}"
    );
    let ends = end_handles(&body);
    assert_eq!(ends.len(), 2, "{body}");

    // Bob cannot end alice's session with her handle.
    let res = end_session(&bob, &ends[0]).await;
    assert_eq!(res.status(), Status::SeeOther);
    assert_eq!(alive_count(&alice[..3]).await, 3);

    let res = end_session(&alice[0], &ends[0]).await;
    assert_eq!(res.status(), Status::SeeOther);
    let body = sessions_page(&alice[0]).await;
    assert!(body.contains("That session has ended."), "{body}");
    assert!(body.contains("2 sessions logged in"), "{body}");
    assert_eq!(alive_count(&alice[..3]).await, 2);

    login_with_agent(&alice[3], "alice", FIREFOX).await;
    let res = post_form(&alice[0], "/sessions/end-others", "").await;
    assert_eq!(res.status(), Status::SeeOther);
    let body = sessions_page(&alice[0]).await;
    assert!(body.contains("Ended 2 other sessions."), "{body}");
    assert!(body.contains("1 session logged in"), "{body}");
    assert!(
        !body.contains("everywhere else"),
        "nothing else to end: {body}"
    );
    assert!(whoami(&alice[0]).await.is_some());
    assert_eq!(alive_count(&alice).await, 1);
    assert!(whoami(&bob).await.is_some(), "bob's session is untouched");

    login_with_agent(&alice[1], "alice", CHROME).await;
    let res = post_form(&alice[0], "/sessions/end-others", "").await;
    assert_eq!(res.status(), Status::SeeOther);
    let body = sessions_page(&alice[0]).await;
    assert!(body.contains("Ended 1 other session."), "{body}");

    // Not logged in: back to the front page.
    post_logout(&bob).await;
    assert_eq!(
        bob.get("/sessions").dispatch().await.status(),
        Status::SeeOther
    );
}

/// The login's cookie for "remember me": without the box, a 12-hour
/// session with a browser-session cookie; with it, a permanent cookie of
/// the configured lifetime.
#[rocket::async_test]
async fn remember_me_decides_the_cookie() {
    let store = MemoryStore::new();
    for (remember, permanent) in [("", false), ("&remember=true", true)] {
        let client = launch(&store).await;
        let res = post_form(
            &client,
            "/login",
            &format!("user=ann&password={}{remember}", login::PASSWORD),
        )
        .await;
        assert_eq!(res.status(), Status::SeeOther);
        let cookie: Cookie<'_> = res
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
    post_logout(&client).await;
}
