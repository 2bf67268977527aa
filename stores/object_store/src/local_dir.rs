//! What is particular to a store on a local directory: creating the
//! directory, and a fast listing.
//!
//! Sessions of a [`local_dir`](crate::ObjectStoreKv::local_dir) store are
//! the regular files directly in its directory. `LocalFileSystem::list`
//! walks the tree recursively and resolves every entry by its full path
//! several times (a symlink check, `is_file`, then the metadata), which makes
//! listing a million sessions cost about three path lookups per file. This
//! listing reads the one directory and takes each entry's metadata relative
//! to it (`fstatat`), one call per file, in chunks on the blocking pool, so
//! the sweep stays in constant memory.

use std::collections::VecDeque;
use std::fs::ReadDir;
use std::io;
use std::path::{Path, PathBuf};

use futures_util::stream::{self, BoxStream, StreamExt};
use rocket_kvsession::{KeyInfo, StoreError};

use crate::keys::{check_key, STORE_NAME};

/// Entries read per trip to the blocking pool.
const CHUNK: usize = 1024;

struct State {
    dir: PathBuf,
    prefix: String,
    entries: Option<ReadDir>,
    started: bool,
    buffer: VecDeque<Result<KeyInfo, StoreError>>,
}

/// Creates the session directory `dir` and its parents, if missing, and
/// makes `dir` accessible to its owner only (mode `0700` on Unix, whatever
/// the umask, also when it already existed): session files hold users'
/// data and their names are session ids.
pub(crate) fn create_dir(dir: &Path) -> Result<(), StoreError> {
    let refuse = |what: &str, e: io::Error| {
        StoreError::misconfigured_by(
            STORE_NAME,
            format!("cannot {what} session directory {}", dir.display()),
            e,
        )
    };
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        builder.mode(0o700);
        builder.create(dir).map_err(|e| refuse("create", e))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| refuse("restrict", e))?;
    }
    #[cfg(not(unix))]
    builder.create(dir).map_err(|e| refuse("create", e))?;
    Ok(())
}

fn failed(dir: &Path, e: io::Error) -> StoreError {
    StoreError::backend(
        STORE_NAME,
        io::Error::new(e.kind(), format!("listing {}: {e}", dir.display())),
    )
}

/// Reads up to `CHUNK` entries, keeping the regular files whose names are
/// valid keys starting with the prefix.
fn fill(state: &mut State) {
    if !state.started {
        state.started = true;
        match std::fs::read_dir(&state.dir) {
            Ok(entries) => state.entries = Some(entries),
            // No directory, no sessions.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => state.buffer.push_back(Err(failed(&state.dir, e))),
        }
    }
    let Some(entries) = state.entries.as_mut() else {
        return;
    };
    for _ in 0..CHUNK {
        let entry = match entries.next() {
            None => {
                state.entries = None;
                return;
            }
            Some(Ok(entry)) => entry,
            Some(Err(e)) => {
                state.buffer.push_back(Err(failed(&state.dir, e)));
                state.entries = None;
                return;
            }
        };
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.starts_with(state.prefix.as_str()) || check_key(name).is_err() {
            continue;
        }
        match entry.metadata() {
            Ok(meta) if meta.is_file() => state
                .buffer
                .push_back(Ok(KeyInfo::new(name, meta.modified().ok()))),
            Ok(_) => {}
            // Deleted since the directory was read.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => state.buffer.push_back(Err(failed(&state.dir, e))),
        }
    }
}

/// Streams the sessions in `dir` whose keys start with `prefix`.
pub(crate) fn list_dir(
    dir: PathBuf,
    prefix: String,
) -> BoxStream<'static, Result<KeyInfo, StoreError>> {
    let state = State {
        dir,
        prefix,
        entries: None,
        started: false,
        buffer: VecDeque::with_capacity(CHUNK),
    };
    stream::unfold(Some(state), |state| async move {
        let mut state = state?;
        if state.buffer.is_empty() && (!state.started || state.entries.is_some()) {
            state = match tokio::task::spawn_blocking(move || {
                fill(&mut state);
                state
            })
            .await
            {
                Ok(state) => state,
                Err(e) => return Some((Err(StoreError::backend(STORE_NAME, e)), None)),
            };
        }
        let item = state.buffer.pop_front()?;
        Some((item, Some(state)))
    })
    .boxed()
}
