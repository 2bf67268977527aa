//! What is particular to a store on a local directory: creating the
//! directory, a fast listing, and batched deletes.
//!
//! Sessions of an `ObjectStoreKv::local_dir` store are the regular files
//! directly in its directory. `LocalFileSystem::list` walks the tree
//! recursively and resolves every entry by its full path several times (a
//! symlink check, `is_file`, then the metadata), which makes listing a
//! million sessions cost about three path lookups per file. This listing
//! reads the one directory and takes each entry's metadata relative to it
//! (`fstatat`), one call per file, in chunks on the blocking pool, so the
//! sweep stays in constant memory.
//!
//! Deleting is batched the same way. `LocalFileSystem::delete_stream` runs
//! every unlink as its own blocking task, handed from a runtime worker to a
//! blocking thread and back, and that handoff (futex waits and wake-ups)
//! costs more CPU than the unlink's own user-space work. [`delete_files`]
//! unlinks a batch of files in a few blocking tasks, each removing its share
//! one file after the other: a handful of handoffs per batch, and still a
//! few unlinks in flight to hide the disk's latency.

use std::collections::VecDeque;
use std::fmt;
use std::fs::ReadDir;
use std::io;
use std::path::{Path, PathBuf};

use futures_util::stream::{self, BoxStream, StreamExt};
use rocket_kvsession::{KeyInfo, StoreError};

use crate::error::STORE_NAME;
use crate::keys::check_key;

/// Entries read per trip to the blocking pool.
const CHUNK: usize = 1024;

/// How many blocking tasks one [`delete_files`] call splits its files
/// across: each unlink can wait for the disk (freeing the inode's blocks,
/// a discard), and a few waits in flight hide most of that latency.
const UNLINK_TASKS: usize = 4;

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

/// A failed file system call on one path, with the `io::Error` kept as its
/// source.
#[derive(Debug)]
struct FileError {
    action: &'static str,
    path: PathBuf,
    source: io::Error,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.action,
            self.path.display(),
            self.source
        )
    }
}

impl std::error::Error for FileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

fn file_error(action: &'static str, path: &Path, source: io::Error) -> StoreError {
    StoreError::backend(
        STORE_NAME,
        FileError {
            action,
            path: path.to_owned(),
            source,
        },
    )
}

fn failed(dir: &Path, e: io::Error) -> StoreError {
    file_error("listing", dir, e)
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

/// Unlinks the files named by `keys` in `dir`, one after the other; a file
/// that is already gone counts as deleted. Stops at the first other error.
///
/// On Unix each file is unlinked relative to the open directory
/// (`unlinkat`), as `find -delete` does, instead of resolving its whole path
/// again for every file.
#[cfg(unix)]
fn unlink_all(dir: &Path, keys: &[String]) -> Result<(), StoreError> {
    use rustix::fs::{unlinkat, AtFlags};
    let handle = match std::fs::File::open(dir) {
        Ok(handle) => handle,
        // No directory, nothing to delete.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(file_error("opening", dir, e)),
    };
    for key in keys {
        match unlinkat(&handle, key.as_str(), AtFlags::empty()) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => {}
            Err(e) => return Err(file_error("deleting", &dir.join(key), e.into())),
        }
    }
    Ok(())
}

/// Unlinks the files named by `keys` in `dir`, one after the other; a file
/// that is already gone counts as deleted. Stops at the first other error.
#[cfg(not(unix))]
fn unlink_all(dir: &Path, keys: &[String]) -> Result<(), StoreError> {
    let mut path = dir.to_path_buf();
    for key in keys {
        path.push(key);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(file_error("deleting", &path, e)),
        }
        path.pop();
    }
    Ok(())
}

/// Deletes the session files named by `keys` (checked keys, so each is one
/// file name directly in `dir`), split across at most [`UNLINK_TASKS`]
/// blocking tasks. Files already gone count as deleted. Every task runs to
/// its end (or its first error) before this returns; the first error is
/// reported, with the file's path.
pub(crate) async fn delete_files(dir: &Path, keys: Vec<String>) -> Result<(), StoreError> {
    if keys.is_empty() {
        return Ok(());
    }
    let per_task = keys.len().div_ceil(UNLINK_TASKS);
    let mut keys = keys.into_iter();
    let mut tasks = Vec::with_capacity(UNLINK_TASKS);
    loop {
        let part: Vec<String> = keys.by_ref().take(per_task).collect();
        if part.is_empty() {
            break;
        }
        let dir = dir.to_owned();
        tasks.push(tokio::task::spawn_blocking(move || unlink_all(&dir, &part)));
    }
    let mut outcome = Ok(());
    for task in tasks {
        let result = match task.await {
            Ok(result) => result,
            Err(e) => Err(StoreError::backend(STORE_NAME, e)),
        };
        if outcome.is_ok() {
            outcome = result;
        }
    }
    outcome
}
