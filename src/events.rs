//! Session lifecycle events ([`KvSession::on_event`](crate::KvSession::on_event)):
//! created, rotated, destroyed, revoked, expired, for audit logs.

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use crate::record::Owner;

/// What happened to a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SessionEventKind {
    /// A new session was stored (its first save).
    Created,
    /// A session moved to a new id (`regenerate()` saved).
    Rotated,
    /// A session was ended by its own request (`destroy()`, or a `clear()`
    /// that left it empty).
    Destroyed,
    /// A session was ended by `revoke`, `revoke_owner`,
    /// `revoke_other_sessions`, `revoke_all`, or to make room under the
    /// per-owner cap.
    Revoked,
    /// A session past its deadline was found and ended on load, or deleted
    /// by a sweep. Sessions a store expires by itself (a Redis TTL) are not
    /// seen, so they emit nothing.
    Expired,
}

/// One lifecycle event of a session, handed to the
/// [`KvSession::on_event`](crate::KvSession::on_event) handler after the
/// store write that made it true. It names the session by its owner and
/// handle (see [`Session::set_owner`](crate::Session::set_owner)), never by
/// its id or cookie: safe to log.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionEvent {
    kind: SessionEventKind,
    owner: Option<String>,
    handle: Option<String>,
}

impl SessionEvent {
    /// What happened.
    pub fn kind(&self) -> SessionEventKind {
        self.kind
    }

    /// The session's owner, if it has one (and the event knows it: a sweep
    /// judges keys alone, so its `Expired` events have none).
    pub fn owner(&self) -> Option<&str> {
        self.owner.as_deref()
    }

    /// The session's handle (as [`SessionInfo::handle`](crate::SessionInfo::handle)
    /// lists it), if it has an owner.
    pub fn handle(&self) -> Option<&str> {
        self.handle.as_deref()
    }
}

/// The app's event handler.
pub(crate) type EventHandler = Arc<dyn Fn(&SessionEvent) + Send + Sync>;

/// Where the engine sends events: the app's handler, if it set one.
#[derive(Clone, Default)]
pub(crate) struct Events(Option<EventHandler>);

impl fmt::Debug for Events {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "Events(handler)"
        } else {
            "Events(none)"
        })
    }
}

impl Events {
    pub(crate) fn new(handler: EventHandler) -> Self {
        Events(Some(handler))
    }

    /// Hands `kind` of a session owned by `owner` to the handler. A
    /// handler that panics is logged, never passed on to the request.
    pub(crate) fn emit(&self, kind: SessionEventKind, owner: Option<&Owner>) {
        let Some(handler) = &self.0 else {
            return;
        };
        let event = SessionEvent {
            kind,
            owner: owner.map(|o| o.name.clone()),
            handle: owner.map(|o| o.handle.to_hex()),
        };
        if catch_unwind(AssertUnwindSafe(|| handler(&event))).is_err() {
            log::error!("kvsession: the session event handler panicked on a {kind:?} event");
        }
    }

    /// [`emit`](Self::emit) `n` times, for sessions without a known owner.
    pub(crate) fn emit_many(&self, kind: SessionEventKind, n: u64) {
        if self.0.is_some() {
            for _ in 0..n {
                self.emit(kind, None);
            }
        }
    }
}
