//! Many requests of one session at once, in process: the same session read
//! and written one request at a time, then by 32 requests in flight
//! together, through `rocket::local::asynchronous::Client`; KvSession
//! against rocket_session_store, on their memory stores and, when
//! `REDIS_URL` is set, on their Redis stores on that server. Printed as a
//! markdown table with the ratio concurrent / one at a time (goal for
//! KvSession: at least 0.9, the saves of one session must not fight each
//! other).
//!
//! `cargo bench -p rocket_kvsession_bench --bench concurrent_writes [-- --rounds N --millis MS --concurrency C --only memory/write]`
//! (`bash scripts/bench.sh --concurrent-writes` starts a redis-server and runs it)
//!
//! Each round measures every (app, mode) for `MS` milliseconds, in a
//! rotating order; the table shows the median of the rounds. One thread
//! (current-thread runtime). Every response is checked (status 200, body
//! `alice`). The writing routes write key `w<slot>` (one of `C` keys, so
//! the session stays small) with a new value each time, so every request
//! saves. rocket_session_store has no compare-and-swap: its concurrent
//! writes overwrite each other (the last one wins), which costs nothing;
//! KvSession keeps every one of them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use rocket::http::private::cookie::CookieBuilder;
use rocket::http::{Cookie, SameSite, Status};
use rocket::local::asynchronous::Client;
use rocket::{get, routes, Build, Rocket};
use rocket_kvsession::conformance::hooked::HookedStore;
use rocket_kvsession::{KeyValueStore, KvSession, MemoryStore, Session, SessionConfig};
use rocket_kvsession_bench::{block_on, ArgError, Args, Runtime};
use rocket_session_store::memory::MemoryStore as RssMemoryStore;
use rocket_session_store::redis::RedisStore as RssRedisStore;
use rocket_session_store::{Session as RssSession, SessionError, SessionStore, Store};
use serde::{Deserialize, Serialize};

/// A fixed secret key (32 bytes, base64).
const SECRET: &str = "hPRYyVRiMyxpw5sBB1XeCMN1kFsDCqKvBi2QJxBVHQk=";
const BODY: &str = "alice";
const COOKIE: &str = "session";
const LIFETIME: Duration = Duration::from_secs(24 * 3600);

struct Options {
    rounds: usize,
    millis: u64,
    concurrency: usize,
    /// Only the targets of this store and route (`memory/write`), and of
    /// this library if given (`memory/write/KvSession`).
    only: Option<String>,
}

fn options(args: &mut Args) -> Result<Options, ArgError> {
    let mut options = Options {
        rounds: 5,
        millis: 300,
        concurrency: 32,
        only: None,
    };
    while let Some(arg) = args.next_arg() {
        match arg.as_str() {
            "--rounds" => options.rounds = args.number("--rounds", 1)? as usize,
            "--millis" => options.millis = args.number("--millis", 1)?,
            "--concurrency" => options.concurrency = args.number("--concurrency", 2)? as usize,
            "--only" => options.only = Some(args.value("--only")?),
            _ => return Err(ArgError::Unknown(arg)),
        }
    }
    Ok(options)
}

/// A new value on every write.
static COUNTER: AtomicU64 = AtomicU64::new(0);

fn next_n() -> u64 {
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

#[get("/login")]
fn kv_login(session: Session<'_>) -> Result<&'static str, rocket_kvsession::Error> {
    session.insert("user", BODY)?;
    Ok("ok")
}

#[get("/read/<_slot>")]
fn kv_read(session: Session<'_>, _slot: usize) -> Option<String> {
    session.get::<String>("user").ok().flatten()
}

#[get("/write/<slot>")]
fn kv_write(session: Session<'_>, slot: usize) -> Result<Option<String>, rocket_kvsession::Error> {
    session.insert(format!("w{slot}"), next_n())?;
    session.get::<String>("user")
}

/// The session value of the rocket_session_store apps.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Visitor {
    user: String,
    n: u64,
}

#[get("/login")]
async fn rss_login(session: RssSession<'_, Visitor>) -> Result<&'static str, SessionError> {
    session
        .set(Visitor {
            user: BODY.into(),
            n: 0,
        })
        .await?;
    Ok("ok")
}

#[get("/read/<_slot>")]
async fn rss_read(
    session: RssSession<'_, Visitor>,
    _slot: usize,
) -> Result<Option<String>, SessionError> {
    Ok(session.get().await?.map(|v| v.user))
}

#[get("/write/<_slot>")]
async fn rss_write(
    session: RssSession<'_, Visitor>,
    _slot: usize,
) -> Result<Option<String>, SessionError> {
    let Some(mut visitor) = session.get().await? else {
        return Ok(None);
    };
    visitor.n = next_n();
    let user = visitor.user.clone();
    session.set(visitor).await?;
    Ok(Some(user))
}

fn conflicts(t: &Target) -> u64 {
    t.conflicts.as_ref().map_or(0, HookedStore::conflicts)
}

fn figment() -> rocket::figment::Figment {
    rocket::Config::figment()
        .merge(("secret_key", SECRET))
        .merge(("log_level", "off"))
        .merge(("cli_colors", false))
}

fn kv_app(store: Arc<dyn KeyValueStore>) -> Rocket<Build> {
    let config = SessionConfig {
        key_prefix: format!("cw-bench-{}:", std::process::id()),
        ..SessionConfig::default()
    };
    rocket::custom(figment())
        .attach(KvSession::from_arc(store).config(config))
        .mount("/", routes![kv_login, kv_read, kv_write])
}

fn rss_app(store: Box<dyn Store<Value = Visitor>>) -> Rocket<Build> {
    let store = SessionStore {
        store,
        name: COOKIE.into(),
        duration: LIFETIME,
        cookie_builder: CookieBuilder::new("", "")
            .path("/")
            .http_only(true)
            .same_site(SameSite::Lax),
    };
    rocket::custom(figment())
        .attach(store.fairing())
        .mount("/", routes![rss_login, rss_read, rss_write])
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Read,
    Write,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Read => "read",
            Op::Write => "write",
        }
    }
}

