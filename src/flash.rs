//! Flash messages: short notes for the next page a user sees ("Logged in",
//! "Wrong password"), queued with [`Session::flash`] and read once with
//! [`Session::flashes`].
//!
//! [`Session::flash`]: crate::Session::flash
//! [`Session::flashes`]: crate::Session::flashes

use std::fmt;

use serde::Serialize;

/// The session key under which [`Session::flash`](crate::Session::flash)
/// queues messages: `"_flashes"`.
///
/// It is an ordinary session key with a reserved name: while messages are
/// queued it shows in [`Session::keys`](crate::Session::keys) and counts in
/// [`Session::len`](crate::Session::len), and [`Session::clear`] drops the
/// queue with everything else. Apps should not use it for their own data.
///
/// [`Session::clear`]: crate::Session::clear
pub const FLASH_KEY: &str = "_flashes";

/// The stored form of the queue: `(kind, message)` pairs, oldest first.
pub(crate) type FlashQueue = Vec<(String, String)>;

/// At most this many messages wait in a session: queuing one more drops
/// the oldest, so a client that triggers messages and never reads them
/// cannot grow its record without bound.
pub const MAX_FLASHES: usize = 32;

/// At most this many bytes of a message (and of its kind) are kept; the
/// rest is cut at a character boundary.
pub const MAX_FLASH_LEN: usize = 1024;

/// `text` cut to at most [`MAX_FLASH_LEN`] bytes, at a character boundary.
pub(crate) fn bounded(mut text: String) -> String {
    if text.len() > MAX_FLASH_LEN {
        let mut end = MAX_FLASH_LEN;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// Queues `(kind, message)` at the end of `queue`, keeping the newest
/// [`MAX_FLASHES`].
pub(crate) fn push(queue: &mut FlashQueue, kind: String, message: String) {
    queue.push((bounded(kind), bounded(message)));
    if queue.len() > MAX_FLASHES {
        queue.drain(..queue.len() - MAX_FLASHES);
    }
}

/// One flash message: a kind chosen by the app (`"success"`, `"error"`,
/// ...) and the message.
///
/// It serializes as `{"kind": ..., "message": ...}`, so a list of them can go
/// straight into a template context.
///
/// ```
/// use rocket_kvsession::Flash;
///
/// let flash = Flash::new("error", "Wrong password");
/// assert_eq!(flash.kind(), "error");
/// assert_eq!(flash.message(), "Wrong password");
/// assert_eq!(flash.to_string(), "Wrong password");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Flash {
    kind: String,
    message: String,
}

impl Flash {
    /// A message of `kind`.
    pub fn new(kind: impl Into<String>, message: impl Into<String>) -> Self {
        Flash {
            kind: kind.into(),
            message: message.into(),
        }
    }

    /// The kind the app gave the message, e.g. `"success"` or `"error"`.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The kind and the message.
    pub fn into_parts(self) -> (String, String) {
        (self.kind, self.message)
    }
}

/// Shows the message.
impl fmt::Display for Flash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<(String, String)> for Flash {
    fn from((kind, message): (String, String)) -> Self {
        Flash { kind, message }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_keeps_the_newest_messages_and_cuts_long_ones() {
        let mut queue = FlashQueue::new();
        for n in 0..3000 {
            push(&mut queue, "info".into(), format!("message {n}"));
        }
        assert_eq!(queue.len(), MAX_FLASHES);
        assert_eq!(queue[0].1, format!("message {}", 3000 - MAX_FLASHES));
        assert_eq!(queue[MAX_FLASHES - 1].1, "message 2999");
        push(&mut queue, "é".repeat(600), "ü".repeat(2000));
        let (kind, message) = queue.last().unwrap();
        assert!(kind.len() <= MAX_FLASH_LEN && message.len() <= MAX_FLASH_LEN);
        assert_eq!(message.chars().count(), MAX_FLASH_LEN / 2);
        assert!(kind.starts_with('é'));
    }
}
