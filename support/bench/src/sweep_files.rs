//! Directories of session files, for the sweep benchmark
//! (`stores/object_store/benches/sweep.rs`) and the sweep tests
//! (`stores/object_store/tests/sweep.rs`).
//!
//! The layout is what `ObjectStoreKv::local_dir` writes: one file per
//! session, named by its key (`{random:016x}_{created:x}`, no key prefix),
//! directly in the directory. Names are derived from the file's index and a
//! seed, so two directories built with the same arguments are identical.
//! Expired sessions were created two days before `now`, and their files'
//! modification time is set to that moment; live sessions were created an
//! hour before `now`.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rocket_kvsession::SessionConfig;

/// The session lifetime the generated sessions are judged by: one day.
pub const LIFETIME_SECS: u64 = 86_400;

/// The configuration of the app that wrote these files: lifetime
/// [`LIFETIME_SECS`] and no key prefix (the files are named by the bare
/// session id).
pub fn session_config() -> SessionConfig {
    SessionConfig {
        lifetime: LIFETIME_SECS,
        key_prefix: String::new(),
        ..SessionConfig::default()
    }
}

/// A small, realistic session record (the engine's envelope is a few
/// dozen bytes of MessagePack).
const VALUE: &[u8] = b"\x01\x82\xa4user\xa5alice\xa5since\xce\x65\x5a\x1b\x00\x00\x00\x00\x00";

/// SplitMix64: a well-mixed 64-bit value for index `n`.
fn mix(seed: u64, n: u64) -> u64 {
    let mut z = seed
        .wrapping_add(n.wrapping_mul(0x9e37_79b9_7f4a_7c15))
        .wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Whether file `n` holds an expired session, for `expired_percent` in 0..=100.
pub fn is_expired(n: u64, expired_percent: u64) -> bool {
    n % 100 < expired_percent
}

/// The key (file name) of session `n`.
pub fn key(seed: u64, n: u64, now: u64, expired_percent: u64) -> String {
    let created = if is_expired(n, expired_percent) {
        now - 2 * LIFETIME_SECS
    } else {
        now - 3600
    };
    format!("{:016x}_{created:x}", mix(seed, n))
}

/// Writes `count` session files into `dir` (created if missing), with
/// `threads` writer threads. Returns how many are expired.
pub fn generate(
    dir: &Path,
    count: u64,
    expired_percent: u64,
    now: u64,
    seed: u64,
    threads: u64,
) -> std::io::Result<u64> {
    std::fs::create_dir_all(dir)?;
    let expired_mtime = UNIX_EPOCH + Duration::from_secs(now - 2 * LIFETIME_SECS);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads.max(1))
            .map(|t| {
                scope.spawn(move || -> std::io::Result<()> {
                    let mut n = t;
                    while n < count {
                        let path = dir.join(key(seed, n, now, expired_percent));
                        let mut file = File::create_new(&path)?;
                        file.write_all(VALUE)?;
                        if is_expired(n, expired_percent) {
                            file.set_modified(expired_mtime)?;
                        }
                        n += threads.max(1);
                    }
                    Ok(())
                })
            })
            .collect();
        workers
            .into_iter()
            .try_for_each(|w| w.join().expect("writer thread panicked"))
    })?;
    Ok((0..count)
        .filter(|&n| is_expired(n, expired_percent))
        .count() as u64)
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// This process's peak resident set size in KiB (`VmHWM`), where the
/// system reports it.
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}
