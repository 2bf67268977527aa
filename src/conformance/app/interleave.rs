//! Seeded interleavings of concurrent requests on two app instances that
//! share one store (two servers behind a load balancer, each with its own
//! in-process state), checked against every item of the design's
//! "Guarantees" that a scenario can reach.
//!
//! # How it works
//!
//! A seed decides a [`Scenario`]: a few users, a few browsers per user
//! (each with two tabs that share its cookie jar and send requests at the
//! same time), and an admin; each tab and the admin run a short list of
//! steps (logins, writes, reads, rotations, logouts, revocations of other
//! sessions, replays of old cookie copies; listings, `revoke`,
//! `revoke_owner`, `revoke_all`, sweeps, clock moves), each sent to one of
//! the two instances, and with one seed in four the instances are in the
//! middle of a rolling key rotation (the second one seals with a new
//! `secret_key`, each has the other's key as a fallback).
//! The store is wrapped in an
//! [`InterferingStore`](crate::conformance::interference::InterferingStore)
//! that reorders the store calls of the concurrent requests (seeded yields
//! before each call) and, for the fault cases, injects store errors and
//! spurious compare-and-swap conflicts. Every request is driven from one
//! task, the apps' random generators are seeded, and time is a
//! [`ManualClock`]: one seed replays one interleaving (exactly on the
//! embedded store; as closely as the backend allows on a real server).
//!
//! Every route answers what the request found when it loaded the session
//! (a tag the login stored, the id, the handle), and every request gets a
//! start and an end on one logical clock. After the steps, the checker
//! replays every cookie any browser ever held on both instances, and
//! checks:
//!
//! 1. (Guarantee 1) once a logout, `revoke`, `revoke_owner`,
//!    `revoke_other_sessions` or `revoke_all` reported success, no request
//!    that started afterwards, on either instance and with any copy of a
//!    cookie, found a session it named (nor the session a rotation racing
//!    it moved that session to); the final replay finds none either. A
//!    rotation leaves the old id unusable the same way.
//! 2. (Guarantee 2) once every request settled, `sessions_of` lists every
//!    live session of each owner, and `revoke_owner` then ends all of them;
//!    `revoke_all` leaves no live session.
//! 3. (Guarantee 3) every write that got a 2xx, and every login's session,
//!    is still there at the end, unless an ending named that session. (A
//!    save that loses to a concurrent rotation of its session answers 409:
//!    it is not a 2xx.) One known exemption: `revoke_other_sessions` may
//!    end the caller's own session when another tab rotates it meanwhile
//!    (the new id is not yet the caller's): it fails safe, logging that
//!    browser out. `INTERLEAVE_STRICT=1` counts it too.
//! 4. No 5xx other than 503, and 503 only where faults are injected (a
//!    panic in the engine would be a 500).
//!
//! A failing seed panics with `SEED=<n>`, the scenario and the violations;
//! the test that ran it says how to replay it (`INTERLEAVE_SEED=<n>`), and
//! `INTERLEAVE_TRACE=1` prints every request and store call.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use rocket::http::{Cookie, Status};
use rocket::local::asynchronous::Client;
use rocket::{get, post, routes, State};

use super::{config, live_sessions, SECRET_KEY};
use crate::clock::ManualClock;
use crate::conformance::interference::{Faults, InterferingStore};
use crate::{Error, KeyValueStore, KvSession, Session, SessionConfig, SessionManager};

/// The second instance's `secret_key` in key-rotation scenarios
/// ([`SECRET_KEY`] is its fallback).
const ROTATED_KEY: &str = "Rc1+7Q0rLQGZRo/gHFm9JqTIjZoDq0DbzcNx9ku2r1s=";

// ---------------------------------------------------------------------
// Routes: each answers what it found on load (`tag id handle`, `-` for
// none), then a line of its own.
// ---------------------------------------------------------------------

/// What a request found when it loaded its session.
fn found(session: &Session<'_>) -> String {
    if !session.is_stored() {
        return "- - -".into();
    }
    let tag = session
        .get::<String>("tag")
        .ok()
        .flatten()
        .unwrap_or_else(|| "-".into());
    let id = session.id().unwrap_or_else(|| "-".into());
    let handle = session.handle().unwrap_or_else(|| "-".into());
    format!("{tag} {id} {handle}")
}

/// Logs in as `user`: regenerates, sets the owner and `tag`; answers the
/// new handle.
#[post("/il/login/<user>/<tag>")]
async fn il_login(session: Session<'_>, user: &str, tag: &str) -> Result<String, Error> {
    let before = found(&session);
    session.regenerate().await?;
    session.set_owner(user);
    session.insert("tag", tag)?;
    Ok(format!(
        "{before}\n{}",
        session.handle().unwrap_or_default()
    ))
}

/// Sets `key`.
#[post("/il/set/<key>")]
fn il_set(session: Session<'_>, key: &str) -> Result<String, Error> {
    let before = found(&session);
    session.insert(key, "1")?;
    Ok(format!("{before}\n"))
}

/// The session's keys, but `tag`.
#[get("/il/read")]
fn il_read(session: Session<'_>) -> String {
    let keys: Vec<String> = session.keys().into_iter().filter(|k| k != "tag").collect();
    format!("{}\n{}", found(&session), keys.join(","))
}

/// Gives the session a new id; answers the new handle.
#[post("/il/rotate")]
async fn il_rotate(session: Session<'_>) -> Result<String, Error> {
    let before = found(&session);
    session.regenerate().await?;
    Ok(format!(
        "{before}\n{}",
        session.handle().unwrap_or_default()
    ))
}

/// Ends the session.
#[post("/il/logout")]
async fn il_logout(session: Session<'_>) -> Result<String, Error> {
    let before = found(&session);
    session.destroy().await?;
    Ok(format!("{before}\n"))
}

