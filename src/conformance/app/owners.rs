//! App-level cases of owners: `Session::set_owner`, `revoke_other_sessions`
//! and the [`SessionManager`](crate::SessionManager), run by every store.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rocket::http::Status;
use rocket::local::asynchronous::Client;
use rocket::{get, post, routes, Build, Rocket, State};

use super::{
    app_with, clocked_app, config, live_sessions, read, stored_keys, unique_prefix, within, write,
    Gate,
};
use crate::keys::Keys;
use crate::record::Index;
use crate::{Error, KeyValueStore, Session, SessionConfig, SessionManager};

/// Logs in as `user` with an owner: regenerates, sets the owner and the
/// `user` key; answers the session's handle.
#[post("/owner-login/<user>")]
async fn owner_login(session: Session<'_>, user: &str) -> Result<String, Error> {
    session.regenerate().await?;
    session.set_owner(user);
    session.insert("user", user)?;
    Ok(session.handle().unwrap_or_default())
}

/// The session's owner, 404 if none.
#[get("/owner")]
fn owner(session: Session<'_>) -> Option<String> {
    session.owner()
}

/// The session's handle, 404 if none.
#[get("/handle")]
fn handle(session: Session<'_>) -> Option<String> {
    session.handle()
}

/// Ends the other sessions of this session's owner; answers how many.
#[post("/revoke-others")]
async fn revoke_others(session: Session<'_>) -> Result<String, Error> {
    Ok(session.revoke_other_sessions().await?.to_string())
}

/// `sessions_of(user)`, one line per session:
/// `handle created last_active expires_at permanent` (Unix seconds).
#[get("/sessions-of/<user>")]
async fn sessions_of(manager: &State<SessionManager>, user: &str) -> Result<String, Error> {
    let secs = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs()
    };
    Ok(manager
        .sessions_of(user)
        .await?
        .iter()
        .map(|s| {
            format!(
                "{} {} {} {} {}",
                s.handle,
                secs(s.created),
                secs(s.last_active),
                secs(s.expires_at),
                s.permanent
            )
        })
        .collect::<Vec<_>>()
        .join("\n"))
}

/// `revoke(user, handle)`: `true` or `false`.
#[post("/revoke/<user>/<handle>")]
async fn revoke(
    manager: &State<SessionManager>,
    user: &str,
    handle: &str,
) -> Result<String, Error> {
    Ok(manager.revoke(user, handle).await?.to_string())
}

/// `revoke_owner(user)`: how many ended.
#[post("/revoke-owner/<user>")]
async fn revoke_owner(manager: &State<SessionManager>, user: &str) -> Result<String, Error> {
    Ok(manager.revoke_owner(user).await?.to_string())
}

/// `revoke_all()`: how many ended.
#[post("/revoke-all")]
async fn revoke_all(manager: &State<SessionManager>) -> Result<String, Error> {
    Ok(manager.revoke_all().await?.to_string())
}

/// The owner routes above.
pub fn owner_routes() -> Vec<rocket::Route> {
    routes![
        owner_login,
        owner,
        handle,
        revoke_others,
        sessions_of,
        revoke,
        revoke_owner,
        revoke_all
    ]
}

fn owner_app(
    store: Arc<dyn KeyValueStore>,
    config: SessionConfig,
    gate: Arc<Gate>,
) -> Rocket<Build> {
    app_with(store, config, 1, gate).mount("/", owner_routes())
}

/// A tracked client of an app with the owner routes. Several clients of one
/// configuration are several browsers of one app (or several servers).
async fn browser(store: &Arc<dyn KeyValueStore>, config: &SessionConfig) -> Client {
    Client::tracked(owner_app(store.clone(), config.clone(), Arc::default()))
        .await
        .expect("the conformance app launches")
}

/// Three browsers of one app.
async fn three_browsers(store: &Arc<dyn KeyValueStore>, config: &SessionConfig) -> [Client; 3] {
    [
        browser(store, config).await,
        browser(store, config).await,
        browser(store, config).await,
    ]
}

/// Three browsers for alice and one for bob.
async fn alice_and_bob(
    store: &Arc<dyn KeyValueStore>,
    config: &SessionConfig,
) -> ([Client; 3], Client) {
    (
        three_browsers(store, config).await,
        browser(store, config).await,
    )
}

/// Logs `client` in as `user`; returns the session's handle.
async fn login_as(client: &Client, user: &str) -> String {
    let res = client.post(format!("/owner-login/{user}")).dispatch().await;
    assert_eq!(res.status(), Status::Ok);
    let handle = res.into_string().await.unwrap_or_default();
    assert_eq!(handle.len(), 32, "a handle: {handle:?}");
    handle
}

