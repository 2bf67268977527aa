//! App-level cases of the guarantees under contention (issue #20), run by
//! every store: a logout follows a session that keeps rotating; a listing,
//! a revocation or a sweep racing a login leaves the new session listed; a
//! session missing from its owner's index adds itself back on a save;
//! removing a session's last key keeps what a concurrent request wrote.
//!
//! The races are set up exactly: the store under test is wrapped in
//! [`HookedStore`], which runs a step of the case at a chosen point of a
//! request's store calls, and the gate holds a request between its load and
//! its save. Cases that rely on compare-and-swap return early on stores
//! without it.

use std::sync::Arc;

use rocket::http::{Cookie, Status};
use rocket::local::asynchronous::{Client, LocalResponse};
use rocket::tokio::sync::Notify;

use super::owners::owner_routes;
use super::{app_with, config, stored_keys, within, Gate};
use crate::conformance::hooked::HookedStore;
use crate::keys::Keys;
use crate::{KeyValueStore, SessionConfig, SessionManager};

/// A tracked client of the conformance app with the owner routes on
/// `store` with `config`, and its gate. Clients of one configuration are
/// browsers of one app.
async fn gated(store: &Arc<dyn KeyValueStore>, config: &SessionConfig) -> (Client, Arc<Gate>) {
    let gate = Arc::new(Gate::default());
    let rocket =
        app_with(store.clone(), config.clone(), 1, gate.clone()).mount("/", owner_routes());
    let client = Client::tracked(rocket)
        .await
        .expect("the conformance app launches");
    (client, gate)
}

fn manager(client: &Client) -> SessionManager {
    client
        .rocket()
        .state::<SessionManager>()
        .expect("the fairing manages a SessionManager")
        .clone()
}