/// `revoke_other_sessions()`: how many ended.
#[post("/il/revoke-others")]
async fn il_revoke_others(session: Session<'_>) -> Result<String, Error> {
    let before = found(&session);
    let n = session.revoke_other_sessions().await?;
    Ok(format!("{before}\n{n}"))
}

/// `sessions_of(user)`: one handle a line.
#[get("/il/list/<user>")]
async fn il_list(manager: &State<SessionManager>, user: &str) -> Result<String, Error> {
    let listed = manager.sessions_of(user).await?;
    Ok(listed
        .iter()
        .map(|s| s.handle.as_str())
        .collect::<Vec<_>>()
        .join("\n"))
}

/// `revoke(user, handle)`.
#[post("/il/revoke/<user>/<handle>")]
async fn il_revoke(
    manager: &State<SessionManager>,
    user: &str,
    handle: &str,
) -> Result<String, Error> {
    Ok(manager.revoke(user, handle).await?.to_string())
}

/// `revoke_owner(user)`.
#[post("/il/revoke-owner/<user>")]
async fn il_revoke_owner(manager: &State<SessionManager>, user: &str) -> Result<String, Error> {
    Ok(manager.revoke_owner(user).await?.to_string())
}

/// `revoke_all()`.
#[post("/il/revoke-all")]
async fn il_revoke_all(manager: &State<SessionManager>) -> Result<String, Error> {
    Ok(manager.revoke_all().await?.to_string())
}

/// One sweep by the app's manager (on the app's clock).
#[post("/il/sweep")]
async fn il_sweep(manager: &State<SessionManager>) -> Result<String, Error> {
    Ok(manager.cleanup().await?.deleted.to_string())
}

/// The routes of the interleaving scenarios.
pub fn interleave_routes() -> Vec<rocket::Route> {
    routes![
        il_login,
        il_set,
        il_read,
        il_rotate,
        il_logout,
        il_revoke_others,
        il_list,
        il_revoke,
        il_revoke_owner,
        il_revoke_all,
        il_sweep
    ]
}

// ---------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------

/// One step of a browser tab.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TabStep {
    /// Logs in again (a new tag, the session rotated).
    Login,
    /// Sets a key of its own.
    Write,
    /// Reads the session.
    Read,
    /// `regenerate()`.
    Rotate,
    /// `destroy()`.
    Logout,
    /// `revoke_other_sessions()`.
    RevokeOthers,
    /// Reads with the `n`-th cookie this browser ever held (a copy of an
    /// old cookie: another device, an attacker), not updating the jar.
    Replay(u8),
}

/// One step of the admin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminStep {
    /// `sessions_of(user)`.
    List(u8),
    /// `revoke(user, handle)` of the `n`-th handle known of that user.
    Revoke(u8, u8),
    /// `revoke_owner(user)`.
    RevokeOwner(u8),
    /// `revoke_all()`.
    RevokeAll,
    /// One sweep.
    Sweep,
    /// Moves the apps' clock forward by this many seconds (short of any
    /// timeout, past `touch_after`).
    Advance(u16),
}

/// Who sends a step, and to which instance (0 or 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent<S> {
    /// The step.
    pub step: S,
    /// The instance that serves it.
    pub instance: u8,
}

/// What a seed decides.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// The seed.
    pub seed: u64,
    /// How many users (owners).
    pub users: u8,
    /// Per browser: its user, and the steps of each of its two tabs.
    pub browsers: Vec<(u8, [Vec<Sent<TabStep>>; 2])>,
    /// The admin's steps.
    pub admin: Vec<Sent<AdminStep>>,
    /// Whether the instances are in the middle of a key rotation (see
    /// [`ROTATED_KEY`]).
    pub key_rotation: bool,
    /// Whether sessions have an idle timeout (so reads touch them).
    pub idle_timeout: bool,
    /// The faults the store injects.
    pub faults: Faults,
    /// How many yields the store may insert before each call.
    pub max_yields: u32,
}

/// Which kinds of scenarios a run generates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mix {
    /// The most steps per tab.
    pub tab_steps: u32,
    /// Whether to inject faults.
    pub faults: bool,
    /// Whether tabs rotate their sessions (`regenerate()`, logins) while
    /// the other requests run; without, only the first logins rotate.
    pub rotations: bool,
    /// Whether several browsers share an owner (else each browser logs in
    /// as a user of its own).
    pub shared_owners: bool,
    /// Whether tabs call `revoke_other_sessions()`.
    pub revoke_others: bool,
    /// Whether both tabs of a browser rotate (else only the first one).
    pub both_tabs_rotate: bool,
    /// Whether the admin lists, revokes and sweeps while the tabs run (else
    /// it only moves the clock).
    pub admin_index_ops: bool,
}

impl Mix {
    /// Every kind of step, without faults.
    pub const CALM: Mix = Mix {
        tab_steps: 5,
        faults: false,
        rotations: true,
        shared_owners: true,
        revoke_others: true,
        both_tabs_rotate: true,
        admin_index_ops: true,
    };
    /// Every kind of step, with faults: store errors before and after
    /// calls, and spurious conflicts.
    pub const FAULTY: Mix = Mix {
        faults: true,
        ..Mix::CALM
    };

    /// The mix the default runs use: the whole of it. (While the engine
    /// dropped a rotated session from its owner's index when the rotation
    /// raced other index writers, the default runs left racing rotations
    /// out; `INTERLEAVE_ROTATIONS` is still accepted and changes nothing.)
    pub fn default_run(self, _shared: bool) -> Mix {
        self
    }
}

