//! One request's view of its session, and the rules that govern it: what
//! counts as a change, how a request's changes merge onto a record another
//! request wrote meanwhile (a `clear()` wins), and when the browser needs a
//! new cookie. No store and no Rocket here: the engine does the I/O, the
//! guard the cookie jar.

use std::time::SystemTime;

use crate::id::SessionId;
use crate::lifetime::Lifetime;
use crate::record::{Data, Envelope, OwnExpiry, Owner};
use crate::store::Version;

/// What one request changed, to be merged onto the newest stored record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Changes {
    /// Keys set (`Some`) or removed (`None`) since the last clear.
    keys: KeyChanges,
    /// Whether the request cleared the whole session.
    cleared: bool,
    /// The permanent flag, if the request changed it.
    permanent: Option<bool>,
    /// The owner, if the request set it (after any clear).
    owner: Option<Owner>,
    /// The session's own lifetime, if the request set it.
    lifetime: Option<Option<u64>>,
    /// The session's own idle timeout, if the request set it.
    idle_timeout: Option<Option<u64>>,
}

/// The keys one request set or removed, sorted by key: a request changes
/// a few keys, so a sorted `Vec` (one small allocation, cloned as one)
/// serves better than a `BTreeMap` (a 500-byte node per map, allocated
/// again by every clone a save's snapshot takes).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct KeyChanges(Vec<(String, Option<Vec<u8>>)>);

impl KeyChanges {
    /// Records that `key` now holds `change` (`None`: removed).
    fn insert(&mut self, key: String, change: Option<Vec<u8>>) {
        match self.0.binary_search_by(|(k, _)| k.as_str().cmp(&key)) {
            Ok(i) => self.0[i].1 = change,
            Err(i) => self.0.insert(i, (key, change)),
        }
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn clear(&mut self) {
        self.0.clear();
    }

    /// The changes, in key order.
    fn iter(&self) -> impl Iterator<Item = (&String, &Option<Vec<u8>>)> {
        self.0.iter().map(|(key, change)| (key, change))
    }
}

impl Changes {
    /// Whether there is nothing to save.
    pub(crate) fn is_empty(&self) -> bool {
        self.keys.is_empty()
            && !self.cleared
            && self.permanent.is_none()
            && self.owner.is_none()
            && self.lifetime.is_none()
            && self.idle_timeout.is_none()
    }

    /// The owner this request gave the session, if any.
    pub(crate) fn new_owner(&self) -> Option<&Owner> {
        self.owner.as_ref()
    }

    /// Applies these changes on top of `current`, the newest record.
    /// `clear()` is a whole-session operation: it drops every key of
    /// `current`, including keys other requests added meanwhile.
    pub(crate) fn merge_onto(&self, mut current: Envelope) -> Envelope {
        if self.cleared {
            current.data.clear();
            current.owner = None;
            current.expiry = OwnExpiry::default();
        }
        for (key, change) in self.keys.iter() {
            match change {
                Some(value) => current.data.insert(key.clone(), value.clone()),
                None => {
                    current.data.remove(key);
                }
            }
        }
        if let Some(permanent) = self.permanent {
            current.permanent = permanent;
        }
        if let Some(owner) = &self.owner {
            current.owner = Some(owner.clone());
        }
        if let Some(lifetime) = self.lifetime {
            current.expiry.lifetime = lifetime;
        }
        if let Some(idle_timeout) = self.idle_timeout {
            current.expiry.idle_timeout = idle_timeout;
        }
        current
    }

    /// Whether the request touched the data or the owner (not only the
    /// permanent flag).
    fn touches_data(&self) -> bool {
        self.cleared || !self.keys.is_empty() || self.owner.is_some()
    }
}

/// A cookie the browser must be sent: the session's id and permanence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CookieSpec {
    pub(crate) id: SessionId,
    pub(crate) permanent: bool,
    /// The session's own lifetime, in seconds (`Session::set_lifetime`):
    /// a permanent cookie's `Max-Age` follows it.
    pub(crate) lifetime: Option<u64>,
}

/// The stored record a rotated session moves away from at save time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Origin {
    /// The id the request loaded.
    pub(crate) id: SessionId,
    /// The version of the record as loaded.
    pub(crate) version: Option<Version>,
}

