//! When a session ends: every liveness, deadline and store-expiry rule, in
//! one place.
//!
//! Times are whole Unix seconds, rounded down, as ids and records keep them.
//! So that a session never ends early, every deadline gets one second of
//! slack ([`ROUNDING`]): a session lives while `now < end`, where `end` is
//! the earlier of `created + lifetime` and, with an idle timeout,
//! `activity + idle_timeout`, plus that second. It ends at most a second
//! late, never early. The engine (loading, saving, touching), the owner
//! index (listing, pruning), the sweep and the cookie all ask here.

use std::time::{Duration, SystemTime};

use crate::config::SessionConfig;
use crate::id::SessionId;
use crate::record::OwnExpiry;
use crate::time::{from_unix, unix};

/// Slack for times kept in whole seconds: creation and activity times are
/// rounded down, so one second is added wherever they decide an expiry.
pub(crate) const ROUNDING: u64 = 1;

/// How long a store that keeps expiries keeps the "moved to" marker of a
/// rotated session: far longer than any request that loaded the old session
/// can run.
pub(crate) const MARKER_GRACE: Duration = Duration::from_secs(600);

/// Added to `save_timeout` for how long an owner index entry may name a
/// session whose record is not written yet (see [`Lifetime::may_be_pending`]):
/// the store round trips of a save beyond its compare-and-swap budget.
pub(crate) const PENDING_MARGIN: u64 = 60;

/// The expiry rules of one configuration: its `lifetime`, `idle_timeout`
/// and `touch_after`, taken once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Lifetime {
    lifetime: u64,
    idle_timeout: Option<u64>,
    touch_after: u64,
    /// How long after it was indexed a session's record may still be
    /// being written: `save_timeout` plus [`PENDING_MARGIN`].
    pending: u64,
}

impl Lifetime {
    /// The rules `config` sets.
    pub(crate) fn of(config: &SessionConfig) -> Self {
        Lifetime {
            lifetime: config.lifetime,
            idle_timeout: config.idle_timeout,
            touch_after: config.touch_after,
            pending: config.save_timeout.saturating_add(PENDING_MARGIN),
        }
    }

    /// The rules for a session with its own expiry settings `own`
    /// (`Session::set_lifetime`, `Session::set_idle_timeout`): its own
    /// lifetime, capped at the configured one (which stays the maximum, so
    /// a sweep that judges keys alone never deletes a live session); its
    /// own idle timeout, capped at the configured one if there is one; and
    /// a `touch_after` of at most half its own idle timeout, so reads keep
    /// it alive.
    pub(crate) fn for_session(&self, own: &OwnExpiry) -> Lifetime {
        let lifetime = own
            .lifetime
            .map_or(self.lifetime, |own| own.clamp(1, self.lifetime));
        let (idle_timeout, touch_after) = match (self.idle_timeout, own.idle_timeout) {
            (configured, None) => (configured, self.touch_after),
            (configured, Some(own)) => {
                let idle = configured.map_or(own, |c| own.min(c)).clamp(1, lifetime);
                (Some(idle), self.touch_after.min(idle / 2))
            }
        };
        Lifetime {
            lifetime,
            idle_timeout,
            touch_after,
            pending: self.pending,
        }
    }

    /// The first whole second at which the session `id` is over by its
    /// absolute lifetime alone.
    fn absolute_end(&self, id: &SessionId) -> u64 {
        id.created_unix()
            .saturating_add(self.lifetime)
            .saturating_add(ROUNDING)
    }

    /// Whether the id alone says the session is over at `now`: its creation
    /// time plus `lifetime` has passed. Needs no store read.
    pub(crate) fn outlived(&self, id: &SessionId, now: u64) -> bool {
        now >= self.absolute_end(id)
    }

    /// The first whole second at which a session last active at `activity`
    /// is over: the earlier of its lifetime and its idle deadline.
    pub(crate) fn end(&self, id: &SessionId, activity: u64) -> u64 {
        let absolute = self.absolute_end(id);
        match self.idle_timeout {
            Some(idle) => absolute.min(activity.saturating_add(idle).saturating_add(ROUNDING)),
            None => absolute,
        }
    }

