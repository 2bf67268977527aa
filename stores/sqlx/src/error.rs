//! The store's name, and sqlx errors as [`StoreError`]s.

use rocket_kvsession::StoreError;

/// The name both stores give in logs and errors
/// ([`KeyValueStore::name`](rocket_kvsession::KeyValueStore::name), the
/// `store` of every [`StoreError`]); the database shows in the source error.
pub(crate) const STORE_NAME: &str = "sqlx";

/// What a database's own error means to the store; each dialect reads its
/// own codes (`Dialect::failure`). Public only as a sealed trait's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// "Not now" rather than "wrong": the server is shutting down or has
    /// too many connections, the database is locked past its busy timeout.
    Unavailable,
    /// The table does not exist.
    MissingTable,
    /// Anything else.
    Other,
}

/// Converts a sqlx error on `table` into the core's meaning-based variants,
/// keeping it as the source; `failure` reads the database's own errors:
///
/// * the server cannot be reached, the pool timed out waiting for a
///   connection, the connection broke, or the database says
///   [`Failure::Unavailable`]: [`StoreError::Unavailable`] (the guard
///   answers 503);
/// * the table does not exist: [`StoreError::Misconfigured`], saying that
///   `init` creates it;
/// * anything else: [`StoreError::Backend`].
pub(crate) fn store_error(
    table: &str,
    error: sqlx::Error,
    failure: fn(&dyn sqlx::error::DatabaseError) -> Failure,
) -> StoreError {
    let failure = match &error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => Failure::Unavailable,
        sqlx::Error::Database(db) => failure(db.as_ref()),
        _ => Failure::Other,
    };
    match failure {
        Failure::Unavailable => StoreError::unavailable(STORE_NAME, error),
        Failure::MissingTable => StoreError::misconfigured_by(
            STORE_NAME,
            format!(
                "table {table} does not exist: `init` creates it (the fairing calls it at ignite)"
            ),
            error,
        ),
        Failure::Other => StoreError::backend(STORE_NAME, error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_failures_are_unavailable_whatever_the_database() {
        let never = |_: &dyn sqlx::error::DatabaseError| Failure::Other;
        for error in [sqlx::Error::PoolTimedOut, sqlx::Error::PoolClosed] {
            let converted = store_error("kvsession", error, never);
            assert!(
                matches!(converted, StoreError::Unavailable { store: "sqlx", .. }),
                "{converted:?}"
            );
        }
        let converted = store_error("kvsession", sqlx::Error::RowNotFound, never);
        assert!(
            matches!(converted, StoreError::Backend { .. }),
            "{converted:?}"
        );
    }
}
