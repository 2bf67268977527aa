//! [`CookieCipher`]: seals and opens the session cookie's value with
//! AES-256-GCM, keyed from Rocket's `secret_key` (and the earlier keys of
//! `secret_key_fallbacks`), with a cipher built once at ignite.
//!
//! A sealed value is the URL-safe base64, without padding, of
//! `nonce (12 bytes) || ciphertext || tag (16 bytes)`; the nonce is random
//! per seal and the cookie's name is the associated data, so a value sealed
//! for one cookie does not open as another. The AES key is
//! `HKDF-SHA256(salt: none, IKM: master, info: "rocket_kvsession cookie v1")`
//! where `master` is the 512-bit master key Rocket itself derives from
//! `secret_key` (the key as given when it has 64 bytes or more, else
//! expanded by the `cookie` crate's `Key::derive_from`), so every encoding
//! Rocket reads as the same key gives the same cipher.

use std::borrow::Cow;
use std::fmt;

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hkdf::Hkdf;
use rand_core::RngCore;
use rocket::config::SecretKey;
use rocket::figment::value::Value;
use rocket::figment::{Figment, Profile, Provider};
use sha2::Sha256;

/// The HKDF `info` of this crate's cookie key: a new layout gets a new label.
const KEY_LABEL: &[u8] = b"rocket_kvsession cookie v1";
/// The HKDF label of the key CSRF secrets are derived with.
const CSRF_LABEL: &[u8] = b"rocket_kvsession csrf v1";
/// Bytes of a CSRF secret derived with it.
pub(crate) const CSRF_SECRET_LEN: usize = 32;

/// Bytes of a nonce (96 bits).
const NONCE_LEN: usize = 12;
/// Bytes of a GCM tag.
const TAG_LEN: usize = 16;
/// The longest plaintext sealed or opened. Session ids are at most 81 bytes
/// (64 hex digits, `_`, 16 hex digits).
pub(crate) const MAX_PLAINTEXT: usize = 128;
/// The longest sealed value, decoded.
const MAX_SEALED: usize = NONCE_LEN + MAX_PLAINTEXT + TAG_LEN;
/// The longest sealed value, encoded: anything longer is refused unread.
const MAX_ENCODED: usize = (MAX_SEALED * 4).div_ceil(3);
/// The shortest sealed value, encoded (an empty plaintext).
const MIN_ENCODED: usize = ((NONCE_LEN + TAG_LEN) * 4).div_ceil(3);

/// Rocket's 512-bit master key, as it derives it from `secret_key`.
type MasterKey = [u8; 64];

/// A `secret_key` (or one of `secret_key_fallbacks`) that cannot be used.
/// The message never repeats the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid `{key}`: {message}")]
pub(crate) struct SecretKeyError {
    /// The configuration key: `secret_key` or
    /// `kvsession.secret_key_fallbacks[i]`.
    pub(crate) key: Cow<'static, str>,
    /// What is wrong with its value.
    pub(crate) message: Cow<'static, str>,
}

/// What is wrong with a key's value; the caller names the key.
const EXPECTED_KEY: &str = "expected 44 or 88 characters of base64, 64 hex digits, \
     or an array of at least 32 bytes (generate one with `head -c64 /dev/urandom | base64`)";

/// Reads a secret key exactly as Rocket reads `secret_key` (its own
/// `SecretKey` deserializer: base64 of 256 or 512 bits, 256 bits of hex, or
/// an array of at least 32 bytes). `Ok(None)` is Rocket's zero key, which it
/// treats as no key at all. Errors never repeat the value.
fn parse_key(value: &Value) -> Result<Option<MasterKey>, Cow<'static, str>> {
    use rocket::figment::error::Kind;

    let key: SecretKey = value.deserialize().map_err(|e| -> Cow<'static, str> {
        match e.kind {
            Kind::InvalidLength(n, _) => format!("has length {n}: {EXPECTED_KEY}").into(),
            _ => format!("is not a secret key: {EXPECTED_KEY}").into(),
        }
    })?;
    if key.is_zero() {
        return Ok(None);
    }
    master_of(key).map(Some).ok_or(Cow::Borrowed(
        "could not be read back from Rocket's configuration",
    ))
}

