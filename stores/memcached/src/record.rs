//! The layout of a stored value: a 9-byte header (format and expiry),
//! then the session's bytes.
//!
//! | bytes | content |
//! |---|---|
//! | 0 | record format, `1` |
//! | 1-8 | expiry, big-endian u64 Unix milliseconds (`0`: none) |
//! | 9- | the session record, byte for byte |
//!
//! memcached keeps expiries in whole seconds on its own clock, so the
//! exact expiry travels in the value: every read checks it, and a record
//! is never live past it even while memcached still holds the item. The
//! version is not in the value: it is memcached's CAS value of the item.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The format byte of this layout.
const FORMAT: u8 = 1;
/// The header's length.
pub(crate) const HEADER_LEN: usize = 9;

/// `at` in Unix milliseconds; a time at or before the epoch is 1 (long
/// past, and distinct from `0`, "no expiry").
pub(crate) fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
        .max(1)
}

/// The time `ms` Unix milliseconds stand for.
pub(crate) fn from_unix_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// The stored value for `value` expiring at `expires_at`.
pub(crate) fn encode(expires_at: Option<SystemTime>, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + value.len());
    out.push(FORMAT);
    out.extend_from_slice(&expires_at.map_or(0, unix_ms).to_be_bytes());
    out.extend_from_slice(value);
    out
}

/// Rewrites the expiry in the header of a stored value `record` (already
/// checked by [`Header::parse`]), leaving the session's bytes alone.
pub(crate) fn set_expiry(record: &mut [u8], expires_at: SystemTime) {
    record[1..HEADER_LEN].copy_from_slice(&unix_ms(expires_at).to_be_bytes());
}

/// A stored value's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    /// The expiry in Unix milliseconds, if the record has one.
    pub(crate) expires_ms: Option<u64>,
}

impl Header {
    /// The header of the stored value `bytes`, or what is wrong with it.
    pub(crate) fn parse(bytes: &[u8]) -> Result<Header, &'static str> {
        if bytes.len() < HEADER_LEN {
            return Err("shorter than a record header");
        }
        if bytes[0] != FORMAT {
            return Err("unknown record format");
        }
        let ms = u64::from_be_bytes(bytes[1..HEADER_LEN].try_into().expect("8 bytes"));
        Ok(Header {
            expires_ms: (ms != 0).then_some(ms),
        })
    }

    /// Whether the record is past its expiry at `now`.
    pub(crate) fn expired_at(&self, now: SystemTime) -> bool {
        self.expires_ms.is_some_and(|ms| ms <= unix_ms(now))
    }

    /// The expiry as a time.
    pub(crate) fn expires_at(&self) -> Option<SystemTime> {
        self.expires_ms.map(from_unix_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let at = from_unix_ms(1_800_000_000_123);
        let bytes = encode(Some(at), b"value");
        assert_eq!(bytes.len(), HEADER_LEN + 5);
        assert_eq!(bytes[0], 1);
        assert_eq!(&bytes[1..9], &1_800_000_000_123u64.to_be_bytes());
        assert_eq!(&bytes[HEADER_LEN..], b"value");
        let header = Header::parse(&bytes).unwrap();
        assert_eq!(header.expires_at(), Some(at));
        assert!(!header.expired_at(at - Duration::from_millis(1)));
        assert!(header.expired_at(at));

        let forever = Header::parse(&encode(None, b"")).unwrap();
        assert_eq!(forever.expires_ms, None);
        assert!(!forever.expired_at(SystemTime::now()));
    }

    #[test]
    fn the_expiry_moves_alone() {
        let mut bytes = encode(Some(from_unix_ms(5_000)), b"keep");
        set_expiry(&mut bytes, from_unix_ms(9_000));
        assert_eq!(Header::parse(&bytes).unwrap().expires_ms, Some(9_000));
        assert_eq!(&bytes[HEADER_LEN..], b"keep");
    }

    #[test]
    fn times_before_the_epoch_are_long_past_not_none() {
        assert_eq!(unix_ms(UNIX_EPOCH - Duration::from_secs(1)), 1);
        let header = Header::parse(&encode(Some(UNIX_EPOCH), b"")).unwrap();
        assert!(header.expired_at(SystemTime::now()));
    }

    #[test]
    fn foreign_values_are_refused() {
        assert!(Header::parse(b"").is_err());
        assert!(Header::parse(b"12345678").is_err());
        assert!(Header::parse(b"\x02\0\0\0\0\0\0\0\0").is_err());
    }
}
