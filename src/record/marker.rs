//! Format 2, an ended session: a logout, or a rotation to a new id
//! (`regenerate()`), whose id follows the tag as ASCII text. It lets a
//! logout and a rotation racing on one session see each other: a logout
//! that finds a "moved to" marker ends the new record too, and a rotation
//! that finds its source ended deletes the record it just wrote. An "ended"
//! marker lives only between the compare-and-swap that ends a session and
//! the delete that follows it (stores with a compare-and-delete skip it); a
//! "moved to" marker stays until the store's expiry or the sweep.

use super::msgpack::corrupt;
use super::FORMAT_MARKER;
use crate::error::Error;
use crate::id::SessionId;

/// The record of a session that ended, moved to `successor` if any.
pub(crate) fn encode(successor: Option<&SessionId>) -> Vec<u8> {
    let mut out = vec![FORMAT_MARKER];
    if let Some(id) = successor {
        let mut text = String::with_capacity(82);
        id.push_to(&mut text);
        out.extend_from_slice(text.as_bytes());
    }
    out
}

/// Decodes the body of a marker (what follows its tag): the id the session
/// moved to, if any.
pub(crate) fn decode(body: &[u8]) -> Result<Option<SessionId>, Error> {
    if body.is_empty() {
        return Ok(None);
    }
    std::str::from_utf8(body)
        .ok()
        .and_then(|id| id.parse().ok())
        .map(Some)
        .ok_or_else(|| corrupt("format 2: bad successor id"))
}
