//! The stored forms of the crate's records: a one-byte format tag, then the
//! format's body (MessagePack, or an id as text). The tags are registered
//! here, and [`Stored::decode`] dispatches on them:
//!
//! | tag | record | module |
//! |---|---|---|
//! | 1 | a live session ([`Envelope`]) | `session` |
//! | 2 | an ended session, or the id it moved to | `marker` |
//! | 3 | an owner index ([`Index`]) | `index` |
//!
//! A new format gets a new tag; records of the tags above keep decoding, so
//! a deployment never logs its users out by changing a format.

mod data;
mod index;
pub(crate) mod marker;
mod msgpack;
mod owner;
mod session;

pub(crate) use data::{Data, RecordBytes};
pub(crate) use index::{Index, IndexEntry};
pub(crate) use msgpack::corrupt;
pub(crate) use owner::{Handle, Owner};
pub(crate) use session::encode_parts;
pub(crate) use session::{Envelope, OwnExpiry};

use crate::error::Error;
use crate::id::SessionId;

/// The format tag of a live session.
const FORMAT_SESSION: u8 = 1;
/// The format tag of an ended session ("ended" or "moved to" marker).
pub(crate) const FORMAT_MARKER: u8 = 2;
/// The format tag of an owner index.
const FORMAT_INDEX: u8 = 3;

/// What a session record holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Stored {
    /// A live session.
    Live(Envelope),
    /// A session that ended; if it was rotated, the id it moved to.
    Ended(Option<SessionId>),
}

impl Stored {
    /// Decodes a session record of any format. A live session's envelope
    /// keeps the bytes: pass the store's `Vec<u8>` to move it rather than
    /// copy it. An owner index is not a session record.
    pub(crate) fn decode(bytes: impl Into<RecordBytes>) -> Result<Self, Error> {
        let bytes = bytes.into();
        match bytes.as_slice().split_first() {
            Some((&FORMAT_MARKER, body)) => marker::decode(body).map(Stored::Ended),
            Some((&FORMAT_INDEX, _)) => Err(corrupt("an owner index, not a session")),
            _ => Envelope::decode(bytes).map(Stored::Live),
        }
    }

    /// The record of a session that ended, moved to `successor` if any.
    pub(crate) fn ended(successor: Option<&SessionId>) -> Vec<u8> {
        marker::encode(successor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ended_records_round_trip() {
        let id: SessionId = "00112233445566778899aabbccddeeff_6745c1a0".parse().unwrap();
        assert_eq!(
            Stored::decode(Stored::ended(Some(&id))).unwrap(),
            Stored::Ended(Some(id))
        );
        assert_eq!(
            Stored::decode(Stored::ended(None)).unwrap(),
            Stored::Ended(None)
        );
        assert!(Stored::decode(&[FORMAT_MARKER, b'x']).is_err());
        let live = Envelope::default();
        assert_eq!(Stored::decode(live.encode()).unwrap(), Stored::Live(live));
    }

    #[test]
    fn an_owner_index_is_not_a_session() {
        let index = Index::new("alice").encode();
        assert!(Stored::decode(index).is_err());
    }
}
