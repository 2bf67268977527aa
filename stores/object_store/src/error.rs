//! The store's name in errors, and the conversion of `object_store` errors
//! into [`StoreError`].

use std::error::Error as StdError;
use std::io;

use rocket_kvsession::StoreError;

/// The store's name in logs and errors.
pub(crate) const STORE_NAME: &str = "object_store";

/// Converts a backend error, keeping it as the source.
pub(crate) fn convert(error: object_store::Error) -> StoreError {
    use object_store::Error as E;
    match error {
        E::PermissionDenied { .. } | E::Unauthenticated { .. } => StoreError::misconfigured_by(
            STORE_NAME,
            "the backend refused the credentials or their permissions",
            error,
        ),
        E::UnknownConfigurationKey { .. } => {
            StoreError::misconfigured_by(STORE_NAME, "unknown configuration option", error)
        }
        E::NotImplemented { .. } | E::NotSupported { .. } => StoreError::misconfigured_by(
            STORE_NAME,
            "the backend does not support an operation this store needs",
            error,
        ),
        other if is_unavailable(&other) => StoreError::unavailable(STORE_NAME, other),
        other => StoreError::backend(STORE_NAME, other),
    }
}

/// Whether the error chain shows a connection failure or a timeout.
fn is_unavailable(error: &(dyn StdError + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            if matches!(
                io.kind(),
                io::ErrorKind::ConnectionRefused
                    | io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::NotConnected
                    | io::ErrorKind::AddrNotAvailable
                    | io::ErrorKind::TimedOut
                    | io::ErrorKind::BrokenPipe
            ) {
                return true;
            }
        }
        #[cfg(any(feature = "aws", feature = "gcp", feature = "azure"))]
        if let Some(http) = e.downcast_ref::<object_store::client::HttpError>() {
            use object_store::client::HttpErrorKind as K;
            if matches!(http.kind(), K::Connect | K::Timeout | K::Interrupted) {
                return true;
            }
        }
        current = e.source();
    }
    false
}