/// Reads one string of `secret_key_fallbacks`: Rocket's string encodings of
/// `secret_key`. An all-zero key is refused: it is no key.
pub(crate) fn parse_fallback(value: &str) -> Result<MasterKey, Cow<'static, str>> {
    parse_key(&Value::from(value))?.ok_or(Cow::Borrowed("is all zeroes, which is no key"))
}

/// The master key Rocket uses for `key`. `SecretKey` keeps it private, but
/// Rocket's `Config` hands it out as a figment provider (so that a `Config`
/// round-trips through a figment), exactly as its private cookies use it.
fn master_of(key: SecretKey) -> Option<MasterKey> {
    let config = rocket::Config {
        secret_key: key,
        ..rocket::Config::default()
    };
    let data = config.data().ok()?;
    let value = data
        .get(&Profile::Default)?
        .get(rocket::Config::SECRET_KEY)?;
    let bytes: Vec<u8> = value.deserialize().ok()?;
    bytes.try_into().ok()
}

/// The AES-256-GCM cipher of one master key.
fn derive_cipher(master: &MasterKey) -> Aes256Gcm {
    let mut key = [0u8; 32];
    Hkdf::<Sha256>::new(None, master)
        .expand(KEY_LABEL, &mut key)
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    Aes256Gcm::new(&key.into())
}

/// The key CSRF secrets are derived with, of one master key.
fn derive_csrf(master: &MasterKey) -> Hkdf<Sha256> {
    let mut key = [0u8; 32];
    Hkdf::<Sha256>::new(None, master)
        .expand(CSRF_LABEL, &mut key)
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    Hkdf::<Sha256>::from_prk(&key).expect("32 bytes is a valid HKDF-SHA256 key")
}

/// Seals and opens the session cookie's value. Built once at ignite (each
/// key's AES key schedule computed once), then shared by every request.
pub(crate) struct CookieCipher {
    /// The cipher of the current `secret_key`: every seal uses it.
    current: Aes256Gcm,
    /// The pseudo-random key CSRF secrets are derived with (HKDF of the
    /// current key, under its own label).
    csrf: Hkdf<Sha256>,
    /// The ciphers of `secret_key_fallbacks`, in order, without the current
    /// key or repeats: they only open.
    fallbacks: Vec<Aes256Gcm>,
}

impl fmt::Debug for CookieCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CookieCipher")
            .field("fallbacks", &self.fallbacks.len())
            .finish_non_exhaustive()
    }
}

/// A value [`CookieCipher::open`] authenticated and decrypted.
pub(crate) struct Opened {
    buf: [u8; MAX_PLAINTEXT],
    len: usize,
    /// Whether it opened with a fallback key only: the cookie should be
    /// sealed again with the current key.
    pub(crate) needs_reseal: bool,
}

impl Opened {
    /// The plaintext that was sealed.
    pub(crate) fn plaintext(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl fmt::Debug for Opened {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Opened")
            .field("len", &self.len)
            .field("needs_reseal", &self.needs_reseal)
            .finish_non_exhaustive()
    }
}

impl CookieCipher {
    /// The cipher of the `secret_key` of `figment` (Rocket's configuration,
    /// in its selected profile) and of `fallbacks`
    /// (`kvsession.secret_key_fallbacks`).
    ///
    /// Without a `secret_key` (or with Rocket's all-zero key), the debug
    /// profile gets a random key from the OS, with a warning, as Rocket does:
    /// sessions then do not survive a restart. Any other profile gets an
    /// error; Rocket itself refuses to launch there first (its
    /// `InsecureSecretKey`), so this is only a second line.
    pub(crate) fn from_figment(
        figment: &Figment,
        fallbacks: &[&str],
        debug_profile: bool,
    ) -> Result<CookieCipher, SecretKeyError> {
        let configured = match figment.find_value(rocket::Config::SECRET_KEY) {
            Ok(value) => parse_key(&value).map_err(|message| SecretKeyError {
                key: Cow::Borrowed("secret_key"),
                message,
            })?,
            Err(_) => None,
        };
        let current = match configured {
            Some(master) => master,
            None if debug_profile => {
                let mut master = [0u8; 64];
                rand_core::TryRngCore::try_fill_bytes(&mut rand_core::OsRng, &mut master).map_err(
                    |e| SecretKeyError {
                        key: Cow::Borrowed("secret_key"),
                        message: format!("is not set, and the OS has no random source: {e}").into(),
                    },
                )?;
                log::warn!(
                    "kvsession: no `secret_key` is configured: session cookies are sealed \
                     with a random key, so sessions do not survive a restart"
                );
                master
            }
            None => {
                return Err(SecretKeyError {
                    key: Cow::Borrowed("secret_key"),
                    message: Cow::Borrowed(
                        "is not set (or all zeroes): outside the debug profile a stable key \
                         is required; generate one with `head -c64 /dev/urandom | base64`",
                    ),
                })
            }
        };
        let mut masters = Vec::with_capacity(fallbacks.len());
        for (i, fallback) in fallbacks.iter().enumerate() {
            let master = parse_fallback(fallback).map_err(|message| SecretKeyError {
                key: format!("kvsession.secret_key_fallbacks[{i}]").into(),
                message,
            })?;
            masters.push(master);
        }
        Ok(Self::from_masters(&current, &masters))
    }

