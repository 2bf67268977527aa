//! [`SessionId`]: the Flask-KVSession id layout `{random hex}_{created hex}`.

use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use rand_core::RngCore;

/// The fewest random bits an id may have.
pub(crate) const MIN_KEY_BITS: u32 = 64;
/// The most random bits an id may have.
pub(crate) const MAX_KEY_BITS: u32 = 256;

/// A session id: `key_bits` random bits as zero-padded lower-case hex, an
/// underscore, and the creation time in Unix seconds as lower-case hex, e.g.
/// `5f0e3c2a9b8d7e6f_6745c1a0`.
///
/// The creation time lets [`cleanup_sessions`](crate::cleanup_sessions)
/// decide expiry from the key alone. Ids travel only inside an encrypted,
/// authenticated cookie, so a client can neither read nor choose one.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct SessionId {
    /// The random part as lower-case hex ASCII, in the first `random_len`
    /// bytes (the rest zero), kept inline: ids are cloned and dropped
    /// several times per request, without touching the heap.
    random: [u8; (MAX_KEY_BITS / 4) as usize],
    random_len: u8,
    created: u64,
}

/// Why a string is not a [`SessionId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum ParseIdError {
    /// There is no `_` separating the two parts.
    #[error("session id has no `_` separator")]
    NoSeparator,
    /// The random part is not 16 to 64 lower-case hex digits, an even number.
    #[error("session id random part is not 16 to 64 lower-case hex digits")]
    BadRandom,
    /// The creation time is not 1 to 16 lower-case hex digits without
    /// leading zeros (the one form an id is written in).
    #[error("session id creation time is not canonical lower-case hex")]
    BadCreated,
}

#[cfg(test)]
fn is_lower_hex(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl SessionId {
    /// Draws a new id with `key_bits` random bits (a multiple of 8 from 64 to
    /// 256; other values are clamped to that range and rounded up to whole bytes).
    pub(crate) fn generate<R: RngCore + ?Sized>(
        rng: &mut R,
        key_bits: u32,
        created: SystemTime,
    ) -> Self {
        let bytes = key_bits.clamp(MIN_KEY_BITS, MAX_KEY_BITS).div_ceil(8) as usize;
        let mut buf = [0u8; (MAX_KEY_BITS / 8) as usize];
        rng.fill_bytes(&mut buf[..bytes]);
        let mut random = [0u8; (MAX_KEY_BITS / 4) as usize];
        for (i, b) in buf[..bytes].iter().enumerate() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            random[2 * i] = HEX[(b >> 4) as usize];
            random[2 * i + 1] = HEX[(b & 0xf) as usize];
        }
        let created = created
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        SessionId {
            random,
            random_len: (bytes * 2) as u8,
            created,
        }
    }

    /// The creation time, in Unix seconds.
    pub(crate) fn created_unix(&self) -> u64 {
        self.created
    }

    /// How many random bits the id carries.
    pub(crate) fn key_bits(&self) -> u32 {
        u32::from(self.random_len) * 4
    }

    /// The random part, as hex.
    fn random(&self) -> &str {
        // Only ASCII hex digits are ever stored.
        std::str::from_utf8(&self.random[..usize::from(self.random_len)]).unwrap_or_default()
    }
}

impl FromStr for SessionId {
    type Err = ParseIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // One pass over the bytes: every request with a cookie parses one.
        let bytes = s.as_bytes();
        let sep = bytes
            .iter()
            .position(|&b| b == b'_')
            .ok_or(ParseIdError::NoSeparator)?;
        let (random, created) = (&bytes[..sep], &bytes[sep + 1..]);
        if !(16..=64).contains(&random.len())
            || !random.len().is_multiple_of(2)
            || !random.iter().all(|&b| hex_digit(b).is_some())
        {
            return Err(ParseIdError::BadRandom);
        }
        if created.is_empty() || created.len() > 16 || (created.len() > 1 && created[0] == b'0') {
            return Err(ParseIdError::BadCreated);
        }
        let mut value = 0u64;
        for &b in created {
            let digit = hex_digit(b).ok_or(ParseIdError::BadCreated)?;
            value = value << 4 | u64::from(digit);
        }
        let mut bytes = [0u8; (MAX_KEY_BITS / 4) as usize];
        bytes[..random.len()].copy_from_slice(random);
        Ok(SessionId {
            random: bytes,
            random_len: random.len() as u8,
            created: value,
        })
    }
}

