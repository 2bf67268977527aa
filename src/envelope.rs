//! The stored form of a session: a one-byte format tag, then MessagePack.
//!
//! Format 1 is the MessagePack array `[last_active, permanent, data]` where
//! `data` maps each session key to its value's own MessagePack bytes. Values
//! are kept encoded so a request only decodes what it reads, and so a save
//! can merge another request's changes key by key without knowing the types.
//! A session with an owner (`Session::set_owner`) appends two fields, the
//! owner's name and the session's 16-byte handle:
//! `[last_active, permanent, data, owner, handle]`.
//!
//! Format 2 marks a session that ended: a logout, or a rotation to a new id
//! (`regenerate()`), whose id follows the tag as ASCII text. An ended record
//! only lives between the compare-and-swap that ends the session and the
//! delete that follows it; it lets a logout and a rotation racing on one
//! session see each other (see `Engine::end`).

use std::borrow::Cow;
use std::collections::BTreeMap;

use crate::error::Error;
use crate::id::SessionId;

/// The format tag of the current envelope.
const FORMAT_V1: u8 = 1;
/// The format tag of an ended session.
const FORMAT_ENDED: u8 = 2;

/// A session's data as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Envelope {
    /// Unix seconds of the last request that wrote the session.
    pub(crate) last_active: u64,
    /// Whether the session's cookie is permanent.
    pub(crate) permanent: bool,
    /// Session key -> MessagePack-encoded value.
    pub(crate) data: BTreeMap<String, Vec<u8>>,
    /// Whose session this is, if the app said so.
    pub(crate) owner: Option<Owner>,
}

/// The owner of a session and the session's handle: a random name for the
/// session that is not its id, shown on a "your sessions" page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Owner {
    pub(crate) name: String,
    pub(crate) handle: Handle,
}

/// A session's handle: 128 random bits, drawn when the session gets an
/// owner and kept when its id rotates.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Handle(pub(crate) [u8; 16]);

impl Handle {
    /// The handle as 32 lower-case hex digits.
    pub(crate) fn to_hex(self) -> String {
        use std::fmt::Write;
        let mut out = String::with_capacity(32);
        for byte in self.0 {
            let _ = write!(out, "{byte:02x}");
        }
        out
    }

    /// Parses the output of [`Handle::to_hex`].
    pub(crate) fn from_hex(text: &str) -> Option<Handle> {
        if text.len() != 32 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let mut out = [0u8; 16];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(Handle(out))
    }
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Handle({})", self.to_hex())
    }
}

fn corrupt(reason: impl Into<Cow<'static, str>>) -> Error {
    Error::CorruptRecord {
        reason: reason.into(),
    }
}

/// Splits `len` bytes off the front of `rd`.
fn take<'a>(rd: &mut &'a [u8], len: u32, what: &'static str) -> Result<&'a [u8], Error> {
    let len = len as usize;
    if rd.len() < len {
        return Err(corrupt(format!("format 1: truncated {what}")));
    }
    let (head, tail) = rd.split_at(len);
    *rd = tail;
    Ok(head)
}

fn bad<E: std::fmt::Display>(what: &'static str) -> impl FnOnce(E) -> Error {
    move |e| corrupt(format!("format 1: {what}: {e}"))
}

impl Envelope {
    /// Encodes the envelope. The bytes are exactly what `rmp-serde` writes for
    /// the tuple `(u64, bool, BTreeMap<&str, &serde_bytes::Bytes>)`; they are
    /// written with `rmp` directly to skip serde's intermediate values.
    pub(crate) fn encode(&self) -> Vec<u8> {
        encode_parts(
            self.last_active,
            self.permanent,
            &self.data,
            self.owner.as_ref(),
        )
    }

