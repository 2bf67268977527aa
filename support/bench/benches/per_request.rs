//! The fixed costs a session adds to a request, in nanoseconds: drawing a
//! session id, sealing and opening the cookie that carries it, and the
//! MessagePack encoding of a typical 1 KiB session.
//!
//! `cargo bench -p rocket_kvsession_bench --bench per_request [-- --rounds N]`
//!
//! * Ids: the engine's id generation (`rocket_kvsession_bench::generate_id`) with the fairing's default generator
//!   (`ChaCha20Rng` seeded from the OS), 64 random bits, then formatted as the
//!   cookie value and store key are.
//! * Cookie: the crate's own cipher (AES-256-GCM under a key derived from the
//!   app's `secret_key`, built once as the fairing builds it at ignite), through
//!   the core's hidden `__bench` module (`rocket_kvsession_bench::CookieSealer`):
//!   sealing then encoding the `Set-Cookie` value with the `cookie` crate, as
//!   Rocket does; opening then parsing the id.
//! * MessagePack: the crate's own envelope code (format 1: a format byte, then
//!   the MessagePack array `[last_active, permanent, {key: value bytes}]`,
//!   each value its own `rmp_serde::to_vec_named` encoding, as
//!   `Session::insert` makes it), through the core's hidden `__bench`
//!   module (`rocket_kvsession_bench::decode_record`): decoding indexes the
//!   record's keys and values without copying them; encoding a loaded record
//!   copies the keys it did not change. The record is one that `KvSession`
//!   itself wrote into a `MemoryStore` through a request, and is checked to
//!   re-encode byte for byte before measuring.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use cookie::Cookie;
use futures::TryStreamExt;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use rocket::http::Status;
use rocket::local::asynchronous::Client;
use rocket::{post, routes};
use rocket_kvsession::{KeyValueStore, KvSession, MemoryStore, Session};
use rocket_kvsession_bench::{
    decode_record, encode_record, generate_id, parse_id, ArgError, Args, CookieSealer,
    DecodedRecord,
};
use serde::{Deserialize, Serialize};

/// The per-request budget of the crate's own work: the id, the cookie and the
/// record together.
const GOAL_NS: f64 = 1200.0;

