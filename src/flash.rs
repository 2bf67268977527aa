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