impl Scenario {
    /// The scenario of `seed`.
    pub fn generate(seed: u64, mix: Mix) -> Scenario {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let mut below = |n: u32| rng.next_u32() % n;
        let (users, browsers) = (1 + below(2) as u8, 2 + below(2));
        let users = if mix.shared_owners {
            users
        } else {
            browsers as u8
        };
        let browsers = (0..browsers)
            .map(|b| {
                let user = (b % u32::from(users)) as u8;
                let mut tab = |rotates: bool| {
                    (0..1 + below(mix.tab_steps))
                        .map(|_| {
                            let mut step = match below(100) {
                                0..=39 => TabStep::Write,
                                40..=54 => TabStep::Read,
                                55..=66 => TabStep::Rotate,
                                67..=74 => TabStep::Login,
                                75..=83 => TabStep::Logout,
                                84..=89 => TabStep::RevokeOthers,
                                _ => TabStep::Replay(below(8) as u8),
                            };
                            if !rotates && matches!(step, TabStep::Rotate | TabStep::Login)
                                || !mix.revoke_others && step == TabStep::RevokeOthers
                            {
                                step = TabStep::Write;
                            }
                            Sent {
                                step,
                                instance: below(2) as u8,
                            }
                        })
                        .collect::<Vec<_>>()
                };
                let tabs = [
                    tab(mix.rotations),
                    tab(mix.rotations && mix.both_tabs_rotate),
                ];
                (user, tabs)
            })
            .collect();
        let admin = (0..below(5))
            .map(|_| {
                let user = below(u32::from(users)) as u8;
                let draw = match mix.admin_index_ops {
                    true => below(100),
                    false => 99,
                };
                let step = match draw {
                    0..=19 => AdminStep::List(user),
                    20..=39 => AdminStep::Revoke(user, below(8) as u8),
                    40..=54 => AdminStep::RevokeOwner(user),
                    55..=59 => AdminStep::RevokeAll,
                    60..=79 => AdminStep::Sweep,
                    _ => AdminStep::Advance(30 + below(150) as u16),
                };
                Sent {
                    step,
                    instance: below(2) as u8,
                }
            })
            .collect();
        let faults = if mix.faults {
            Faults {
                error_before: 10 + below(40),
                error_after: below(2) * (10 + below(30)),
                conflict: 20 + below(80),
            }
        } else {
            Faults::NONE
        };
        Scenario {
            seed,
            users,
            browsers,
            admin,
            key_rotation: below(4) == 0,
            idle_timeout: below(2) == 0,
            faults,
            max_yields: 2 + below(8),
        }
    }
}

// ---------------------------------------------------------------------
// Running a scenario
// ---------------------------------------------------------------------

/// What a request found on load.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Found {
    tag: Option<String>,
    id: Option<String>,
    handle: Option<String>,
}

fn dash(s: &str) -> Option<String> {
    (s != "-" && !s.is_empty()).then(|| s.to_owned())
}

impl Found {
    fn parse(line: &str) -> Found {
        let mut words = line.split(' ');
        let mut next = || words.next().and_then(dash);
        Found {
            tag: next(),
            id: next(),
            handle: next(),
        }
    }
}

/// What a request was.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    Login { user: u8, tag: String },
    Write { key: String },
    Read,
    Rotate,
    Logout,
    RevokeOthers { user: u8 },
    Replay,
    List { user: u8 },
    Revoke { user: u8, handle: String },
    RevokeOwner { user: u8 },
    RevokeAll,
    Sweep,
}

/// One request as the checker sees it.
#[derive(Debug, Clone)]
struct Event {
    who: String,
    instance: u8,
    op: Op,
    start: u64,
    end: u64,
    status: Status,
    found: Found,
    /// The answer's second line.
    payload: String,
    /// Whether the response set a session cookie.
    sets_cookie: bool,
}

/// A browser's cookie jar, shared by its tabs.
#[derive(Debug, Default)]
struct Jar {
    current: Option<Cookie<'static>>,
    history: Vec<Cookie<'static>>,
}

/// Everything one run shares between its actors.
struct Run<'a> {
    scenario: &'a Scenario,
    clients: [Client; 2],
    cookie_name: String,
    clock: ManualClock,
    tick: AtomicU64,
    events: Mutex<Vec<Event>>,
    jars: Vec<Mutex<Jar>>,
    trace: bool,
}

