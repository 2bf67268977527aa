//! Error types.

use std::borrow::Cow;
use std::error::Error as StdError;

/// A boxed error from a store's backend.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// An error from a [`KeyValueStore`](crate::KeyValueStore).
///
/// Each store converts its backend's errors into these meaning-based
/// variants and keeps the original error as the source.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The key cannot be stored by this store (bad characters, too long, ...).
    #[error("{store} store: invalid key {key:?}: {reason}")]
    InvalidKey {
        /// The store's name.
        store: &'static str,
        /// The offending key, its session id redacted ([`redact_ids`]).
        key: String,
        /// Why the key was refused.
        reason: &'static str,
    },
    /// The backend could not be reached in time (connection refused, timeout, ...).
    #[error("{store} store is unavailable")]
    Unavailable {
        /// The store's name.
        store: &'static str,
        /// The backend's error.
        #[source]
        source: BoxError,
    },
    /// The store was set up wrongly: a conflicting index exists, the
    /// credentials are refused, the backend lacks a feature the store needs
    /// (e.g. conditional writes), ... The message says how to fix it.
    #[error("{store} store is misconfigured: {message}")]
    Misconfigured {
        /// The store's name.
        store: &'static str,
        /// What is wrong and how to fix it.
        message: Cow<'static, str>,
        /// The backend's error, if any.
        #[source]
        source: Option<BoxError>,
    },
    /// Any other backend failure.
    #[error("{store} store failed")]
    Backend {
        /// The store's name.
        store: &'static str,
        /// The backend's error.
        #[source]
        source: BoxError,
    },
}

impl StoreError {
    /// A generic backend failure.
    pub fn backend(store: &'static str, source: impl Into<BoxError>) -> Self {
        StoreError::Backend {
            store,
            source: source.into(),
        }
    }

    /// The backend is unreachable.
    pub fn unavailable(store: &'static str, source: impl Into<BoxError>) -> Self {
        StoreError::Unavailable {
            store,
            source: source.into(),
        }
    }

    /// The store was set up wrongly; `message` says what is wrong and how to
    /// fix it.
    pub fn misconfigured(store: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        StoreError::Misconfigured {
            store,
            message: message.into(),
            source: None,
        }
    }

    /// The store was set up wrongly, as the backend's error `source` shows;
    /// `message` says what is wrong and how to fix it.
    pub fn misconfigured_by(
        store: &'static str,
        message: impl Into<Cow<'static, str>>,
        source: impl Into<BoxError>,
    ) -> Self {
        StoreError::Misconfigured {
            store,
            message: message.into(),
            source: Some(source.into()),
        }
    }

    /// The store refuses `key`, for `reason`.
    ///
    /// The key is kept with its session id redacted ([`redact_ids`]), so the
    /// error can be logged.
    pub fn invalid_key(store: &'static str, key: impl AsRef<str>, reason: &'static str) -> Self {
        StoreError::InvalidKey {
            store,
            key: redact_ids(key.as_ref()),
            reason,
        }
    }
}

/// The crate's error type.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The session store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A value could not be serialized into the session.
    #[error("cannot serialize session value {key:?}")]
    Serialize {
        /// The session key.
        key: String,
        /// The serializer's error.
        #[source]
        source: rmp_serde::encode::Error,
    },
    /// A session value could not be deserialized into the requested type.
    #[error("cannot deserialize session value {key:?}")]
    Deserialize {
        /// The session key.
        key: String,
        /// The deserializer's error.
        #[source]
        source: rmp_serde::decode::Error,
    },
    /// A stored record is not a valid session envelope.
    #[error("stored session record is corrupt: {reason}")]
    CorruptRecord {
        /// What is wrong with it.
        reason: Cow<'static, str>,
    },
    /// A configuration value is invalid.
    #[error("invalid kvsession configuration: `{key}` {message}")]
    Config {
        /// The configuration key, e.g. `key_bits`.
        key: &'static str,
        /// What is wrong with its value.
        message: Cow<'static, str>,
    },
    /// The session could not be saved because concurrent requests kept
    /// changing it, even after the configured number of merges and retries.
    #[error("session save kept conflicting with concurrent requests after {attempts} attempts")]
    Conflict {
        /// How many writes were tried.
        attempts: u32,
    },
    /// No free session id was found after several draws: the random source is
    /// broken (it keeps returning ids that exist).
    #[error("could not find a free session id after {attempts} attempts")]
    IdExhausted {
        /// How many ids were tried.
        attempts: u32,
    },
    /// A new session's id was already taken when the session was first
    /// saved. Its cookie was already sealed into the response, so the save is
    /// refused rather than retried under another id.
    #[error("new session id collided with an existing session")]
    IdCollision,
    /// A concurrent request (a login, a `regenerate()`) gave the session a
    /// new id before this request's changes were saved: they were not
    /// kept, and the request answers `409 Conflict` instead of a success.
    /// The changes are not carried over to the new id on purpose: a request
    /// that loaded the old id must not write into the session it became
    /// (that is what rotating the id after a login is for).
    #[error("the session was given a new id by a concurrent request before this request's changes were saved")]
    Superseded,
    /// The `KvSession` fairing is not attached to this Rocket instance.
    #[error("the KvSession fairing is not attached")]
    NotAttached,
}

