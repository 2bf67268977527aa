//! The request benchmark's apps (see `apps/mod.rs`) served over real HTTP on
//! 127.0.0.1, for a load generator; `scripts/bench.sh` runs it.
//!
//! `http_apps --bench serve --port-file FILE [--workers N]`
//!
//! Starts every app on its own free port in one process with `N` runtime
//! worker threads (default 1), writes `NAME PORT` lines to `FILE` once all of
//! them listen, and serves until SIGTERM or Ctrl-C. Run without `serve` (as
//! `cargo bench` does) it only says how to use it.

mod apps;

use std::path::PathBuf;
use std::process::ExitCode;

use apps::App;
use rocket::fairing::AdHoc;
use rocket_kvsession_bench::{block_on, ArgError, Args, Runtime};
use tokio::sync::mpsc;

struct Options {
    port_file: PathBuf,
    workers: usize,
}

fn options(args: &mut Args) -> Result<Options, ArgError> {
    let mut port_file = None;
    let mut workers = 1;
    while let Some(arg) = args.next_arg() {
        match arg.as_str() {
            "--port-file" => port_file = Some(PathBuf::from(args.value("--port-file")?)),
            "--workers" => workers = args.number("--workers", 1)? as usize,
            _ => return Err(ArgError::Unknown(arg)),
        }
    }
    let port_file = port_file.ok_or(ArgError::Required("--port-file FILE"))?;
    Ok(Options { port_file, workers })
}

async fn serve(options: Options) -> Result<(), String> {
    let (tx, mut rx) = mpsc::unbounded_channel::<(App, u16)>();
    let mut servers = Vec::new();
    for app in App::ALL {
        let figment = apps::figment()
            .merge(("address", "127.0.0.1"))
            .merge(("port", 0))
            .merge((
                "shutdown",
                rocket::config::Shutdown {
                    grace: 1,
                    mercy: 1,
                    ..Default::default()
                },
            ));
        let tx = tx.clone();
        let rocket = app
            .build(figment)
            .attach(AdHoc::on_liftoff("port", move |rocket| {
                Box::pin(async move {
                    let _ = tx.send((app, rocket.config().port));
                })
            }));
        servers.push(tokio::spawn(async move {
            rocket
                .launch()
                .await
                .map(|_| ())
                .map_err(|e| format!("{}: {e}", app.name()))
        }));
    }
    drop(tx);
    let mut ports = Vec::new();
    while ports.len() < App::ALL.len() {
        match rx.recv().await {
            Some(port) => ports.push(port),
            None => break,
        }
    }
    if ports.len() < App::ALL.len() {
        for server in servers {
            if let Ok(Err(e)) = server.await {
                return Err(e);
            }
        }
        return Err("an app did not start".into());
    }
    let lines: String = ports
        .iter()
        .map(|(app, port)| format!("{} {port}\n", app.name()))
        .collect();
    let tmp = options.port_file.with_extension("tmp");
    std::fs::write(&tmp, lines)
        .and_then(|()| std::fs::rename(&tmp, &options.port_file))
        .map_err(|e| format!("cannot write {}: {e}", options.port_file.display()))?;
    eprintln!("http_apps: serving {ports:?}");
    for server in servers {
        match server.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(e) => return Err(format!("server task failed: {e}")),
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let mut args = Args::from_env("http_apps");
    if !args.take_word("serve") {
        eprintln!(
            "http_apps: nothing to do; `scripts/bench.sh` runs it as \
             `http_apps --bench serve --port-file FILE [--workers N]`"
        );
        return ExitCode::SUCCESS;
    }
    let options = match options(&mut args) {
        Ok(options) => options,
        Err(e) => {
            return args.usage_error(&e, "http_apps --bench serve --port-file FILE [--workers N]")
        }
    };
    let workers = options.workers;
    block_on(
        args.name(),
        Runtime::MultiThread(Some(workers)),
        serve(options),
    )
}