fn set_cookie_of(res: &LocalResponse<'_>, name: &str) -> Option<Cookie<'static>> {
    res.headers()
        .get("Set-Cookie")
        .filter_map(|v| Cookie::parse(v.to_owned()).ok())
        .find(|c| c.name() == name)
}

/// The status of `GET /whoami` with `cookie` alone.
async fn whoami_with(client: &Client, cookie: &Cookie<'static>) -> Status {
    client
        .get("/whoami")
        .cookie(cookie.clone())
        .dispatch()
        .await
        .status()
}

/// A logout that loaded the session before a copy of its cookie rotated
/// it six times over (each rotation leaving a "moved to" marker) ends the
/// newest id too: it never answers 200 with the rotated session alive.
pub async fn guarantees_a_logout_follows_a_session_that_keeps_rotating(
    store: Arc<dyn KeyValueStore>,
) {
    if !store.capabilities().compare_and_swap {
        return;
    }
    let config = config("app-guarantees-rotating");
    let name = config.cookie_name.clone();
    let (client, gate) = gated(&store, &config).await;
    // A copy of the cookie, used from another browser of the same app.
    let attacker = Client::untracked(app_with(store, config, 1, Arc::default()))
        .await
        .expect("the conformance app launches");
    assert_eq!(
        client.post("/login/ivy").dispatch().await.status(),
        Status::Ok
    );
    let stolen = client
        .cookies()
        .get(&name)
        .expect("a session cookie")
        .clone()
        .into_owned();

    let logout = async { client.post("/slow-logout").dispatch().await.status() };
    let rotate = async {
        gate.loaded.notified().await;
        let mut cookie = stolen;
        for _ in 0..6 {
            let res = attacker
                .post("/regenerate")
                .cookie(cookie.clone())
                .dispatch()
                .await;
            assert_eq!(res.status(), Status::Ok);
            cookie = set_cookie_of(&res, &name).expect("a rotated cookie");
        }
        gate.release.notify_one();
        cookie
    };
    let (logout, newest) = within(async { rocket::tokio::join!(logout, rotate) }).await;
    assert_eq!(logout, Status::Ok, "six rotations are followed");
    assert_eq!(
        whoami_with(&attacker, &newest).await,
        Status::NotFound,
        "the logout answered 200 and the rotated session lives on"
    );
}

/// `sessions_of`, `revoke_owner` and a sweep that run while a login is
/// between indexing its new session and writing its record leave the
/// session listed: a later `revoke_owner` ends it.
pub async fn guarantees_a_login_raced_by_a_listing_stays_listed(store: Arc<dyn KeyValueStore>) {
    for racer in ["sessions_of", "revoke_owner", "cleanup"] {
        let hooked = HookedStore::new(store.clone());
        let config = config("app-guarantees-login-race");
        let name = config.cookie_name.clone();
        let shared: Arc<dyn KeyValueStore> = Arc::new(hooked.clone());
        let (client, _) = gated(&shared, &config).await;
        let manager = manager(&client);
        let during = manager.clone();
        hooked.before_create(move || {
            Box::pin(async move {
                match racer {
                    "sessions_of" => {
                        let listed = during.sessions_of("alice").await.expect("list");
                        assert!(listed.is_empty(), "not written yet: not listed");
                    }
                    "revoke_owner" => {
                        let _ = during.revoke_owner("alice").await.expect("revoke");
                    }
                    _ => {
                        let _ = during.cleanup().await.expect("sweep");
                    }
                }
            })
        });
        let res = client.post("/owner-login/alice").dispatch().await;
        assert_eq!(res.status(), Status::Ok, "{racer}");
        let cookie = set_cookie_of(&res, &name).expect("a session cookie");
        drop(res);
        assert_eq!(whoami_with(&client, &cookie).await, Status::Ok, "{racer}");
        assert_eq!(
            manager.sessions_of("alice").await.expect("list").len(),
            1,
            "{racer} unlisted the session it raced"
        );
        assert_eq!(manager.revoke_owner("alice").await.expect("revoke"), 1);
        assert_eq!(
            whoami_with(&client, &cookie).await,
            Status::NotFound,
            "{racer}"
        );
    }
}

/// A session whose owner index is gone (evicted, or rebuilt without it)
/// names itself again on its next save, so "log out everywhere" reaches it.
pub async fn guarantees_a_session_missing_from_its_index_adds_itself_back(
    store: Arc<dyn KeyValueStore>,
) {
    let config = config("app-guarantees-readd");
    let (client, _) = gated(&store, &config).await;
    assert_eq!(
        client.post("/owner-login/alice").dispatch().await.status(),
        Status::Ok
    );
    let index = Keys::of(&config).index("alice");
    assert!(stored_keys(&*store, &config.key_prefix)
        .await
        .contains(&index));
    store.delete(&index).await.expect("evict the index");
    let manager = manager(&client);
    assert!(manager.sessions_of("alice").await.expect("list").is_empty());

    assert_eq!(
        client.post("/set/cart/3").dispatch().await.status(),
        Status::Ok
    );
    assert_eq!(manager.sessions_of("alice").await.expect("list").len(), 1);
    assert_eq!(manager.revoke_owner("alice").await.expect("revoke"), 1);
    assert_eq!(
        client.get("/whoami").dispatch().await.status(),
        Status::NotFound
    );
}

/// Removing a session's last key while a concurrent request of the same
/// session writes a key of its own right after the emptied record: the
/// concurrent write (answered 200) is kept.
pub async fn guarantees_removing_the_last_key_keeps_a_concurrent_write(
    store: Arc<dyn KeyValueStore>,
) {
    if !store.capabilities().compare_and_swap {
        return;
    }
    let hooked = HookedStore::new(store);
    let shared: Arc<dyn KeyValueStore> = Arc::new(hooked.clone());
    let (client, gate) = gated(&shared, &config("app-guarantees-emptied")).await;
    assert_eq!(
        client.post("/set/a/1").dispatch().await.status(),
        Status::Ok
    );
    let saved = Arc::new(Notify::new());
    let slow = async {
        let status = client.post("/slow/b").dispatch().await.status();
        saved.notify_one();
        status
    };
    let remove = async {
        gate.loaded.notified().await;
        // Right after the emptied record is written, the slow request saves
        // (merging its key onto the empty record).
        let (gate, saved) = (gate.clone(), saved.clone());
        hooked.after_update(move || {
            Box::pin(async move {
                gate.release.notify_one();
                saved.notified().await;
            })
        });
        client.post("/remove/a").dispatch().await.status()
    };
    let (slow, remove) = within(async { rocket::tokio::join!(slow, remove) }).await;
    assert_eq!((slow, remove), (Status::Ok, Status::Ok));
    let res = client.get("/get/b").dispatch().await;
    assert_eq!(
        (res.status(), res.into_string().await.as_deref()),
        (Status::Ok, Some("1")),
        "an acknowledged write was deleted"
    );
    assert_eq!(
        client.get("/get/a").dispatch().await.status(),
        Status::NotFound
    );
}