    /// [`end`](Self::end) as a time.
    pub(crate) fn deadline(&self, id: &SessionId, activity: u64) -> SystemTime {
        from_unix(self.end(id, activity))
    }

    /// The time a session's activity was last recorded: the record's
    /// `last_active`, or later if a touch moved the store's expiry since (a
    /// touch rewrites only the expiry, which is the idle deadline of the
    /// activity it recorded).
    ///
    /// Only an activity that the rules in force could have recorded counts:
    /// one at or before `now` (Unix seconds). An expiry written under another
    /// configuration (no idle timeout, or a longer one) gives a time in the
    /// future and is ignored, so a new or shorter `idle_timeout` applies at
    /// once to sessions written before it.
    pub(crate) fn activity(
        &self,
        last_active: u64,
        record_expires_at: Option<SystemTime>,
        now: u64,
    ) -> u64 {
        match (self.idle_timeout, record_expires_at) {
            (Some(idle), Some(at)) => {
                let touched = unix(at).saturating_sub(idle.saturating_add(ROUNDING));
                if touched <= now {
                    last_active.max(touched)
                } else {
                    last_active
                }
            }
            _ => last_active,
        }
    }

    /// Whether a stored session is live at `now`: neither past its
    /// deadline (from its activity) nor past the expiry the store holds.
    pub(crate) fn is_live(
        &self,
        id: &SessionId,
        last_active: u64,
        record_expires_at: Option<SystemTime>,
        now: SystemTime,
    ) -> bool {
        let activity = self.activity(last_active, record_expires_at, unix(now));
        unix(now) < self.end(id, activity) && record_expires_at.is_none_or(|at| now < at)
    }

    /// When a stored session ends unless it is used again: its deadline, or
    /// the store's expiry if that comes first.
    pub(crate) fn expires_at(
        &self,
        id: &SessionId,
        last_active: u64,
        record_expires_at: Option<SystemTime>,
        now: u64,
    ) -> SystemTime {
        let end = self.deadline(id, self.activity(last_active, record_expires_at, now));
        record_expires_at.map_or(end, |at| end.min(at))
    }

    /// Whether a read-only request at `now` should refresh the activity of
    /// a session last active at `activity`: only with an idle timeout, and
    /// at most once per `touch_after`.
    pub(crate) fn touch_due(&self, activity: u64, now: u64) -> bool {
        self.idle_timeout.is_some() && now.saturating_sub(activity) >= self.touch_after
    }

    /// Whether an owner index entry written at `indexed` (Unix seconds) may
    /// still name a session whose record is being written at `now`: a
    /// session is indexed before its record is written (a login, a
    /// rotation, a new owner), within one save's budget. Until then, an
    /// entry whose record is missing or names another owner is kept.
    ///
    /// With an idle timeout, never longer than it: the record a save writes
    /// is active as of the save's start, before the entry was indexed, so
    /// once the idle timeout has passed since, that session is over even if
    /// its record is still to come.
    pub(crate) fn may_be_pending(&self, indexed: u64, now: u64) -> bool {
        let window = self
            .idle_timeout
            .map_or(self.pending, |idle| self.pending.min(idle));
        now < indexed.saturating_add(window).saturating_add(ROUNDING)
    }

    /// Whether the sweep deletes the session `id`, judged without reading
    /// its record: by its creation time and, with an idle timeout, by the
    /// store's last-modified time of the record as its activity (where the
    /// store knows it).
    pub(crate) fn swept(
        &self,
        id: &SessionId,
        last_modified: Option<SystemTime>,
        now: u64,
    ) -> bool {
        match (self.idle_timeout, last_modified) {
            (Some(_), Some(modified)) => now >= self.end(id, unix(modified)),
            _ => self.outlived(id, now),
        }
    }

