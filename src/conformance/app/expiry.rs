//! App-level cases of per-session expiry (`Session::set_lifetime`,
//! `Session::set_idle_timeout`) and of lifecycle events
//! (`KvSession::on_event`), run by every store, with a clock the cases move
//! ([`ManualClock`]) instead of sleeping.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rocket::http::Status;
use rocket::local::asynchronous::{Client, LocalResponse};
use rocket::{get, post, routes, State};

use super::{config, figment, owner_routes, read, write};
use crate::clock::ManualClock;
use crate::{
    Error, KeyValueStore, KvSession, Session, SessionConfig, SessionEvent, SessionEventKind,
    SessionManager,
};

const HOUR: u64 = 3600;
const DAY: u64 = 24 * HOUR;

/// Logs in as `user` with an owner; without `remember`, the session gets
/// 12 hours and a browser-session cookie.
#[post("/expiry-login/<user>/<remember>")]
async fn expiry_login(
    session: Session<'_>,
    user: &str,
    remember: bool,
) -> Result<&'static str, Error> {
    session.regenerate().await?;
    session.set_owner(user);
    session.insert("user", user)?;
    if !remember {
        session.set_lifetime(Duration::from_secs(12 * HOUR));
        session.set_permanent(false);
    }
    Ok("ok")
}

