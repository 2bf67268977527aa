//! The layout of a record in Redis: one string value per key, a fixed header
//! followed by the bytes the engine stored.
//!
//! ```text
//! offset  size  field
//!      0     1  format, FORMAT (1)
//!      1     8  version, big-endian u64
//!      9     8  expiry, big-endian u64 Unix milliseconds, 0 = none
//!     17     *  the value
//! ```
//!
//! Keeping the version and the expiry in the value lets `get` be a plain
//! `GET` (one command, one round trip) that still returns both, and lets the
//! scripts compare the version with `GETRANGE` without reading the value.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rocket_kvsession::Version;

/// The first byte of every record this crate writes.
pub(crate) const FORMAT: u8 = 1;
/// Bytes before the value: format, version, expiry.
pub(crate) const HEADER_LEN: usize = 17;
/// Bytes of the format and the version: what the scripts compare.
pub(crate) const VERSION_PREFIX_LEN: usize = 9;
/// Offset of the expiry in the header (for `SETRANGE`).
pub(crate) const EXPIRY_OFFSET: usize = VERSION_PREFIX_LEN;

/// Why a stored value is not a record of this crate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Malformed {
    /// Shorter than the header.
    TooShort,
    /// The first byte is not [`FORMAT`].
    UnknownFormat(u8),
}

impl Malformed {
    pub(crate) fn reason(self) -> String {
        match self {
            Malformed::TooShort => format!("shorter than the {HEADER_LEN}-byte record header"),
            Malformed::UnknownFormat(b) => format!("unknown record format {b}"),
        }
    }
}

/// The header fields of a stored record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) version: u64,
    /// Unix milliseconds; `None` for a record without expiry.
    pub(crate) expires_ms: Option<u64>,
}

impl Header {
    /// Reads the header at the start of `bytes`.
    pub(crate) fn parse(bytes: &[u8]) -> Result<Header, Malformed> {
        let header: &[u8; HEADER_LEN] = bytes
            .get(..HEADER_LEN)
            .and_then(|h| h.try_into().ok())
            .ok_or(Malformed::TooShort)?;
        if header[0] != FORMAT {
            return Err(Malformed::UnknownFormat(header[0]));
        }
        let version = u64::from_be_bytes(header[1..9].try_into().expect("8 bytes"));
        let expires = u64::from_be_bytes(header[9..17].try_into().expect("8 bytes"));
        Ok(Header {
            version,
            expires_ms: (expires != 0).then_some(expires),
        })
    }

    /// Whether the record is past its expiry at `now_ms`.
    pub(crate) fn expired_at(&self, now_ms: u64) -> bool {
        self.expires_ms.is_some_and(|at| at <= now_ms)
    }
}

/// The format byte and version as they open a record: what the update and
/// delete scripts compare with the record's first bytes.
pub(crate) fn version_prefix(version: u64) -> [u8; VERSION_PREFIX_LEN] {
    let mut out = [0; VERSION_PREFIX_LEN];
    out[0] = FORMAT;
    out[1..].copy_from_slice(&version.to_be_bytes());
    out
}

/// The version in a record's first [`VERSION_PREFIX_LEN`] bytes (what the
/// touch script returns), if they are that long.
pub(crate) fn version_of_prefix(head: &[u8]) -> Option<u64> {
    head.get(1..VERSION_PREFIX_LEN)
        .and_then(|v| <[u8; 8]>::try_from(v).ok())
        .map(u64::from_be_bytes)
}

/// The record prefix a version token stands for; `None` for a token this
/// store did not issue (it then matches no record).
pub(crate) fn expected_prefix(token: &Version) -> Option<[u8; VERSION_PREFIX_LEN]> {
    token.as_str().parse::<u64>().ok().map(version_prefix)
}

/// A record's bytes: header then value, in one allocation.
pub(crate) fn encode(version: u64, expires_ms: Option<u64>, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + value.len());
    out.extend_from_slice(&version_prefix(version));
    out.extend_from_slice(&expires_ms.unwrap_or(0).to_be_bytes());
    out.extend_from_slice(value);
    out
}

