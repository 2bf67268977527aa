//! Access to internals for this repository's benchmarks, as the hidden
//! module `__bench`. Not part of the public API and not covered by semver:
//! it may change or go away in any release.
//!
//! Only what needs the crate's private modules lives here; the benchmark
//! harness itself is the `rocket_kvsession_bench` support crate.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::record::Envelope;

/// A stored session record decoded as the engine decodes it: the header,
/// and an index of the keys and values over the record's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedRecord(Envelope);

impl DecodedRecord {
    /// Unix seconds of the last request that wrote the session.
    pub fn last_active(&self) -> u64 {
        self.0.last_active
    }

    /// Whether the session's cookie is permanent.
    pub fn permanent(&self) -> bool {
        self.0.permanent
    }

    /// The encoded value of `key`, as `Session::get` reads it.
    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.0.data.get(key)
    }

    /// Sets `key` to an encoded value, as `Session::insert` does.
    pub fn insert(&mut self, key: String, value: Vec<u8>) {
        self.0.data.insert(key, value);
    }

    /// Sets the activity time, as a save does.
    pub fn set_last_active(&mut self, last_active: u64) {
        self.0.last_active = last_active;
    }

    /// Every key and its encoded value, copied out.
    pub fn to_map(&self) -> BTreeMap<String, Vec<u8>> {
        self.0
            .data
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_vec()))
            .collect()
    }

    /// Encodes the record as a save writes it.
    pub fn encode(&self) -> Vec<u8> {
        self.0.encode()
    }
}

/// Encodes a new session record exactly as the engine stores it.
pub fn encode_record(
    last_active: u64,
    permanent: bool,
    data: &BTreeMap<String, Vec<u8>>,
) -> Vec<u8> {
    crate::record::encode_parts(last_active, permanent, data, None)
}

/// Decodes a stored session record as the engine does; the record keeps
/// `bytes` (shared, not copied).
pub fn decode_record(bytes: Arc<Vec<u8>>) -> Result<DecodedRecord, crate::Error> {
    Envelope::decode(bytes).map(DecodedRecord)
}

/// The session cookie's cipher, built as the fairing builds it at ignite.
#[derive(Debug)]
pub struct CookieSealer(crate::seal::CookieCipher);

impl CookieSealer {
    /// The cipher of `secret_key` (in any encoding Rocket accepts).
    pub fn new(secret_key: &str) -> Result<Self, String> {
        let figment = rocket::figment::Figment::new().merge(("secret_key", secret_key));
        crate::seal::CookieCipher::from_figment(&figment, &[], false)
            .map(CookieSealer)
            .map_err(|e| e.to_string())
    }

    /// Seals `plaintext` (a session id) for the cookie `name`.
    pub fn seal<R: rand_core::RngCore + ?Sized>(
        &self,
        name: &str,
        plaintext: &[u8],
        rng: &mut R,
    ) -> String {
        self.0.seal(name, plaintext, rng)
    }

    /// Opens a value sealed for the cookie `name`: the plaintext's length.
    pub fn open(&self, name: &str, value: &str) -> Option<usize> {
        self.0
            .open(name, value)
            .map(|opened| opened.plaintext().len())
    }
}

/// Draws a session id as the engine does (`key_bits` random bits, created
/// at `created`) and formats it.
pub fn generate_id<R: rand_core::RngCore + ?Sized>(
    rng: &mut R,
    key_bits: u32,
    created: std::time::SystemTime,
) -> String {
    crate::id::SessionId::generate(rng, key_bits, created).to_string()
}

/// Parses `text` as the engine parses the id in a cookie: whether it is one.
pub fn parse_id(text: &str) -> bool {
    text.parse::<crate::id::SessionId>().is_ok()
}