    /// The `Max-Age` of a permanent cookie for `id`: what is left of its
    /// lifetime at `now`, in whole seconds.
    pub(crate) fn cookie_max_age(&self, id: &SessionId, now: SystemTime) -> Duration {
        let end = from_unix(id.created_unix().saturating_add(self.lifetime));
        Duration::from_secs(end.duration_since(now).unwrap_or_default().as_secs())
    }
}

/// Which expiry a store is handed on its writes: none if the store keeps
/// none or `set_ttl` is off, else the rules' deadlines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StoreExpiry {
    rules: Lifetime,
    handed: bool,
}

impl StoreExpiry {
    /// The expiries a store that keeps them (`kept`) is handed under `config`.
    pub(crate) fn new(config: &SessionConfig, kept: bool) -> Self {
        StoreExpiry {
            rules: Lifetime::of(config),
            handed: config.set_ttl && kept,
        }
    }

    /// Whether the store is handed expiries at all.
    pub(crate) fn is_handed(&self) -> bool {
        self.handed
    }

    /// The expiries of a session with its own expiry settings `own`.
    pub(crate) fn for_session(&self, own: &OwnExpiry) -> Self {
        StoreExpiry {
            rules: self.rules.for_session(own),
            handed: self.handed,
        }
    }

    /// The expiry of a session record written with activity `activity`.
    pub(crate) fn session(&self, id: &SessionId, activity: u64) -> Option<SystemTime> {
        self.handed.then(|| self.rules.deadline(id, activity))
    }

    /// The expiry of the "moved to" marker a rotation leaves under the old
    /// id: the old session's, but at most [`MARKER_GRACE`] from `now`.
    pub(crate) fn marker(
        &self,
        id: &SessionId,
        activity: u64,
        now: SystemTime,
    ) -> Option<SystemTime> {
        self.session(id, activity)
            .map(|at| at.min(now + MARKER_GRACE))
    }

