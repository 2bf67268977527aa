//! sqlx errors as [`StoreError`]s.

use rocket_kvsession::StoreError;

/// Converts a sqlx error of the store `store` on `table` into the core's
/// meaning-based variants, keeping it as the source:
///
/// * the server cannot be reached, the pool timed out waiting for a
///   connection, the connection broke, the server is shutting down or
///   starting up, too many connections, SQLite busy or locked past its busy
///   timeout: [`StoreError::Unavailable`] (the guard answers 503);
/// * the table does not exist: [`StoreError::Misconfigured`], saying that
///   `init` creates it;
/// * anything else: [`StoreError::Backend`].
pub(crate) fn store_error(store: &'static str, table: &str, error: sqlx::Error) -> StoreError {
    if is_unavailable(&error) {
        return StoreError::unavailable(store, error);
    }
    if is_missing_table(&error) {
        return StoreError::Misconfigured {
            store,
            message: format!(
                "table {table} does not exist: `init` creates it (the fairing calls it at ignite)"
            )
            .into(),
            source: Some(Box::new(error)),
        };
    }
    StoreError::backend(store, error)
}

fn is_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| unavailable_code(&code)),
        _ => false,
    }
}

/// SQLSTATE codes (PostgreSQL) and result codes (SQLite) that mean "not
/// now" rather than "wrong".
fn unavailable_code(code: &str) -> bool {
    // PostgreSQL: class 08 connection exception; 53 insufficient resources
    // (too many connections, out of memory or disk); 57P01-57P03 admin or
    // crash shutdown, cannot connect now.
    code.starts_with("08")
        || code.starts_with("53")
        || matches!(code, "57P01" | "57P02" | "57P03")
        // SQLite: SQLITE_BUSY (5) and SQLITE_LOCKED (6) and their extended codes.
        || code.parse::<u32>().is_ok_and(|n| matches!(n & 0xff, 5 | 6))
}

fn is_missing_table(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => {
            db.code().as_deref() == Some("42P01") || db.message().starts_with("no such table")
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        for code in [
            "08006", "08001", "53300", "57P01", "57P03", "5", "6", "517", "262",
        ] {
            assert!(unavailable_code(code), "{code}");
        }
        for code in ["23505", "42P01", "40001", "1", "19", "2067"] {
            assert!(!unavailable_code(code), "{code}");
        }
    }
}