impl Run<'_> {
    fn user(n: u8) -> String {
        format!("user{n}")
    }

    /// Sends one request with `cookie`; records it; returns the cookie the
    /// response set (`Some(None)`: removed).
    #[allow(clippy::too_many_arguments)]
    async fn send(
        &self,
        who: &str,
        instance: u8,
        post: bool,
        uri: String,
        op: Op,
        cookie: Option<Cookie<'static>>,
    ) -> (Event, Option<Option<Cookie<'static>>>) {
        let client = &self.clients[usize::from(instance)];
        let mut request = match post {
            true => client.post(uri.clone()),
            false => client.get(uri.clone()),
        };
        if let Some(cookie) = cookie {
            request = request.cookie(cookie);
        }
        let start = self.tick.fetch_add(1, SeqCst);
        let res = request.dispatch().await;
        let status = res.status();
        let mut set = None;
        for header in res.headers().get("Set-Cookie") {
            let Ok(cookie) = Cookie::parse(header.to_owned()) else {
                continue;
            };
            if cookie.name() == self.cookie_name {
                let removed =
                    cookie.value().is_empty() || cookie.max_age().is_some_and(|age| age.is_zero());
                set = Some((!removed).then(|| cookie.into_owned()));
            }
        }
        let body = res.into_string().await.unwrap_or_default();
        let end = self.tick.fetch_add(1, SeqCst);
        let (first, payload) = body.split_once('\n').unwrap_or((&body, ""));
        let found = match op {
            Op::List { .. }
            | Op::Revoke { .. }
            | Op::RevokeOwner { .. }
            | Op::RevokeAll
            | Op::Sweep => Found::default(),
            _ if status.class().is_success() => Found::parse(first),
            _ => Found::default(),
        };
        let payload = match op {
            Op::List { .. }
            | Op::Revoke { .. }
            | Op::RevokeOwner { .. }
            | Op::RevokeAll
            | Op::Sweep => body.clone(),
            _ => payload.to_owned(),
        };
        let event = Event {
            who: who.to_owned(),
            instance,
            op,
            start,
            end,
            status,
            found,
            payload,
            sets_cookie: matches!(set, Some(Some(_))),
        };
        if self.trace {
            eprintln!("request {event:?} sets {set:?}");
        }
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(event.clone());
        (event, set)
    }

    /// Sends a tab's request with its jar's cookie and keeps what it set.
    async fn send_as(
        &self,
        browser: usize,
        who: &str,
        instance: u8,
        post: bool,
        uri: String,
        op: Op,
    ) {
        let cookie = self.jars[browser].lock().unwrap().current.clone();
        let (_, set) = self.send(who, instance, post, uri, op, cookie).await;
        if let Some(set) = set {
            let mut jar = self.jars[browser].lock().unwrap();
            if let Some(cookie) = &set {
                jar.history.push(cookie.clone());
            }
            jar.current = set;
        }
    }

    async fn tab(&self, browser: usize, tab: usize, user: u8, steps: &[Sent<TabStep>]) {
        for (n, sent) in steps.iter().enumerate() {
            let who = format!("b{browser}t{tab}s{n}");
            let instance = sent.instance;
            match sent.step {
                TabStep::Login => {
                    let (u, tag) = (Self::user(user), format!("{who}-login"));
                    let op = Op::Login {
                        user,
                        tag: tag.clone(),
                    };
                    let uri = format!("/il/login/{u}/{tag}");
                    self.send_as(browser, &who, instance, true, uri, op).await;
                }
                TabStep::Write => {
                    let key = format!("k{who}");
                    let uri = format!("/il/set/{key}");
                    let op = Op::Write { key };
                    self.send_as(browser, &who, instance, true, uri, op).await;
                }
                TabStep::Read => {
                    let uri = "/il/read".into();
                    self.send_as(browser, &who, instance, false, uri, Op::Read)
                        .await;
                }
                TabStep::Rotate => {
                    let uri = "/il/rotate".into();
                    self.send_as(browser, &who, instance, true, uri, Op::Rotate)
                        .await;
                }
                TabStep::Logout => {
                    let uri = "/il/logout".into();
                    self.send_as(browser, &who, instance, true, uri, Op::Logout)
                        .await;
                }
                TabStep::RevokeOthers => {
                    let uri = "/il/revoke-others".into();
                    let op = Op::RevokeOthers { user };
                    self.send_as(browser, &who, instance, true, uri, op).await;
                }
                TabStep::Replay(pick) => {
                    let cookie = {
                        let jar = self.jars[browser].lock().unwrap();
                        let n = jar.history.len().max(1);
                        jar.history.get(usize::from(pick) % n).cloned()
                    };
                    let uri = "/il/read".to_owned();
                    let _ = self
                        .send(&who, instance, false, uri, Op::Replay, cookie)
                        .await;
                }
            }
        }
    }

    /// The handles of `user`'s sessions the run has seen so far (from
    /// logins, rotations and listings), oldest first.
    fn known_handles(&self, user: u8) -> Vec<String> {
        let events = self.events.lock().unwrap();
        let mut handles: Vec<String> = Vec::new();
        for event in events.iter().filter(|e| e.status.class().is_success()) {
            let of_user = match &event.op {
                Op::Login { user: u, .. } => *u == user,
                Op::List { user: u } => *u == user,
                Op::Rotate => true,
                _ => false,
            };
            if of_user {
                for handle in event.payload.lines().filter_map(dash) {
                    if !handles.contains(&handle) {
                        handles.push(handle);
                    }
                }
            }
        }
        handles
    }

    async fn admin(&self, steps: &[Sent<AdminStep>]) {
        for (n, sent) in steps.iter().enumerate() {
            let who = format!("admin{n}");
            let instance = sent.instance;
            let (post, uri, op) = match sent.step {
                AdminStep::List(u) => (
                    false,
                    format!("/il/list/{}", Self::user(u)),
                    Op::List { user: u },
                ),
                AdminStep::Revoke(u, pick) => {
                    let known = self.known_handles(u);
                    let Some(handle) = known.get(usize::from(pick) % known.len().max(1)) else {
                        continue;
                    };
                    (
                        true,
                        format!("/il/revoke/{}/{handle}", Self::user(u)),
                        Op::Revoke {
                            user: u,
                            handle: handle.clone(),
                        },
                    )
                }
                AdminStep::RevokeOwner(u) => (
                    true,
                    format!("/il/revoke-owner/{}", Self::user(u)),
                    Op::RevokeOwner { user: u },
                ),
                AdminStep::RevokeAll => (true, "/il/revoke-all".into(), Op::RevokeAll),
                AdminStep::Sweep => (true, "/il/sweep".into(), Op::Sweep),
                AdminStep::Advance(secs) => {
                    self.clock.advance(Duration::from_secs(secs.into()));
                    // Let the others run between two admin steps.
                    rocket::tokio::task::yield_now().await;
                    continue;
                }
            };
            let _ = self.send(&who, instance, post, uri, op, None).await;
        }
    }
}

/// Builds one instance. In a key rotation (`rotating`), as in the middle
/// of a rolling deploy of a new key, instance 0 still seals with
/// [`SECRET_KEY`] and instance 1 already with [`ROTATED_KEY`], each with
/// the other key as its fallback.
async fn instance(
    store: &InterferingStore,
    config: &SessionConfig,
    clock: &ManualClock,
    seed: u64,
    (index, rotating): (u8, bool),
) -> Client {
    let (key, fallbacks) = match (index, rotating) {
        (_, false) => (SECRET_KEY, vec![]),
        (0, true) => (SECRET_KEY, vec![ROTATED_KEY.into()]),
        (_, true) => (ROTATED_KEY, vec![SECRET_KEY.into()]),
    };
    let config = super::carried(SessionConfig {
        secret_key_fallbacks: fallbacks,
        ..config.clone()
    });
    let figment = rocket::Config::figment()
        .merge(("secret_key", key))
        .merge(("log_level", "off"));
    let sessions = KvSession::from_arc(Arc::new(store.clone()))
        .config(config.clone())
        .clock(clock.clone())
        .rng(ChaCha20Rng::seed_from_u64(seed));
    let rocket = super::carrying(rocket::custom(figment).attach(sessions), &config)
        .mount("/", interleave_routes());
    Client::untracked(rocket)
        .await
        .expect("the interleaving app launches")
}

