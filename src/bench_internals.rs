//! Access to internals for this repository's benchmarks, behind the hidden
//! `bench-internals` feature. Not part of the public API: it may change or go
//! away in any release.
//!
//! Only what needs the crate's private modules lives here; the benchmark
//! harness itself is the `rocket_kvsession_bench` support crate.

use std::collections::BTreeMap;

/// A decoded record: last activity, permanent flag, encoded values.
pub type RecordParts = (u64, bool, BTreeMap<String, Vec<u8>>);

/// Encodes a session record exactly as the engine stores it.
pub fn encode_record(
    last_active: u64,
    permanent: bool,
    data: &BTreeMap<String, Vec<u8>>,
) -> Vec<u8> {
    crate::envelope::encode_parts(last_active, permanent, data, None)
}

/// Decodes a stored session record as the engine does.
pub fn decode_record(bytes: &[u8]) -> Result<RecordParts, crate::Error> {
    let envelope = crate::envelope::Envelope::decode(bytes)?;
    Ok((envelope.last_active, envelope.permanent, envelope.data))
}
