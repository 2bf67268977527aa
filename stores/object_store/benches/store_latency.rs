//! Store round trips of `ObjectStoreKv` on a local directory (a fresh temp
//! directory), with object_store's own calls on the same directory beside
//! them. `scripts/bench.sh` runs it; by hand:
//!
//! ```sh
//! cargo bench -p rocket_kvsession_object_store --bench store_latency -- --samples 5000
//! ```
//!
//! Each sample does, on a 1 KiB session record, a `get`, a `put` (an
//! `update` with the expected version: what saving an existing session does)
//! and a `create` (a new session), once through the store and once with the
//! plain object_store call (`get`, an unconditional `put`, a `put` with
//! `PutMode::Create`), in alternating order. The plain calls do less than the
//! store (no version check), so their ratio is context, not a goal. It
//! prints a markdown table: median and p99 per operation.

use std::process::ExitCode;
use std::sync::Arc;

use rocket_kvsession::KeyValueStore;
use rocket_kvsession_bench::{
    block_on, compare, micros, percentile, record, ArgError, Args, Runtime, Side, StoreSide,
};
use rocket_kvsession_object_store::object_store::path::Path;
use rocket_kvsession_object_store::object_store::{
    ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
};
use rocket_kvsession_object_store::ObjectStoreKv;

const USAGE: &str = "store_latency [--samples N (>= 100)]";

/// The plain object_store calls on the same directory.
struct Plain {
    store: Arc<dyn ObjectStore>,
    kv: ObjectStoreKv,
}

impl Plain {
    fn path(&self, key: &str) -> Result<Path, String> {
        self.kv.path_of(key).map_err(|e| format!("path: {e}"))
    }
}

impl Side for Plain {
    async fn get(&mut self, key: &str) -> Result<Vec<u8>, String> {
        let path = self.path(key)?;
        let bytes = self
            .store
            .get(&path)
            .await
            .map_err(|e| format!("object_store get: {e}"))?
            .bytes()
            .await
            .map_err(|e| format!("object_store get: {e}"))?;
        Ok(bytes.to_vec())
    }

    async fn put(&mut self, key: &str, value: &[u8]) -> Result<(), String> {
        let path = self.path(key)?;
        self.store
            .put(&path, PutPayload::from(value.to_vec()))
            .await
            .map_err(|e| format!("object_store put: {e}"))?;
        Ok(())
    }

    async fn create(&mut self, key: &str, value: &[u8]) -> Result<(), String> {
        let path = self.path(key)?;
        let options = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        self.store
            .put_opts(&path, PutPayload::from(value.to_vec()), options)
            .await
            .map_err(|e| format!("object_store put (create): {e}"))?;
        Ok(())
    }
}

async fn run(samples: usize) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    let kv = ObjectStoreKv::local_dir(dir.path()).map_err(|e| format!("local_dir: {e}"))?;
    kv.init().await.map_err(|e| format!("init: {e}"))?;
    let mut store = StoreSide::new(kv.clone(), "store");
    let mut plain = Plain {
        store: kv.object_store().clone(),
        kv: kv.clone(),
    };
    let (store_key, plain_key) = ("a5f0e3c2a9b8d7e6_6745c1a0", "d5f0e3c2a9b8d7e6_6745c1a0");
    store.create(store_key, &record(0)).await?;
    plain.create(plain_key, &record(0)).await?;
    store.get(store_key).await?;

    let (s, p) = compare(&mut store, store_key, &mut plain, plain_key, samples).await?;

    println!("| store | operation | median µs | p99 µs | samples |");
    println!("|---|---|---:|---:|---:|");
    for (op, mut sv, mut pv) in [
        ("get", s.get, p.get),
        ("put (update, CAS)", s.put, p.put),
        ("create", s.create, p.create),
    ] {
        sv.sort();
        pv.sort();
        let plain_op = match op {
            "get" => "get (plain `get`)",
            "create" => "create (plain `put`, `PutMode::Create`)",
            _ => "put (plain `put`, no version check)",
        };
        for (who, op, v) in [
            ("ObjectStoreKv, local dir", op, &sv),
            ("object_store LocalFileSystem, same dir", plain_op, &pv),
        ] {
            println!(
                "| {who} | {op} | {:.1} | {:.1} | {} |",
                micros(percentile(v, 0.5)),
                micros(percentile(v, 0.99)),
                v.len()
            );
        }
    }
    println!();
    Ok(())
}

fn options(args: &mut Args) -> Result<usize, ArgError> {
    let mut samples = 5000;
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
        Ok(samples) => block_on(args.name(), Runtime::MultiThread(None), run(samples)),
        Err(e) => args.usage_error(&e, USAGE),
    }
}