/// Runs the scenario of `seed` on `store` and checks it: `Some` report
/// (`SEED=<seed>`, the violations, the scenario, and `replay`: how to run
/// this seed alone) if it broke a guarantee.
pub async fn interleaving_violations(
    store: Arc<dyn KeyValueStore>,
    seed: u64,
    mix: Mix,
    replay: &str,
) -> Option<String> {
    let scenario = Scenario::generate(seed, mix);
    let violations = run_scenario(store, &scenario).await.err()?;
    Some(format!(
        "SEED={seed}: {} violation(s) of the guarantees\n  {}\nscenario: {scenario:?}\n\
         replay: INTERLEAVE_SEED={seed} {replay} (INTERLEAVE_TRACE=1 prints every request \
         and store call)",
        violations.len(),
        violations.join("\n  "),
    ))
}

/// [`interleaving_violations`], panicking with its report.
pub async fn check_interleaving(store: Arc<dyn KeyValueStore>, seed: u64, mix: Mix, replay: &str) {
    if let Some(report) = interleaving_violations(store, seed, mix, replay).await {
        panic!("{report}");
    }
}

/// Runs `scenario` on `store`; `Err` lists the violations.
pub async fn run_scenario(
    store: Arc<dyn KeyValueStore>,
    scenario: &Scenario,
) -> Result<(), Vec<String>> {
    let clock = ManualClock::new();
    let store = InterferingStore::new(store, scenario.seed)
        .yields(scenario.max_yields)
        .faults(scenario.faults)
        .stamped_by(clock.clone());
    let config = SessionConfig {
        lifetime: 24 * 3600,
        idle_timeout: scenario.idle_timeout.then_some(3600),
        touch_after: 60,
        ..config("app-interleave")
    };
    let prefix = config.key_prefix.clone();
    let seed = scenario.seed;
    let clients = [
        instance(
            &store,
            &config,
            &clock,
            seed.wrapping_mul(2),
            (0, scenario.key_rotation),
        )
        .await,
        instance(
            &store,
            &config,
            &clock,
            seed.wrapping_mul(2) + 1,
            (1, scenario.key_rotation),
        )
        .await,
    ];
    let run = Run {
        scenario,
        clients,
        cookie_name: config.cookie_name.clone(),
        clock: clock.clone(),
        tick: AtomicU64::new(0),
        events: Mutex::default(),
        jars: scenario.browsers.iter().map(|_| Mutex::default()).collect(),
        trace: std::env::var_os("INTERLEAVE_TRACE").is_some(),
    };

    // Every browser logs in first, one after the other, on instance 0.
    for (b, (user, _)) in scenario.browsers.iter().enumerate() {
        let who = format!("b{b}");
        let tag = format!("{who}-login");
        let op = Op::Login {
            user: *user,
            tag: tag.clone(),
        };
        let uri = format!("/il/login/{}/{tag}", Run::user(*user));
        run.send_as(b, &who, 0, true, uri, op).await;
    }
    // Then every tab and the admin at once, on one task.
    let mut actors: Vec<futures_util::future::LocalBoxFuture<'_, ()>> = Vec::new();
    for (b, (user, tabs)) in scenario.browsers.iter().enumerate() {
        for (t, steps) in tabs.iter().enumerate() {
            let run = &run;
            actors.push(Box::pin(async move { run.tab(b, t, *user, steps).await }));
        }
    }
    actors.push(Box::pin(run.admin(&scenario.admin)));
    futures_util::future::join_all(actors).await;

    // Settled: no more interference while the outcome is read.
    store.calm();
    let mut checker = Checker::new(&run, &store);
    checker.check_run();
    checker.check_settled(&run, &store, &prefix).await;
    if checker.violations.is_empty() {
        Ok(())
    } else {
        Err(checker.violations)
    }
}

// ---------------------------------------------------------------------
// The checker
// ---------------------------------------------------------------------

/// A session as the run knows it: the tag a login gave it.
#[derive(Debug, Clone)]
struct Lineage {
    user: u8,
    login: Event,
    /// The tag the login's request found (the session it rotated).
    parent: Option<String>,
}

struct Checker {
    events: Vec<Event>,
    faults: bool,
    /// Every tag a login tried to give, by tag.
    lineages: BTreeMap<String, Lineage>,
    /// Tag -> the logical time after which no request may find it.
    dead: BTreeMap<String, (u64, String)>,
    /// Tags an ending may have ended without naming them: sessions whose
    /// login raced a revocation of their owner, sessions an ending that
    /// failed could reach, and (known engine behaviour, checked only with
    /// `INTERLEAVE_STRICT=1`) the caller's own session, rotated by another
    /// tab while `revoke_other_sessions` ran.
    maybe_dead: BTreeSet<String>,
    cookies: Vec<Cookie<'static>>,
    /// The writes and logins whose change must show at the end: the
    /// request, the tags its session may now have, the key it set.
    expected: Vec<(Event, BTreeSet<String>, Option<String>)>,
    violations: Vec<String>,
}

impl Checker {
    fn new(run: &Run<'_>, store: &InterferingStore) -> Checker {
        let events = run.events.lock().unwrap().clone();
        let cookies = run
            .jars
            .iter()
            .flat_map(|jar| jar.lock().unwrap().history.clone())
            .collect();
        let mut checker = Checker {
            events,
            faults: run.scenario.faults.any() && store.injected() > 0,
            lineages: BTreeMap::new(),
            dead: BTreeMap::new(),
            maybe_dead: BTreeSet::new(),
            cookies,
            expected: Vec::new(),
            violations: Vec::new(),
        };
        checker.collect_lineages();
        checker.collect_endings();
        checker
    }