    /// The cipher of `current`, opening also with `fallbacks`. A fallback
    /// equal to the current key or to an earlier fallback is dropped.
    fn from_masters(current: &MasterKey, fallbacks: &[MasterKey]) -> CookieCipher {
        let mut seen: Vec<&MasterKey> = vec![current];
        let mut ciphers = Vec::new();
        for master in fallbacks {
            if !seen.contains(&master) {
                seen.push(master);
                ciphers.push(derive_cipher(master));
            }
        }
        CookieCipher {
            current: derive_cipher(current),
            csrf: derive_csrf(current),
            fallbacks: ciphers,
        }
    }

    /// The CSRF secret of the session whose id is `id`: HKDF-SHA256
    /// expanded under the current key's CSRF key with the id as info, so
    /// every request of one session derives the same secret (two requests
    /// that both create it agree) and no one without the key can.
    pub(crate) fn csrf_secret(&self, id: &[u8]) -> [u8; CSRF_SECRET_LEN] {
        let mut secret = [0u8; CSRF_SECRET_LEN];
        self.csrf
            .expand(id, &mut secret)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        secret
    }

    /// `plaintext` sealed for the cookie `name` with the current key and a
    /// random nonce drawn from `rng` (a cryptographically secure one).
    ///
    /// # Panics
    ///
    /// If `plaintext` is longer than [`MAX_PLAINTEXT`], which no session id is.
    pub(crate) fn seal<R: RngCore + ?Sized>(
        &self,
        name: &str,
        plaintext: &[u8],
        rng: &mut R,
    ) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        self.seal_with_nonce(name, plaintext, &nonce)
    }

    fn seal_with_nonce(&self, name: &str, plaintext: &[u8], nonce: &[u8; NONCE_LEN]) -> String {
        assert!(
            plaintext.len() <= MAX_PLAINTEXT,
            "a sealed cookie value holds at most {MAX_PLAINTEXT} bytes"
        );
        let end = NONCE_LEN + plaintext.len();
        let mut buf = [0u8; MAX_SEALED];
        buf[..NONCE_LEN].copy_from_slice(nonce);
        buf[NONCE_LEN..end].copy_from_slice(plaintext);
        let tag = self
            .current
            .encrypt_in_place_detached(
                Nonce::from_slice(nonce),
                name.as_bytes(),
                &mut buf[NONCE_LEN..end],
            )
            .expect("AES-GCM seals any plaintext this short");
        buf[end..end + TAG_LEN].copy_from_slice(&tag);
        let sealed = &buf[..end + TAG_LEN];
        let mut out = String::with_capacity((sealed.len() * 4).div_ceil(3));
        URL_SAFE_NO_PAD.encode_string(sealed, &mut out);
        out
    }

