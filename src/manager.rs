//! [`SessionManager`]: the app-wide handle on sessions, for "log out
//! everywhere", a page of "your devices" and mass logout.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use futures_util::future;
use futures_util::stream::TryStreamExt;

use crate::cleanup::{sweep, CleanupReport};
use crate::engine::Engine;
use crate::error::Error;
use crate::owners::{Found, CONCURRENCY};
use crate::record::Handle;
use crate::state::Origin;
use crate::time::from_unix;

/// One live session of an owner, as [`SessionManager::sessions_of`] lists
/// it: enough for a page of "your devices", nothing that opens the session.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionInfo {
    /// Names the session for [`SessionManager::revoke`] and
    /// [`Session::handle`](crate::Session::handle). A random value drawn when
    /// the session got its owner (kept when its id rotates), not its id nor
    /// anything an id or a store key can be derived from: safe to put in a
    /// page.
    pub handle: String,
    /// When the session started (its first id).
    pub created: SystemTime,
    /// The last request that wrote the session or refreshed its activity
    /// (whole seconds; read-only requests refresh it only with an
    /// `idle_timeout`, at most every `touch_after` seconds).
    pub last_active: SystemTime,
    /// When the session ends unless it is used again (the earlier of its
    /// lifetime and, with an `idle_timeout`, its idle deadline).
    pub expires_at: SystemTime,
    /// Whether the session's cookie is permanent ("remember me").
    pub permanent: bool,
    /// The session's label ([`Session::set_label`](crate::Session::set_label)),
    /// e.g. a device name. It came from the client: escape it in pages.
    pub label: Option<String>,
}

/// The reserved session key under which [`Session::set_label`](crate::Session::set_label)
/// stores the label.
pub const LABEL_KEY: &str = "_label";

/// The longest label, in bytes.
pub const MAX_LABEL_LEN: usize = 128;

/// `label` without control characters, trimmed, cut to [`MAX_LABEL_LEN`]
/// bytes at a character boundary.
pub(crate) fn clean_label(label: &str) -> String {
    let mut clean = String::with_capacity(label.len().min(MAX_LABEL_LEN));
    for c in label.trim().chars().filter(|c| !c.is_control()) {
        if clean.len() + c.len_utf8() > MAX_LABEL_LEN {
            break;
        }
        clean.push(c);
    }
    clean.trim_end().to_owned()
}

/// The label stored in `envelope`, if any and readable.
fn label_of(envelope: &crate::record::Envelope) -> Option<String> {
    let bytes = envelope.data.get(LABEL_KEY)?;
    rmp_serde::from_slice::<String>(bytes).ok()
}

/// The app-wide handle on sessions: list and revoke the sessions of an
/// owner ([`Session::set_owner`](crate::Session::set_owner)), end every
/// session of the app, run a sweep.
///
/// The [`KvSession`](crate::KvSession) fairing puts one into Rocket's
/// managed state at ignite: take `&State<SessionManager>` in a route, or
/// `rocket.state::<SessionManager>()` elsewhere. Cheap to clone.
///
/// Costs: [`sessions_of`](Self::sessions_of),
/// [`revoke`](Self::revoke) and [`revoke_owner`](Self::revoke_owner) read
/// the owner's index and each session it names (sixteen at a time), never
/// the whole store; [`revoke_all`](Self::revoke_all) streams every key of
/// the app's prefix in constant memory, like the sweep.
///
/// A revoked session is dead on its next request: its cookie finds no
/// session and the request gets a fresh one. Revocation ends records with
/// the same compare-and-swap as a logout, so a request of that session
/// saving at the same moment never brings it back, and a rotation racing it
/// ends too.
///
/// ```rust,no_run
/// # use rocket::{get, post, State};
/// use rocket_kvsession::{Session, SessionManager, SessionInfo};
///
/// #[get("/devices")]
/// async fn devices(session: Session<'_>, manager: &State<SessionManager>) -> Result<String, rocket_kvsession::Error> {
///     let Some(user) = session.owner() else { return Ok("not signed in".into()) };
///     let sessions: Vec<SessionInfo> = manager.sessions_of(&user).await?;
///     Ok(format!("{} sessions", sessions.len()))
/// }
///
/// #[post("/devices/<handle>/end")]
/// async fn end_one(session: Session<'_>, manager: &State<SessionManager>, handle: &str) -> Result<(), rocket_kvsession::Error> {
///     if let Some(user) = session.owner() {
///         manager.revoke(&user, handle).await?;
///     }
///     Ok(())
/// }
/// ```
#[derive(Clone)]
pub struct SessionManager {
    engine: Arc<Engine>,
}