/// One app and route, with the cookie of its session and its rates.
struct Target {
    store: &'static str,
    library: &'static str,
    op: Op,
    client: Client,
    cookie: String,
    one: Vec<f64>,
    many: Vec<f64>,
    /// concurrent / one at a time, measured back to back in each round.
    ratios: Vec<f64>,
    /// The KvSession apps' store, counting failed compare-and-swaps
    /// (`None`: not counted).
    conflicts: Option<HookedStore>,
}

async fn target(
    store: &'static str,
    library: &'static str,
    op: Op,
    rocket: Rocket<Build>,
) -> Result<Target, String> {
    let name = format!("{library} on {store}");
    let client = Client::untracked(rocket)
        .await
        .map_err(|e| format!("{name}: launch failed: {e}"))?;
    let login = client.get("/login").dispatch().await;
    if login.status() != Status::Ok {
        return Err(format!("{name}: /login answered {}", login.status()));
    }
    let cookie = login
        .headers()
        .get("Set-Cookie")
        .find_map(|header| {
            let cookie = Cookie::parse_encoded(header).ok()?;
            (cookie.name() == COOKIE && !cookie.value().is_empty())
                .then(|| cookie.value().to_owned())
        })
        .ok_or_else(|| format!("{name}: /login set no session cookie"))?;
    drop(login);
    Ok(Target {
        store,
        library,
        op,
        client,
        cookie,
        one: Vec::new(),
        many: Vec::new(),
        ratios: Vec::new(),
        conflicts: None,
    })
}

async fn request(t: &Target, slot: usize) -> Result<(), String> {
    let uri = format!("/{}/{slot}", t.op.name());
    let response = t
        .client
        .get(uri)
        .cookie(Cookie::new(COOKIE, t.cookie.as_str()))
        .dispatch()
        .await;
    let status = response.status();
    let body = response.into_string().await;
    if status != Status::Ok || body.as_deref() != Some(BODY) {
        return Err(format!(
            "{} on {}: {} answered {status} {body:?}, expected 200 {BODY:?}",
            t.library,
            t.store,
            t.op.name()
        ));
    }
    Ok(())
}

