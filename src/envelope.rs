//! The stored form of a session: a one-byte format tag, then MessagePack.
//!
//! Format 1 is the MessagePack array `[last_active, permanent, data]` where
//! `data` maps each session key to its value's own MessagePack bytes. Values
//! are kept encoded so a request only decodes what it reads, and so a save
//! can merge another request's changes key by key without knowing the types.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::error::Error;

/// The format tag of the current envelope.
const FORMAT_V1: u8 = 1;

/// A session's data as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Envelope {
    /// Unix seconds of the last request that wrote the session.
    pub(crate) last_active: u64,
    /// Whether the session's cookie is permanent.
    pub(crate) permanent: bool,
    /// Session key -> MessagePack-encoded value.
    pub(crate) data: BTreeMap<String, Vec<u8>>,
}

#[derive(Serialize)]
struct WireRef<'a>(u64, bool, BTreeMap<&'a str, &'a serde_bytes::Bytes>);

#[derive(Deserialize)]
struct Wire(u64, bool, BTreeMap<String, ByteBuf>);

fn corrupt(reason: impl Into<Cow<'static, str>>) -> Error {
    Error::CorruptRecord {
        reason: reason.into(),
    }
}

impl Envelope {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let wire = WireRef(
            self.last_active,
            self.permanent,
            self.data
                .iter()
                .map(|(k, v)| (k.as_str(), serde_bytes::Bytes::new(v)))
                .collect(),
        );
        let mut out =
            Vec::with_capacity(16 + self.data.values().map(|v| v.len() + 16).sum::<usize>());
        out.push(FORMAT_V1);
        // Serializing integers, bools, strings and byte strings into a Vec
        // cannot fail.
        rmp_serde::encode::write(&mut out, &wire).expect("in-memory MessagePack encoding");
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, Error> {
        match bytes.split_first() {
            None => Err(corrupt("empty record")),
            Some((&FORMAT_V1, body)) => {
                let Wire(last_active, permanent, data) =
                    rmp_serde::from_slice(body).map_err(|e| corrupt(format!("format 1: {e}")))?;
                Ok(Envelope {
                    last_active,
                    permanent,
                    data: data.into_iter().map(|(k, v)| (k, v.into_vec())).collect(),
                })
            }
            Some((tag, _)) => Err(corrupt(format!("unknown format {tag}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip() {
        let mut env = Envelope {
            last_active: 1_700_000_000,
            permanent: true,
            data: BTreeMap::new(),
        };
        env.data
            .insert("user".into(), rmp_serde::to_vec("alice").unwrap());
        env.data.insert("empty".into(), vec![]);
        let bytes = env.encode();
        assert_eq!(bytes[0], FORMAT_V1);
        assert_eq!(Envelope::decode(&bytes).unwrap(), env);
    }

    #[test]
    fn rejects_unknown_formats_and_garbage() {
        assert!(Envelope::decode(&[]).is_err());
        assert!(Envelope::decode(&[2, 0x93, 0, 0xc3, 0x80]).is_err());
        assert!(Envelope::decode(&[1, 0xff, 0xff]).is_err());
        assert!(Envelope::decode(&[1]).is_err());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = Envelope::decode(&bytes);
        }

        #[test]
        fn arbitrary_envelopes_round_trip(
            last_active in any::<u64>(),
            permanent in any::<bool>(),
            data in proptest::collection::btree_map(".{0,12}", proptest::collection::vec(any::<u8>(), 0..64), 0..8),
        ) {
            let env = Envelope { last_active, permanent, data };
            prop_assert_eq!(Envelope::decode(&env.encode()).unwrap(), env);
        }
    }
}