// ---------------------------------------------------------------------------
// A typical session of about 1 KiB.

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct CartLine {
    sku: String,
    quantity: u32,
    price_cents: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Preferences {
    theme: String,
    language: String,
    time_zone: String,
    newsletter: bool,
}

/// The typical session's keys and values, typed.
#[derive(Debug, Clone, PartialEq)]
struct Typical {
    user: String,
    user_id: u64,
    roles: Vec<String>,
    csrf_token: String,
    cart: Vec<CartLine>,
    preferences: Preferences,
    flash: Vec<String>,
    last_page: String,
}

fn typical() -> Typical {
    Typical {
        user: "alice.liddell@example.com".into(),
        user_id: 48_213_377,
        roles: vec!["customer".into(), "beta-tester".into(), "reviewer".into()],
        csrf_token: "kq3Jm0Zr7vXo1c8Bq2LwTn5Ys9Pd4Hf6Ga0Ue3Ri7Ok".into(),
        cart: (0..12)
            .map(|i| CartLine {
                sku: format!("SKU-{:05}-BLUE-XL", 10_000 + i * 37),
                quantity: 1 + i % 3,
                price_cents: 1999 + u64::from(i) * 250,
            })
            .collect(),
        preferences: Preferences {
            theme: "dark".into(),
            language: "en-GB".into(),
            time_zone: "Europe/London".into(),
            newsletter: true,
        },
        flash: vec![
            "Your order #1093-2231 has shipped and should arrive on Thursday.".into(),
            "Two items in your wishlist are now on sale.".into(),
        ],
        last_page: "/shop/category/outdoor/tents?sort=price-asc&page=3&filter=4-person".into(),
    }
}

/// Inserts the typical session through the public API, as an app would.
fn insert_typical(session: &Session<'_>, t: &Typical) -> Result<(), rocket_kvsession::Error> {
    session.insert("user", &t.user)?;
    session.insert("user_id", t.user_id)?;
    session.insert("roles", &t.roles)?;
    session.insert("csrf_token", &t.csrf_token)?;
    session.insert("cart", &t.cart)?;
    session.insert("preferences", &t.preferences)?;
    session.insert("flash", &t.flash)?;
    session.insert("last_page", &t.last_page)?;
    Ok(())
}

/// The values as `Session::insert` encodes them.
fn encode_values(t: &Typical) -> BTreeMap<String, Vec<u8>> {
    fn enc<T: Serialize + ?Sized>(v: &T) -> Vec<u8> {
        rmp_serde::to_vec_named(v).expect("in-memory encoding")
    }
    BTreeMap::from([
        ("user".to_owned(), enc(&t.user)),
        ("user_id".to_owned(), enc(&t.user_id)),
        ("roles".to_owned(), enc(&t.roles)),
        ("csrf_token".to_owned(), enc(&t.csrf_token)),
        ("cart".to_owned(), enc(&t.cart)),
        ("preferences".to_owned(), enc(&t.preferences)),
        ("flash".to_owned(), enc(&t.flash)),
        ("last_page".to_owned(), enc(&t.last_page)),
    ])
}

/// The values as `Session::get` decodes them.
fn decode_values(data: &DecodedRecord) -> Option<Typical> {
    fn dec<T: for<'de> Deserialize<'de>>(data: &DecodedRecord, key: &str) -> Option<T> {
        rmp_serde::from_slice(data.get(key)?).ok()
    }
    Some(Typical {
        user: dec(data, "user")?,
        user_id: dec(data, "user_id")?,
        roles: dec(data, "roles")?,
        csrf_token: dec(data, "csrf_token")?,
        cart: dec(data, "cart")?,
        preferences: dec(data, "preferences")?,
        flash: dec(data, "flash")?,
        last_page: dec(data, "last_page")?,
    })
}

/// Writes the typical session through `KvSession` and returns the record
/// the crate stored.
async fn record_written_by_the_crate() -> Result<Vec<u8>, String> {
    #[post("/typical")]
    fn store_typical(session: Session<'_>) -> Result<&'static str, rocket_kvsession::Error> {
        insert_typical(&session, &typical())?;
        Ok("ok")
    }

    let store = MemoryStore::new();
    let figment = rocket::Config::figment()
        .merge(("secret_key", "hPRYyVRiMyxpw5sBB1XeCMN1kFsDCqKvBi2QJxBVHQk="))
        .merge(("log_level", "off"));
    let rocket = rocket::custom(figment)
        .attach(KvSession::new(store.clone()))
        .mount("/", routes![store_typical]);
    let client = Client::untracked(rocket)
        .await
        .map_err(|e| format!("launch failed: {e}"))?;
    let status = client.post("/typical").dispatch().await.status();
    if status != Status::Ok {
        return Err(format!("POST /typical answered {status}"));
    }
    let keys: Vec<_> = store
        .list("")
        .try_collect()
        .await
        .map_err(|e| format!("list: {e}"))?;
    let [key] = keys.as_slice() else {
        return Err(format!("expected one stored session, found {}", keys.len()));
    };
    let record = store
        .get(&key.key)
        .await
        .map_err(|e| format!("get: {e}"))?
        .ok_or("the stored session vanished")?;
    Ok(record.value)
}

// ---------------------------------------------------------------------------
// Timing.

/// Median over `rounds` of the mean time of one call, in ns; each round runs
/// `f` for about 50 ms.
/// How the operations are run.
enum Mode {
    /// Timed, `rounds` rounds each.
    Time { rounds: usize },
    /// Only the operation `only`, `iters` times, untimed: for a profiler
    /// (`valgrind --tool=callgrind`), whose instruction count divided by
    /// `iters` is the cost of one call.
    Profile { only: String, iters: u64 },
}

impl Mode {
    fn run(&self, key: &str, mut f: impl FnMut()) -> (f64, f64) {
        match self {
            Mode::Time { rounds } => time_ns(*rounds, f),
            Mode::Profile { only, iters } => {
                if only == key {
                    for _ in 0..*iters {
                        f();
                    }
                }
                (0.0, 0.0)
            }
        }
    }
}

fn time_ns(rounds: usize, mut f: impl FnMut()) -> (f64, f64) {
    // Calibrate the batch size to about 5 ms.
    let mut batch = 1u64;
    loop {
        let start = Instant::now();
        for _ in 0..batch {
            f();
        }
        if start.elapsed() >= Duration::from_millis(5) || batch >= 1 << 30 {
            break;
        }
        batch *= 2;
    }
    let mut samples = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed() < Duration::from_millis(50) {
            for _ in 0..batch {
                f();
            }
            n += batch;
        }
        samples.push(start.elapsed().as_nanos() as f64 / n as f64);
    }
    samples.sort_by(f64::total_cmp);
    (samples[samples.len() / 2], samples[0])
}

struct Row {
    name: &'static str,
    when: &'static str,
    ns: f64,
    best: f64,
}

fn run(mode: Mode) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))?;
    let record = runtime.block_on(record_written_by_the_crate())?;

    // The crate's record, decoded and re-encoded by the crate's own code,
    // must come back byte for byte, whether the keys are copied as loaded
    // or encoded afresh.
    let bytes = Arc::new(record);
    let stored = decode_record(Arc::clone(&bytes))
        .map_err(|e| format!("the crate's record does not decode as format 1: {e}"))?;
    if stored.encode() != *bytes
        || encode_record(stored.last_active(), stored.permanent(), &stored.to_map()) != *bytes
    {
        return Err("the crate's record re-encodes differently".into());
    }
    let t = typical();
    if stored.to_map() != encode_values(&t) || decode_values(&stored).as_ref() != Some(&t) {
        return Err("the decoded values differ from those the crate stored".into());
    }
    // What a write route saves: the loaded record with one key set again
    // (to a new value of the same size) and a new activity time.
    let mut written = stored.clone();
    let mut page = t.last_page.clone();
    page.pop();
    page.push('4');
    written.insert(
        "last_page".into(),
        rmp_serde::to_vec_named(&page).map_err(|e| e.to_string())?,
    );
    written.set_last_active(stored.last_active() + 1);
    let mut touched = stored.clone();
    touched.set_last_active(stored.last_active() + 1);

    let mut rows = Vec::new();
    let mut push = |name, when, (ns, best): (f64, f64)| {
        rows.push(Row {
            name,
            when,
            ns,
            best,
        })
    };

    // Ids.
    let mut rng = ChaCha20Rng::from_os_rng();
    push(
        "id: generate (64 bits, ChaCha20) and format",
        "new session",
        mode.run("id", || {
            black_box(generate_id(&mut rng, 64, SystemTime::now()));
        }),
    );
    let id = generate_id(&mut rng, 64, SystemTime::now());
    push(
        "id: parse the cookie value",
        "every request with a cookie",
        mode.run("parse", || {
            black_box(parse_id(black_box(id.as_str())));
        }),
    );

    // Cookies.
    let cipher = CookieSealer::new("hPRYyVRiMyxpw5sBB1XeCMN1kFsDCqKvBi2QJxBVHQk=")?;
    let mut seal_rng = ChaCha20Rng::from_os_rng();
    let mut seal = || {
        let value = cipher.seal("session", id.as_bytes(), &mut seal_rng);
        Cookie::new("session", value).encoded().to_string()
    };
    let header = seal();
    let sealed = Cookie::parse_encoded(header.clone())
        .map_err(|e| format!("sealed cookie does not parse: {e}"))?
        .value()
        .to_owned();
    push(
        "cookie: seal (AES-256-GCM) and encode the Set-Cookie value",
        "new session",
        mode.run("seal", || {
            black_box(seal());
        }),
    );
    let open = || cipher.open("session", black_box(&sealed)).unwrap_or(0);
    if open() != id.len() {
        return Err("the sealed cookie does not open to the id".into());
    }
    push(
        "cookie: open (AES-256-GCM)",
        "every request with a cookie",
        mode.run("open", || {
            black_box(open());
        }),
    );

    // MessagePack.
    push(
        "msgpack: decode the record (envelope)",
        "every request that loads a session",
        mode.run("decode", || {
            black_box(decode_record(Arc::clone(black_box(&bytes))).ok());
        }),
    );
    push(
        "msgpack: decode every value to its type (8 `get`s)",
        "reads (a route reads what it needs; this is all of it)",
        mode.run("values-decode", || {
            black_box(decode_values(black_box(&stored)));
        }),
    );
    push(
        "msgpack: encode every value (8 `insert`s)",
        "writes (a route writes what it changes; this is all of it)",
        mode.run("values-encode", || {
            black_box(encode_values(black_box(&t)));
        }),
    );
    push(
        "msgpack: encode the record (envelope), one key changed",
        "every save",
        mode.run("encode", || {
            black_box(black_box(&written).encode());
        }),
    );
    push(
        "msgpack: encode the record (envelope), no key changed (not in the sums)",
        "an activity refresh on a store without TTL",
        mode.run("encode-unchanged", || {
            black_box(black_box(&touched).encode());
        }),
    );

    let Mode::Time { rounds } = mode else {
        return Ok(());
    };
    // The crate's own work on the session: everything but the typed values,
    // which the app decodes (`get`) and encodes (`insert`) as it needs them.
    let is_value = |r: &&Row| r.name.contains("every value");
    let summed = |r: &&Row| !r.name.contains("not in the sums");
    let crate_total: f64 = rows
        .iter()
        .filter(|r| !is_value(r) && summed(r))
        .map(|r| r.ns)
        .sum();
    let total: f64 = rows.iter().filter(summed).map(|r| r.ns).sum();
    println!("### Per-request costs\n");
    println!(
        "Single thread; median of {rounds} rounds of 50 ms (best round in brackets). The session: 8 keys \
         (user, id, roles, CSRF token, a 12-line cart, preferences, two flash messages, last page), \
         a {}-byte record; cookie value {} bytes.\n",
        bytes.len(),
        sealed.len()
    );
    println!("| operation | when | ns |");
    println!("|---|---|---:|");
    for r in rows.iter().filter(|r| !is_value(r)) {
        println!("| {} | {} | {:.0} ({:.0}) |", r.name, r.when, r.ns, r.best);
    }
    println!(
        "| **id + cookie + record, together** | upper bound of the crate's own work in one request \
         (no request does all of it: a new session draws and seals, an existing one opens, decodes and re-encodes) | **{crate_total:.0}** |"
    );
    for r in rows.iter().filter(is_value) {
        println!("| {} | {} | {:.0} ({:.0}) |", r.name, r.when, r.ns, r.best);
    }
    println!(
        "| **everything above, together** | the same, plus typed access to every value | **{total:.0}** |"
    );
    let verdict = |value: f64| {
        if value < GOAL_NS {
            format!("< {GOAL_NS:.0} ns: met")
        } else {
            format!(
                "< {GOAL_NS:.0} ns: **missed by {:.0}%**",
                (value - GOAL_NS) / GOAL_NS * 100.0
            )
        }
    };
    println!(
        "\nGoal, all together: {} for the id, cookie and record; {} with every value typed too.\n",
        verdict(crate_total),
        verdict(total)
    );
    Ok(())
}

fn main() -> std::process::ExitCode {
    let Some(mut args) = Args::bench("per_request") else {
        return std::process::ExitCode::SUCCESS;
    };
    let usage = "per_request [--rounds N] [--profile OPERATION [--iters N]]\n\
                 operations: id, parse, seal, open, decode, values-decode, values-encode, encode, encode-unchanged";
    let mode = match options(&mut args) {
        Ok(mode) => mode,
        Err(e) => return args.usage_error(&e, usage),
    };
    match run(mode) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("per_request: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn options(args: &mut Args) -> Result<Mode, ArgError> {
    let mut rounds = 15usize;
    let mut profile: Option<String> = None;
    let mut iters = 10_000u64;
    while let Some(arg) = args.next_arg() {
        match arg.as_str() {
            "--rounds" => rounds = args.number("--rounds", 1)? as usize,
            "--iters" => iters = args.number("--iters", 1)?,
            "--profile" => profile = Some(args.value("--profile")?),
            _ => return Err(ArgError::Unknown(arg)),
        }
    }
    Ok(match profile {
        Some(only) => Mode::Profile { only, iters },
        None => Mode::Time { rounds },
    })
}
