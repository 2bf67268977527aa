//! Store round trips of the embedded `MemoryStore`: `get` and `put` latency
//! (median and p99) of a 1 KiB session record.
//!
//! `cargo bench -p rocket_kvsession_bench --bench store_latency [-- --samples N]`
//!
//! `put` is what saving an existing session does: `update` with the expected
//! version and a new expiry. `create` is what saving a new session does. The
//! store crates have the same measurement for their stores
//! (`stores/*/benches/store_latency.rs`), so the rows line up in one table.

use std::process::ExitCode;
use std::time::Duration;

use rocket_kvsession::MemoryStore;
use rocket_kvsession_bench::{
    block_on, measure, micros, percentile, record, ArgError, Args, Runtime, Side, StoreSide,
};

const USAGE: &str = "store_latency [--samples N (>= 100)]";

async fn run(samples: usize) -> Result<(), String> {
    let mut side =
        StoreSide::new(MemoryStore::new(), "MemoryStore").with_ttl(Duration::from_secs(3600));
    // A few thousand other sessions, so the map is not trivially small.
    for i in 0..5000u64 {
        side.create(&format!("other_{i:016x}"), &record(i)).await?;
    }
    let key = "5f0e3c2a9b8d7e6f_6745c1a0";
    side.create(key, &record(0)).await?;
    side.get(key).await?;

    let s = measure(&mut side, key, samples).await?;

    println!("| store | operation | median µs | p99 µs | samples |");
    println!("|---|---|---:|---:|---:|");
    for (name, mut v) in [
        ("get", s.get),
        ("put (update, CAS)", s.put),
        ("create", s.create),
    ] {
        v.sort();
        println!(
            "| MemoryStore | {name} | {:.2} | {:.2} | {} |",
            micros(percentile(&v, 0.5)),
            micros(percentile(&v, 0.99)),
            v.len()
        );
    }
    Ok(())
}

fn options(args: &mut Args) -> Result<usize, ArgError> {
    let mut samples = 20_000;
    while let Some(arg) = args.next_arg() {
        match arg.as_str() {
            "--samples" => samples = args.number("--samples", 100)? as usize,
            _ => return Err(ArgError::Unknown(arg)),
        }
    }
    Ok(samples)
}

fn main() -> ExitCode {
    let Some(mut args) = Args::bench("store_latency") else {
        return ExitCode::SUCCESS;
    };
    match options(&mut args) {
        Ok(samples) => block_on(args.name(), Runtime::CurrentThread, run(samples)),
        Err(e) => args.usage_error(&e, USAGE),
    }
}