    /// Authenticates and decrypts `value`, sealed for the cookie `name`:
    /// with the current key first, then each fallback. `None` for anything
    /// else (another key or cookie name, a changed or truncated value, bad
    /// base64, too long): never a panic.
    pub(crate) fn open(&self, name: &str, value: &str) -> Option<Opened> {
        if !(MIN_ENCODED..=MAX_ENCODED).contains(&value.len()) {
            return None;
        }
        let mut buf = [0u8; MAX_SEALED];
        let len = decode_base64url(value.as_bytes(), &mut buf)?;
        if len < NONCE_LEN + TAG_LEN {
            return None;
        }
        let (nonce, rest) = buf[..len].split_at_mut(NONCE_LEN);
        let (body, tag) = rest.split_at_mut(rest.len() - TAG_LEN);
        let nonce = Nonce::from_slice(nonce);
        let tag = Tag::from_slice(tag);
        let aad = name.as_bytes();
        // A failed decryption leaves `body` as it was (the tag is checked
        // before any byte is decrypted), so each key tries the same bytes.
        let needs_reseal = if self
            .current
            .decrypt_in_place_detached(nonce, aad, body, tag)
            .is_ok()
        {
            false
        } else if self.fallbacks.iter().any(|cipher| {
            cipher
                .decrypt_in_place_detached(nonce, aad, body, tag)
                .is_ok()
        }) {
            true
        } else {
            return None;
        };
        let mut opened = Opened {
            buf: [0u8; MAX_PLAINTEXT],
            len: body.len(),
            needs_reseal,
        };
        opened.buf[..body.len()].copy_from_slice(body);
        Some(opened)
    }
}

/// The value of each base64url character; [`NOT_BASE64`] for the rest.
const BASE64URL: [u8; 256] = {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut table = [NOT_BASE64; 256];
    let mut i = 0;
    while i < alphabet.len() {
        table[alphabet[i] as usize] = i as u8;
        i += 1;
    }
    table
};

/// Not a base64url character (any value with either high bit set).
const NOT_BASE64: u8 = 0xff;

