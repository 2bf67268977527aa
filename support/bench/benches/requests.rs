//! Per-request cost, in process: the same small route dispatched through
//! `rocket::local::asynchronous::Client` in seven apps built in the same run
//! (see `apps/mod.rs`), printed as a markdown table with the ratios.
//!
//! `cargo bench -p rocket_kvsession_bench --bench requests [-- --rounds N --millis MS]`
//! (`-- --profile APP --count N` sends N requests to one app, untimed, for a profiler)
//!
//! Each round measures every app for `MS` milliseconds of back-to-back
//! requests on one thread, in a rotating order; the table shows the median
//! of the rounds. Every response is checked (status 200 and body `alice`,
//! which the session apps can only answer from the session).

mod apps;

use std::time::{Duration, Instant};

use apps::{App, BODY, COOKIE};
use rocket::http::{Cookie, Status};
use rocket::local::asynchronous::Client;
use rocket_kvsession_bench::{block_on, ArgError, Args, Runtime};

struct Options {
    rounds: usize,
    millis: u64,
    /// Profile mode: only this app (or none, `-`), `count` requests, untimed.
    profile: Option<String>,
    count: u64,
}

fn options(args: &mut Args) -> Result<Options, ArgError> {
    let mut options = Options {
        rounds: 7,
        millis: 400,
        profile: None,
        count: 10_000,
    };
    while let Some(arg) = args.next_arg() {
        match arg.as_str() {
            "--rounds" => options.rounds = args.number("--rounds", 1)? as usize,
            "--millis" => options.millis = args.number("--millis", 1)?,
            "--count" => options.count = args.number("--count", 1)?,
            "--profile" => options.profile = Some(args.value("--profile")?),
            _ => return Err(ArgError::Unknown(arg)),
        }
    }
    Ok(options)
}

/// One app, with a client and the cookie of its established session.
struct Target {
    app: App,
    client: Client,
    cookie: String,
    rates: Vec<f64>,
}

async fn target(app: App, fallback_cookie: Option<&str>) -> Result<Target, String> {
    let client = Client::untracked(app.build(apps::figment()))
        .await
        .map_err(|e| format!("{}: launch failed: {e}", app.name()))?;
    let cookie = {
        let login = client.get("/login").dispatch().await;
        if login.status() != Status::Ok {
            return Err(format!(
                "{}: /login answered {}",
                app.name(),
                login.status()
            ));
        }
        let pair = login
            .headers()
            .get("Set-Cookie")
            .find_map(apps::session_cookie_value);
        pair
    };
    let cookie = cookie
        .or_else(|| fallback_cookie.map(str::to_owned))
        .ok_or_else(|| format!("{}: /login set no session cookie", app.name()))?;
    Ok(Target {
        app,
        client,
        cookie,
        rates: Vec::new(),
    })
}

async fn hello(t: &Target) -> Result<(), String> {
    let response = t
        .client
        .get("/hello")
        .cookie(Cookie::new(COOKIE, t.cookie.as_str()))
        .dispatch()
        .await;
    let status = response.status();
    let body = response.into_string().await;
    if status != Status::Ok || body.as_deref() != Some(BODY) {
        return Err(format!(
            "{}: /hello answered {status} {body:?}, expected 200 {BODY:?}",
            t.app.name()
        ));
    }
    Ok(())
}