    fn violation(&mut self, text: String) {
        self.violations.push(text);
    }

    fn collect_lineages(&mut self) {
        for event in &self.events {
            if let Op::Login { user, tag } = &event.op {
                self.lineages.insert(
                    tag.clone(),
                    Lineage {
                        user: *user,
                        login: event.clone(),
                        parent: event.found.tag.clone(),
                    },
                );
            }
        }
    }

    /// The tags that descend from `tag` by logins from its session, `tag`
    /// included.
    fn descendants(&self, tag: &str) -> BTreeSet<String> {
        let mut all = BTreeSet::from([tag.to_owned()]);
        loop {
            let more: Vec<String> = self
                .lineages
                .iter()
                .filter(|(t, l)| {
                    !all.contains(*t) && l.parent.as_ref().is_some_and(|p| all.contains(p))
                })
                .map(|(t, _)| t.clone())
                .collect();
            if more.is_empty() {
                return all;
            }
            all.extend(more);
        }
    }

    /// The tags whose login got a 2xx before `before`, of `user` (any user
    /// for `None`).
    fn logged_in_before(&self, before: u64, user: Option<u8>) -> Vec<String> {
        self.lineages
            .iter()
            .filter(|(_, l)| {
                l.login.status.class().is_success()
                    && l.login.end < before
                    && user.is_none_or(|u| u == l.user)
            })
            .map(|(t, _)| t.clone())
            .collect()
    }

    /// The handle -> tags map of the handles logins and rotations answered
    /// (a session keeps its handle across rotations and logins).
    fn handle_tags(&self) -> HashMap<String, BTreeSet<String>> {
        let mut map: HashMap<String, BTreeSet<String>> = HashMap::new();
        for event in self.events.iter().filter(|e| e.status.class().is_success()) {
            let tag = match &event.op {
                Op::Login { tag, .. } => Some(tag.clone()),
                Op::Rotate => event.found.tag.clone(),
                _ => None,
            };
            if let (Some(tag), Some(handle)) = (tag, dash(event.payload.trim())) {
                map.entry(handle).or_default().insert(tag);
            }
        }
        map
    }

    /// Sessions whose login ran while a revocation of their owner did: the
    /// revocation may end them or not.
    fn racing_logins(&self, ending: &Event, user: Option<u8>) -> BTreeSet<String> {
        self.lineages
            .iter()
            .filter(|(_, l)| {
                user.is_none_or(|u| u == l.user)
                    && l.login.start < ending.end
                    && ending.start < l.login.end
            })
            .flat_map(|(t, _)| self.descendants(t))
            .collect()
    }

    /// Marks `tag` ended at `at` by `why`, and the sessions logins made
    /// from it before then.
    fn kill(&mut self, tag: &str, at: u64, why: &str) {
        let mut pending = vec![tag.to_owned()];
        while let Some(tag) = pending.pop() {
            let entry = self.dead.entry(tag.clone()).or_insert((at, why.to_owned()));
            if at < entry.0 {
                *entry = (at, why.to_owned());
            }
            for (child, l) in &self.lineages {
                if l.parent.as_deref() == Some(tag.as_str())
                    && l.login.start < at
                    && self.dead.get(child).is_none_or(|d| d.0 > at)
                {
                    pending.push(child.clone());
                }
            }
        }
    }

    /// The endings that reported success, and what each names.
    fn collect_endings(&mut self) {
        let handles = self.handle_tags();
        let mut endings: Vec<(Vec<String>, u64, String)> = Vec::new();
        let events = self.events.clone();
        for event in &events {
            let ok = event.status.class().is_success();
            if !ok {
                // An ending that failed may still have ended what it was
                // after (an error after the store did it), and its answer
                // does not say what it found: any session it could reach.
                let browser = browser_of(&event.who);
                let reachable = match &event.op {
                    Op::Logout => self
                        .lineages
                        .iter()
                        .filter(|(_, l)| browser_of(&l.login.who) == browser)
                        .map(|(t, _)| t.clone())
                        .collect(),
                    Op::Revoke { handle, .. } => {
                        handles.get(handle).cloned().into_iter().flatten().collect()
                    }
                    Op::RevokeOthers { user } | Op::RevokeOwner { user } => {
                        self.logged_in_before(event.end, Some(*user))
                    }
                    Op::RevokeAll => self.logged_in_before(event.end, None),
                    _ => Vec::new(),
                };
                for tag in reachable {
                    let lineage = self.descendants(&tag);
                    self.maybe_dead.extend(lineage);
                }
                continue;
            }
            let why = format!("{} {:?} (ended at {})", event.who, event.op, event.end);
            let named = match &event.op {
                Op::Logout => event.found.tag.iter().cloned().collect(),
                Op::Revoke { handle, .. } if event.payload.trim() == "true" => {
                    handles.get(handle).cloned().into_iter().flatten().collect()
                }
                Op::RevokeOwner { user } => {
                    let racing = self.racing_logins(event, Some(*user));
                    self.maybe_dead.extend(racing);
                    self.logged_in_before(event.start, Some(*user))
                }
                Op::RevokeAll => {
                    let racing = self.racing_logins(event, None);
                    self.maybe_dead.extend(racing);
                    self.logged_in_before(event.start, None)
                }
                Op::RevokeOthers { user } => {
                    // Its own session, and what it was before its logins, stay.
                    let Some(own) = &event.found.tag else {
                        continue;
                    };
                    if !strict() {
                        let overlaps = |r: &Event| r.start < event.end && event.start < r.end;
                        let own_rotated = events.iter().any(|r| {
                            r.op == Op::Rotate && r.found.tag.as_ref() == Some(own) && overlaps(r)
                        });
                        let racing: Vec<String> = self
                            .descendants(own)
                            .into_iter()
                            .filter(|t| {
                                own_rotated
                                    || self.lineages.get(t).is_some_and(|l| overlaps(&l.login))
                            })
                            .collect();
                        self.maybe_dead.extend(racing);
                    }
                    let racing = self.racing_logins(event, Some(*user));
                    self.maybe_dead.extend(racing);
                    let mut kept = BTreeSet::from([own.clone()]);
                    let mut at = own.clone();
                    while let Some(parent) = self.lineages.get(&at).and_then(|l| l.parent.clone()) {
                        kept.insert(parent.clone());
                        at = parent;
                    }
                    self.logged_in_before(event.start, Some(*user))
                        .into_iter()
                        .filter(|t| !kept.contains(t))
                        .collect()
                }
                _ => continue,
            };
            endings.push((named, event.end, why));
        }
        for (named, at, why) in endings {
            for tag in named {
                self.kill(&tag, at, &why);
            }
        }
    }