/// Decodes unpadded base64url `text` into `out`, strictly as
/// `URL_SAFE_NO_PAD.decode_slice` does (no padding, no other characters,
/// the unused bits of the last character zero), in one table lookup per
/// character; `None` if it is not such text or does not fit.
fn decode_base64url(text: &[u8], out: &mut [u8]) -> Option<usize> {
    let rest = text.len() % 4;
    if rest == 1 {
        return None;
    }
    let len = text.len() / 4 * 3 + rest.saturating_sub(1);
    if len > out.len() {
        return None;
    }
    let value = |c: u8| u32::from(BASE64URL[usize::from(c)]);
    let chunks = text.chunks_exact(4);
    let tail = chunks.remainder();
    let mut bad = 0u32;
    for (chunk, bytes) in chunks.zip(out.chunks_exact_mut(3)) {
        let (a, b, c, d) = (
            value(chunk[0]),
            value(chunk[1]),
            value(chunk[2]),
            value(chunk[3]),
        );
        bad |= a | b | c | d;
        let n = a << 18 | b << 12 | c << 6 | d;
        bytes.copy_from_slice(&n.to_be_bytes()[1..]);
    }
    let at = text.len() / 4 * 3;
    match *tail {
        [a, b] => {
            let (a, b) = (value(a), value(b));
            bad |= a | b;
            let n = a << 6 | b;
            bad |= u32::from(n & 0xf != 0) << 7;
            out[at] = (n >> 4) as u8;
        }
        [a, b, c] => {
            let (a, b, c) = (value(a), value(b), value(c));
            bad |= a | b | c;
            let n = a << 12 | b << 6 | c;
            bad |= u32::from(n & 0x3 != 0) << 7;
            out[at..at + 2].copy_from_slice(&((n >> 2) as u16).to_be_bytes());
        }
        _ => {}
    }
    // A character outside the alphabet, or unused bits that are set.
    (bad & 0xc0 == 0).then_some(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    use proptest::prelude::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::{RngCore, SeedableRng};

    /// `bytes(range(64))`, base64: a 512-bit key.
    const KEY_512: &str =
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+Pw==";
    /// `bytes(range(0x40, 0x60))`, hex: a 256-bit key.
    const KEY_256_HEX: &str = "404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f";

    // Known answers, computed with Python's `cryptography` package (45.x),
    // independently of this crate and of the `cookie` crate:
    //
    //     from cryptography.hazmat.primitives import hashes
    //     from cryptography.hazmat.primitives.kdf.hkdf import HKDF, HKDFExpand
    //     from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    //     import base64
    //     def seal(master, nonce, name, pt):
    //         key = HKDF(hashes.SHA256(), 32, salt=None,
    //                    info=b"rocket_kvsession cookie v1").derive(master)
    //         ct = AESGCM(key).encrypt(nonce, pt, name)
    //         return base64.urlsafe_b64encode(nonce + ct).rstrip(b"=").decode()
    //     k512 = bytes(range(64))          # Rocket's master key is the key itself
    //     seal(k512, bytes(range(0xa0, 0xac)), b"session",
    //          b"00112233445566778899aabbccddeeff_67a1b2c3")          # KAT_512
    //     seal(k512, bytes([0xff] * 12), b"session", b"")             # KAT_EMPTY
    //     k256 = bytes(range(0x40, 0x60))  # Rocket's master: cookie's Key::derive_from
    //     master = HKDFExpand(hashes.SHA256(), 64,
    //         b"COOKIE;SIGNED:HMAC-SHA256;PRIVATE:AEAD-AES-256-GCM").derive(k256)
    //     seal(master, bytes(12), b"__Host-id", b"0123456789abcdef_65f1a2b3")  # KAT_256
    const KAT_512: &str = "oKGio6SlpqeoqaqrPIpGAXpuC54mxgxDkCwOE6eIkmJbzbgQya_OFJIlXR12P-DXH6gxfEm-SkHc5biwBVwvZA4PAwV_";
    const KAT_512_PLAIN: &[u8] = b"00112233445566778899aabbccddeeff_67a1b2c3";
    const KAT_EMPTY: &str = "________________Z35i2oQ-GCvTuyZdd2CFQQ";
    const KAT_256: &str = "AAAAAAAAAAAAAAAAsJSrFinHLNMq4FQw0NQXNQCwgjCboRTsYiANVns0myQmLhmXb0YJ-bg";
    const KAT_256_PLAIN: &[u8] = b"0123456789abcdef_65f1a2b3";

    const ID: &[u8] = b"9f86d081884c7d65_67a1b2c3";

    fn figment(key: impl Into<Value>) -> Figment {
        Figment::new().merge(("secret_key", key.into()))
    }

    fn cipher(key: &str, fallbacks: &[&str]) -> CookieCipher {
        CookieCipher::from_figment(&figment(key), fallbacks, false).unwrap()
    }

    fn rng() -> ChaCha20Rng {
        ChaCha20Rng::seed_from_u64(7)
    }

    fn random_key() -> String {
        let mut bytes = [0u8; 64];
        rng().fill_bytes(&mut bytes);
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    fn decoded(value: &str) -> Vec<u8> {
        URL_SAFE_NO_PAD.decode(value).unwrap()
    }

    #[test]
    fn known_answers_seal_and_open() {
        let c = cipher(KEY_512, &[]);
        let nonce: [u8; 12] = std::array::from_fn(|i| 0xa0 + i as u8);
        assert_eq!(c.seal_with_nonce("session", KAT_512_PLAIN, &nonce), KAT_512);
        let opened = c.open("session", KAT_512).unwrap();
        assert_eq!(opened.plaintext(), KAT_512_PLAIN);
        assert!(!opened.needs_reseal);

        assert_eq!(c.seal_with_nonce("session", b"", &[0xff; 12]), KAT_EMPTY);
        assert_eq!(c.open("session", KAT_EMPTY).unwrap().plaintext(), b"");

        let c = cipher(KEY_256_HEX, &[]);
        assert_eq!(
            c.seal_with_nonce("__Host-id", KAT_256_PLAIN, &[0; 12]),
            KAT_256
        );
        assert_eq!(
            c.open("__Host-id", KAT_256).unwrap().plaintext(),
            KAT_256_PLAIN
        );
    }

    #[test]
    fn every_encoding_of_one_key_gives_the_same_cipher() {
        let bytes: Vec<u8> = (0x40..0x60).collect();
        let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
        let upper = KEY_256_HEX.to_uppercase();
        let figments = [
            figment(KEY_256_HEX),
            figment(upper.as_str()),
            figment(b64.as_str()),
            figment(bytes.clone()),
        ];
        for f in &figments {
            let c = CookieCipher::from_figment(f, &[], false).unwrap();
            assert_eq!(
                c.seal_with_nonce("__Host-id", KAT_256_PLAIN, &[0; 12]),
                KAT_256
            );
        }
        // 64 bytes or more: Rocket uses the first 64 as they are.
        let long: Vec<u8> = (0..100).collect();
        let c = CookieCipher::from_figment(&figment(long), &[], false).unwrap();
        assert_eq!(
            c.open("session", KAT_512).unwrap().plaintext(),
            KAT_512_PLAIN
        );
    }

    #[test]
    fn accepted_encodings_are_rockets() {
        let b64_32 = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        let url_safe_64 = base64::engine::general_purpose::URL_SAFE.encode([0xfb; 64]);
        let cases: Vec<(Value, bool)> = vec![
            (KEY_512.into(), true),
            (b64_32.as_str().into(), true),
            (KEY_256_HEX.into(), true),
            (KEY_256_HEX.to_uppercase().as_str().into(), true),
            (vec![1u8; 32].into(), true),
            (vec![1u8; 48].into(), true),
            (vec![1u8; 64].into(), true),
            (vec![1u8; 200].into(), true),
            (KEY_512.trim_end_matches('=').into(), false),
            (KEY_512.replace('A', "!").as_str().into(), false),
            (url_safe_64.as_str().into(), false),
            (KEY_256_HEX.replace('4', "g").as_str().into(), false),
            (KEY_256_HEX[..62].into(), false),
            (vec![1u8; 31].into(), false),
            (vec![300u16; 64].into(), false),
            ("".into(), false),
            (12345.into(), false),
            (true.into(), false),
        ];
        for (i, (value, accepted)) in cases.into_iter().enumerate() {
            let f = Figment::from(rocket::Config::debug_default()).merge(("secret_key", value));
            let rocket_accepts = rocket::Config::try_from(&f).is_ok();
            let ours = CookieCipher::from_figment(&f, &[], false);
            assert_eq!(rocket_accepts, accepted, "case {i}: Rocket");
            assert_eq!(ours.is_ok(), accepted, "case {i}: {ours:?}");
            if let Err(e) = ours {
                assert_eq!(e.key, "secret_key");
                assert!(e.to_string().contains("`secret_key`"), "{e}");
            }
        }
    }

    #[test]
    fn a_refused_key_is_named_and_never_repeated() {
        let bad = KEY_512.replace('A', "*");
        let err = CookieCipher::from_figment(&figment(bad.as_str()), &[], true).unwrap_err();
        assert_eq!(err.key, "secret_key");
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains(&bad[10..30]), "{shown}");

        let random = random_key();
        let fallbacks = [random.as_str(), "not-a-key-but-secret"];
        let err = CookieCipher::from_figment(&figment(KEY_512), &fallbacks, false).unwrap_err();
        assert_eq!(err.key, "kvsession.secret_key_fallbacks[1]");
        let shown = format!("{err} {err:?}");
        assert!(
            shown.contains("kvsession.secret_key_fallbacks[1]"),
            "{shown}"
        );
        assert!(!shown.contains("not-a-key"), "{shown}");

        let zero = "0".repeat(64);
        let err =
            CookieCipher::from_figment(&figment(KEY_512), &[zero.as_str()], false).unwrap_err();
        assert_eq!(err.key, "kvsession.secret_key_fallbacks[0]");
        assert!(parse_fallback(&KEY_512[..40]).is_err());
    }

    #[test]
    fn without_a_key_debug_draws_a_random_one_and_release_refuses() {
        let zero = figment(vec![0u8; 64]);
        for f in [Figment::new(), zero] {
            let err = CookieCipher::from_figment(&f, &[], false).unwrap_err();
            assert_eq!(err.key, "secret_key");
            let a = CookieCipher::from_figment(&f, &[], true).unwrap();
            let b = CookieCipher::from_figment(&f, &[], true).unwrap();
            let sealed = a.seal("session", ID, &mut rng());
            assert_eq!(a.open("session", &sealed).unwrap().plaintext(), ID);
            assert!(b.open("session", &sealed).is_none(), "two random keys");
        }
    }

    #[test]
    fn round_trip_with_a_fresh_nonce_each_time() {
        let c = cipher(KEY_512, &[]);
        let mut rng = rng();
        let max = [b'f'; MAX_PLAINTEXT];
        let longest_id = [b"f".repeat(64), b"_".to_vec(), b"f".repeat(16)].concat();
        for plaintext in [&b""[..], ID, &longest_id, &max] {
            let a = c.seal("session", plaintext, &mut rng);
            let b = c.seal("session", plaintext, &mut rng);
            assert_ne!(a, b);
            for sealed in [a, b] {
                assert!(sealed
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
                let opened = c.open("session", &sealed).unwrap();
                assert_eq!(opened.plaintext(), plaintext);
                assert!(!opened.needs_reseal);
            }
        }
    }

    #[test]
    #[should_panic(expected = "at most 128 bytes")]
    fn sealing_more_than_the_longest_plaintext_panics() {
        cipher(KEY_512, &[]).seal("session", &[0; MAX_PLAINTEXT + 1], &mut rng());
    }

    #[test]
    fn another_key_or_cookie_name_does_not_open() {
        let c = cipher(KEY_512, &[]);
        let sealed = c.seal("session", ID, &mut rng());
        assert!(cipher(&random_key(), &[])
            .open("session", &sealed)
            .is_none());
        assert!(cipher(KEY_256_HEX, &[]).open("session", &sealed).is_none());
        assert!(c.open("Session", &sealed).is_none());
        assert!(c.open("session2", &sealed).is_none());
        assert!(c.open("", &sealed).is_none());
        assert!(c.open("session", &sealed).is_some());
    }

    #[test]
    fn truncated_values_do_not_open() {
        let c = cipher(KEY_512, &[]);
        let sealed = c.seal("session", ID, &mut rng());
        for end in 0..sealed.len() {
            assert!(c.open("session", &sealed[..end]).is_none(), "{end}");
            assert!(c.open("session", &sealed[sealed.len() - end..]).is_none());
        }
        let bytes = decoded(&sealed);
        for end in 0..bytes.len() {
            let value = URL_SAFE_NO_PAD.encode(&bytes[..end]);
            assert!(c.open("session", &value).is_none(), "{end}");
        }
    }

    #[test]
    fn every_single_bit_flip_is_rejected() {
        let c = cipher(KEY_512, &[]);
        for sealed in [c.seal("session", ID, &mut rng()), KAT_512.to_string()] {
            let bytes = decoded(&sealed);
            for bit in 0..bytes.len() * 8 {
                let mut flipped = bytes.clone();
                flipped[bit / 8] ^= 1 << (bit % 8);
                let value = URL_SAFE_NO_PAD.encode(&flipped);
                assert!(c.open("session", &value).is_none(), "bit {bit}");
            }
            // Every other character in every position, too (a non-canonical
            // last character included).
            let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
            for i in 0..sealed.len() {
                for &other in alphabet {
                    if other != sealed.as_bytes()[i] {
                        let mut changed = sealed.clone().into_bytes();
                        changed[i] = other;
                        let changed = String::from_utf8(changed).unwrap();
                        assert!(c.open("session", &changed).is_none(), "{changed}");
                    }
                }
            }
            assert!(c.open("session", &sealed).is_some());
        }
    }

    #[test]
    fn garbage_is_rejected() {
        let c = cipher(KEY_512, &[]);
        let sealed = c.seal("session", ID, &mut rng());
        let padded = format!("{sealed}==");
        let standard = sealed.replace('-', "+").replace('_', "/");
        let spaced = format!(" {sealed}");
        let oversized = "A".repeat(MAX_ENCODED + 1);
        let long = "A".repeat(100_000);
        for value in [
            "",
            "=",
            "not base64!",
            &padded,
            &spaced,
            &oversized,
            &long,
            &"A".repeat(MIN_ENCODED),
            &"A".repeat(MAX_ENCODED),
            "ðŸª",
        ] {
            assert!(c.open("session", value).is_none(), "{value:?}");
        }
        if standard != sealed {
            assert!(c.open("session", &standard).is_none());
        }
    }

    #[test]
    fn fallback_keys_open_and_ask_for_a_reseal() {
        let (a, b) = (random_key(), KEY_512);
        let old = cipher(&a, &[]).seal("session", ID, &mut rng());

        let rotated = cipher(b, &[&a]);
        let opened = rotated.open("session", &old).unwrap();
        assert_eq!(opened.plaintext(), ID);
        assert!(opened.needs_reseal);
        let resealed = rotated.seal("session", opened.plaintext(), &mut rng());
        let opened = rotated.open("session", &resealed).unwrap();
        assert!(!opened.needs_reseal);
        assert_eq!(opened.plaintext(), ID);
        assert!(cipher(&a, &[]).open("session", &resealed).is_none());

        // Behind other fallbacks, and with the wrong name still refused.
        let longer = cipher(b, &[KEY_256_HEX, &a]);
        assert!(longer.open("session", &old).unwrap().needs_reseal);
        assert!(longer.open("other", &old).is_none());

        // Removing the fallback logs out exactly its cookies.
        let removed = cipher(b, &[]);
        assert!(removed.open("session", &old).is_none());
        assert!(!removed.open("session", &resealed).unwrap().needs_reseal);
    }

    #[test]
    fn a_fallback_equal_to_the_current_key_or_repeated_is_dropped() {
        let hex_of_same = cipher(KEY_256_HEX, &[KEY_256_HEX, KEY_512, KEY_512]);
        assert_eq!(hex_of_same.fallbacks.len(), 1);
        let b64 =
            base64::engine::general_purpose::STANDARD.encode((0x40..0x60).collect::<Vec<u8>>());
        let c = cipher(KEY_256_HEX, &[&b64]);
        assert!(c.fallbacks.is_empty());
        let opened = c.open("__Host-id", KAT_256).unwrap();
        assert!(!opened.needs_reseal);
    }

    #[test]
    fn debug_output_shows_no_key_material() {
        let key = random_key();
        let c = cipher(&key, &[KEY_512]);
        let shown = format!("{c:?} {:#?}", c);
        assert_eq!(format!("{c:?}"), "CookieCipher { fallbacks: 1, .. }");
        assert!(!shown.contains(&key[..16]));
        let opened = c
            .open("session", &c.seal("session", ID, &mut rng()))
            .unwrap();
        let shown = format!("{opened:?}");
        assert!(
            !shown.contains("9f86") && !shown.contains("57, 102"),
            "{shown}"
        );
    }

    proptest! {
        #[test]
        fn arbitrary_strings_never_open(value in ".{0,300}", name in "[a-z]{0,8}") {
            let c = cipher(KEY_512, &[KEY_256_HEX]);
            prop_assert!(c.open(&name, &value).is_none());
        }

        #[test]
        fn arbitrary_base64_never_opens(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let c = cipher(KEY_512, &[KEY_256_HEX]);
            prop_assert!(c.open("session", &URL_SAFE_NO_PAD.encode(&bytes)).is_none());
        }

        #[test]
        fn any_plaintext_round_trips(plaintext in proptest::collection::vec(any::<u8>(), 0..=MAX_PLAINTEXT), seed: u64) {
            let c = cipher(KEY_512, &[]);
            let sealed = c.seal("session", &plaintext, &mut ChaCha20Rng::seed_from_u64(seed));
            let opened = c.open("session", &sealed).unwrap();
            prop_assert_eq!(opened.plaintext(), &plaintext[..]);
        }
    }

    #[test]
    fn base64url_decodes_as_the_base64_crate() {
        let mut rng = ChaCha20Rng::seed_from_u64(11);
        let chars =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_+/= .\x00\xff";
        for _ in 0..20_000 {
            let len = (rng.next_u32() % 40) as usize;
            let text: Vec<u8> = (0..len)
                .map(|_| {
                    // Mostly the alphabet, sometimes another byte.
                    let i = rng.next_u32() as usize;
                    if i.is_multiple_of(50) {
                        chars[64 + i / 50 % (chars.len() - 64)]
                    } else {
                        chars[i % 64]
                    }
                })
                .collect();
            let mut out = [0u8; 64];
            let ours = decode_base64url(&text, &mut out).map(|n| out[..n].to_vec());
            let theirs = URL_SAFE_NO_PAD.decode(&text).ok();
            assert_eq!(ours, theirs, "{:?}", String::from_utf8_lossy(&text));
        }
        for bytes in [&b""[..], b"a", b"ab", b"abc", b"abcd", &[0xff; 33]] {
            let text = URL_SAFE_NO_PAD.encode(bytes);
            let mut out = [0u8; 64];
            let n = decode_base64url(text.as_bytes(), &mut out).unwrap();
            assert_eq!(&out[..n], bytes);
        }
        let mut small = [0u8; 2];
        assert_eq!(decode_base64url(b"AAAA", &mut small), None, "does not fit");
    }
}
