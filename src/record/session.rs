//! Format 1, a live session: the MessagePack array
//! `[last_active, permanent, data]` where `data` maps each session key to
//! its value's own MessagePack bytes. Values are kept encoded so a request
//! only decodes what it reads, and so a save can merge another request's
//! changes key by key without knowing the types. A session with an owner
//! (`Session::set_owner`) appends two fields, the owner's name and the
//! session's 16-byte handle: `[last_active, permanent, data, owner, handle]`.
//!
//! A session with its own expiry settings (`Session::set_lifetime`,
//! `Session::set_idle_timeout`) has seven fields, the owner's two nil when
//! it has none: `[last_active, permanent, data, owner|nil, handle|nil,
//! lifetime|nil, idle_timeout|nil]`, the last two in seconds.
//!
//! Decoding is lazy: a loaded envelope keeps the record's bytes and an index
//! of where each key and value lies in them ([`Data`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::data::{Data, Entry, Loaded, RecordBytes, Span};
use super::msgpack::write_map;
use super::msgpack::{bad_in, bin_header, corrupt, map_header, str_header, take_in};
use super::owner::{Handle, Owner};
use super::FORMAT_SESSION;
use crate::error::Error;

/// A session's data as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Envelope {
    /// Unix seconds of the last request that wrote the session.
    pub(crate) last_active: u64,
    /// Whether the session's cookie is permanent.
    pub(crate) permanent: bool,
    /// Session key -> MessagePack-encoded value.
    pub(crate) data: Data,
    /// Whose session this is, if the app said so.
    pub(crate) owner: Option<Owner>,
    /// The session's own expiry settings, where it has any.
    pub(crate) expiry: OwnExpiry,
}

/// A session's own expiry settings, in seconds: `None` where the
/// configuration decides (see `lifetime::Lifetime::for_session`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct OwnExpiry {
    /// `Session::set_lifetime`.
    pub(crate) lifetime: Option<u64>,
    /// `Session::set_idle_timeout`.
    pub(crate) idle_timeout: Option<u64>,
}

impl OwnExpiry {
    fn is_default(&self) -> bool {
        *self == OwnExpiry::default()
    }
}

/// The MessagePack nil marker.
const NIL: u8 = 0xc0;

/// Takes a nil off the front of `rd`, if that is what it starts with.
fn take_nil(rd: &mut &[u8]) -> bool {
    match rd.split_first() {
        Some((&NIL, rest)) => {
            *rd = rest;
            true
        }
        _ => false,
    }
}

/// Reads an unsigned integer or nil.
fn read_seconds(rd: &mut &[u8], what: &'static str) -> Result<Option<u64>, Error> {
    if take_nil(rd) {
        return Ok(None);
    }
    rmp::decode::read_int(rd).map(Some).map_err(bad(what))
}

fn take<'a>(rd: &mut &'a [u8], len: u32, what: &'static str) -> Result<&'a [u8], Error> {
    take_in(rd, len, "format 1", what)
}

fn bad<E: std::fmt::Display>(what: &'static str) -> impl FnOnce(E) -> Error {
    bad_in("format 1", what)
}

impl Envelope {
    /// Encodes the envelope. The bytes are exactly what `rmp-serde` writes for
    /// the tuple `(u64, bool, BTreeMap<&str, &serde_bytes::Bytes>)` (plus the
    /// owner's two fields); they are written with `rmp` directly to skip
    /// serde's intermediate values. Keys loaded and not changed since are
    /// copied as they are.
    pub(crate) fn encode(&self) -> Vec<u8> {
        encode_with(
            self.last_active,
            self.permanent,
            self.owner.as_ref(),
            &self.expiry,
            self.data.encoded_len(),
            |out| self.data.write(out),
        )
    }

    /// Whether nothing would be worth storing: no data and no owner.
    pub(crate) fn is_empty(&self) -> bool {
        self.data.is_empty() && self.owner.is_none()
    }