/// One request's session: the record as loaded (or as this request last
/// wrote it), this request's view of the data, and its pending changes.
#[derive(Debug)]
pub(crate) struct SessionState {
    /// The session id; `None` for a new session that has not needed one yet.
    id: Option<SessionId>,
    /// Whether a record with this id exists in the store (as of loading or
    /// of this request's own writes).
    stored: bool,
    /// The version of the record this request loaded or last wrote.
    version: Option<Version>,
    /// The session as this request sees it: the record plus its changes.
    envelope: Envelope,
    /// The expiry the store held when the record was loaded.
    record_expires_at: Option<SystemTime>,
    /// What this request changed since loading (or its last save).
    changes: Changes,
    /// The cookie the browser holds as of this response: what it sent for a
    /// loaded session, else what this request issued.
    cookie: Option<CookieSpec>,
    /// Whether this request issued a session cookie.
    cookie_issued: bool,
    /// The stored record this session moves away from when it is saved:
    /// `regenerate()` on a stored session, deferred to the response.
    rotated_from: Option<Origin>,
    /// The owner a `clear()` removed, for the event that ends the session.
    cleared_owner: Option<Owner>,
}

/// What a save writes of a request's session, taken once under the lock.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    /// When the snapshot was taken, in Unix seconds: the activity time of
    /// whatever the save writes.
    pub(crate) now: u64,
    /// The id the session is written under.
    pub(crate) id: SessionId,
    /// The version of the record this request loaded or last wrote.
    pub(crate) version: Option<Version>,
    /// The session as the request sees it, with the activity time loaded.
    pub(crate) envelope: Envelope,
    /// What the request changed, to merge onto a newer record.
    pub(crate) changes: Changes,
    /// Whether a cookie for an id that has no record yet went into the
    /// response (a new or rotated session): it must not reach the browser
    /// if the save fails.
    pub(crate) new_cookie: bool,
}

/// What a response must write for its session, decided by
/// [`SessionState::plan`] from the request's session alone (no store, no
/// Rocket); the engine carries it out, one store operation per arm.
#[derive(Debug)]
pub(crate) enum SavePlan {
    /// Nothing to write, nothing to change in the response.
    Nothing,
    /// Nothing is written, and the new session's cookie must not reach the
    /// browser: its id has no record.
    DropCookie,
    /// A stored session the request neither changed nor rotated: refresh
    /// its activity, if that is due.
    Touch(Untouched),
    /// The first record of a new session (insert-if-absent).
    Create(Snapshot),
    /// A rotated session: its record under the new id, then the old record
    /// ended with a compare-and-swap to a "moved to" marker.
    Rotate(Snapshot, Origin),
    /// The stored session, with this request's changes merged onto the
    /// newest record (compare-and-swap).
    Update(Snapshot),
    /// The session was emptied: it ends, and the cookie goes as [`Ending`] says.
    End(Origin, Ending),
}

/// What becomes of the browser's cookie when a save ends the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// A rotated session emptied in the same request: the new cookie is
    /// dropped (the browser keeps the old one, whose id opens nothing).
    DropCookie,
    /// A stored session emptied by `clear()`: the cookie is removed.
    RemoveCookie,
}

impl SavePlan {
    /// Whether the response carries a cookie for an id that has no record
    /// yet, which must be dropped if carrying out the plan fails.
    pub(crate) fn issues_new_cookie(&self) -> bool {
        match self {
            SavePlan::Create(snapshot) | SavePlan::Rotate(snapshot, _) => snapshot.new_cookie,
            SavePlan::End(_, Ending::DropCookie) => true,
            _ => false,
        }
    }
}

/// What a save needs of a request that changed nothing (the common
/// read-only request), taken without copying the session's data.
#[derive(Debug, Clone)]
pub(crate) struct Untouched {
    pub(crate) id: SessionId,
    pub(crate) last_active: u64,
    pub(crate) version: Option<Version>,
    pub(crate) record_expires_at: Option<SystemTime>,
    pub(crate) expiry: OwnExpiry,
}

impl Untouched {
    /// Whether refreshing this session's activity is due at `now` (Unix
    /// seconds) under `rules`, the configured lifetime: what the save of a
    /// read-only request decides first.
    pub(crate) fn touch_due(&self, rules: &Lifetime, now: u64) -> bool {
        let rules = rules.for_session(&self.expiry);
        let activity = rules.activity(self.last_active, self.record_expires_at, now);
        rules.touch_due(activity, now)
    }
}

impl Snapshot {
    /// The session as a save writes it: activity time `now`.
    pub(crate) fn written(&self) -> Envelope {
        let mut envelope = self.envelope.clone();
        envelope.last_active = self.now;
        envelope
    }
}

impl SessionState {
    /// A new, empty session with no id.
    pub(crate) fn fresh(permanent: bool) -> Self {
        SessionState {
            id: None,
            stored: false,
            version: None,
            envelope: Envelope {
                last_active: 0,
                permanent,
                data: Data::default(),
                owner: None,
                expiry: OwnExpiry::default(),
            },
            record_expires_at: None,
            changes: Changes::default(),
            cookie: None,
            cookie_issued: false,
            rotated_from: None,
            cleared_owner: None,
        }
    }

