//! Hostile cookies: tampered, truncated, random and other-key cookies give a
//! fresh session and never a 5xx.

mod common;

use common::*;
use proptest::prelude::*;
use rocket::http::{Cookie, Status};
use rocket::local::blocking::Client;
use rocket_kvsession::{KvSession, SessionConfig};

struct Fixture {
    client: Client,
    store: TestStore,
    /// A valid sealed cookie value of a logged-in session.
    valid: String,
    /// A valid cookie of the same app layout, sealed with another secret key.
    other_key: String,
}

fn login(client: &Client) -> String {
    let res = client.post("/login/mallory").dispatch();
    assert_eq!(res.status(), Status::Ok);
    let cookie = res
        .headers()
        .get("Set-Cookie")
        .find(|c| c.starts_with("session="))
        .expect("cookie")
        .to_owned();
    let value = cookie.split(';').next().unwrap();
    percent_decode(value.strip_prefix("session=").unwrap())
}

/// Undoes the percent-encoding of a `Set-Cookie` value.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

fn fixture() -> Fixture {
    let store = TestStore::new();
    let client = Client::untracked(app_with(store.clone(), SessionConfig::default())).unwrap();
    let valid = login(&client);
    let other = rocket::custom(
        figment().merge(("secret_key", "Rc1+7Q0rLQGZRo/gHFm9JqTIjZoDq0DbzcNx9ku2r1s=")),
    )
    .attach(KvSession::new(store.clone()))
    .mount("/", routes());
    let other_key = login(&Client::untracked(other).unwrap());
    Fixture {
        client,
        store,
        valid,
        other_key,
    }
}

/// Sends `value` as the session cookie; asserts a fresh session and no 5xx.
fn assert_fresh(fx: &Fixture, value: &str) {
    let cookie = Cookie::new("session", value.to_owned());
    let res = fx.client.get("/whoami").cookie(cookie.clone()).dispatch();
    assert_eq!(
        res.status(),
        Status::NotFound,
        "cookie {value:?} loaded a session"
    );
    let res = fx.client.post("/set/k/v").cookie(cookie).dispatch();
    assert_eq!(res.status(), Status::Ok, "cookie {value:?}");
    let id = res.into_string().unwrap();
    assert!(!id.is_empty());
    assert!(!value.contains(&id), "cookie {value:?} chose its id");
}

#[test]
fn the_valid_cookie_works_and_known_bad_ones_do_not() {
    let fx = fixture();
    let res = fx
        .client
        .get("/whoami")
        .cookie(Cookie::new("session", fx.valid.clone()))
        .dispatch();
    assert_eq!(res.into_string().unwrap(), "mallory");
    assert_fresh(&fx, &fx.other_key);
    assert_fresh(&fx, "");
    assert_fresh(&fx, &fx.valid[..fx.valid.len() / 2]);
    // A plain id that exists in the store is not accepted unsealed.
    let key = futures::executor::block_on(async {
        use futures::TryStreamExt;
        use rocket_kvsession::KeyValueStore;
        fx.store
            .inner
            .list("")
            .try_collect::<Vec<_>>()
            .await
            .unwrap()[0]
            .key
            .clone()
    });
    assert_fresh(&fx, &key);
}

fn flip(value: &str, index: usize, to: char) -> String {
    let mut chars: Vec<char> = value.chars().collect();
    let i = index % chars.len();
    if chars[i] == to {
        chars[i] = if to == 'A' { 'B' } else { 'A' };
    } else {
        chars[i] = to;
    }
    chars.into_iter().collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn hostile_cookies_give_a_fresh_session(
        kind in 0u8..4,
        index in any::<usize>(),
        to in proptest::char::range('+', 'z'),
        cut in any::<usize>(),
        random in "[A-Za-z0-9+/=_%-]{0,120}",
    ) {
        thread_local! {
            static FX: Fixture = fixture();
        }
        FX.with(|fx| {
            let value = match kind {
                0 => flip(&fx.valid, index, to),
                1 => fx.valid[..cut % fx.valid.len()].to_owned(),
                2 => random.clone(),
                _ => format!("{}{}", &fx.other_key[..cut % fx.other_key.len()], random),
            };
            if value != fx.valid {
                assert_fresh(fx, &value);
            }
        });
    }
}