    /// Decodes format 1: the header and owner, and an index of the data
    /// over `bytes`, which the envelope keeps. Values stay encoded.
    pub(crate) fn decode(bytes: impl Into<RecordBytes>) -> Result<Self, Error> {
        let record = bytes.into();
        let bytes = record.as_slice();
        let body = match bytes.split_first() {
            None => return Err(corrupt("empty record")),
            Some((&FORMAT_SESSION, body)) => body,
            Some((tag, _)) => return Err(corrupt(format!("unknown format {tag}"))),
        };
        let rd = &mut &body[..];
        // The offset in `bytes` that `rd` has reached.
        let at = |rd: &&[u8]| bytes.len() - rd.len();
        let fields = rmp::decode::read_array_len(rd).map_err(bad("header"))?;
        if !matches!(fields, 3 | 5 | 7) {
            return Err(corrupt(format!(
                "format 1: {fields} fields, expected 3, 5 or 7"
            )));
        }
        let last_active: u64 = rmp::decode::read_int(rd).map_err(bad("last_active"))?;
        let permanent = rmp::decode::read_bool(rd).map_err(bad("permanent"))?;

        let map_start = at(rd);
        let count = rmp::decode::read_map_len(rd).map_err(bad("data"))?;
        // Whether every header is the one `encode` would write.
        let mut canonical = at(rd) - map_start == map_header(count);
        // Whether the keys are strictly ascending, as `encode` writes them.
        let mut sorted = true;
        // The count is not trusted for the allocation: an entry takes at
        // least three bytes.
        let mut entries = Vec::with_capacity((count as usize).min(rd.len() / 3));
        for _ in 0..count {
            let header = at(rd);
            let len = rmp::decode::read_str_len(rd).map_err(bad("key"))?;
            canonical &= at(rd) - header == str_header(len);
            let start = at(rd);
            let text = take(rd, len, "key")?;
            if !text.is_ascii() {
                std::str::from_utf8(text).map_err(bad("key"))?;
            }
            let key = Span { start, end: at(rd) };

            let header = at(rd);
            let len = rmp::decode::read_bin_len(rd).map_err(bad("value"))?;
            canonical &= at(rd) - header == bin_header(len);
            let start = at(rd);
            take(rd, len, "value")?;
            let value = Span { start, end: at(rd) };

            if let Some(Entry::Loaded { key: last, .. }) = entries.last() {
                sorted &= last.of(bytes) < key.of(bytes);
            }
            entries.push(Entry::Loaded { key, value });
        }
        let map = Span {
            start: map_start,
            end: at(rd),
        };
        if !sorted {
            // Not as `encode` writes it: sort, and of a repeated key keep
            // the last value, as a map filled entry by entry would.
            entries.sort_by(|a, b| a.key(bytes).cmp(b.key(bytes)));
            entries.dedup_by(|later, kept| {
                let repeated = later.key(bytes) == kept.key(bytes);
                if repeated {
                    std::mem::swap(later, kept);
                }
                repeated
            });
        }

        let owner = if fields == 7 && take_nil(rd) {
            if !take_nil(rd) {
                return Err(corrupt("format 1: a handle without an owner"));
            }
            None
        } else if fields >= 5 {
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
        let expiry = if fields == 7 {
            OwnExpiry {
                lifetime: read_seconds(rd, "lifetime")?,
                idle_timeout: read_seconds(rd, "idle_timeout")?,
            }
        } else {
            OwnExpiry::default()
        };
        if !rd.is_empty() {
            return Err(corrupt("format 1: trailing bytes"));
        }
        Ok(Envelope {
            last_active,
            permanent,
            expiry,
            data: Data {
                loaded: Some(Arc::new(Loaded {
                    verbatim: (canonical && sorted).then_some(map),
                    record,
                    index: entries,
                })),
                changed: None,
            },
            owner,
        })
    }
}

/// Encodes format 1 around a data map written by `data` (`payload`: about
/// how many bytes it writes).
fn encode_with(
    last_active: u64,
    permanent: bool,
    owner: Option<&Owner>,
    expiry: &OwnExpiry,
    payload: usize,
    data: impl FnOnce(&mut Vec<u8>) -> Result<(), rmp::encode::ValueWriteError>,
) -> Vec<u8> {
    let payload = payload + owner.map_or(0, |o| o.name.len() + 32);
    let mut out = Vec::with_capacity(16 + payload);
    out.push(FORMAT_SESSION);
    // Writing into a Vec cannot fail, and every length fits a u32
    // (session values are far below 4 GiB).
    let write = |out: &mut Vec<u8>| -> Result<(), rmp::encode::ValueWriteError> {
        let fields = match (owner.is_some(), expiry.is_default()) {
            (_, false) => 7,
            (true, true) => 5,
            (false, true) => 3,
        };
        rmp::encode::write_array_len(out, fields)?;
        rmp::encode::write_uint(out, last_active)?;
        rmp::encode::write_bool(out, permanent)
            .map_err(rmp::encode::ValueWriteError::InvalidDataWrite)?;
        data(out)?;
        match owner {
            Some(owner) => {
                rmp::encode::write_str(out, &owner.name)?;
                rmp::encode::write_bin(out, &owner.handle.0)?;
            }
            None if fields == 7 => {
                rmp::encode::write_nil(out)
                    .map_err(rmp::encode::ValueWriteError::InvalidMarkerWrite)?;
                rmp::encode::write_nil(out)
                    .map_err(rmp::encode::ValueWriteError::InvalidMarkerWrite)?;
            }
            None => {}
        }
        if fields == 7 {
            for seconds in [expiry.lifetime, expiry.idle_timeout] {
                match seconds {
                    Some(seconds) => {
                        rmp::encode::write_uint(out, seconds)?;
                    }
                    None => rmp::encode::write_nil(out)
                        .map_err(rmp::encode::ValueWriteError::InvalidMarkerWrite)?,
                }
            }
        }
        Ok(())
    };
    write(&mut out).expect("in-memory MessagePack encoding");
    out
}

/// Encodes format 1 from its parts (see [`Envelope::encode`]).
pub(crate) fn encode_parts(
    last_active: u64,
    permanent: bool,
    data: &BTreeMap<String, Vec<u8>>,
    owner: Option<&Owner>,
) -> Vec<u8> {
    let payload = data.iter().map(|(k, v)| k.len() + v.len() + 10).sum();
    encode_with(
        last_active,
        permanent,
        owner,
        &OwnExpiry::default(),
        payload,
        |out| {
            write_map(
                out,
                data.len(),
                data.iter().map(|(k, v)| (k.as_bytes(), v.as_slice())),
            )
        },
    )
}

#[cfg(test)]
mod tests {
    use super::super::msgpack::{push_bin_header, push_str_header};
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip() {
        let mut env = Envelope {
            last_active: 1_700_000_000,
            permanent: true,
            data: Data::default(),
            owner: None,
            expiry: OwnExpiry::default(),
        };
        env.data
            .insert("user".into(), rmp_serde::to_vec("alice").unwrap());
        env.data.insert("empty".into(), vec![]);
        let bytes = env.encode();
        assert_eq!(bytes[0], FORMAT_SESSION);
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
            data: data.into(),
            owner: None,
            expiry: OwnExpiry::default(),
        };
        let wire: (u64, bool, BTreeMap<&str, &serde_bytes::Bytes>) = (
            env.last_active,
            env.permanent,
            env.data
                .iter()
                .map(|(k, v)| (k, serde_bytes::Bytes::new(v)))
                .collect(),
        );
        let mut expected = vec![FORMAT_SESSION];
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
            let env = Envelope { last_active, permanent, data: data.into(), owner: None, expiry: OwnExpiry::default() };
            prop_assert_eq!(Envelope::decode(env.encode()).unwrap(), env);
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
                data: data.into(),
                owner: Some(Owner { name, handle: Handle(handle) }),
                expiry: OwnExpiry::default(),
            };
            prop_assert_eq!(Envelope::decode(env.encode()).unwrap(), env);
        }

        #[test]
        fn envelopes_with_their_own_expiry_round_trip(
            owned in any::<bool>(),
            lifetime in proptest::option::of(any::<u64>()),
            idle_timeout in proptest::option::of(any::<u64>()),
            data in proptest::collection::btree_map(".{0,12}", proptest::collection::vec(any::<u8>(), 0..64), 0..4),
        ) {
            let env = Envelope {
                last_active: 7,
                permanent: true,
                data: data.into(),
                owner: owned.then(|| Owner { name: "alice".into(), handle: Handle([3; 16]) }),
                expiry: OwnExpiry { lifetime, idle_timeout },
            };
            let bytes = env.encode();
            let fields = if lifetime.is_some() || idle_timeout.is_some() { 0x97 } else if owned { 0x95 } else { 0x93 };
            prop_assert_eq!(bytes[1], fields);
            prop_assert_eq!(Envelope::decode(bytes).unwrap(), env);
        }
    }

    /// The decoder before decoding became lazy: every key and value copied
    /// into a map. The lazy decoder must accept and reject exactly what it
    /// did, and agree on the data.
    type Eager = (u64, bool, BTreeMap<String, Vec<u8>>, Option<Owner>);

    fn eager_decode(bytes: &[u8]) -> Option<Eager> {
        let (&FORMAT_SESSION, body) = bytes.split_first()? else {
            return None;
        };
        let rd = &mut &body[..];
        let fields = rmp::decode::read_array_len(rd).ok()?;
        if !matches!(fields, 3 | 5 | 7) {
            return None;
        }
        let last_active: u64 = rmp::decode::read_int(rd).ok()?;
        let permanent = rmp::decode::read_bool(rd).ok()?;
        let entries = rmp::decode::read_map_len(rd).ok()?;
        let mut data = BTreeMap::new();
        for _ in 0..entries {
            let len = rmp::decode::read_str_len(rd).ok()?;
            let key = std::str::from_utf8(take(rd, len, "key").ok()?).ok()?;
            let len = rmp::decode::read_bin_len(rd).ok()?;
            let value = take(rd, len, "value").ok()?.to_vec();
            data.insert(key.to_owned(), value);
        }
        let owner = if fields == 7 && rd.first() == Some(&NIL) {
            (rd.get(1) == Some(&NIL)).then_some(())?;
            *rd = &rd[2..];
            None
        } else if fields >= 5 {
            let len = rmp::decode::read_str_len(rd).ok()?;
            let name = std::str::from_utf8(take(rd, len, "owner").ok()?).ok()?;
            let len = rmp::decode::read_bin_len(rd).ok()?;
            let handle = take(rd, len, "handle").ok()?.try_into().ok()?;
            Some(Owner {
                name: name.to_owned(),
                handle: Handle(handle),
            })
        } else {
            None
        };
        if fields == 7 {
            for _ in 0..2 {
                if rd.first() == Some(&NIL) {
                    *rd = &rd[1..];
                } else {
                    let _: u64 = rmp::decode::read_int(rd).ok()?;
                }
            }
        }
        rd.is_empty()
            .then_some((last_active, permanent, data, owner))
    }

    /// The lazy decoder agrees with the eager one on `bytes`, and a save of
    /// what it decoded writes what the eager decoder's map would encode to.
    fn agrees_with_eager(bytes: &[u8]) -> Result<(), TestCaseError> {
        let lazy = Envelope::decode(bytes);
        let Some((last_active, permanent, data, owner)) = eager_decode(bytes) else {
            prop_assert!(lazy.is_err(), "accepted a record the eager decoder refused");
            return Ok(());
        };
        let lazy = lazy.map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(lazy.last_active, last_active);
        prop_assert_eq!(lazy.permanent, permanent);
        prop_assert_eq!(&lazy.owner, &owner);
        let as_map: BTreeMap<String, Vec<u8>> = lazy
            .data
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_vec()))
            .collect();
        prop_assert_eq!(&as_map, &data);
        prop_assert_eq!(lazy.data.len(), data.len());
        for (key, value) in &data {
            prop_assert_eq!(lazy.data.get(key), Some(value.as_slice()));
        }
        prop_assert_eq!(
            lazy.encode(),
            encode_parts(last_active, permanent, &data, owner.as_ref())
        );
        Ok(())
    }

    /// Writes a format 1 record by hand: keys in the given order (repeats
    /// allowed), each header in its smallest form or, if `wide`, in the
    /// 32-bit form `rmp` never writes for short lengths.
    fn hand_written(entries: &[(String, Vec<u8>, bool)], wide_map: bool) -> Vec<u8> {
        let mut out = vec![FORMAT_SESSION, 0x93, 0x07, 0xc3];
        if wide_map {
            out.push(0xdf);
            out.extend_from_slice(&(entries.len() as u32).to_be_bytes());
        } else {
            rmp::encode::write_map_len(&mut out, entries.len() as u32).unwrap();
        }
        for (key, value, wide) in entries {
            if *wide {
                out.push(0xdb);
                out.extend_from_slice(&(key.len() as u32).to_be_bytes());
                out.extend_from_slice(key.as_bytes());
                out.push(0xc6);
                out.extend_from_slice(&(value.len() as u32).to_be_bytes());
                out.extend_from_slice(value);
            } else {
                rmp::encode::write_str(&mut out, key).unwrap();
                rmp::encode::write_bin(&mut out, value).unwrap();
            }
        }
        out
    }

    /// The headers written by hand are `rmp`'s, and their sizes are what
    /// the decoder expects of a record `encode` wrote.
    #[test]
    fn headers_are_rmps() {
        for len in [0, 1, 15, 16, 31, 32, 255, 256, 65_535, 65_536, u32::MAX] {
            let (mut ours, mut theirs) = (Vec::new(), Vec::new());
            push_str_header(&mut ours, len);
            rmp::encode::write_str_len(&mut theirs, len).unwrap();
            assert_eq!(ours, theirs, "str {len}");
            assert_eq!(str_header(len), ours.len());
            let (mut ours, mut theirs) = (Vec::new(), Vec::new());
            push_bin_header(&mut ours, len);
            rmp::encode::write_bin_len(&mut theirs, len).unwrap();
            assert_eq!(ours, theirs, "bin {len}");
            assert_eq!(bin_header(len), ours.len());
            let mut map = Vec::new();
            rmp::encode::write_map_len(&mut map, len).unwrap();
            assert_eq!(map_header(len), map.len(), "map {len}");
        }
    }

    #[test]
    fn an_unchanged_record_encodes_to_its_own_bytes() {
        let mut data = BTreeMap::new();
        for (i, len) in [0usize, 1, 31, 32, 255, 256, 70_000]
            .into_iter()
            .enumerate()
        {
            data.insert(
                format!("key{i}{}", "k".repeat(len % 300)),
                vec![i as u8; len],
            );
        }
        for owner in [
            None,
            Some(Owner {
                name: "alice".into(),
                handle: Handle([3; 16]),
            }),
        ] {
            let bytes = encode_parts(9, true, &data, owner.as_ref());
            let env = Envelope::decode(bytes.clone()).unwrap();
            assert!(env.data.verbatim().is_some(), "the map is copied whole");
            assert_eq!(env.encode(), bytes);
            assert_eq!(env.data.get("key0"), Some(&[][..]));
            assert_eq!(env.data.get("key1k"), Some(&[1u8][..]));
            assert_eq!(env.data.get("key9"), None);
        }
    }

    /// Records `encode` would not write (keys out of order, a repeated key,
    /// wide headers) decode as before: sorted, the last of a repeated key
    /// wins, and a save writes them as `encode` does.
    #[test]
    fn records_in_another_writers_form_decode_as_before() {
        let entry = |k: &str, v: &[u8], wide| (k.to_owned(), v.to_vec(), wide);
        let cases = [
            (
                vec![entry("b", b"1", false), entry("a", b"2", false)],
                false,
            ),
            (
                vec![entry("a", b"1", false), entry("a", b"2", false)],
                false,
            ),
            (
                vec![
                    entry("c", b"1", false),
                    entry("a", b"2", false),
                    entry("c", b"3", false),
                    entry("b", b"", false),
                    entry("a", b"4", false),
                ],
                false,
            ),
            (vec![entry("a", b"1", true), entry("b", b"2", false)], false),
            (vec![entry("a", b"1", false)], true),
        ];
        for (entries, wide_map) in cases {
            let bytes = hand_written(&entries, wide_map);
            let env = Envelope::decode(bytes.as_slice()).unwrap();
            assert!(env.data.verbatim().is_none());
            assert_ne!(env.encode(), bytes);
            agrees_with_eager(&bytes).unwrap();
        }
        let bytes = hand_written(
            &[
                entry("a", b"1", false),
                entry("b", b"2", false),
                entry("a", b"3", false),
            ],
            false,
        );
        let env = Envelope::decode(bytes).unwrap();
        assert_eq!(env.data.keys().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(env.data.get("a"), Some(&b"3"[..]));
    }

    /// Every cut of a record, and lengths that point past its end, are
    /// refused.
    #[test]
    fn truncated_records_and_bad_lengths_are_refused() {
        let data = BTreeMap::from([
            ("a".to_owned(), vec![1u8; 40]),
            ("user".to_owned(), rmp_serde::to_vec("alice").unwrap()),
        ]);
        let owner = Owner {
            name: "bob".into(),
            handle: Handle([9; 16]),
        };
        for owner in [None, Some(&owner)] {
            let bytes = encode_parts(1, false, &data, owner);
            for cut in 0..bytes.len() {
                assert!(Envelope::decode(&bytes[..cut]).is_err(), "cut at {cut}");
            }
        }
        // A key length (fixstr 3) past the end, a value length past the end.
        assert!(Envelope::decode(&[1, 0x93, 0, 0xc2, 0x81, 0xa3, b'a']).is_err());
        assert!(Envelope::decode(&[1, 0x93, 0, 0xc2, 0x81, 0xa1, b'a', 0xc4, 9, 1]).is_err());
        // A key that is not UTF-8.
        assert!(Envelope::decode(&[1, 0x93, 0, 0xc2, 0x81, 0xa1, 0xff, 0xc4, 0]).is_err());
        // A value that is a string, not binary.
        assert!(Envelope::decode(&[1, 0x93, 0, 0xc2, 0x81, 0xa1, b'a', 0xa0]).is_err());
    }

    /// A copy of the data (a save's snapshot) shares the loaded record.
    #[test]
    fn copies_share_the_loaded_record() {
        let bytes = encode_parts(1, true, &BTreeMap::from([("a".into(), vec![1])]), None);
        let env = Envelope::decode(bytes).unwrap();
        let mut copy = env.clone();
        let shared = |a: &Data, b: &Data| match (&a.loaded, &b.loaded) {
            (Some(one), Some(two)) => Arc::ptr_eq(one, two),
            _ => false,
        };
        assert!(shared(&env.data, &copy.data));
        copy.data.insert("b".into(), vec![2]);
        assert!(shared(&env.data, &copy.data), "a change copies no bytes");
        assert!(env.data.changed.is_none() && copy.data.changed.is_some());
        assert_eq!(env.data.len(), 1, "the original is unchanged");
        assert_eq!(
            env.data.verbatim(),
            Some(&[0x81, 0xa1, b'a', 0xc4, 1, 1][..])
        );
        assert_eq!(copy.data.verbatim(), None);
        assert_eq!(copy.data.get("a"), Some(&[1u8][..]));
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(String, Vec<u8>),
        Remove(String),
        Clear,
    }

    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            proptest::sample::select(vec!["a", "b", "user", "cart", "é", ""])
                .prop_map(String::from),
            ".{0,6}",
        ]
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (key(), proptest::collection::vec(any::<u8>(), 0..40)).prop_map(|(k, v)| Op::Insert(k, v)),
            3 => key().prop_map(Op::Remove),
            1 => Just(Op::Clear),
        ]
    }

    fn entries() -> impl Strategy<Value = Vec<(String, Vec<u8>, bool)>> {
        proptest::collection::vec(
            (
                key(),
                proptest::collection::vec(any::<u8>(), 0..300),
                any::<bool>(),
            ),
            0..8,
        )
    }

    proptest! {
        /// A loaded record changed by any sequence of inserts, removes and
        /// clears holds, and encodes to, what a plain map changed the same
        /// way holds and encodes to.
        #[test]
        fn changes_to_a_loaded_record_match_a_map(
            data in proptest::collection::btree_map(key(), proptest::collection::vec(any::<u8>(), 0..300), 0..8),
            owned in any::<bool>(),
            ops in proptest::collection::vec(op(), 0..12),
        ) {
            let owner = owned.then(|| Owner { name: "o".into(), handle: Handle([1; 16]) });
            let bytes = encode_parts(5, true, &data, owner.as_ref());
            let mut env = Envelope::decode(bytes.clone()).unwrap();
            prop_assert_eq!(env.encode(), bytes);
            let mut model = data;
            for op in ops {
                match op {
                    Op::Insert(k, v) => {
                        env.data.insert(k.clone(), v.clone());
                        model.insert(k, v);
                    }
                    Op::Remove(k) => {
                        prop_assert_eq!(env.data.remove(&k), model.remove(&k).is_some());
                    }
                    Op::Clear => {
                        env.data.clear();
                        model.clear();
                    }
                }
                prop_assert_eq!(env.data.len(), model.len());
                prop_assert!(env.data.keys().eq(model.keys().map(String::as_str)));
                for k in model.keys() {
                    prop_assert!(env.data.contains_key(k));
                }
            }
            prop_assert_eq!(&env.data, &Data::from(model.clone()));
            let expected = encode_parts(5, true, &model, owner.as_ref());
            prop_assert_eq!(env.encode(), expected.clone());
            // And the result loads again to the same.
            prop_assert_eq!(Envelope::decode(expected).unwrap(), env);
        }

        /// Records in any writer's form, whole, cut short or with a byte
        /// changed, are accepted and refused exactly as before.
        #[test]
        fn the_lazy_decoder_agrees_with_the_eager_one(
            entries in entries(),
            wide_map in any::<bool>(),
            cut in any::<proptest::sample::Index>(),
            flip in any::<Option<(proptest::sample::Index, u8)>>(),
        ) {
            let bytes = hand_written(&entries, wide_map);
            agrees_with_eager(&bytes)?;
            agrees_with_eager(&bytes[..cut.index(bytes.len() + 1)])?;
            if let Some((at, byte)) = flip {
                let mut changed = bytes.clone();
                changed[at.index(bytes.len())] = byte;
                agrees_with_eager(&changed)?;
            }
        }

        #[test]
        fn arbitrary_bytes_decode_as_before(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            agrees_with_eager(&bytes)?;
        }
    }
}