    /// Whether nothing would be worth storing: no data and no owner.
    pub(crate) fn is_empty(&self) -> bool {
        self.data.is_empty() && self.owner.is_none()
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, Error> {
        let body = match bytes.split_first() {
            None => return Err(corrupt("empty record")),
            Some((&FORMAT_V1, body)) => body,
            Some((tag, _)) => return Err(corrupt(format!("unknown format {tag}"))),
        };
        let rd = &mut &body[..];
        let fields = rmp::decode::read_array_len(rd).map_err(bad("header"))?;
        if fields != 3 && fields != 5 {
            return Err(corrupt(format!(
                "format 1: {fields} fields, expected 3 or 5"
            )));
        }
        let last_active: u64 = rmp::decode::read_int(rd).map_err(bad("last_active"))?;
        let permanent = rmp::decode::read_bool(rd).map_err(bad("permanent"))?;
        let entries = rmp::decode::read_map_len(rd).map_err(bad("data"))?;
        let mut data = BTreeMap::new();
        for _ in 0..entries {
            let len = rmp::decode::read_str_len(rd).map_err(bad("key"))?;
            let key = std::str::from_utf8(take(rd, len, "key")?)
                .map_err(bad("key"))?
                .to_owned();
            let len = rmp::decode::read_bin_len(rd).map_err(bad("value"))?;
            let value = take(rd, len, "value")?.to_vec();
            data.insert(key, value);
        }
        let owner = if fields == 5 {
            let len = rmp::decode::read_str_len(rd).map_err(bad("owner"))?;
            let name = std::str::from_utf8(take(rd, len, "owner")?)
                .map_err(bad("owner"))?
                .to_owned();
            let len = rmp::decode::read_bin_len(rd).map_err(bad("handle"))?;
            let handle = take(rd, len, "handle")?
                .try_into()
                .map_err(|_| corrupt("format 1: handle is not 16 bytes"))?;
            Some(Owner {
                name,
                handle: Handle(handle),
            })
        } else {
            None
        };
        if !rd.is_empty() {
            return Err(corrupt("format 1: trailing bytes"));
        }
        Ok(Envelope {
            last_active,
            permanent,
            data,
            owner,
        })
    }
}

/// What a stored record holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Stored {
    /// A live session.
    Live(Envelope),
    /// A session that ended; if it was rotated, the id it moved to.
    Ended(Option<SessionId>),
}

impl Stored {
    /// Decodes any record format.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, Error> {
        match bytes.split_first() {
            Some((&FORMAT_ENDED, [])) => Ok(Stored::Ended(None)),
            Some((&FORMAT_ENDED, rest)) => std::str::from_utf8(rest)
                .ok()
                .and_then(|id| id.parse().ok())
                .map(|id| Stored::Ended(Some(id)))
                .ok_or_else(|| corrupt("format 2: bad successor id")),
            _ => Envelope::decode(bytes).map(Stored::Live),
        }
    }

    /// The record of a session that ended, moved to `successor` if any.
    pub(crate) fn ended(successor: Option<&SessionId>) -> Vec<u8> {
        let mut out = vec![FORMAT_ENDED];
        if let Some(id) = successor {
            out.extend_from_slice(id.to_string().as_bytes());
        }
        out
    }
}