/// Gives the session its own lifetime of `secs` seconds.
#[post("/expiry-lifetime/<secs>")]
fn expiry_lifetime(session: Session<'_>, secs: u64) -> &'static str {
    session.set_lifetime(Duration::from_secs(secs));
    "ok"
}

/// Gives the session its own idle timeout of `secs` seconds (0: none).
#[post("/expiry-idle/<secs>")]
fn expiry_idle(session: Session<'_>, secs: u64) -> &'static str {
    session.set_idle_timeout((secs > 0).then(|| Duration::from_secs(secs)));
    "ok"
}

/// One sweep by the app's manager (with the app's clock); answers how many
/// sessions it deleted.
#[post("/expiry-sweep")]
async fn expiry_sweep(manager: &State<SessionManager>) -> Result<String, Error> {
    Ok(manager.cleanup().await?.deleted.to_string())
}

/// `SessionInfo::expires_at` of `user`'s sessions, as seconds from now,
/// one line each.
#[get("/expiry-of/<user>")]
async fn expiry_of(
    manager: &State<SessionManager>,
    clock: &State<ManualClock>,
    user: &str,
) -> Result<String, Error> {
    let now = clock.now();
    Ok(manager
        .sessions_of(user)
        .await?
        .iter()
        .map(|s| {
            s.expires_at
                .duration_since(now)
                .unwrap_or_default()
                .as_secs()
                .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n"))
}

/// The events an app emitted, in order.
type Log = Arc<Mutex<Vec<SessionEvent>>>;

/// An app on `store` whose clock is `clock` and whose events go to `log`.
async fn app(
    store: &Arc<dyn KeyValueStore>,
    config: &SessionConfig,
    clock: &ManualClock,
    log: &Log,
) -> Client {
    let sink = log.clone();
    let config = &super::carried(config.clone());
    let sessions = KvSession::from_arc(store.clone())
        .config(config.clone())
        .clock(clock.clone())
        .on_event(move |event| {
            sink.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(event.clone())
        });
    let rocket = super::carrying(rocket::custom(figment()).attach(sessions), config)
        .manage(clock.clone())
        .mount("/", super::routes())
        .mount("/", owner_routes())
        .mount(
            "/",
            routes![
                expiry_login,
                expiry_lifetime,
                expiry_idle,
                expiry_sweep,
                expiry_of
            ],
        );
    Client::tracked(rocket)
        .await
        .expect("the conformance app launches")
}

/// The `Max-Age` of the session cookie a response sets, if it sets one with it.
fn max_age(res: &LocalResponse<'_>, name: &str) -> Option<i64> {
    res.cookies()
        .get(name)
        .and_then(|c| c.max_age())
        .map(|d| d.whole_seconds())
}

/// Whether a response sets the session cookie at all.
fn sets_cookie(res: &LocalResponse<'_>, name: &str) -> bool {
    res.cookies().get(name).is_some()
}

async fn whoami(client: &Client) -> Option<String> {
    let (status, body) = read(client, "/whoami").await;
    (status == Status::Ok).then_some(body)
}

fn kinds(log: &Log) -> Vec<SessionEventKind> {
    log.lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(SessionEvent::kind)
        .collect()
}

/// "Remember me": with a 30-day `lifetime`, a login without the box gets
/// 12 hours and a browser-session cookie, a login with it a permanent
/// cookie of 30 days. Thirteen hours on (by the app's clock), the short
/// session has ended and the long one lives on.
pub async fn per_session_lifetime_ends_on_time(store: Arc<dyn KeyValueStore>) {
    let config = SessionConfig {
        lifetime: 30 * DAY,
        ..config("app-expiry-remember")
    };
    let clock = ManualClock::new();
    let log = Log::default();
    let short = app(&store, &config, &clock, &log).await;
    let long = app(&store, &config, &clock, &log).await;
    let res = short.post("/expiry-login/ann/false").dispatch().await;
    assert_eq!(res.status(), Status::Ok);
    assert!(sets_cookie(&res, &config.cookie_name));
    assert_eq!(
        max_age(&res, &config.cookie_name),
        None,
        "a browser-session cookie"
    );
    drop(res);
    let res = long.post("/expiry-login/ann/true").dispatch().await;
    assert_eq!(res.status(), Status::Ok);
    let age = max_age(&res, &config.cookie_name).expect("a permanent cookie");
    assert!(
        (30 * DAY as i64 - 5..=30 * DAY as i64).contains(&age),
        "{age}"
    );
    drop(res);
    let (_, expiries) = read(&long, "/expiry-of/ann").await;
    let mut expiries: Vec<u64> = expiries
        .lines()
        .map(|l| l.parse().expect("seconds"))
        .collect();
    expiries.sort_unstable();
    assert_eq!(expiries.len(), 2, "{expiries:?}");
    assert!(
        (12 * HOUR - 5..=12 * HOUR + 1).contains(&expiries[0]),
        "{expiries:?}"
    );
    assert!(
        (30 * DAY - 5..=30 * DAY + 1).contains(&expiries[1]),
        "{expiries:?}"
    );

    clock.advance(Duration::from_secs(11 * HOUR));
    assert_eq!(whoami(&short).await.as_deref(), Some("ann"));
    clock.advance(Duration::from_secs(2 * HOUR));
    assert_eq!(
        whoami(&short).await,
        None,
        "the 12-hour session outlived its lifetime"
    );
    assert_eq!(whoami(&long).await.as_deref(), Some("ann"));
    clock.advance(Duration::from_secs(20 * DAY));
    assert_eq!(whoami(&long).await.as_deref(), Some("ann"));
}

/// A lifetime above the configured one is capped (the cookie's `Max-Age`
/// says so), and a later `set_lifetime` in another request takes effect.
pub async fn per_session_lifetime_is_capped_and_can_change(store: Arc<dyn KeyValueStore>) {
    let config = SessionConfig {
        lifetime: HOUR,
        ..config("app-expiry-cap")
    };
    let clock = ManualClock::new();
    let log = Log::default();
    let client = app(&store, &config, &clock, &log).await;
    assert_eq!(write(&client, "/expiry-login/bo/true").await, Status::Ok);
    let res = client
        .post(format!("/expiry-lifetime/{}", 10 * DAY))
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::Ok);
    let age = max_age(&res, &config.cookie_name).expect("a new cookie for the new lifetime");
    assert!(
        (HOUR as i64 - 5..=HOUR as i64).contains(&age),
        "capped at the configured lifetime: {age}"
    );
    drop(res);
    let res = client.post("/expiry-lifetime/600").dispatch().await;
    let age = max_age(&res, &config.cookie_name).expect("a new cookie for the new lifetime");
    assert!((595..=600).contains(&age), "{age}");
    drop(res);
    clock.advance(Duration::from_secs(590));
    assert_eq!(whoami(&client).await.as_deref(), Some("bo"));
    clock.advance(Duration::from_secs(12));
    assert_eq!(
        whoami(&client).await,
        None,
        "the shorter lifetime set later applies"
    );

    // Kept across a rotation: the new id starts a new lifetime of the
    // session's own length, not the configured one.
    assert_eq!(write(&client, "/expiry-login/bo/true").await, Status::Ok);
    assert_eq!(write(&client, "/expiry-lifetime/600").await, Status::Ok);
    clock.advance(Duration::from_secs(100));
    let res = client.post("/regenerate").dispatch().await;
    assert_eq!(res.status(), Status::Ok);
    let age = max_age(&res, &config.cookie_name).expect("the rotated session's cookie");
    assert!((595..=600).contains(&age), "{age}");
    drop(res);
    clock.advance(Duration::from_secs(590));
    assert_eq!(whoami(&client).await.as_deref(), Some("bo"));
    clock.advance(Duration::from_secs(12));
    assert_eq!(
        whoami(&client).await,
        None,
        "its own lifetime survived the rotation"
    );
}

/// A session's own idle timeout: reads keep it alive (a touch at most every
/// half of it), and it ends that long after the last one, while a session
/// without one lives on.
pub async fn per_session_idle_timeout(store: Arc<dyn KeyValueStore>) {
    let config = SessionConfig {
        lifetime: DAY,
        ..config("app-expiry-idle")
    };
    let clock = ManualClock::new();
    let log = Log::default();
    let guarded = app(&store, &config, &clock, &log).await;
    let other = app(&store, &config, &clock, &log).await;
    assert_eq!(write(&guarded, "/expiry-login/cy/true").await, Status::Ok);
    assert_eq!(write(&guarded, "/expiry-idle/600").await, Status::Ok);
    assert_eq!(write(&other, "/expiry-login/cy/true").await, Status::Ok);
    for _ in 0..4 {
        clock.advance(Duration::from_secs(400));
        assert_eq!(
            whoami(&guarded).await.as_deref(),
            Some("cy"),
            "reads keep it alive"
        );
    }
    clock.advance(Duration::from_secs(602));
    assert_eq!(
        whoami(&guarded).await,
        None,
        "idle longer than its own timeout"
    );
    assert_eq!(whoami(&other).await.as_deref(), Some("cy"));
}

/// Events for a login, a rotation, a logout, a revocation, an expired load
/// and a sweep, each once; a failed save emits nothing; none names an id.
pub async fn session_events_are_emitted_once(store: Arc<dyn KeyValueStore>) {
    use SessionEventKind::*;
    let config = SessionConfig {
        lifetime: DAY,
        ..config("app-events")
    };
    let clock = ManualClock::new();
    let log = Log::default();
    let client = app(&store, &config, &clock, &log).await;
    assert_eq!(write(&client, "/expiry-login/dee/true").await, Status::Ok);
    assert_eq!(kinds(&log), [Created]);
    let first = log.lock().unwrap()[0].clone();
    assert_eq!(first.owner(), Some("dee"));
    assert_eq!(first.handle().map(str::len), Some(32));
    assert_eq!(write(&client, "/regenerate").await, Status::Ok);
    assert_eq!(kinds(&log), [Created, Rotated]);
    assert_eq!(write(&client, "/logout").await, Status::Ok);
    assert_eq!(kinds(&log), [Created, Rotated, Destroyed]);
    assert_eq!(log.lock().unwrap()[2].owner(), Some("dee"));

    // A failed request saves nothing and emits nothing.
    assert_eq!(
        write(&client, "/fail/k/v").await,
        Status::InternalServerError
    );
    assert_eq!(kinds(&log).len(), 3);

    // A revocation, from another browser.
    let admin = app(&store, &config, &clock, &log).await;
    assert_eq!(write(&client, "/expiry-login/dee/true").await, Status::Ok);
    log.lock().unwrap().clear();
    let res = admin.post("/revoke-owner/dee").dispatch().await;
    assert_eq!(res.status(), Status::Ok);
    assert_eq!(res.into_string().await.as_deref(), Some("1"));
    assert_eq!(kinds(&log), [Revoked]);
    assert_eq!(log.lock().unwrap()[0].owner(), Some("dee"));

    // A session found past its deadline on load: ended once, however often
    // its cookie comes back.
    assert_eq!(write(&client, "/expiry-login/dee/false").await, Status::Ok);
    log.lock().unwrap().clear();
    clock.advance(Duration::from_secs(13 * HOUR));
    assert_eq!(whoami(&client).await, None);
    assert_eq!(kinds(&log), [Expired]);
    assert_eq!(log.lock().unwrap()[0].owner(), Some("dee"));

    // The sweep: a session past the configured lifetime, deleted by key.
    let swept = app(&store, &config, &clock, &log).await;
    assert_eq!(write(&swept, "/set/a/1").await, Status::Ok);
    log.lock().unwrap().clear();
    clock.advance(Duration::from_secs(DAY + 2));
    let res = swept.post("/expiry-sweep").dispatch().await;
    assert_eq!(res.status(), Status::Ok);
    let deleted: u64 = res
        .into_string()
        .await
        .unwrap_or_default()
        .parse()
        .expect("a count");
    assert!(deleted >= 1, "the sweep deleted {deleted}");
    assert_eq!(kinds(&log), vec![Expired; deleted as usize]);
    assert_eq!(whoami(&swept).await, None);
}