/// Requests per second over `millis` of back-to-back requests.
async fn measure(t: &Target, millis: u64) -> Result<f64, String> {
    let budget = Duration::from_millis(millis);
    let start = Instant::now();
    let mut count = 0u64;
    loop {
        for _ in 0..64 {
            hello(t).await?;
        }
        count += 64;
        let elapsed = start.elapsed();
        if elapsed >= budget {
            return Ok(count as f64 / elapsed.as_secs_f64());
        }
    }
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

fn verdict(value: f64, goal: Option<(f64, bool)>) -> String {
    match goal {
        None => "".into(),
        Some((target, at_least)) => {
            let met = if at_least {
                value >= target
            } else {
                value <= target
            };
            let op = if at_least { ">=" } else { "<=" };
            if met {
                format!("{op} {target:.2}: met")
            } else {
                let by = (value - target).abs() / target * 100.0;
                format!("{op} {target:.2}: **missed by {by:.0}%**")
            }
        }
    }
}

async fn run(options: Options) -> Result<(), String> {
    // The bare app sets no cookie; it is sent the KvSession app's cookie, so
    // every app gets the same request.
    let kv_read = target(App::KvRead, None).await?;
    let bare = target(App::Bare, Some(&kv_read.cookie)).await?;
    let mut targets = vec![bare, kv_read];
    for app in [
        App::KvWrite,
        App::RssRead,
        App::RssWrite,
        App::PrivateRead,
        App::PrivateWrite,
    ] {
        targets.push(target(app, None).await?);
    }
    if let Some(only) = &options.profile {
        // For a profiler (`valgrind --tool=callgrind`): `count` requests to
        // one app (`-`: none, to measure the setup alone).
        if let Some(t) = targets.iter().find(|t| t.app.name() == only) {
            for _ in 0..options.count {
                hello(t).await?;
            }
        } else if only != "-" {
            return Err(format!("--profile: no app named {only:?}"));
        }
        return Ok(());
    }
    // Warm up: allocator, caches, the session records.
    for t in &targets {
        measure(t, 100).await?;
    }
    for round in 0..options.rounds {
        for i in 0..targets.len() {
            let k = (i + round) % targets.len();
            let rate = measure(&targets[k], options.millis).await?;
            targets[k].rates.push(rate);
        }
    }
    let rate = |app: App| {
        targets
            .iter()
            .find(|t| t.app == app)
            .map(|t| median(&t.rates))
            .unwrap_or(f64::NAN)
    };

    println!("### In process (`rocket::local::asynchronous::Client`)\n");
    println!(
        "One thread, back-to-back `GET /hello` with the session cookie; median of {} rounds of {} ms per app, apps interleaved.\n",
        options.rounds, options.millis
    );
    println!("| app | requests/s | µs/request | spread (min..max req/s) |");
    println!("|---|---:|---:|---|");
    for t in &targets {
        let r = median(&t.rates);
        let min = t.rates.iter().copied().fold(f64::INFINITY, f64::min);
        let max = t.rates.iter().copied().fold(0.0, f64::max);
        println!(
            "| {} | {:.0} | {:.2} | {:.0}..{:.0} |",
            t.app.label(),
            r,
            1e6 / r,
            min,
            max
        );
    }
    println!();
    print_ratios(&rate);
    Ok(())
}

/// A ratio's name, value and goal (target, whether it is a minimum).
type RatioRow<'a> = (&'a str, f64, Option<(f64, bool)>);

/// The ratio table of the request benchmarks (shared layout with the HTTP run).
fn print_ratios(rate: &dyn Fn(App) -> f64) {
    let (a, b, c, d, dw) = (
        rate(App::Bare),
        rate(App::KvRead),
        rate(App::KvWrite),
        rate(App::RssRead),
        rate(App::RssWrite),
    );
    let (e, ew) = (rate(App::PrivateRead), rate(App::PrivateWrite));
    println!("| ratio (requests/s) | value | goal |");
    println!("|---|---:|---|");
    let rows: [RatioRow<'_>; 7] = [
        ("b/a: KvSession read vs bare", b / a, Some((0.80, true))),
        ("c/a: KvSession write vs bare", c / a, None),
        (
            "b/d: KvSession read vs rocket_session_store read",
            b / d,
            Some((1.0, true)),
        ),
        (
            "c/d: KvSession write vs rocket_session_store read",
            c / d,
            None,
        ),
        (
            "c/d': KvSession write vs rocket_session_store write",
            c / dw,
            Some((0.9, true)),
        ),
        (
            "b/e: KvSession read vs private cookie read",
            b / e,
            Some((1.0, true)),
        ),
        (
            "c/e': KvSession write vs private cookie write",
            c / ew,
            Some((1.0, true)),
        ),
    ];
    for (name, value, goal) in rows {
        println!("| {name} | {value:.3} | {} |", verdict(value, goal));
    }
    println!();
}

fn main() -> std::process::ExitCode {
    // `cargo test --benches` runs this binary without `--bench`.
    let Some(mut args) = Args::bench("requests") else {
        return std::process::ExitCode::SUCCESS;
    };
    match options(&mut args) {
        Ok(options) => block_on(args.name(), Runtime::CurrentThread, run(options)),
        Err(e) => args.usage_error(
            &e,
            "requests [--rounds N] [--millis MS] | --profile APP|- [--count N]",
        ),
    }
}