/// The status and body of a POST.
async fn post(client: &Client, uri: &str) -> (Status, String) {
    let res = client.post(uri.to_owned()).dispatch().await;
    (res.status(), res.into_string().await.unwrap_or_default())
}

async fn whoami(client: &Client) -> Option<String> {
    match read(client, "/whoami").await {
        (Status::Ok, user) => Some(user),
        _ => None,
    }
}

/// `sessions_of(user)` as (handle, created, last_active, expires_at, permanent).
async fn listed(client: &Client, user: &str) -> Vec<(String, u64, u64, u64, bool)> {
    let (status, body) = read(client, &format!("/sessions-of/{user}")).await;
    assert_eq!(status, Status::Ok, "{body}");
    body.lines()
        .map(|line| {
            let f: Vec<&str> = line.split(' ').collect();
            assert_eq!(f.len(), 5, "{line}");
            (
                f[0].to_owned(),
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
                f[3].parse().unwrap(),
                f[4].parse().unwrap(),
            )
        })
        .collect()
}

fn handles(list: &[(String, u64, u64, u64, bool)]) -> HashSet<String> {
    list.iter().map(|s| s.0.clone()).collect()
}

/// The entries `user`'s index names, read from the store.
async fn index_entries(store: &dyn KeyValueStore, config: &SessionConfig, user: &str) -> usize {
    match store.get(&Keys::of(config).index(user)).await.expect("get") {
        Some(record) => Index::decode(&record.value)
            .expect("an index")
            .entries
            .len(),
        None => 0,
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// Three browsers log in as alice and one as bob; alice's
/// `revoke_other_sessions` ends her two other sessions (dead on their next
/// request) and leaves her current one and bob's; `sessions_of` lists
/// exactly her live sessions, with sane times, and nothing that opens one.
pub async fn owners_revoke_other_sessions(store: Arc<dyn KeyValueStore>) {
    let config = SessionConfig {
        lifetime: 3600,
        ..config("app-owners-others")
    };
    let prefix = config.key_prefix.clone();
    let (alice, bob) = alice_and_bob(&store, &config).await;
    let before = now();
    let mut alice_handles = HashSet::new();
    for client in &alice {
        alice_handles.insert(login_as(client, "alice").await);
    }
    let bob_handle = login_as(&bob, "bob").await;
    assert_eq!(alice_handles.len(), 3, "every session has its own handle");
    assert!(!alice_handles.contains(&bob_handle));

    let list = listed(&bob, "alice").await;
    assert_eq!(handles(&list), alice_handles);
    for (_, created, last_active, expires_at, permanent) in &list {
        assert!(before <= *created && created <= last_active, "{list:?}");
        assert!(*last_active <= now(), "{list:?}");
        assert!(
            *expires_at > now() && *expires_at <= created + 3600 + 1,
            "{list:?}"
        );
        assert!(permanent);
    }
    // A handle is not an id, nor part of any store key or cookie.
    let keys = stored_keys(&*store, &prefix).await;
    for handle in alice_handles.iter().chain([&bob_handle]) {
        assert!(
            keys.iter().all(|k| !k.contains(handle.as_str())),
            "{keys:?}"
        );
        for client in alice.iter().chain([&bob]) {
            let cookie = client
                .cookies()
                .get(&config.cookie_name)
                .map(|c| c.value().to_owned());
            assert!(!cookie.unwrap_or_default().contains(handle.as_str()));
        }
    }

    assert_eq!(
        post(&alice[0], "/revoke-others").await,
        (Status::Ok, "2".into())
    );
    assert_eq!(whoami(&alice[0]).await.as_deref(), Some("alice"));
    assert_eq!(whoami(&alice[1]).await, None, "a revoked session is dead");
    assert_eq!(whoami(&alice[2]).await, None, "a revoked session is dead");
    assert_eq!(whoami(&bob).await.as_deref(), Some("bob"));
    let current = read(&alice[0], "/handle").await.1;
    assert_eq!(
        handles(&listed(&bob, "alice").await),
        HashSet::from([current])
    );
    assert_eq!(
        handles(&listed(&bob, "bob").await),
        HashSet::from([bob_handle])
    );
    assert_eq!(live_sessions(&*store, &prefix).await.len(), 2);
    // Nothing left to end.
    assert_eq!(
        post(&alice[0], "/revoke-others").await,
        (Status::Ok, "0".into())
    );
}

/// `revoke(owner, handle)` ends exactly that session; an unknown, foreign
/// or malformed handle ends nothing. `sessions_of` drops sessions that
/// logged out or changed owner; a rotation keeps the handle.
pub async fn owners_revoke_one_session(store: Arc<dyn KeyValueStore>) {
    let config = config("app-owners-one");
    let alice = three_browsers(&store, &config).await;
    let mut hs = Vec::new();
    for client in &alice {
        hs.push(login_as(client, "alice").await);
    }
    // A rotation keeps the session's handle; the index follows the new id.
    assert_eq!(write(&alice[0], "/regenerate").await, Status::Ok);
    assert_eq!(
        read(&alice[0], "/handle").await,
        (Status::Ok, hs[0].clone())
    );
    assert_eq!(handles(&listed(&alice[0], "alice").await).len(), 3);

    let revoke = |user: &str, handle: &str| format!("/revoke/{user}/{handle}");
    assert_eq!(post(&alice[0], &revoke("bob", &hs[1])).await.0, Status::Ok);
    assert_eq!(
        whoami(&alice[1]).await.as_deref(),
        Some("alice"),
        "bob cannot end alice's session"
    );
    assert_eq!(
        post(&alice[0], &revoke("alice", "nothex")).await,
        (Status::Ok, "false".into())
    );
    assert_eq!(
        post(&alice[0], &revoke("alice", &"0".repeat(32))).await,
        (Status::Ok, "false".into())
    );

    let res = alice[0].post(revoke("alice", &hs[1])).dispatch().await;
    assert_eq!(res.into_string().await.as_deref(), Some("true"));
    assert_eq!(whoami(&alice[1]).await, None);
    assert_eq!(whoami(&alice[0]).await.as_deref(), Some("alice"));
    assert_eq!(whoami(&alice[2]).await.as_deref(), Some("alice"));
    let res = alice[0].post(revoke("alice", &hs[1])).dispatch().await;
    assert_eq!(
        res.into_string().await.as_deref(),
        Some("false"),
        "already ended"
    );

    // A logout leaves the list (and the index), a new owner too.
    assert_eq!(write(&alice[2], "/logout").await, Status::Ok);
    assert_eq!(
        handles(&listed(&alice[0], "alice").await),
        HashSet::from([hs[0].clone()])
    );
    login_as(&alice[2], "carol").await;
    assert_eq!(
        handles(&listed(&alice[0], "alice").await),
        HashSet::from([hs[0].clone()])
    );
    assert_eq!(listed(&alice[0], "carol").await.len(), 1);
    assert_eq!(
        index_entries(&*store, &config, "alice").await,
        1,
        "pruned on read"
    );
}

/// `revoke_owner` ends every session of one owner and no one else's.
pub async fn owners_revoke_owner(store: Arc<dyn KeyValueStore>) {
    let config = config("app-owners-owner");
    let prefix = config.key_prefix.clone();
    let (alice, bob) = alice_and_bob(&store, &config).await;
    for client in &alice {
        login_as(client, "alice").await;
    }
    login_as(&bob, "bob").await;
    assert_eq!(
        post(&bob, "/revoke-owner/alice").await,
        (Status::Ok, "3".into())
    );
    for client in &alice {
        assert_eq!(whoami(client).await, None);
    }
    assert_eq!(whoami(&bob).await.as_deref(), Some("bob"));
    assert!(listed(&bob, "alice").await.is_empty());
    assert_eq!(index_entries(&*store, &config, "alice").await, 0);
    assert_eq!(live_sessions(&*store, &prefix).await.len(), 1);
    assert_eq!(
        post(&bob, "/revoke-owner/alice").await,
        (Status::Ok, "0".into())
    );
}

/// `revoke_all` ends every session of the app, owned or not, and leaves the
/// keys of another key prefix alone.
pub async fn owners_revoke_all(store: Arc<dyn KeyValueStore>) {
    let config = config("app-owners-all");
    let other = SessionConfig {
        key_prefix: unique_prefix("app-owners-all-other"),
        ..config.clone()
    };
    let ours = three_browsers(&store, &config).await;
    login_as(&ours[0], "alice").await;
    login_as(&ours[1], "bob").await;
    assert_eq!(write(&ours[2], "/set/cart/1").await, Status::Ok);
    let theirs = [browser(&store, &other).await, browser(&store, &other).await];
    login_as(&theirs[0], "alice").await;
    assert_eq!(write(&theirs[1], "/set/cart/2").await, Status::Ok);
    let their_keys = stored_keys(&*store, &other.key_prefix).await;
    assert_eq!(
        their_keys.len(),
        3,
        "two sessions and an index: {their_keys:?}"
    );

    let res = ours[0].post("/revoke-all").dispatch().await;
    assert_eq!(res.into_string().await.as_deref(), Some("3"));
    assert_eq!(whoami(&ours[0]).await, None);
    assert_eq!(whoami(&ours[1]).await, None);
    assert_eq!(read(&ours[2], "/get/cart").await.0, Status::NotFound);
    assert!(live_sessions(&*store, &config.key_prefix).await.is_empty());
    assert!(listed(&ours[0], "alice").await.is_empty());

    assert_eq!(stored_keys(&*store, &other.key_prefix).await, their_keys);
    assert_eq!(whoami(&theirs[0]).await.as_deref(), Some("alice"));
    assert_eq!(
        read(&theirs[1], "/get/cart").await,
        (Status::Ok, "2".into())
    );
    assert_eq!(listed(&theirs[0], "alice").await.len(), 1);
}

/// A revocation racing a slow write of the revoked session: the write
/// loaded the session before the revocation and saves after it; the
/// session stays gone.
pub async fn owners_revoke_wins_over_a_slow_write(store: Arc<dyn KeyValueStore>) {
    let config = config("app-owners-race");
    let prefix = config.key_prefix.clone();
    let gate = Arc::new(Gate::default());
    let victim = Client::tracked(owner_app(store.clone(), config.clone(), gate.clone()))
        .await
        .expect("launch");
    let admin = browser(&store, &config).await;
    login_as(&victim, "alice").await;

    let slow = victim.post("/slow/late").dispatch();
    let revoke = async {
        gate.loaded.notified().await;
        let ended = post(&admin, "/revoke-owner/alice").await;
        gate.release.notify_one();
        ended
    };
    let (slow, ended) = within(async { rocket::tokio::join!(slow, revoke) }).await;
    assert_eq!(slow.status(), Status::Ok);
    drop(slow);
    assert_eq!(ended, (Status::Ok, "1".into()));
    assert_eq!(whoami(&victim).await, None, "the revoked session came back");
    assert_eq!(read(&victim, "/get/late").await.0, Status::NotFound);
    assert!(live_sessions(&*store, &prefix).await.is_empty());
    assert!(listed(&admin, "alice").await.is_empty());
}

/// Expired sessions drop out: `sessions_of` never lists them, and the
/// sweep prunes the index of what it still names. Takes 9 seconds.
pub async fn owners_expired_sessions_drop_out(store: Arc<dyn KeyValueStore>) {
    use crate::clock::ManualClock;
    use crate::conformance::interference::InterferingStore;

    // On a clock the case moves, with the store's last-modified times taken
    // from it too: the keeper reads every 220 s against a 600 s idle
    // timeout, the other one stays idle for 880 s (past its deadline). A
    // store that expires records itself keeps the idle one (its TTL runs in
    // real time): its deadline, not the store, ends it.
    let config = SessionConfig {
        idle_timeout: Some(600),
        touch_after: 200,
        ..config("app-owners-expiry")
    };
    let clock = ManualClock::new();
    let stamped: Arc<dyn KeyValueStore> = Arc::new(
        InterferingStore::new(store.clone(), 0)
            .yields(0)
            .stamped_by(clock.clone()),
    );
    let browser = || async {
        let rocket =
            clocked_app(stamped.clone(), config.clone(), clock.clone()).mount("/", owner_routes());
        Client::tracked(rocket)
            .await
            .expect("the conformance app launches")
    };
    let client = browser().await;
    let keeper = browser().await;
    login_as(&client, "alice").await;
    let kept = login_as(&keeper, "alice").await;
    assert_eq!(listed(&client, "alice").await.len(), 2);
    for _ in 0..4 {
        clock.advance(Duration::from_secs(220));
        assert_eq!(whoami(&keeper).await.as_deref(), Some("alice"));
    }
    // The idle one is past its deadline, whatever the store still holds.
    let manager = client
        .rocket()
        .state::<SessionManager>()
        .expect("the fairing manages a SessionManager");
    let report = manager.cleanup().await.expect("sweep");
    assert_eq!(
        index_entries(&*store, &config, "alice").await,
        1,
        "{report:?}"
    );
    assert_eq!(
        handles(&listed(&keeper, "alice").await),
        HashSet::from([kept])
    );
    assert_eq!(whoami(&client).await, None);
}
