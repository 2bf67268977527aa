//! The sweep at scale: `cleanup_sessions` on a directory of session files.
//!
//! Run by `scripts/bench-sweep.sh`, which builds two identical directories,
//! times this sweep on one and `find DIR -type f -delete` on the other, and
//! prints their ratio and the sweep's peak RSS. Subcommands:
//!
//! ```text
//! sweep generate DIR COUNT EXPIRED_PERCENT NOW [SEED]
//! sweep sweep DIR
//! ```
//!
//! `sweep` runs one `cleanup_sessions` over an `ObjectStoreKv::local_dir`
//! store on DIR and prints one line:
//! `scanned=N deleted=N skipped=N seconds=F peak_rss_kib=N`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use rocket_kvsession::cleanup_sessions;
use rocket_kvsession_object_store::ObjectStoreKv;

use rocket_kvsession_bench::sweep_files;

fn usage() -> ExitCode {
    eprintln!("usage: sweep generate DIR COUNT EXPIRED_PERCENT NOW [SEED]\n       sweep sweep DIR");
    ExitCode::from(2)
}

fn number(arg: Option<&String>, what: &str) -> Result<u64, String> {
    arg.ok_or_else(|| format!("missing {what}"))?
        .parse()
        .map_err(|e| format!("bad {what}: {e}"))
}

fn run(args: &[String]) -> Result<(), String> {
    match args.first().map(String::as_str) {
        Some("generate") => {
            let dir = PathBuf::from(args.get(1).ok_or("missing DIR")?);
            let count = number(args.get(2), "COUNT")?;
            let percent = number(args.get(3), "EXPIRED_PERCENT")?;
            let now = number(args.get(4), "NOW")?;
            let seed = args.get(5).map_or(Ok(7), |_| number(args.get(5), "SEED"))?;
            if percent > 100 {
                return Err("EXPIRED_PERCENT must be 0..=100".into());
            }
            let started = Instant::now();
            let expired = sweep_files::generate(&dir, count, percent, now, seed, 2)
                .map_err(|e| format!("generating {}: {e}", dir.display()))?;
            eprintln!(
                "generated {count} session files ({expired} expired) in {} in {:.1} s",
                dir.display(),
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Some("sweep") => {
            let dir = PathBuf::from(args.get(1).ok_or("missing DIR")?);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            let report = runtime.block_on(async {
                let store = ObjectStoreKv::local_dir(&dir).map_err(|e| e.to_string())?;
                let config = sweep_files::session_config();
                let started = Instant::now();
                let report = cleanup_sessions(&store, &config)
                    .await
                    .map_err(|e| format!("sweep failed: {e}"))?;
                Ok::<_, String>((report, started.elapsed()))
            })?;
            let (report, elapsed) = report;
            println!(
                "scanned={} deleted={} skipped={} seconds={:.3} peak_rss_kib={}",
                report.scanned,
                report.deleted,
                report.skipped,
                elapsed.as_secs_f64(),
                sweep_files::peak_rss_kib().unwrap_or(0)
            );
            Ok(())
        }
        _ => Err("unknown subcommand".into()),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if args.is_empty() {
        // `cargo bench` without arguments: nothing to measure here.
        eprintln!("sweep: the sweep benchmark is run by scripts/bench-sweep.sh");
        usage();
        return ExitCode::SUCCESS;
    }
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sweep: {e}");
            usage()
        }
    }
}