    /// The expiry of an owner index naming `ids`: that of its last session
    /// by lifetime, and never before the next second.
    pub(crate) fn index<'a>(
        &self,
        ids: impl IntoIterator<Item = &'a SessionId>,
        now: SystemTime,
    ) -> Option<SystemTime> {
        self.handed.then(|| {
            let last = ids
                .into_iter()
                .map(|id| from_unix(self.rules.absolute_end(id)))
                .max()
                .unwrap_or(now);
            last.max(now + Duration::from_secs(ROUNDING))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    const CREATED: u64 = 1_700_000_000;

    fn id() -> SessionId {
        format!("{:016x}_{CREATED:x}", 7).parse().unwrap()
    }

    fn rules(lifetime: u64, idle: Option<u64>) -> Lifetime {
        Lifetime::of(&SessionConfig {
            lifetime,
            idle_timeout: idle,
            touch_after: 10,
            ..SessionConfig::default()
        })
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn a_session_lives_its_whole_lifetime_and_at_most_a_second_more() {
        let r = rules(100, None);
        let id = id();
        // Created at CREATED (rounded down): live through CREATED + 100.
        assert!(!r.outlived(&id, CREATED + 100));
        assert!(r.outlived(&id, CREATED + 101));
        assert_eq!(r.end(&id, CREATED), CREATED + 101);
        assert!(r.is_live(
            &id,
            CREATED,
            None,
            at(CREATED + 100) + Duration::from_millis(999)
        ));
        assert!(!r.is_live(&id, CREATED, None, at(CREATED + 101)));
    }

    #[test]
    fn the_idle_timeout_ends_a_session_earlier_and_activity_moves_it() {
        let r = rules(1000, Some(60));
        let id = id();
        assert_eq!(r.end(&id, CREATED), CREATED + 61);
        assert!(r.is_live(&id, CREATED, None, at(CREATED + 60)));
        assert!(!r.is_live(&id, CREATED, None, at(CREATED + 61)));
        // Active later: the idle deadline moves, the lifetime does not.
        assert_eq!(r.end(&id, CREATED + 500), CREATED + 561);
        assert_eq!(r.end(&id, CREATED + 990), CREATED + 1001);
    }

    #[test]
    fn a_touched_expiry_counts_as_activity() {
        let r = rules(1000, Some(60));
        // A touch at CREATED + 300 handed the store its idle deadline.
        let touched = r.deadline(&id(), CREATED + 300);
        let now = CREATED + 310;
        assert_eq!(r.activity(CREATED, Some(touched), now), CREATED + 300);
        // Without an idle timeout the store's expiry says nothing of activity.
        assert_eq!(
            rules(1000, None).activity(CREATED, Some(touched), now),
            CREATED
        );
        // An expiry earlier than the record's own activity never lowers it.
        assert_eq!(r.activity(CREATED + 400, Some(touched), now), CREATED + 400);
    }

    #[test]
    fn a_new_idle_timeout_applies_to_sessions_written_without_one() {
        // Written with no idle timeout: the store holds the lifetime's end.
        let written = rules(1000, None).deadline(&id(), CREATED);
        let now = CREATED + 120;
        let r = rules(1000, Some(60));
        // Read as a touch, that expiry would mean activity in the future.
        assert_eq!(r.activity(CREATED, Some(written), now), CREATED);
        assert!(!r.is_live(&id(), CREATED, Some(written), at(now)));
        assert_eq!(
            r.expires_at(&id(), CREATED, Some(written), now),
            at(CREATED + 61)
        );
        // A shorter idle timeout than the one a touch was written with.
        let touched = rules(1000, Some(600)).deadline(&id(), CREATED + 100);
        let shorter = rules(1000, Some(60));
        assert!(!shorter.is_live(&id(), CREATED, Some(touched), at(CREATED + 200)));
    }

    #[test]
    fn index_entries_are_pending_for_the_save_budget_and_a_margin() {
        let r = Lifetime::of(&SessionConfig {
            save_timeout: 5,
            ..SessionConfig::default()
        });
        let end = CREATED + 5 + PENDING_MARGIN + ROUNDING;
        assert!(r.may_be_pending(CREATED, CREATED));
        assert!(r.may_be_pending(CREATED, end - 1));
        assert!(!r.may_be_pending(CREATED, end));
        assert!(r
            .for_session(&OwnExpiry::default())
            .may_be_pending(CREATED, end - 1));
        // An idle timeout ends what is still missing sooner.
        let idle = rules(1000, Some(6));
        assert!(idle.may_be_pending(CREATED, CREATED + 6));
        assert!(!idle.may_be_pending(CREATED, CREATED + 7));
    }

    #[test]
    fn the_store_expiry_ends_a_session_whatever_its_activity() {
        let r = rules(1000, None);
        let expiry = at(CREATED + 10);
        assert!(r.is_live(&id(), CREATED, Some(expiry), at(CREATED + 9)));
        assert!(!r.is_live(&id(), CREATED, Some(expiry), expiry));
        assert_eq!(r.expires_at(&id(), CREATED, Some(expiry), CREATED), expiry);
        assert_eq!(
            r.expires_at(&id(), CREATED, None, CREATED),
            at(CREATED + 1001)
        );
    }

    #[test]
    fn touches_are_due_only_with_an_idle_timeout_and_after_touch_after() {
        assert!(!rules(1000, None).touch_due(CREATED, CREATED + 999));
        let r = rules(1000, Some(60));
        assert!(!r.touch_due(CREATED, CREATED + 9));
        assert!(r.touch_due(CREATED, CREATED + 10));
    }

    #[test]
    fn the_sweep_judges_like_a_load() {
        let r = rules(100, Some(30));
        let id = id();
        // By creation time alone when the store knows no last-modified time.
        assert!(!r.swept(&id, None, CREATED + 100));
        assert!(r.swept(&id, None, CREATED + 101));
        // By the last write as activity otherwise.
        let modified = Some(at(CREATED + 20) + Duration::from_millis(500));
        assert!(!r.swept(&id, modified, CREATED + 50));
        assert!(r.swept(&id, modified, CREATED + 51));
        for now in CREATED..CREATED + 120 {
            assert_eq!(
                r.swept(&id, modified, now),
                !r.is_live(&id, CREATED + 20, None, at(now)),
                "at {now}"
            );
        }
    }

    #[test]
    fn cookies_carry_the_rest_of_the_lifetime() {
        let r = rules(3600, None);
        assert_eq!(
            r.cookie_max_age(&id(), at(CREATED + 600) + Duration::from_millis(300)),
            Duration::from_secs(2999)
        );
        assert_eq!(r.cookie_max_age(&id(), at(CREATED + 5000)), Duration::ZERO);
    }

    #[test]
    fn stores_are_handed_expiries_only_when_they_keep_them() {
        let config = SessionConfig {
            lifetime: 100,
            ..SessionConfig::default()
        };
        let id = id();
        assert_eq!(StoreExpiry::new(&config, false).session(&id, CREATED), None);
        let off = SessionConfig {
            set_ttl: false,
            ..config.clone()
        };
        assert_eq!(StoreExpiry::new(&off, true).session(&id, CREATED), None);
        let kept = StoreExpiry::new(&config, true);
        assert_eq!(kept.session(&id, CREATED), Some(at(CREATED + 101)));
        let now = at(CREATED + 1);
        assert_eq!(kept.marker(&id, CREATED, now), Some(at(CREATED + 101)));
        let long = StoreExpiry::new(
            &SessionConfig {
                lifetime: 100_000,
                ..config
            },
            true,
        );
        assert_eq!(long.marker(&id, CREATED, now), Some(now + MARKER_GRACE));
        assert_eq!(long.index([&id], now), Some(at(CREATED + 100_001)));
        assert_eq!(
            long.index([], now),
            Some(now + Duration::from_secs(ROUNDING))
        );
    }

    #[test]
    fn a_sessions_own_settings_are_capped_by_the_configured_ones() {
        let own = |lifetime, idle_timeout| OwnExpiry {
            lifetime,
            idle_timeout,
        };
        let r = rules(1000, None);
        let id = id();
        assert_eq!(r.for_session(&own(None, None)), r);
        assert_eq!(
            r.for_session(&own(Some(100), None)).end(&id, CREATED),
            CREATED + 101
        );
        // Above the configured lifetime: capped.
        assert_eq!(
            r.for_session(&own(Some(5000), None)).end(&id, CREATED),
            CREATED + 1001
        );
        // Its own idle timeout, with reads touching at least every half of it.
        let idle = r.for_session(&own(None, Some(8)));
        assert_eq!(idle.end(&id, CREATED), CREATED + 9);
        assert!(idle.touch_due(CREATED, CREATED + 4));
        assert!(!idle.touch_due(CREATED, CREATED + 3));
        // Capped by a configured idle timeout too.
        let configured = rules(1000, Some(60));
        assert_eq!(
            configured
                .for_session(&own(None, Some(600)))
                .end(&id, CREATED),
            CREATED + 61
        );
        assert_eq!(
            configured
                .for_session(&own(None, Some(30)))
                .end(&id, CREATED),
            CREATED + 31
        );
        // A store is handed the session's own deadline.
        let config = SessionConfig {
            lifetime: 1000,
            ..SessionConfig::default()
        };
        let expiry = StoreExpiry::new(&config, true).for_session(&own(Some(100), None));
        assert_eq!(expiry.session(&id, CREATED), Some(at(CREATED + 101)));
        // The cookie's Max-Age follows the session's own lifetime.
        assert_eq!(
            r.for_session(&own(Some(100), None))
                .cookie_max_age(&id, at(CREATED + 40)),
            Duration::from_secs(60)
        );
    }

    #[test]
    fn huge_times_saturate_instead_of_panicking() {
        let id: SessionId = "0123456789abcdef_ffffffffffffffff".parse().unwrap();
        let r = rules(u64::MAX, Some(u64::MAX));
        let _ = r.deadline(&id, u64::MAX);
        let _ = r.cookie_max_age(&id, SystemTime::now());
        assert!(!r.outlived(&id, u64::MAX - 1));
    }
}