/// Unix milliseconds of `at`, at least 1 (Redis refuses `PXAT 0`, and 0
/// means "no expiry" in the header). Times before 1970 are already past.
pub(crate) fn unix_ms(at: SystemTime) -> u64 {
    let ms = at
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    ms.max(1)
}

/// The time of Unix milliseconds `ms`.
pub(crate) fn from_unix_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// Draws record versions: distinct within a process (a bijective mix of a
/// counter), unpredictable across processes (a random per-process seed), so
/// two writers never produce the same version for one key.
#[derive(Debug)]
pub(crate) struct Versions {
    seed: u64,
    counter: AtomicU64,
}

impl Versions {
    pub(crate) fn new() -> Versions {
        use std::hash::{BuildHasher, Hasher};
        // std's RandomState is keyed from the OS's random source.
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u128(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos(),
        );
        hasher.write_u32(std::process::id());
        Versions {
            seed: hasher.finish(),
            counter: AtomicU64::new(0),
        }
    }

    /// The next version.
    pub(crate) fn next(&self) -> u64 {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        splitmix64(
            self.seed
                .wrapping_add(n.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
        )
    }
}

/// SplitMix64's finalizer: a bijection on u64 that scatters its input.
fn splitmix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn encode_parse_round_trip() {
        let bytes = encode(0xdead_beef_0102_0304, Some(1_700_000_000_123), b"payload");
        assert_eq!(bytes.len(), HEADER_LEN + 7);
        assert_eq!(&bytes[HEADER_LEN..], b"payload");
        let header = Header::parse(&bytes).unwrap();
        assert_eq!(header.version, 0xdead_beef_0102_0304);
        assert_eq!(header.expires_ms, Some(1_700_000_000_123));
        assert_eq!(&bytes[..9], &version_prefix(0xdead_beef_0102_0304));
        assert_eq!(version_of_prefix(&bytes[..9]), Some(0xdead_beef_0102_0304));
        assert_eq!(version_of_prefix(&bytes[..8]), None);
        assert_eq!(
            &bytes[EXPIRY_OFFSET..HEADER_LEN],
            &1_700_000_000_123u64.to_be_bytes()
        );
    }

    #[test]
    fn no_expiry_and_empty_value() {
        let bytes = encode(7, None, b"");
        let header = Header::parse(&bytes).unwrap();
        assert_eq!(header.expires_ms, None);
        assert!(!header.expired_at(u64::MAX));
    }

    #[test]
    fn malformed_records() {
        assert_eq!(Header::parse(b"short"), Err(Malformed::TooShort));
        let mut bytes = encode(1, None, b"x");
        bytes[0] = 9;
        assert_eq!(Header::parse(&bytes), Err(Malformed::UnknownFormat(9)));
        assert!(Malformed::UnknownFormat(9).reason().contains('9'));
    }

    #[test]
    fn version_tokens() {
        assert_eq!(
            expected_prefix(&Version::from(7u64)),
            Some(version_prefix(7))
        );
        for foreign in ["", "x", "-1", "18446744073709551616"] {
            assert_eq!(expected_prefix(&Version::new(foreign)), None, "{foreign:?}");
        }
    }

    #[test]
    fn expiry_is_inclusive() {
        let header = Header {
            version: 1,
            expires_ms: Some(1000),
        };
        assert!(!header.expired_at(999));
        assert!(header.expired_at(1000));
    }

    #[test]
    fn unix_ms_clamps_and_round_trips() {
        assert_eq!(unix_ms(UNIX_EPOCH), 1);
        assert_eq!(unix_ms(UNIX_EPOCH - Duration::from_secs(5)), 1);
        let at = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(from_unix_ms(unix_ms(at)), at);
    }

    #[test]
    fn versions_are_distinct() {
        let versions = Versions::new();
        let drawn: HashSet<u64> = (0..100_000).map(|_| versions.next()).collect();
        assert_eq!(drawn.len(), 100_000);
        assert_ne!(Versions::new().next(), Versions::new().next());
    }
}
