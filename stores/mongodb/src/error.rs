//! Converting driver errors into [`StoreError`]s.

use std::time::Duration;

use mongodb::error::{Error as DriverError, ErrorKind, WriteFailure};
use rocket_kvsession::StoreError;

use crate::store::STORE_NAME;

/// MongoDB's duplicate-key error code.
pub(crate) const DUPLICATE_KEY: i32 = 11000;

/// Server error codes that mean "the server cannot serve right now" (shutting
/// down, stepping down, no primary, timed out): worth a 503, not a 500.
const UNAVAILABLE_CODES: &[i32] = &[
    6,     // HostUnreachable
    7,     // HostNotFound
    50,    // MaxTimeMSExpired
    89,    // NetworkTimeout
    91,    // ShutdownInProgress
    189,   // PrimarySteppedDown
    262,   // ExceededTimeLimit
    9001,  // SocketException
    10107, // NotWritablePrimary
    11600, // InterruptedAtShutdown
    11602, // InterruptedDueToReplStateChange
    13435, // NotPrimaryNoSecondaryOk
    13436, // NotPrimaryOrSecondary
];

/// An operation that did not finish within the store's operation timeout.
#[derive(Debug, thiserror::Error)]
#[error("MongoDB operation did not complete within {0:?}")]
pub(crate) struct OperationTimedOut(pub(crate) Duration);

/// A stored document that does not have the shape this store writes.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DocumentError {
    #[error("session document {key:?} has no binary `value` field")]
    NoValue { key: String },
}

/// The write error code of a failed write, if it is one.
pub(crate) fn write_error_code(error: &DriverError) -> Option<i32> {
    match error.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(e)) => Some(e.code),
        ErrorKind::Command(e) => Some(e.code),
        _ => None,
    }
}

/// Converts a driver error into the meaning-based [`StoreError`].
pub(crate) fn convert(error: DriverError) -> StoreError {
    let unavailable = match error.kind.as_ref() {
        ErrorKind::ServerSelection { .. }
        | ErrorKind::Io(_)
        | ErrorKind::ConnectionPoolCleared { .. }
        | ErrorKind::DnsResolve { .. }
        | ErrorKind::Shutdown => true,
        ErrorKind::Command(e) => UNAVAILABLE_CODES.contains(&e.code),
        ErrorKind::Write(WriteFailure::WriteConcernError(e)) => UNAVAILABLE_CODES.contains(&e.code),
        ErrorKind::Write(WriteFailure::WriteError(e)) => UNAVAILABLE_CODES.contains(&e.code),
        _ => false,
    };
    if unavailable {
        return StoreError::unavailable(STORE_NAME, error);
    }
    match error.kind.as_ref() {
        ErrorKind::Authentication { .. } => StoreError::Misconfigured {
            store: STORE_NAME,
            message: "authentication failed: check the credentials in the connection string".into(),
            source: Some(error.into()),
        },
        ErrorKind::InvalidTlsConfig { .. } => StoreError::Misconfigured {
            store: STORE_NAME,
            message: "invalid TLS configuration".into(),
            source: Some(error.into()),
        },
        _ => StoreError::backend(STORE_NAME, error),
    }
}