    /// The checks on the requests of the run itself.
    fn check_run(&mut self) {
        let events = self.events.clone();
        // Statuses: only 503 (and only under faults) among the 5xx.
        for e in &events {
            let allowed = match e.status.code {
                200..=499 => true,
                503 => self.faults,
                _ => false,
            };
            if !allowed {
                self.violation(format!(
                    "status {} for {} {:?} on instance {} (faults injected: {})",
                    e.status, e.who, e.op, e.instance, self.faults
                ));
            }
        }
        // A login that answered 2xx gave the browser its new session, unless
        // an ending of the session it found won first (a lost race with
        // another rotation answers 409).
        for e in &events {
            if !(e.status.class().is_success() && matches!(e.op, Op::Login { .. })) {
                continue;
            }
            let ended = e
                .found
                .tag
                .as_ref()
                .is_some_and(|t| self.dead.contains_key(t) || self.maybe_dead.contains(t))
                || e.found
                    .id
                    .as_ref()
                    .is_some_and(|id| ended_anonymous(&events, id))
                || events
                    .iter()
                    .any(|r| r.is_ending() && r.start < e.end && e.start < r.end);
            if !e.sets_cookie && !ended {
                self.violation(format!(
                    "{} {:?} (instance {}) answered {} without a new cookie",
                    e.who, e.op, e.instance, e.status
                ));
            }
        }
        // Guarantee 1: nothing finds an ended session afterwards.
        for e in &events {
            let Some(tag) = &e.found.tag else { continue };
            if let Some((at, why)) = self.dead.get(tag).cloned() {
                if e.start > at {
                    self.violation(format!(
                        "{} {:?} (started at {}, instance {}) found session {tag}, ended by {why}",
                        e.who, e.op, e.start, e.instance
                    ));
                }
            }
        }
        // A rotation that answered 2xx leaves the old id unusable.
        let rotated: Vec<(String, u64, String)> = events
            .iter()
            .filter(|e| e.status.class().is_success())
            .filter(|e| matches!(e.op, Op::Rotate | Op::Login { .. }))
            .filter_map(|e| {
                let id = e.found.id.clone()?;
                Some((id, e.end, format!("{} {:?}", e.who, e.op)))
            })
            .collect();
        for e in &events {
            let Some(id) = &e.found.id else { continue };
            for (old, at, why) in &rotated {
                if id == old && e.start > *at {
                    self.violation(format!(
                        "{} {:?} (started at {}) opened id {id} after {why} rotated it away (at {at})",
                        e.who, e.op, e.start
                    ));
                }
            }
        }
        // Which writes and logins must still show at the end.
        let rotations: Vec<&Event> = events
            .iter()
            .filter(|e| matches!(e.op, Op::Rotate | Op::Login { .. }))
            .collect();
        let mut expected = Vec::new();
        for e in events.iter().filter(|e| e.status.class().is_success()) {
            let (tag, key) = match &e.op {
                Op::Write { key } => match &e.found.tag {
                    Some(tag) => (tag.clone(), Some(key.clone())),
                    None => continue,
                },
                // A login whose (anonymous) session a logout ended first
                // stays logged out.
                Op::Login { .. }
                    if e.found
                        .id
                        .as_ref()
                        .is_some_and(|id| ended_anonymous(&events, id)) =>
                {
                    continue
                }
                Op::Login { tag, .. } => (tag.clone(), None),
                _ => continue,
            };
            let lineage = self.descendants(&tag);
            if lineage
                .iter()
                .any(|t| self.dead.contains_key(t) || self.maybe_dead.contains(t))
            {
                continue;
            }
            // A rotation by the same browser that failed may have moved the
            // session to an id no browser got (a reply lost to a fault);
            // its answer does not say which session it found.
            let browser = browser_of(&e.who);
            if self.faults
                && rotations
                    .iter()
                    .any(|r| !r.status.class().is_success() && browser_of(&r.who) == browser)
            {
                continue;
            }
            expected.push((e.clone(), lineage, key));
        }
        self.expected = expected;
    }

