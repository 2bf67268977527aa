//! Whole-second Unix times, as session ids and records keep them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `t` in whole Unix seconds, rounded down; 0 for times before 1970.
pub(crate) fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The latest time used: year 9999, far past any session and well inside
/// what every platform's `SystemTime` can hold.
const LATEST: u64 = 253_402_300_799;

/// The time `secs` Unix seconds after the epoch, saturating at year 9999
/// (arithmetic on times from corrupt records or keys never panics).
pub(crate) fn from_unix(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs.min(LATEST))
}

/// The current time in whole Unix seconds.
#[cfg(test)]
pub(crate) fn now_unix() -> u64 {
    unix(SystemTime::now())
}

/// `secs` seconds as a `Duration`.
pub(crate) fn seconds(secs: u64) -> Duration {
    Duration::from_secs(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_whole_seconds() {
        assert_eq!(unix(from_unix(1_700_000_000)), 1_700_000_000);
        assert_eq!(unix(from_unix(1) + Duration::from_millis(999)), 1);
    }

    #[test]
    fn huge_times_saturate_instead_of_panicking() {
        let latest = from_unix(u64::MAX);
        assert_eq!(latest, from_unix(LATEST));
        assert!(latest.checked_add(Duration::from_secs(1)).is_some());
    }

    #[test]
    fn times_before_the_epoch_are_zero() {
        assert_eq!(unix(UNIX_EPOCH - Duration::from_secs(5)), 0);
    }
}