    /// A session loaded from the store under `id`.
    pub(crate) fn loaded(
        id: SessionId,
        envelope: Envelope,
        version: Option<Version>,
        record_expires_at: Option<SystemTime>,
    ) -> Self {
        let cookie = CookieSpec {
            id: id.clone(),
            permanent: envelope.permanent,
            lifetime: envelope.expiry.lifetime,
        };
        SessionState {
            id: Some(id),
            stored: true,
            version,
            envelope,
            record_expires_at,
            changes: Changes::default(),
            cookie: Some(cookie),
            cookie_issued: false,
            rotated_from: None,
            cleared_owner: None,
        }
    }

    pub(crate) fn id(&self) -> Option<&SessionId> {
        self.id.as_ref()
    }

    pub(crate) fn is_stored(&self) -> bool {
        self.stored
    }

    pub(crate) fn is_modified(&self) -> bool {
        !self.changes.is_empty()
    }

    /// The session's id, drawn with `new_id` if it has none yet (a new
    /// session, or one that rotated): the id its next cookie carries.
    pub(crate) fn ensure_id(&mut self, new_id: impl FnOnce() -> SessionId) -> &SessionId {
        self.id.get_or_insert_with(new_id)
    }

    /// Whether the save has anything to write: changes, or a rotation.
    pub(crate) fn has_pending(&self) -> bool {
        !self.changes.is_empty() || self.rotated_from.is_some()
    }

    /// The credential (cookie or token) the client holds as of this
    /// response, if the session has one.
    pub(crate) fn credential(&self) -> Option<&CookieSpec> {
        self.cookie.as_ref()
    }

    pub(crate) fn is_permanent(&self) -> bool {
        self.envelope.permanent
    }

    /// The encoded value of `key`.
    pub(crate) fn value(&self, key: &str) -> Option<&[u8]> {
        self.envelope.data.get(key)
    }

    pub(crate) fn contains_key(&self, key: &str) -> bool {
        self.envelope.data.contains_key(key)
    }

    pub(crate) fn keys(&self) -> impl Iterator<Item = &str> {
        self.envelope.data.keys()
    }

    pub(crate) fn len(&self) -> usize {
        self.envelope.data.len()
    }

    /// Sets `key` to the encoded `value`; returns whether that changed
    /// anything (an equal value is not a change).
    pub(crate) fn insert(&mut self, key: String, value: Vec<u8>) -> bool {
        if self.envelope.data.get(&key) == Some(value.as_slice()) {
            return false;
        }
        self.envelope.data.insert(key.clone(), value.clone());
        self.changes.keys.insert(key, Some(value));
        true
    }

    /// Removes `key`; returns whether it was there.
    pub(crate) fn remove(&mut self, key: &str) -> bool {
        if !self.envelope.data.remove(key) {
            return false;
        }
        self.changes.keys.insert(key.to_owned(), None);
        true
    }

    /// Removes every key, the owner and the session's own expiry settings;
    /// returns whether anything changed.
    pub(crate) fn clear(&mut self) -> bool {
        if self.envelope.is_empty() && self.changes.keys.is_empty() {
            return false;
        }
        self.envelope.data.clear();
        if let Some(owner) = self.envelope.owner.take() {
            self.cleared_owner.get_or_insert(owner);
        }
        self.envelope.expiry = OwnExpiry::default();
        self.changes.keys.clear();
        self.changes.owner = None;
        self.changes.lifetime = None;
        self.changes.idle_timeout = None;
        self.changes.cleared = true;
        true
    }

    /// Sets the session's own lifetime (seconds); returns whether it changed.
    pub(crate) fn set_lifetime(&mut self, lifetime: Option<u64>) -> bool {
        if self.envelope.expiry.lifetime == lifetime {
            return false;
        }
        self.envelope.expiry.lifetime = lifetime;
        self.changes.lifetime = Some(lifetime);
        true
    }

    /// Sets the session's own idle timeout (seconds; `None`: the
    /// configured one); returns whether it changed.
    pub(crate) fn set_idle_timeout(&mut self, idle_timeout: Option<u64>) -> bool {
        if self.envelope.expiry.idle_timeout == idle_timeout {
            return false;
        }
        self.envelope.expiry.idle_timeout = idle_timeout;
        self.changes.idle_timeout = Some(idle_timeout);
        true
    }

    /// The owner of the session as stored: its owner, or the one a
    /// `clear()` in this request removed.
    pub(crate) fn loaded_owner(&self) -> Option<&Owner> {
        self.cleared_owner.as_ref().or(self.envelope.owner.as_ref())
    }

