//! How a session's expiry becomes memcached's: the `T` token of a write.
//!
//! memcached reads an expiry of at most 30 days (2,592,000 s) as seconds
//! from now, and anything larger as an absolute Unix time, so the default
//! `lifetime` of 31 days sent as a duration would store every session
//! already expired. It also keeps expiries in whole seconds on a clock that
//! ticks once a second, and `0` means "never expires". Hence:
//!
//! * no expiry: no `T` token (the item lives until deleted or evicted);
//! * an expiry already past: an absolute time long past, which memcached
//!   stores as expired at once: never a live item;
//! * up to 30 days ahead: seconds from now, rounded up, plus one second of
//!   grace ([`GRACE`]);
//! * further ahead: the absolute Unix time, rounded up, plus the same grace.
//!
//! The grace makes sure memcached never removes a session before its
//! expiry (its clock lags by up to a second); the store checks the exact
//! expiry, kept in the record ([`crate::record`]), on every read, so no
//! session is live past it either.

use std::time::{SystemTime, UNIX_EPOCH};

/// The largest expiry memcached reads as seconds from now.
pub(crate) const MAX_RELATIVE_SECS: u64 = 30 * 24 * 3600;
/// Seconds added to every expiry sent to memcached, so that its
/// whole-second clock never ends a session early.
pub(crate) const GRACE: u64 = 1;
/// An absolute time long past (1970-01-31, just above the relative range):
/// memcached stores an item with it as expired.
pub(crate) const LONG_PAST: u32 = MAX_RELATIVE_SECS as u32 + 1;

/// The `T` token for a record that expires at `expires_at`, written at
/// `now`: `None` for no token (no expiry), never `Some(0)`.
pub(crate) fn exptime(expires_at: Option<SystemTime>, now: SystemTime) -> Option<u32> {
    let at = expires_at?;
    let Ok(left) = at.duration_since(now) else {
        return Some(LONG_PAST);
    };
    if left.is_zero() {
        return Some(LONG_PAST);
    }
    let relative = ceil_secs(left.as_secs(), left.subsec_nanos()) + GRACE;
    if relative <= MAX_RELATIVE_SECS {
        return Some(relative as u32);
    }
    let since_epoch = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let absolute = ceil_secs(since_epoch.as_secs(), since_epoch.subsec_nanos()) + GRACE;
    Some(u32::try_from(absolute).unwrap_or(u32::MAX))
}

fn ceil_secs(secs: u64, nanos: u32) -> u64 {
    secs + u64::from(nanos > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(1_800_000_000_250)
    }

    #[test]
    fn no_expiry_sends_no_token() {
        assert_eq!(exptime(None, now()), None);
    }

    #[test]
    fn a_past_expiry_is_stored_dead() {
        for past in [now(), now() - Duration::from_secs(1), UNIX_EPOCH] {
            assert_eq!(exptime(Some(past), now()), Some(LONG_PAST));
        }
        assert!(u64::from(LONG_PAST) > MAX_RELATIVE_SECS, "read as absolute");
    }

    #[test]
    fn short_expiries_are_relative_rounded_up_with_grace() {
        let at = |ms| Some(now() + Duration::from_millis(ms));
        assert_eq!(exptime(at(1), now()), Some(2));
        assert_eq!(exptime(at(1200), now()), Some(3));
        assert_eq!(exptime(at(2000), now()), Some(3));
        assert_eq!(exptime(at(3_600_000), now()), Some(3601));
    }

    #[test]
    fn thirty_days_is_the_last_relative_expiry() {
        let exactly = now() + Duration::from_secs(MAX_RELATIVE_SECS - GRACE);
        assert_eq!(
            exptime(Some(exactly), now()),
            Some(MAX_RELATIVE_SECS as u32)
        );
        let beyond = exactly + Duration::from_millis(1);
        let absolute = exptime(Some(beyond), now()).unwrap();
        assert_eq!(
            u64::from(absolute),
            1_800_000_000 + MAX_RELATIVE_SECS - GRACE + 1 + GRACE
        );
    }

    #[test]
    fn the_default_lifetime_of_31_days_is_an_absolute_time() {
        let lifetime = Duration::from_secs(31 * 24 * 3600);
        let token = exptime(Some(now() + lifetime), now()).unwrap();
        // now() is 1_800_000_000.25 s: its expiry rounds up to .. + 1, plus grace.
        assert_eq!(u64::from(token), 1_800_000_000 + 31 * 24 * 3600 + 1 + GRACE);
        assert!(u64::from(token) > MAX_RELATIVE_SECS);
    }

    #[test]
    fn expiries_past_2106_saturate() {
        let far = UNIX_EPOCH + Duration::from_secs(u64::from(u32::MAX) + 10);
        assert_eq!(exptime(Some(far), now()), Some(u32::MAX));
    }
}