/// Requests per second over `millis`, with `concurrency` requests in flight.
async fn measure(t: &Target, millis: u64, concurrency: usize) -> Result<f64, String> {
    let budget = Duration::from_millis(millis);
    let start = Instant::now();
    let mut count = 0u64;
    let slot_request = |slot| async move { request(t, slot).await.map(|()| slot) };
    let mut in_flight: FuturesUnordered<_> = (0..concurrency).map(slot_request).collect();
    while let Some(done) = in_flight.next().await {
        let slot = done?;
        count += 1;
        if start.elapsed() < budget {
            in_flight.push(slot_request(slot));
        }
    }
    Ok(count as f64 / start.elapsed().as_secs_f64())
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The KvSession app on `store`, its conflicts counted.
async fn kv_target(
    store_name: &'static str,
    op: Op,
    store: Arc<dyn KeyValueStore>,
) -> Result<Target, String> {
    let counted = HookedStore::new(store);
    let mut t = target(
        store_name,
        "KvSession",
        op,
        kv_app(Arc::new(counted.clone())),
    )
    .await?;
    t.conflicts = Some(counted);
    Ok(t)
}

async fn targets(redis_url: Option<&str>) -> Result<Vec<Target>, String> {
    let mut targets = Vec::new();
    for op in [Op::Read, Op::Write] {
        let memory: Arc<dyn KeyValueStore> = Arc::new(MemoryStore::new());
        targets.push(kv_target("memory", op, memory).await?);
        let rss = Box::new(RssMemoryStore::<Visitor>::new());
        targets.push(target("memory", "rocket_session_store", op, rss_app(rss)).await?);
    }
    if let Some(url) = redis_url {
        let kv: Arc<dyn KeyValueStore> = Arc::new(
            rocket_kvsession_redis::RedisStore::connect(url)
                .await
                .map_err(|e| format!("RedisStore::connect({url}): {e}"))?,
        );
        let client =
            rss_redis::Client::open(url).map_err(|e| format!("redis::Client::open({url}): {e}"))?;
        for op in [Op::Read, Op::Write] {
            targets.push(kv_target("redis", op, kv.clone()).await?);
            let rss = RssRedisStore::<Visitor>::new(client.clone())
                .prefix(format!("rss-cw-bench-{}:", std::process::id()));
            targets
                .push(target("redis", "rocket_session_store", op, rss_app(Box::new(rss))).await?);
        }
    }
    Ok(targets)
}

async fn run(options: Options) -> Result<(), String> {
    let redis_url = std::env::var("REDIS_URL").ok().filter(|u| !u.is_empty());
    if redis_url.is_none() {
        eprintln!(
            "concurrent_writes: REDIS_URL is not set; memory stores only \
             (`bash scripts/bench.sh --concurrent-writes` starts a redis-server)"
        );
    }
    let mut targets = targets(redis_url.as_deref()).await?;
    if let Some(only) = &options.only {
        targets.retain(|t| {
            let name = format!("{}/{}/{}", t.store, t.op.name(), t.library);
            name == *only || name.starts_with(&format!("{only}/"))
        });
    }
    let c = options.concurrency;
    // Warm up: allocator, connections, the session records.
    for t in &targets {
        measure(t, 50, 1).await?;
        measure(t, 50, c).await?;
    }
    let conflicts_before: Vec<u64> = targets.iter().map(conflicts).collect();
    let mut requests = vec![0u64; targets.len()];
    for round in 0..options.rounds {
        for i in 0..targets.len() {
            let k = (i + round) % targets.len();
            // Back to back, in alternating order: the ratio of each round
            // is what the machine's other load disturbs least.
            let (one, many) = if round % 2 == 0 {
                let one = measure(&targets[k], options.millis, 1).await?;
                (one, measure(&targets[k], options.millis, c).await?)
            } else {
                let many = measure(&targets[k], options.millis, c).await?;
                (measure(&targets[k], options.millis, 1).await?, many)
            };
            let t = &mut targets[k];
            requests[k] += ((one + many) * options.millis as f64 / 1000.0) as u64;
            t.one.push(one);
            t.many.push(many);
            t.ratios.push(many / one);
        }
    }

    println!("### Concurrent requests of one session (`rocket::local`, in process)\n");
    println!(
        "One thread; one session per app; median of {} rounds of {} ms per app and mode, \
         the two modes back to back in each round (the ratio is the median of the rounds' ratios). \
         Conflicts: failed compare-and-swaps per request, counted by a wrapper around the store.\n",
        options.rounds, options.millis
    );
    println!(
        "| store | route | library | one at a time (req/s) | {c} concurrent (req/s) | {c} concurrent / one at a time | goal | conflicts/request |"
    );
    println!("|---|---|---|---:|---:|---:|---|---:|");
    for (k, t) in targets.iter().enumerate() {
        let (one, many) = (median(&t.one), median(&t.many));
        let ratio = median(&t.ratios);
        let per_request = match &t.conflicts {
            Some(_) => format!(
                "{:.3}",
                (conflicts(t) - conflicts_before[k]) as f64 / requests[k].max(1) as f64
            ),
            None => "n/a".to_owned(),
        };
        let goal = if t.library == "KvSession" {
            if ratio >= 0.9 {
                ">= 0.90: met".to_owned()
            } else {
                format!(">= 0.90: **missed by {:.0}%**", (0.9 - ratio) / 0.9 * 100.0)
            }
        } else {
            String::new()
        };
        println!(
            "| {} | {} | {} | {one:.0} | {many:.0} | {ratio:.3} | {goal} | {per_request} |",
            t.store,
            t.op.name(),
            t.library
        );
    }
    println!();
    Ok(())
}

fn main() -> std::process::ExitCode {
    // `cargo test --benches` runs this binary without `--bench`.
    let Some(mut args) = Args::bench("concurrent_writes") else {
        return std::process::ExitCode::SUCCESS;
    };
    match options(&mut args) {
        Ok(options) => block_on(args.name(), Runtime::CurrentThread, run(options)),
        Err(e) => args.usage_error(
            &e,
            "concurrent_writes [--rounds N] [--millis MS] [--concurrency C] [--only STORE/ROUTE[/LIBRARY]]",
        ),
    }
}
