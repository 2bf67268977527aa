//! Format 3, an owner index: the tag, then the MessagePack array
//! `[owner, [[id, handle, indexed], ...]]`, naming the sessions of one owner
//! (`Session::set_owner`) with their handles and when each was indexed
//! (Unix seconds). Entries written before `indexed` existed (`[id,
//! handle]`) still decode, as indexed when their id was created.

use super::msgpack::{bad_in, corrupt, take_in};
use super::owner::Handle;
use super::FORMAT_INDEX;
use crate::error::Error;
use crate::id::SessionId;

/// One session named by an owner index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IndexEntry {
    pub(crate) id: SessionId,
    pub(crate) handle: Handle,
    /// When the entry was written (Unix seconds): the session's record may
    /// still be being written for a while after (see
    /// [`Lifetime::may_be_pending`](crate::lifetime::Lifetime::may_be_pending)).
    pub(crate) indexed: u64,
}

/// An owner index as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Index {
    pub(crate) owner: String,
    pub(crate) entries: Vec<IndexEntry>,
}

const CONTEXT: &str = "owner index";

fn take<'a>(rd: &mut &'a [u8], len: u32, what: &'static str) -> Result<&'a [u8], Error> {
    take_in(rd, len, CONTEXT, what)
}

fn bad<E: std::fmt::Display>(what: &'static str) -> impl FnOnce(E) -> Error {
    bad_in(CONTEXT, what)
}

impl Index {
    pub(crate) fn new(owner: &str) -> Self {
        Index {
            owner: owner.to_owned(),
            entries: Vec::new(),
        }
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + self.owner.len() + self.entries.len() * 64);
        out.push(FORMAT_INDEX);
        let write = |out: &mut Vec<u8>| -> Result<(), rmp::encode::ValueWriteError> {
            rmp::encode::write_array_len(out, 2)?;
            rmp::encode::write_str(out, &self.owner)?;
            rmp::encode::write_array_len(out, self.entries.len() as u32)?;
            for entry in &self.entries {
                rmp::encode::write_array_len(out, 3)?;
                rmp::encode::write_str(out, &entry.id.to_string())?;
                rmp::encode::write_bin(out, &entry.handle.0)?;
                rmp::encode::write_uint(out, entry.indexed)?;
            }
            Ok(())
        };
        write(&mut out).expect("in-memory MessagePack encoding");
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, Error> {
        let Some((&FORMAT_INDEX, body)) = bytes.split_first() else {
            return Err(corrupt("not an owner index"));
        };
        let rd = &mut &body[..];
        if rmp::decode::read_array_len(rd).map_err(bad("header"))? != 2 {
            return Err(corrupt("owner index: bad header"));
        }
        let len = rmp::decode::read_str_len(rd).map_err(bad("owner"))?;
        let owner = std::str::from_utf8(take(rd, len, "owner")?)
            .map_err(bad("owner"))?
            .to_owned();
        let count = rmp::decode::read_array_len(rd).map_err(bad("entries"))?;
        let mut entries = Vec::with_capacity((count as usize).min(rd.len() / 8));
        for _ in 0..count {
            let fields = rmp::decode::read_array_len(rd).map_err(bad("entry"))?;
            if !(2..=3).contains(&fields) {
                return Err(corrupt("owner index: bad entry"));
            }
            let len = rmp::decode::read_str_len(rd).map_err(bad("id"))?;
            let id: SessionId = std::str::from_utf8(take(rd, len, "id")?)
                .ok()
                .and_then(|id| id.parse().ok())
                .ok_or_else(|| corrupt("owner index: bad id"))?;
            let len = rmp::decode::read_bin_len(rd).map_err(bad("handle"))?;
            let handle = take(rd, len, "handle")?
                .try_into()
                .map_err(|_| corrupt("owner index: handle is not 16 bytes"))?;
            let indexed = if fields == 3 {
                rmp::decode::read_int(rd).map_err(bad("indexed"))?
            } else {
                id.created_unix()
            };
            entries.push(IndexEntry {
                id,
                handle: Handle(handle),
                indexed,
            });
        }
        if !rd.is_empty() {
            return Err(corrupt("owner index: trailing bytes"));
        }
        Ok(Index { owner, entries })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Envelope;
    use proptest::prelude::*;

    fn id(n: u64) -> SessionId {
        format!("{n:016x}_6745c1a0").parse().unwrap()
    }

    #[test]
    fn index_round_trip_and_strictness() {
        let index = Index {
            owner: "alice@example.com".into(),
            entries: vec![
                IndexEntry {
                    id: id(1),
                    handle: Handle([1; 16]),
                    indexed: 0x6745_c1a5,
                },
                IndexEntry {
                    id: id(2),
                    handle: Handle([2; 16]),
                    indexed: u64::MAX,
                },
            ],
        };
        let bytes = index.encode();
        assert_eq!(bytes[0], FORMAT_INDEX);
        assert_eq!(Index::decode(&bytes).unwrap(), index);
        for cut in 0..bytes.len() {
            assert!(Index::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(Index::decode(&trailing).is_err());
        // A session record is not an index.
        assert!(Index::decode(&Envelope::default().encode()).is_err());
    }

    #[test]
    fn entries_without_an_indexed_time_decode_as_indexed_at_creation() {
        let mut bytes = vec![FORMAT_INDEX];
        rmp::encode::write_array_len(&mut bytes, 2).unwrap();
        rmp::encode::write_str(&mut bytes, "alice").unwrap();
        rmp::encode::write_array_len(&mut bytes, 1).unwrap();
        rmp::encode::write_array_len(&mut bytes, 2).unwrap();
        rmp::encode::write_str(&mut bytes, &id(1).to_string()).unwrap();
        rmp::encode::write_bin(&mut bytes, &[7; 16]).unwrap();
        let index = Index::decode(&bytes).unwrap();
        assert_eq!(
            index.entries,
            vec![IndexEntry {
                id: id(1),
                handle: Handle([7; 16]),
                indexed: 0x6745_c1a0,
            }]
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            let mut tagged = vec![FORMAT_INDEX];
            tagged.extend(bytes);
            let _ = Index::decode(&tagged);
        }
    }
}
