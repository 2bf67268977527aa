//! The store's name, its own errors, and the conversion of Redis errors
//! into [`StoreError`]s.

use std::time::Duration;

use redis::{ErrorKind, RedisError, ServerErrorKind, Value};
use rocket_kvsession::StoreError;

/// The store's name in logs and errors.
pub(crate) const STORE_NAME: &str = "redis";

/// Failures the store detects itself. They reach callers as the source of a
/// [`StoreError`]: [`Timeout`](Self::Timeout) inside
/// [`StoreError::Unavailable`], the others inside [`StoreError::Backend`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisStoreError {
    /// Redis did not answer within the store's timeout
    /// (`RedisStore::timeout`).
    #[error("no reply from Redis within {after:?}")]
    Timeout {
        /// The timeout that passed.
        after: Duration,
    },
    /// A key holds a value that is not a record of this crate (written by
    /// something else under the session key prefix).
    #[error("key {key:?} does not hold a session record: {reason}")]
    CorruptRecord {
        /// The key.
        key: String,
        /// What is wrong with the value.
        reason: String,
    },
    /// Redis answered with a reply of a shape the command never returns.
    #[error("unexpected reply to {command}: {reply}")]
    UnexpectedReply {
        /// The command.
        command: &'static str,
        /// The reply, as Redis' `Debug` prints it.
        reply: String,
    },
}

impl RedisStoreError {
    pub(crate) fn into_store_error(self) -> StoreError {
        match self {
            RedisStoreError::Timeout { .. } => StoreError::unavailable(STORE_NAME, self),
            _ => StoreError::backend(STORE_NAME, self),
        }
    }
}

/// A [`RedisStoreError::CorruptRecord`] for `key`, as a [`StoreError`].
pub(crate) fn corrupt(key: &str, reason: String) -> StoreError {
    RedisStoreError::CorruptRecord {
        key: key.to_owned(),
        reason,
    }
    .into_store_error()
}

/// A [`RedisStoreError::UnexpectedReply`] to `command`, as a [`StoreError`].
pub(crate) fn unexpected(command: &'static str, reply: &Value) -> StoreError {
    RedisStoreError::UnexpectedReply {
        command,
        reply: format!("{reply:?}"),
    }
    .into_store_error()
}

/// Whether a Redis error means "the server cannot be reached or cannot
/// serve right now" (so the request gets a 503 and may be retried) rather
/// than a failure of the command itself.
pub(crate) fn is_unavailable(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_timeout()
        || e.is_connection_refusal()
        || e.is_connection_dropped()
        || matches!(
            e.kind(),
            ErrorKind::ClusterConnectionNotFound
                | ErrorKind::Server(
                    ServerErrorKind::BusyLoading
                        | ServerErrorKind::TryAgain
                        | ServerErrorKind::ClusterDown
                        | ServerErrorKind::MasterDown
                        | ServerErrorKind::ReadOnly
                )
        )
}

/// Converts a Redis error, keeping it as the source.
pub(crate) fn convert(e: RedisError) -> StoreError {
    if matches!(
        e.kind(),
        ErrorKind::InvalidClientConfig | ErrorKind::AuthenticationFailed
    ) {
        let message = match e.kind() {
            ErrorKind::AuthenticationFailed => "Redis refused the credentials",
            _ => "invalid Redis connection settings",
        };
        return StoreError::misconfigured_by(STORE_NAME, message, e);
    }
    if is_unavailable(&e) {
        StoreError::unavailable(STORE_NAME, e)
    } else {
        StoreError::backend(STORE_NAME, e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn io_errors_are_unavailable() {
        let e = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        let converted = convert(e);
        assert!(
            matches!(converted, StoreError::Unavailable { .. }),
            "{converted:?}"
        );
        assert!(converted.source().is_some());
    }

    #[test]
    fn bad_urls_are_misconfigured() {
        let e = redis::Client::open("nonsense://").unwrap_err();
        assert!(matches!(convert(e), StoreError::Misconfigured { .. }));
    }

    #[test]
    fn timeouts_are_unavailable_and_corruption_is_a_backend_failure() {
        let timeout = RedisStoreError::Timeout {
            after: Duration::from_millis(5),
        };
        assert!(timeout.to_string().contains("5ms"));
        assert!(matches!(
            timeout.into_store_error(),
            StoreError::Unavailable { .. }
        ));
        let corrupt = RedisStoreError::CorruptRecord {
            key: "k".into(),
            reason: "too short".into(),
        };
        let e = corrupt.into_store_error();
        assert!(matches!(e, StoreError::Backend { .. }));
        assert!(e.source().unwrap().to_string().contains("too short"));
    }
}