    /// The checks once every request settled: the final replay of every
    /// cookie, the owner listing and `revoke_owner`, `revoke_all`.
    async fn check_settled(&mut self, run: &Run<'_>, store: &InterferingStore, prefix: &str) {
        let replay = self.replay(run).await;
        // Guarantee 1 (final) and rotations: no cookie opens an ended session.
        for (n, instance, found, _) in &replay {
            if let Some((_, why)) = found.tag.as_ref().and_then(|t| self.dead.get(t)).cloned() {
                self.violation(format!(
                    "the final replay of cookie #{n} on instance {instance} found session {:?}, ended by {why}",
                    found.tag
                ));
            }
        }
        // Guarantee 3: acknowledged changes are there.
        for (event, lineage, key) in std::mem::take(&mut self.expected) {
            let kept = replay.iter().any(|(_, _, found, keys)| {
                found.tag.as_ref().is_some_and(|t| lineage.contains(t))
                    && key.as_ref().is_none_or(|k| keys.contains(k))
            });
            if !kept {
                self.violation(format!(
                    "{} {:?} got {} (found {:?}) but its change is gone: no cookie opens it at the end",
                    event.who, event.op, event.status, event.found.tag
                ));
            }
        }
        // Guarantee 2: every live session of an owner is listed, and
        // revoke_owner ends them all.
        for user in 0..run.scenario.users {
            let live: BTreeSet<String> = replay
                .iter()
                .filter(|(_, _, found, _)| {
                    found
                        .tag
                        .as_ref()
                        .and_then(|t| self.lineages.get(t))
                        .is_some_and(|l| l.user == user)
                })
                .filter_map(|(_, _, found, _)| found.handle.clone())
                .collect();
            let (event, _) = run
                .send(
                    "final",
                    0,
                    false,
                    format!("/il/list/{}", Run::user(user)),
                    Op::List { user },
                    None,
                )
                .await;
            let listed: BTreeSet<String> = event.payload.lines().filter_map(dash).collect();
            if event.status != Status::Ok {
                self.violation(format!(
                    "the final listing of user{user} failed: {}",
                    event.status
                ));
            }
            let missing: Vec<_> = live.difference(&listed).collect();
            if !missing.is_empty() {
                self.violation(format!(
                    "sessions_of(user{user}) misses live sessions {missing:?} (listed {listed:?})"
                ));
            }
            let (event, _) = run
                .send(
                    "final",
                    1,
                    true,
                    format!("/il/revoke-owner/{}", Run::user(user)),
                    Op::RevokeOwner { user },
                    None,
                )
                .await;
            if event.status != Status::Ok {
                self.violation(format!(
                    "the final revoke_owner(user{user}) failed: {}",
                    event.status
                ));
            }
        }
        let after = self.replay(run).await;
        for (n, instance, found, _) in &after {
            if found.tag.is_some() {
                self.violation(format!(
                    "cookie #{n} on instance {instance} still opens session {:?} after revoke_owner of every user",
                    found.tag
                ));
            }
        }
        let (event, _) = run
            .send(
                "final",
                0,
                true,
                "/il/revoke-all".into(),
                Op::RevokeAll,
                None,
            )
            .await;
        if event.status != Status::Ok {
            self.violation(format!("the final revoke_all failed: {}", event.status));
        }
        let left = live_sessions(&**store.inner(), prefix).await;
        if !left.is_empty() {
            self.violation(format!("revoke_all left {} live session(s)", left.len()));
        }
    }

    /// Every cookie any browser held, read on both instances: (cookie
    /// number, instance, what it found, its keys).
    async fn replay(&self, run: &Run<'_>) -> Vec<(usize, u8, Found, Vec<String>)> {
        let mut out = Vec::new();
        for (n, cookie) in self.cookies.iter().enumerate() {
            for instance in [0, 1] {
                let (event, _) = run
                    .send(
                        "replay",
                        instance,
                        false,
                        "/il/read".into(),
                        Op::Replay,
                        Some(cookie.clone()),
                    )
                    .await;
                let keys = event.payload.split(',').filter_map(dash).collect();
                out.push((n, instance, event.found, keys));
            }
        }
        out
    }
}

/// The browser an actor belongs to (`b1` for `b1t0s3`).
fn browser_of(who: &str) -> &str {
    who.split('t').next().unwrap_or_default()
}

impl Event {
    /// Whether this request ends sessions (a logout or a revocation).
    fn is_ending(&self) -> bool {
        matches!(
            self.op,
            Op::Logout
                | Op::Revoke { .. }
                | Op::RevokeOwner { .. }
                | Op::RevokeOthers { .. }
                | Op::RevokeAll
        )
    }
}

/// Whether a logout (or `revoke_all`) that answered 2xx may have ended
/// the session with `id`: sessions with no login have no tag to follow.
fn ended_anonymous(events: &[Event], id: &str) -> bool {
    events.iter().any(|r| {
        r.status.class().is_success()
            && (r.op == Op::RevokeAll || (r.op == Op::Logout && r.found.id.as_deref() == Some(id)))
    })
}

/// Whether the known engine behaviours the checker exempts by default are
/// checked too (`INTERLEAVE_STRICT=1`).
fn strict() -> bool {
    std::env::var_os("INTERLEAVE_STRICT").is_some()
}

/// Runs the calm scenarios of a few seeds on `store` (more with
/// `INTERLEAVE_APP_SEEDS=N`; one with `INTERLEAVE_SEED=S`): logins,
/// rotations, writes, logouts, revocations, sweeps, listings and key
/// rotation on two instances, store calls reordered by the seed.
pub async fn interleavings_keep_the_guarantees(store: Arc<dyn KeyValueStore>) {
    for seed in app_seeds(0) {
        check_interleaving(
            store.clone(),
            seed,
            Mix::CALM.default_run(seed % 2 == 0),
            "cargo test -p <this store's crate> interleavings_keep_the_guarantees",
        )
        .await;
    }
}

/// The same with store errors (before and after the call) and spurious
/// conflicts injected.
pub async fn interleavings_with_faults_keep_the_guarantees(store: Arc<dyn KeyValueStore>) {
    for seed in app_seeds(1000) {
        check_interleaving(
            store.clone(),
            seed,
            Mix::FAULTY.default_run(seed % 2 == 0),
            "cargo test -p <this store's crate> interleavings_with_faults_keep_the_guarantees",
        )
        .await;
    }
}

/// The seeds the app conformance cases run: `INTERLEAVE_SEED` alone, or
/// `INTERLEAVE_APP_SEEDS` (default 4) from `first`. Even seeds run the
/// mix with shared owners, odd ones the one with racing rotations
/// ([`Mix::default_run`]).
fn app_seeds(first: u64) -> Vec<u64> {
    if let Some(seed) = std::env::var("INTERLEAVE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return vec![seed];
    }
    let n = std::env::var("INTERLEAVE_APP_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4);
    (first..first + n).collect()
}
