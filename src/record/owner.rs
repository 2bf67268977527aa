//! Who a session belongs to ([`Owner`]) and the name it is listed under
//! ([`Handle`]).

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