impl Error {
    /// The error of configuration key `key`.
    pub(crate) fn config(key: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Error::Config {
            key,
            message: message.into(),
        }
    }
}

/// Formats an error with its whole source chain, for logs, with every
/// session id in it redacted ([`redact_ids`]): a backend's message may name
/// the key it failed on.
pub(crate) fn chain(error: &(dyn StdError + 'static)) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        out.push_str(": ");
        out.push_str(&e.to_string());
        source = e.source();
    }
    redact_ids(&out)
}

/// How many hex digits of a session id's random part a redacted id keeps.
const SHOWN_DIGITS: usize = 4;

/// `text` with every session id in it (16 or more lower-case hex digits, an
/// underscore, more hex digits) cut to its first four hex digits and `…`,
/// so logs and error messages can name a session without handing out a
/// working id: `session:0123…`.
pub fn redact_ids(text: &str) -> String {
    let bytes = text.as_bytes();
    let is_hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        if !is_hex(bytes[i]) || (i > 0 && is_hex(bytes[i - 1])) {
            let next = text[i..].chars().next().map_or(1, char::len_utf8);
            out.push_str(&text[i..i + next]);
            i += next;
            continue;
        }
        let random = bytes[i..].iter().take_while(|b| is_hex(**b)).count();
        let after = i + random;
        let created = bytes
            .get(after + 1..)
            .map_or(0, |rest| rest.iter().take_while(|b| is_hex(**b)).count());
        if random >= 16 && bytes.get(after) == Some(&b'_') && created > 0 {
            out.push_str(&text[i..i + SHOWN_DIGITS]);
            out.push('…');
            i = after + 1 + created;
        } else {
            out.push_str(&text[i..after]);
            i = after;
        }
    }
    out
}

impl Error {
    /// The HTTP status this error answers with when a handler returns it:
    /// `503 Service Unavailable` for store failures and save conflicts (the
    /// client may retry), `409 Conflict` for changes a concurrent rotation
    /// superseded, `500 Internal Server Error` otherwise.
    pub fn status(&self) -> rocket::http::Status {
        use rocket::http::Status;
        match self {
            Error::Store(_)
            | Error::Conflict { .. }
            | Error::IdCollision
            | Error::IdExhausted { .. } => Status::ServiceUnavailable,
            Error::Superseded => Status::Conflict,
            _ => Status::InternalServerError,
        }
    }
}

/// Handlers can return `Result<_, rocket_kvsession::Error>`: the error is
/// logged with its source chain and forwarded to the catcher of
/// [`Error::status`]. Details never reach the client.
impl<'r, 'o: 'r> rocket::response::Responder<'r, 'o> for Error {
    fn respond_to(self, _: &'r rocket::Request<'_>) -> rocket::response::Result<'o> {
        log::error!("kvsession: {}", chain(&self));
        Err(self.status())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_cut_to_four_digits() {
        let id = "0123456789abcdef0123456789abcdef_6745c1a0";
        assert_eq!(redact_ids(&format!("session:{id}")), "session:0123…");
        assert_eq!(
            redact_ids(&format!("Object at /tmp/s/{id} not found; {id}")),
            "Object at /tmp/s/0123… not found; 0123…"
        );
        // Not ids: short hex, no underscore, no creation time, upper case.
        for text in [
            "cafe_1",
            "0123456789abcdef",
            "0123456789abcdef_",
            "0123456789ABCDEF_1",
            "é ü",
        ] {
            assert_eq!(redact_ids(text), text);
        }
    }

    #[test]
    fn store_errors_and_log_chains_hold_no_full_id() {
        let key = "app:0123456789abcdef_6745c1a0";
        let error = StoreError::invalid_key("test", key, "too long");
        assert!(!error.to_string().contains("0123456789abcdef"), "{error}");
        let source = std::io::Error::other(format!("cannot write {key}"));
        let error = Error::from(StoreError::backend("test", source));
        let logged = chain(&error);
        assert!(logged.contains("app:0123…"), "{logged}");
        assert!(!logged.contains("456789abcdef"), "{logged}");
    }
}