/// The value of a lower-case hex digit.
fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

impl SessionId {
    /// Appends the id's text to `out` without going through `fmt`.
    pub(crate) fn push_to(&self, out: &mut String) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        out.push_str(self.random());
        out.push('_');
        let digits = (64 - self.created.leading_zeros()).div_ceil(4).max(1);
        for shift in (0..digits).rev() {
            out.push(HEX[((self.created >> (shift * 4)) & 0xf) as usize] as char);
        }
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::with_capacity(usize::from(self.random_len) + 17);
        self.push_to(&mut s);
        f.write_str(&s)
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Ids are bearer secrets: never print the random part in full.
        write!(f, "SessionId({}…_{:x})", &self.random()[..4], self.created)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;
    use std::collections::HashSet;
    use std::time::Duration;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn layout_is_random_hex_underscore_created_hex() {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let id = SessionId::generate(&mut rng, 64, at(0x6745_c1a0));
        let s = id.to_string();
        let (random, created) = s.split_once('_').unwrap();
        assert_eq!(random.len(), 16);
        assert!(is_lower_hex(random));
        assert_eq!(created, "6745c1a0");
        assert_eq!(s.parse::<SessionId>().unwrap(), id);
        for bits in [64, 128, 200, 256] {
            let id = SessionId::generate(&mut rng, bits, at(1));
            assert_eq!(id.key_bits(), bits);
            assert_eq!(id.to_string().parse::<SessionId>().unwrap(), id);
        }
    }

    #[test]
    fn creation_time_hex_matches_format() {
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        for secs in [0u64, 1, 15, 16, 255, 0x6745_c1a0, u64::MAX / 2, u64::MAX] {
            let mut id = SessionId::generate(&mut rng, 64, at(0));
            id.created = secs;
            let s = id.to_string();
            assert_eq!(s.split_once('_').unwrap().1, format!("{secs:x}"));
            assert_eq!(s.parse::<SessionId>().unwrap(), id);
        }
    }

    #[test]
    fn seeded_rng_is_reproducible() {
        let draw = |seed| {
            let mut rng = ChaCha20Rng::seed_from_u64(seed);
            (0..5)
                .map(|_| SessionId::generate(&mut rng, 128, at(1000)).to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(42), draw(42));
        assert_ne!(draw(42), draw(43));
        let ids = draw(42);
        assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 5);
    }

    #[test]
    fn hundred_thousand_ids_have_no_duplicate() {
        let mut rng = ChaCha20Rng::from_os_rng();
        let ids: HashSet<String> = (0..100_000)
            .map(|_| SessionId::generate(&mut rng, 64, at(1)).to_string())
            .collect();
        assert_eq!(ids.len(), 100_000);
    }

    #[test]
    fn rejects_malformed_ids() {
        for bad in [
            "",
            "_",
            "abc",
            "0123456789abcdef",
            "0123456789abcdef_",
            "0123456789ABCDEF_1",
            "0123456789abcde_1",
            "0123456789abcdeg_1",
            "0123456789abcdef_xyz",
            "0123456789abcdef_1_2",
            "0123456789abcdef_11111111111111111",
            "../../etc/passwd_1",
            "0123456789abcdef_-1",
            "0123456789abcdef_ 1",
            // Not canonical: the same id is written without leading zeros.
            "0123456789abcdef_01",
            "0123456789abcdef_06745c1a0",
        ] {
            assert!(bad.parse::<SessionId>().is_err(), "{bad:?} parsed");
        }
        let long = format!("{}_1", "a".repeat(66));
        assert!(long.parse::<SessionId>().is_err());
    }

    #[test]
    fn times_near_the_integer_limits_do_not_panic() {
        let id: SessionId = "0123456789abcdef_ffffffffffffffff".parse().unwrap();
        assert_eq!(id.created_unix(), u64::MAX);
    }

    #[test]
    fn debug_does_not_reveal_the_id() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let id = SessionId::generate(&mut rng, 64, at(1));
        let s = id.to_string();
        assert!(!format!("{id:?}").contains(&s[..16]));
    }
}