    /// The session's owner and handle, if it has one.
    pub(crate) fn owner(&self) -> Option<&Owner> {
        self.envelope.owner.as_ref()
    }

    /// Gives the session the owner `name`. The handle is kept when the
    /// owner stays the same, else `handle` is taken. Returns whether that
    /// changed anything.
    pub(crate) fn set_owner(
        &mut self,
        name: String,
        handle: impl FnOnce() -> crate::record::Handle,
    ) -> bool {
        if self.envelope.owner.as_ref().is_some_and(|o| o.name == name) {
            return false;
        }
        // The owner a `clear()` of this request removed, set again: its
        // index entry names the session with the old handle, so keep it.
        let handle = match &self.cleared_owner {
            Some(cleared) if cleared.name == name => cleared.handle,
            _ => handle(),
        };
        let owner = Owner { name, handle };
        self.envelope.owner = Some(owner.clone());
        self.changes.owner = Some(owner);
        true
    }

    /// Sets the permanent flag; returns whether it changed.
    pub(crate) fn set_permanent(&mut self, permanent: bool) -> bool {
        if self.envelope.permanent == permanent {
            return false;
        }
        self.envelope.permanent = permanent;
        self.changes.permanent = Some(permanent);
        true
    }

    /// Gives the session a new id, drawn by the next [`cookie_due`]. A
    /// stored session remembers the record it moves away from: the save
    /// writes the new record, then ends the old one (`regenerate()`). Until
    /// then the store is untouched, so a failed request changes nothing.
    ///
    /// [`cookie_due`]: Self::cookie_due
    pub(crate) fn rotate(&mut self) {
        if self.stored {
            self.rotated_from = self.id.take().map(|id| Origin {
                id,
                version: self.version.take(),
            });
            self.stored = false;
            self.record_expires_at = None;
        }
        self.id = None;
    }

    /// The stored record this session was loaded from and still answers
    /// for: the current record, or the one a pending rotation moves from.
    pub(crate) fn origin(&self) -> Option<Origin> {
        match (&self.rotated_from, self.stored, &self.id) {
            (Some(origin), _, _) => Some(origin.clone()),
            (None, true, Some(id)) => Some(Origin {
                id: id.clone(),
                version: self.version.clone(),
            }),
            _ => None,
        }
    }

    /// The cookie the browser must be sent now, if its cookie no longer
    /// matches the session; draws the id with `new_id` if the session has
    /// none yet. Call after every change.
    ///
    /// The rules: a stored session's cookie carries its id and permanence;
    /// a new session gets a cookie as soon as its data is touched, so the
    /// cookie can still be set while the handler runs (response fairings
    /// come too late for the jar); a new session that is still empty at
    /// save time is not stored and its cookie is dropped from the response.
    pub(crate) fn cookie_due(&mut self, new_id: impl FnOnce() -> SessionId) -> Option<CookieSpec> {
        let wanted = self.stored
            || self.rotated_from.is_some()
            || !self.envelope.is_empty()
            || self.changes.touches_data();
        if !wanted {
            return None;
        }
        let id = self.id.get_or_insert_with(new_id).clone();
        let spec = CookieSpec {
            id,
            permanent: self.envelope.permanent,
            lifetime: self.envelope.expiry.lifetime,
        };
        if self.cookie.as_ref() == Some(&spec) {
            return None;
        }
        self.cookie = Some(spec.clone());
        self.cookie_issued = true;
        Some(spec)
    }

    /// Whether this request put a session cookie into the jar.
    pub(crate) fn cookie_issued(&self) -> bool {
        self.cookie_issued
    }

    /// The browser must be sent the session's cookie again, unchanged but
    /// sealed anew (it came sealed with an earlier secret key).
    pub(crate) fn reissue_cookie(&mut self) {
        self.cookie = None;
    }

    /// Whether the browser's cookie must be (re)issued by the guard.
    pub(crate) fn cookie_missing(&self) -> bool {
        self.cookie.is_none() && self.stored
    }

    /// For a stored session this request neither changed, rotated nor
    /// re-issued a cookie for: what a touch needs. `None` otherwise (take a
    /// [`snapshot`](Self::snapshot)).
    pub(crate) fn untouched(&self) -> Option<Untouched> {
        let id = self.id.as_ref()?;
        let untouched = self.stored
            && self.changes.is_empty()
            && self.rotated_from.is_none()
            && !self.cookie_issued;
        untouched.then(|| Untouched {
            id: id.clone(),
            last_active: self.envelope.last_active,
            version: self.version.clone(),
            record_expires_at: self.record_expires_at,
            expiry: self.envelope.expiry,
        })
    }

