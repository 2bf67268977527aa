//! The store's name in errors, and the conversion of driver errors into
//! [`StoreError`]s.

use mongodb::error::{Error as DriverError, ErrorKind, WriteFailure};
use rocket_kvsession::StoreError;

/// The store's name in logs and errors.
pub(crate) const STORE_NAME: &str = "mongodb";

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
        ErrorKind::Authentication { .. } => StoreError::misconfigured_by(
            STORE_NAME,
            "authentication failed: check the credentials in the connection string",
            error,
        ),
        ErrorKind::InvalidTlsConfig { .. } => {
            StoreError::misconfigured_by(STORE_NAME, "invalid TLS configuration", error)
        }
        _ => StoreError::backend(STORE_NAME, error),
    }
}