impl fmt::Debug for SessionManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionManager")
            .field("store", &self.engine.store.name())
            .field("key_prefix", &self.engine.config.key_prefix)
            .finish()
    }
}

impl SessionManager {
    pub(crate) fn new(engine: Arc<Engine>) -> Self {
        SessionManager { engine }
    }

    /// The live sessions of `owner`, most recently active first. Sessions
    /// that ended, expired or changed owner are not listed (and are dropped
    /// from the owner's index on the way).
    pub async fn sessions_of(&self, owner: &str) -> Result<Vec<SessionInfo>, Error> {
        let now = self.engine.clock.now_unix();
        let mut infos: Vec<SessionInfo> = self
            .engine
            .owned(owner)
            .await?
            .into_iter()
            .filter_map(|(entry, found)| {
                let Found::Live {
                    envelope,
                    expires_at,
                } = found
                else {
                    return None;
                };
                let rules = self.engine.rules.for_session(&envelope.expiry);
                let active = rules.activity(envelope.last_active, expires_at, now);
                Some(SessionInfo {
                    handle: entry.handle.to_hex(),
                    created: from_unix(entry.id.created_unix()),
                    last_active: from_unix(active.min(now)),
                    expires_at: rules.expires_at(&entry.id, envelope.last_active, expires_at, now),
                    permanent: envelope.permanent,
                    label: label_of(&envelope),
                })
            })
            .collect();
        // A session rotated while this ran can be listed under both ids.
        infos.sort_by_key(|info| std::cmp::Reverse(info.last_active));
        let mut seen = std::collections::HashSet::new();
        infos.retain(|info| seen.insert(info.handle.clone()));
        Ok(infos)
    }

    /// Ends the session of `owner` whose handle is `handle` (from
    /// [`SessionInfo::handle`] or [`Session::handle`](crate::Session::handle)).
    /// Returns whether a live session ended; a handle that is unknown, not
    /// `owner`'s, or malformed ends nothing.
    pub async fn revoke(&self, owner: &str, handle: &str) -> Result<bool, Error> {
        let Some(handle) = Handle::from_hex(handle) else {
            return Ok(false);
        };
        let ended = self
            .engine
            .revoke_where(owner, &[], |entry| entry.handle == handle)
            .await?;
        Ok(ended > 0)
    }

    /// Ends every session of `owner` ("log out everywhere", e.g. after a
    /// password reset). Returns how many live sessions ended.
    pub async fn revoke_owner(&self, owner: &str) -> Result<u64, Error> {
        self.engine.revoke_where(owner, &[], |_| true).await
    }

    /// Ends every session of this app (every session id under its
    /// `key_prefix`; keys of other prefixes are left alone), owned or not.
    /// Streams the store's keys in constant memory and ends sixteen
    /// sessions at a time. Returns how many live sessions ended. Sessions
    /// created while it runs may survive it.
    pub async fn revoke_all(&self) -> Result<u64, Error> {
        let engine = &*self.engine;
        let keys = &engine.keys;
        let now = engine.clock.now_unix();
        engine
            .store
            .list(keys.prefix())
            .map_err(Error::from)
            .try_filter_map(|info| future::ready(Ok(keys.own_session_id(&info.key, now))))
            .map_ok(|id| engine.end_where(Origin { id, version: None }, None))
            .try_buffer_unordered(CONCURRENCY)
            .try_fold(0u64, |total, owners| async move {
                Ok(total + engine.revoked(&owners))
            })
            .await
    }

    /// One sweep now (see [`cleanup_sessions`](crate::cleanup_sessions)):
    /// expired sessions deleted, owner indexes pruned.
    pub async fn cleanup(&self) -> Result<CleanupReport, Error> {
        sweep(&self.engine.owners(), &self.engine.events).await
    }
}