    /// What a save writes, taken at `now` (Unix seconds); `None` for a
    /// session that has no id yet.
    fn snapshot(&self, now: u64) -> Option<Snapshot> {
        Some(Snapshot {
            now,
            id: self.id.clone()?,
            version: self.version.clone(),
            envelope: self.envelope.clone(),
            changes: self.changes.clone(),
            new_cookie: self.cookie_issued && !self.stored,
        })
    }

    /// The session's data as a rewrite at `now` stores it, unchanged but
    /// for its activity time (a touch on a store that keeps no expiry).
    pub(crate) fn written_at(&self, now: u64) -> Envelope {
        let mut envelope = self.envelope.clone();
        envelope.last_active = now;
        envelope
    }

    /// What the response must write, at `now` (Unix seconds). `persist` is
    /// false for a response whose changes are not kept (a 5xx without
    /// `save_on_error`); `from_handler` tells whether the handler's
    /// response is sent (with the cookie this request issued), not a
    /// catcher's.
    ///
    /// The rules: a read-only request only touches, and only if its
    /// response persists; a response that does not persist writes nothing,
    /// and a new cookie must not reach the browser; a catcher's response
    /// (the handler's cookie dropped) writes nothing; a rotated session is
    /// moved, or ended if it was emptied; a new session is created unless
    /// it is empty (never stored, its cookie dropped); a stored session's
    /// changes are merged in, and a `clear()` that left it empty ends it.
    pub(crate) fn plan(&self, now: u64, persist: bool, from_handler: bool) -> SavePlan {
        if let Some(untouched) = self.untouched() {
            return if persist {
                SavePlan::Touch(untouched)
            } else {
                SavePlan::Nothing
            };
        }
        let new_cookie = self.cookie_issued && !self.stored;
        let unsaved = if new_cookie {
            SavePlan::DropCookie
        } else {
            SavePlan::Nothing
        };
        if !persist {
            // Nothing of this request is written, a rotation included: the
            // browser keeps the cookie it had, which still works.
            return unsaved;
        }
        if !from_handler {
            // A catcher answered: the request failed, nothing is written.
            return SavePlan::Nothing;
        }
        let Some(snapshot) = self.snapshot(now) else {
            return SavePlan::Nothing;
        };
        if let Some(origin) = &self.rotated_from {
            return if self.envelope.is_empty() {
                SavePlan::End(origin.clone(), Ending::DropCookie)
            } else {
                SavePlan::Rotate(snapshot, origin.clone())
            };
        }
        if !self.stored {
            // Never store an empty new session.
            return if self.envelope.is_empty() {
                unsaved
            } else {
                SavePlan::Create(snapshot)
            };
        }
        if self.changes.is_empty() {
            // Only a cookie was re-issued (same id, same permanence).
            return SavePlan::Nothing;
        }
        if self.changes.cleared && self.envelope.is_empty() {
            // clear() is a whole-session operation: the session ends,
            // whatever concurrent requests did meanwhile.
            let origin = Origin {
                id: snapshot.id,
                version: None,
            };
            return SavePlan::End(origin, Ending::RemoveCookie);
        }
        SavePlan::Update(snapshot)
    }

    /// The record of this session was written as `envelope` with `version`
    /// (a save, the first record of a new session, or the record a rotated
    /// session moved to).
    pub(crate) fn saved(&mut self, envelope: Envelope, version: Option<Version>) {
        self.stored = true;
        self.version = version;
        self.envelope = envelope;
        self.changes = Changes::default();
        self.rotated_from = None;
        self.cleared_owner = None;
    }

