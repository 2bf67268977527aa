//! Store round trips of the embedded `MemoryStore`: `get` and `put` latency
//! (median and p99) of a 1 KiB session record.
//!
//! `cargo bench --bench store_latency [-- --samples N]`
//!
//! `put` is what saving an existing session does: `update` with the expected
//! version and a new expiry. `create` is what saving a new session does. The
//! store crates have the same measurement for their stores
//! (`stores/*/examples/bench_*.rs`), so the rows line up in one table.

use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime};

use rocket_kvsession::{CreateOutcome, KeyValueStore, MemoryStore, UpdateOutcome};

use rocket_kvsession::__bench::{micros, percentile, record};

async fn run(samples: usize) -> Result<(), String> {
    let store = MemoryStore::new();
    let expiry = || Some(SystemTime::now() + Duration::from_secs(3600));
    // A few thousand other sessions, so the map is not trivially small.
    for i in 0..5000u64 {
        let created = store
            .create(&format!("other_{i:016x}"), &record(i), expiry())
            .await
            .map_err(|e| format!("create: {e}"))?;
        if created == CreateOutcome::AlreadyExists {
            return Err("duplicate filler key".into());
        }
    }
    let key = "5f0e3c2a9b8d7e6f_6745c1a0";
    let CreateOutcome::Created(mut version) = store
        .create(key, &record(0), expiry())
        .await
        .map_err(|e| format!("create: {e}"))?
    else {
        return Err("the session key exists already".into());
    };

    let (mut gets, mut puts, mut creates) = (Vec::new(), Vec::new(), Vec::new());
    let values = [record(1), record(2)];
    for i in 0..samples + samples / 10 {
        let warm = i < samples / 10;
        let value = &values[i % 2];

        let start = Instant::now();
        let outcome = store
            .update(key, value, version.as_ref(), expiry())
            .await
            .map_err(|e| format!("update: {e}"))?;
        let put = start.elapsed();
        match outcome {
            UpdateOutcome::Updated(v) => version = v,
            other => return Err(format!("update: {other:?}")),
        }

        let start = Instant::now();
        let found = store.get(key).await.map_err(|e| format!("get: {e}"))?;
        let get = start.elapsed();
        match found {
            Some(r) if &r.value == value => {}
            _ => return Err("get did not return the value just written".into()),
        }

        let new_key = format!("{:016x}_6745c1a0", i as u64 + 1);
        let start = Instant::now();
        let created = store
            .create(&new_key, value, expiry())
            .await
            .map_err(|e| format!("create: {e}"))?;
        let create = start.elapsed();
        if created == CreateOutcome::AlreadyExists {
            return Err("create: fresh key exists".into());
        }
        black_box(&created);

        if !warm {
            gets.push(get);
            puts.push(put);
            creates.push(create);
        }
    }

    println!("| store | operation | median µs | p99 µs | samples |");
    println!("|---|---|---:|---:|---:|");
    for (name, mut v) in [
        ("get", gets),
        ("put (update, CAS)", puts),
        ("create", creates),
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

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--bench") {
        eprintln!(
            "store_latency: benchmark skipped (run it with `cargo bench --bench store_latency`)"
        );
        return std::process::ExitCode::SUCCESS;
    }
    let mut samples = 20_000usize;
    let mut it = args.iter().filter(|a| *a != "--bench");
    while let Some(arg) = it.next() {
        match (
            arg.as_str(),
            it.next().and_then(|v| v.parse::<usize>().ok()),
        ) {
            ("--samples", Some(n)) if n >= 100 => samples = n,
            _ => {
                eprintln!("store_latency: usage: store_latency [--samples N (>= 100)]");
                return std::process::ExitCode::from(2);
            }
        }
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("store_latency: cannot start a runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(samples)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("store_latency: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