/// Encodes format 1 from its parts (see [`Envelope::encode`]).
pub(crate) fn encode_parts(
    last_active: u64,
    permanent: bool,
    data: &BTreeMap<String, Vec<u8>>,
    owner: Option<&Owner>,
) -> Vec<u8> {
    let payload: usize = data
        .iter()
        .map(|(k, v)| k.len() + v.len() + 10)
        .sum::<usize>()
        + owner.map_or(0, |o| o.name.len() + 32);

    let mut out = Vec::with_capacity(16 + payload);
    out.push(FORMAT_V1);
    // Writing into a Vec cannot fail, and every length fits a u32
    // (session values are far below 4 GiB).
    let write = |out: &mut Vec<u8>| -> Result<(), rmp::encode::ValueWriteError> {
        rmp::encode::write_array_len(out, if owner.is_some() { 5 } else { 3 })?;
        rmp::encode::write_uint(out, last_active)?;
        rmp::encode::write_bool(out, permanent)
            .map_err(rmp::encode::ValueWriteError::InvalidDataWrite)?;
        rmp::encode::write_map_len(out, data.len() as u32)?;
        for (key, value) in data {
            rmp::encode::write_str(out, key)?;
            rmp::encode::write_bin(out, value)?;
        }
        if let Some(owner) = owner {
            rmp::encode::write_str(out, &owner.name)?;
            rmp::encode::write_bin(out, &owner.handle.0)?;
        }
        Ok(())
    };
    write(&mut out).expect("in-memory MessagePack encoding");
    out
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
            owner: None,
        };
        env.data
            .insert("user".into(), rmp_serde::to_vec("alice").unwrap());
        env.data.insert("empty".into(), vec![]);
        let bytes = env.encode();
        assert_eq!(bytes[0], FORMAT_V1);
        assert_eq!(Envelope::decode(&bytes).unwrap(), env);
    }

    /// Format 1 is, byte for byte, what `rmp-serde` writes for the tuple
    /// `(last_active, permanent, {key: bytes})`, and both decoders agree.
    #[test]
    fn format_1_is_the_rmp_serde_tuple() {
        use std::collections::BTreeMap;
        let mut data = BTreeMap::new();
        data.insert("a".to_owned(), vec![1u8, 2, 3]);
        data.insert("user".to_owned(), rmp_serde::to_vec("alice").unwrap());
        data.insert("big".to_owned(), vec![7u8; 70_000]);
        let env = Envelope {
            last_active: u64::MAX - 5,
            permanent: false,
            data,
            owner: None,
        };
        let wire: (u64, bool, BTreeMap<&str, &serde_bytes::Bytes>) = (
            env.last_active,
            env.permanent,
            env.data
                .iter()
                .map(|(k, v)| (k.as_str(), serde_bytes::Bytes::new(v)))
                .collect(),
        );
        let mut expected = vec![FORMAT_V1];
        expected.extend(rmp_serde::to_vec(&wire).unwrap());
        assert_eq!(env.encode(), expected);
        let (last_active, permanent, data): (u64, bool, BTreeMap<String, serde_bytes::ByteBuf>) =
            rmp_serde::from_slice(&expected[1..]).unwrap();
        assert_eq!((last_active, permanent), (env.last_active, env.permanent));
        assert_eq!(data.len(), 3);
        assert_eq!(Envelope::decode(&expected).unwrap(), env);
    }

    #[test]
    fn rejects_unknown_formats_and_garbage() {
        assert!(Envelope::decode(&[]).is_err());
        assert!(Envelope::decode(&[2, 0x93, 0, 0xc3, 0x80]).is_err());
        assert!(Envelope::decode(&[1, 0xff, 0xff]).is_err());
        assert!(Envelope::decode(&[1]).is_err());
        let mut trailing = Envelope::default().encode();
        trailing.push(0);
        assert!(Envelope::decode(&trailing).is_err());
        // A map that claims more entries than there are bytes.
        assert!(Envelope::decode(&[1, 0x93, 0, 0xc2, 0xdf, 0xff, 0xff, 0xff, 0xff]).is_err());
    }

    /// An owned session appends the owner and the handle; records without
    /// an owner keep the three-field layout.
    #[test]
    fn owner_fields() {
        let mut env = Envelope::default();
        let plain = env.encode();
        env.owner = Some(Owner {
            name: "alice".into(),
            handle: Handle([7; 16]),
        });
        let owned = env.encode();
        assert_eq!(plain[1], 0x93);
        assert_eq!(owned[1], 0x95);
        assert_eq!(Envelope::decode(&owned).unwrap(), env);
        // A handle of the wrong length, or a missing one, is refused.
        let mut short = owned.clone();
        let at = short.len() - 18;
        short[at] = 0xc4;
        short[at + 1] = 15;
        short.pop();
        assert!(Envelope::decode(&short).is_err());
        let mut four = plain.clone();
        four[1] = 0x94;
        four.extend_from_slice(&[0xa1, b'a']);
        assert!(Envelope::decode(&four).is_err());
        let hex = Handle([0xab; 16]).to_hex();
        assert_eq!(hex, "ab".repeat(16));
        assert_eq!(Handle::from_hex(&hex), Some(Handle([0xab; 16])));
        assert_eq!(Handle::from_hex("ab"), None);
        assert_eq!(Handle::from_hex(&"zz".repeat(16)), None);
    }

    #[test]
    fn ended_records_round_trip() {
        let id: SessionId = "00112233445566778899aabbccddeeff_6745c1a0".parse().unwrap();
        assert_eq!(
            Stored::decode(&Stored::ended(Some(&id))).unwrap(),
            Stored::Ended(Some(id))
        );
        assert_eq!(
            Stored::decode(&Stored::ended(None)).unwrap(),
            Stored::Ended(None)
        );
        assert!(Stored::decode(&[FORMAT_ENDED, b'x']).is_err());
        let live = Envelope::default();
        assert_eq!(Stored::decode(&live.encode()).unwrap(), Stored::Live(live));
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
            let env = Envelope { last_active, permanent, data, owner: None };
            prop_assert_eq!(Envelope::decode(&env.encode()).unwrap(), env);
        }

        #[test]
        fn owned_envelopes_round_trip(
            name in ".{0,40}",
            handle in any::<[u8; 16]>(),
            data in proptest::collection::btree_map(".{0,12}", proptest::collection::vec(any::<u8>(), 0..64), 0..4),
        ) {
            let env = Envelope {
                last_active: 7,
                permanent: false,
                data,
                owner: Some(Owner { name, handle: Handle(handle) }),
            };
            prop_assert_eq!(Envelope::decode(&env.encode()).unwrap(), env);
        }
    }
}