    /// The session ended: the request goes on with a new, empty one. The
    /// browser's cookie is being removed.
    pub(crate) fn reset(&mut self, permanent: bool) {
        *self = SessionState::fresh(permanent);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn id(n: u64) -> SessionId {
        format!("{n:016x}_6745c1a0").parse().unwrap()
    }

    fn record(pairs: &[(&str, &[u8])]) -> Envelope {
        Envelope {
            last_active: 1,
            permanent: true,
            data: pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.to_vec()))
                .collect(),
            owner: None,
            expiry: OwnExpiry::default(),
        }
    }

    fn loaded(pairs: &[(&str, &[u8])]) -> SessionState {
        SessionState::loaded(id(1), record(pairs), Some(Version::from(1u64)), None)
    }

    #[test]
    fn an_equal_value_is_not_a_change() {
        let mut st = loaded(&[("a", b"1")]);
        assert!(!st.insert("a".into(), b"1".to_vec()));
        assert!(!st.is_modified());
        assert!(st.insert("a".into(), b"2".to_vec()));
        assert!(st.is_modified());
        assert_eq!(st.value("a"), Some(&b"2"[..]));
    }

    #[test]
    fn removing_an_absent_key_is_not_a_change() {
        let mut st = loaded(&[("a", b"1")]);
        assert!(!st.remove("b"));
        assert!(!st.is_modified());
        assert!(st.remove("a"));
        assert!(st.is_modified());
    }

    #[test]
    fn clearing_an_empty_session_is_not_a_change() {
        let mut st = SessionState::fresh(true);
        assert!(!st.clear());
        assert!(!st.is_modified());
    }

    #[test]
    fn changes_merge_key_by_key_onto_the_newest_record() {
        let mut st = loaded(&[("a", b"1"), ("b", b"1")]);
        st.insert("a".into(), b"2".to_vec());
        st.remove("b");
        let newest = record(&[("a", b"1"), ("b", b"1"), ("c", b"other")]);
        let merged = st.snapshot(5).unwrap().changes.merge_onto(newest);
        assert_eq!(merged, record(&[("a", b"2"), ("c", b"other")]));
    }

    #[test]
    fn clear_wins_over_keys_others_added() {
        let mut st = loaded(&[("a", b"1")]);
        assert!(st.clear());
        st.insert("z".into(), b"mine".to_vec());
        let newest = record(&[("a", b"1"), ("c", b"other")]);
        let SavePlan::Update(snapshot) = st.plan(5, true, true) else {
            panic!("a cleared session with a key set again is updated");
        };
        assert_eq!(
            snapshot.changes.merge_onto(newest),
            record(&[("z", b"mine")])
        );
    }

    #[test]
    fn a_permanence_change_merges_too() {
        let mut st = loaded(&[("a", b"1")]);
        assert!(st.set_permanent(false));
        let merged = st
            .snapshot(5)
            .unwrap()
            .changes
            .merge_onto(record(&[("a", b"1")]));
        assert!(!merged.permanent);
        assert!(!st.set_permanent(false));
    }

    #[test]
    fn a_new_session_gets_its_cookie_when_its_data_is_touched() {
        let mut st = SessionState::fresh(true);
        assert_eq!(st.cookie_due(|| id(7)), None, "nothing to carry yet");
        assert!(st.set_permanent(false));
        assert_eq!(st.cookie_due(|| id(7)), None, "still nothing to store");
        st.insert("a".into(), b"1".to_vec());
        let spec = st.cookie_due(|| id(7)).expect("a cookie");
        assert_eq!((spec.id, spec.permanent), (id(7), false));
        st.insert("b".into(), b"1".to_vec());
        assert_eq!(st.cookie_due(|| id(8)), None, "the same cookie stands");
        assert!(st.snapshot(1).unwrap().new_cookie);
    }

    #[test]
    fn a_loaded_session_needs_a_cookie_only_when_it_changes() {
        let mut st = loaded(&[("a", b"1")]);
        st.insert("b".into(), b"1".to_vec());
        assert_eq!(st.cookie_due(|| unreachable!()), None);
        st.set_permanent(false);
        let spec = st.cookie_due(|| unreachable!()).expect("a cookie");
        assert_eq!((spec.id, spec.permanent), (id(1), false));
        assert!(!st.snapshot(1).unwrap().new_cookie, "the session is stored");
    }

    #[test]
    fn a_rotated_session_needs_a_cookie_with_the_new_id_and_remembers_its_origin() {
        let mut st = loaded(&[("a", b"1")]);
        st.rotate();
        let spec = st.cookie_due(|| id(2)).expect("a cookie");
        assert_eq!(spec.id, id(2));
        assert!(!st.is_stored(), "nothing is written before the save");
        let origin = Origin {
            id: id(1),
            version: Some(Version::from(1u64)),
        };
        assert_eq!(st.origin(), Some(origin.clone()));
        // A second rotation in the same request keeps the first origin.
        st.rotate();
        assert_eq!(st.cookie_due(|| id(3)).map(|c| c.id), Some(id(3)));
        let SavePlan::Rotate(snapshot, from) = st.plan(9, true, true) else {
            panic!("a rotated session is moved");
        };
        assert_eq!(from, origin);
        assert!(snapshot.new_cookie);
        st.saved(snapshot.written(), None);
        assert_eq!(st.origin().map(|o| o.id), Some(id(3)));
    }

    #[test]
    fn rotating_an_unstored_session_draws_another_id() {
        let mut st = SessionState::fresh(true);
        st.insert("a".into(), b"1".to_vec());
        assert_eq!(st.cookie_due(|| id(1)).map(|c| c.id), Some(id(1)));
        st.rotate();
        assert_eq!(st.cookie_due(|| id(2)).map(|c| c.id), Some(id(2)));
        assert_eq!(st.origin(), None);
    }

    #[test]
    fn only_an_unchanged_stored_session_is_untouched() {
        let mut st = loaded(&[("a", b"1")]);
        let untouched = st.untouched().expect("nothing changed");
        assert_eq!((untouched.id, untouched.last_active), (id(1), 1));
        st.insert("b".into(), b"1".to_vec());
        assert!(st.untouched().is_none());
        let mut rotated = loaded(&[("a", b"1")]);
        rotated.rotate();
        assert!(rotated.untouched().is_none());
        assert!(SessionState::fresh(true).untouched().is_none());
    }

    #[test]
    fn a_saved_session_has_nothing_pending() {
        let mut st = SessionState::fresh(true);
        st.insert("a".into(), b"1".to_vec());
        assert!(st.snapshot(3).is_none(), "no id drawn yet");
        assert_eq!(st.cookie_due(|| id(4)).map(|c| c.id), Some(id(4)));
        let SavePlan::Create(snapshot) = st.plan(3, true, true) else {
            panic!("a new session with data is created");
        };
        assert_eq!(snapshot.written().last_active, 3);
        st.saved(snapshot.written(), Some(Version::from(1u64)));
        assert!(st.is_stored());
        assert!(!st.is_modified());
    }

    /// A session loaded from real record bytes: an unchanged save writes
    /// them back, a changed one writes what the eager map would, and a
    /// merge onto a newer loaded record keeps its keys.
    #[test]
    fn a_loaded_record_saves_like_a_map() {
        use crate::record::encode_parts;
        let data = BTreeMap::from([
            ("a".to_owned(), b"1".to_vec()),
            ("b".to_owned(), b"2".to_vec()),
            ("c".to_owned(), b"3".to_vec()),
        ]);
        let bytes = encode_parts(4, true, &data, None);
        let envelope = Envelope::decode(bytes.clone()).unwrap();
        let mut st = SessionState::loaded(id(1), envelope, None, None);
        assert_eq!(st.snapshot(4).unwrap().written().encode(), bytes);
        assert_eq!(st.value("b"), Some(&b"2"[..]));
        st.insert("b".into(), b"20".to_vec());
        st.remove("c");
        st.insert("d".into(), b"4".to_vec());
        let mut model = data.clone();
        model.insert("b".into(), b"20".to_vec());
        model.remove("c");
        model.insert("d".into(), b"4".to_vec());
        let snapshot = st.snapshot(6).unwrap();
        assert_eq!(
            snapshot.written().encode(),
            encode_parts(6, true, &model, None)
        );
        let mut newer = data;
        newer.insert("e".into(), b"5".to_vec());
        let newest = Envelope::decode(encode_parts(5, true, &newer, None)).unwrap();
        let mut merged = snapshot.changes.merge_onto(newest);
        merged.last_active = 6;
        model.insert("e".into(), b"5".to_vec());
        assert_eq!(merged.encode(), encode_parts(6, true, &model, None));
    }

    #[test]
    fn a_read_only_request_only_touches_and_only_if_it_persists() {
        let st = loaded(&[("a", b"1")]);
        assert!(matches!(st.plan(5, true, false), SavePlan::Touch(u) if u.id == id(1)));
        assert!(matches!(st.plan(5, false, false), SavePlan::Nothing));
        assert!(matches!(
            SessionState::fresh(true).plan(5, true, false),
            SavePlan::Nothing
        ));
    }

    #[test]
    fn a_failed_response_writes_nothing_and_drops_a_new_cookie() {
        let mut new = SessionState::fresh(true);
        new.insert("a".into(), b"1".to_vec());
        new.cookie_due(|| id(2));
        assert!(matches!(new.plan(5, false, true), SavePlan::DropCookie));
        let mut changed = loaded(&[("a", b"1")]);
        changed.insert("b".into(), b"1".to_vec());
        assert!(matches!(changed.plan(5, false, true), SavePlan::Nothing));
        let mut rotated = loaded(&[("a", b"1")]);
        rotated.rotate();
        rotated.cookie_due(|| id(3));
        assert!(matches!(rotated.plan(5, false, true), SavePlan::DropCookie));
    }

    #[test]
    fn a_catchers_response_writes_nothing() {
        let mut new = SessionState::fresh(true);
        new.insert("a".into(), b"1".to_vec());
        new.cookie_due(|| id(2));
        assert!(matches!(new.plan(5, true, false), SavePlan::Nothing));
        let mut rotated = loaded(&[("a", b"1")]);
        rotated.rotate();
        rotated.cookie_due(|| id(3));
        assert!(matches!(rotated.plan(5, true, false), SavePlan::Nothing));
        // Nor is a stored session changed without a new cookie.
        let mut changed = loaded(&[("a", b"1")]);
        changed.insert("b".into(), b"1".to_vec());
        assert!(matches!(changed.plan(5, true, false), SavePlan::Nothing));
        assert!(matches!(changed.plan(5, true, true), SavePlan::Update(_)));
    }

    #[test]
    fn an_emptied_session_ends() {
        let mut cleared = loaded(&[("a", b"1")]);
        cleared.clear();
        cleared.cookie_due(|| unreachable!());
        let plan = cleared.plan(5, true, true);
        assert!(
            matches!(&plan, SavePlan::End(o, Ending::RemoveCookie) if o.id == id(1) && o.version.is_none()),
            "{plan:?}"
        );
        assert!(!plan.issues_new_cookie());
        let mut rotated = loaded(&[("a", b"1")]);
        rotated.rotate();
        rotated.clear();
        rotated.cookie_due(|| id(3));
        let plan = rotated.plan(5, true, true);
        assert!(
            matches!(&plan, SavePlan::End(o, Ending::DropCookie) if o.id == id(1)),
            "{plan:?}"
        );
        assert!(plan.issues_new_cookie());
        // Removing the last key one by one is an update: it merges first.
        let mut removed = loaded(&[("a", b"1")]);
        removed.remove("a");
        assert!(matches!(removed.plan(5, true, true), SavePlan::Update(_)));
    }

    #[test]
    fn an_empty_new_session_is_never_stored() {
        let mut st = SessionState::fresh(true);
        st.insert("a".into(), b"1".to_vec());
        st.cookie_due(|| id(2));
        st.remove("a");
        assert!(matches!(st.plan(5, true, true), SavePlan::DropCookie));
        let mut created = SessionState::fresh(true);
        created.insert("a".into(), b"1".to_vec());
        created.cookie_due(|| id(2));
        let plan = created.plan(5, true, true);
        assert!(matches!(&plan, SavePlan::Create(s) if s.id == id(2) && s.now == 5));
        assert!(plan.issues_new_cookie());
    }

    #[test]
    fn a_reissued_cookie_alone_writes_nothing() {
        let mut st = loaded(&[("a", b"1")]);
        st.reissue_cookie();
        assert!(st.cookie_due(|| unreachable!()).is_some());
        assert!(matches!(st.plan(5, true, true), SavePlan::Nothing));
    }

    #[test]
    fn own_expiry_settings_are_changes_that_merge_and_clear_drops_them() {
        let mut st = loaded(&[("a", b"1")]);
        assert!(st.set_lifetime(Some(60)));
        assert!(!st.set_lifetime(Some(60)), "the same value is no change");
        assert!(st.set_idle_timeout(Some(30)));
        let SavePlan::Update(snapshot) = st.plan(5, true, true) else {
            panic!("an expiry change is saved");
        };
        let merged = snapshot
            .changes
            .merge_onto(record(&[("a", b"1"), ("b", b"2")]));
        assert_eq!(
            merged.expiry,
            OwnExpiry {
                lifetime: Some(60),
                idle_timeout: Some(30)
            }
        );
        assert!(st.set_idle_timeout(None));
        let SavePlan::Update(snapshot) = st.plan(6, true, true) else {
            panic!("an expiry change is saved");
        };
        let mut newest = record(&[("a", b"1")]);
        newest.expiry.idle_timeout = Some(30);
        assert_eq!(
            snapshot.changes.merge_onto(newest).expiry.idle_timeout,
            None
        );
        let mut cleared = loaded(&[("a", b"1")]);
        cleared.set_lifetime(Some(60));
        cleared.clear();
        cleared.insert("b".into(), b"1".to_vec());
        let SavePlan::Update(snapshot) = cleared.plan(7, true, true) else {
            panic!("a cleared session with a key is updated");
        };
        let mut newest = record(&[("a", b"1")]);
        newest.expiry.lifetime = Some(60);
        assert_eq!(
            snapshot.changes.merge_onto(newest).expiry,
            OwnExpiry::default()
        );
    }

    #[test]
    fn a_new_lifetime_reissues_the_cookie() {
        let mut st = loaded(&[("a", b"1")]);
        st.set_lifetime(Some(60));
        let spec = st
            .cookie_due(|| unreachable!())
            .expect("a cookie with a new Max-Age");
        assert_eq!(spec.lifetime, Some(60));
        st.set_idle_timeout(Some(10));
        assert_eq!(
            st.cookie_due(|| unreachable!()),
            None,
            "the idle timeout is not in the cookie"
        );
    }
}
