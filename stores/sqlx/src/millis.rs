//! Times as stored: whole milliseconds since the Unix epoch, in a `BIGINT`.
//!
//! Why integers rather than `TIMESTAMPTZ`: the same column type and the same
//! comparisons on PostgreSQL and SQLite (which has no time type), no time
//! zone or date library involved, and an index on a plain integer. The
//! current time is always the application's clock, bound as a parameter,
//! never the database's `now()`: the engine computes expiries from the
//! application's clock, so comparing them against another clock would cut
//! sessions short or stretch them by the clock skew.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `time` in milliseconds since the epoch, rounded up: a stored expiry is
/// never earlier than the one the store was handed. Saturates at the ends
/// of `i64`.
pub(crate) fn ceil(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(d) => {
            let ms = d.as_nanos().div_ceil(1_000_000);
            i64::try_from(ms).unwrap_or(i64::MAX)
        }
        Err(e) => i64::try_from(e.duration().as_millis()).map_or(i64::MIN, |ms| -ms),
    }
}

/// `time` in milliseconds since the epoch, rounded down: a record whose
/// expiry is at most this has ended at `time`.
pub(crate) fn floor(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => {
            let ms = e.duration().as_nanos().div_ceil(1_000_000);
            i64::try_from(ms).map_or(i64::MIN, |ms| -ms)
        }
    }
}

/// The time `ms` milliseconds after (or before, if negative) the epoch.
pub(crate) fn to_time(ms: i64) -> SystemTime {
    let d = Duration::from_millis(ms.unsigned_abs());
    if ms >= 0 {
        UNIX_EPOCH.checked_add(d).unwrap_or(UNIX_EPOCH)
    } else {
        UNIX_EPOCH.checked_sub(d).unwrap_or(UNIX_EPOCH)
    }
}

/// Now, rounded down.
pub(crate) fn now() -> i64 {
    floor(SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding() {
        let t = UNIX_EPOCH + Duration::from_nanos(1_500_000_001);
        assert_eq!(ceil(t), 1501);
        assert_eq!(floor(t), 1500);
        assert_eq!(to_time(1500), UNIX_EPOCH + Duration::from_millis(1500));
        let exact = UNIX_EPOCH + Duration::from_millis(42);
        assert_eq!((ceil(exact), floor(exact)), (42, 42));
        let before = UNIX_EPOCH - Duration::from_millis(3);
        assert_eq!((ceil(before), floor(before)), (-3, -3));
        assert_eq!(to_time(-3), before);
        assert!(to_time(ceil(t)) >= t);
    }
}
