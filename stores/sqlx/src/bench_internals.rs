//! Access to internals for this repository's benchmarks (`benches/`): not
//! part of the public API; may change in any release.
//!
//! The benchmarks compare a store with sqlx used directly; the direct side
//! runs the store's own SQL text, taken from here, so that the two cannot
//! drift apart.

use std::time::SystemTime;

use crate::dialect::Dialect;
use crate::keyset::{delete_expired_sql, PrefixRange};
use crate::millis;
use crate::statements::Conditional;
use crate::store::SqlStore;

/// The SQL text a store sends, as it sends it (its table, its dialect's
/// placeholders).
#[derive(Debug, Clone, Copy)]
pub struct StoreSql<'a> {
    /// `get`. Parameters: key, now (ms); columns: value, version, expires_at.
    pub get: &'a str,
    /// `create`. Parameters: key, value, expiry (ms or NULL), now (ms);
    /// returns the version, or no row if the key has a live row.
    pub create: &'a str,
    /// `update` with an expected version. Parameters: key, value, expiry,
    /// now, expected version; see
    /// [`update_versioned_tells_liveness`](Self::update_versioned_tells_liveness)
    /// for what it returns.
    pub update_versioned: &'a str,
    /// Whether `update_versioned` always returns one row, `(version or
    /// NULL, live)` (PostgreSQL), rather than the new version or no row
    /// (SQLite).
    pub update_versioned_tells_liveness: bool,
}

/// The SQL text `store` sends.
pub fn sql<D: Dialect>(store: &SqlStore<D>) -> StoreSql<'_> {
    let statements = store.statements();
    StoreSql {
        get: &statements.get,
        create: &statements.create,
        update_versioned: statements.update_versioned.sql(),
        update_versioned_tells_liveness: matches!(
            statements.update_versioned,
            Conditional::Telling(_)
        ),
    }
}

/// One statement of the store's native sweep
/// ([`ExpiredDeletion::delete_expired`](rocket_kvsession::ExpiredDeletion::delete_expired))
/// under a prefix, as the store sends it.
#[derive(Debug, Clone)]
pub struct DeleteExpiredSql {
    /// The statement. Parameters: [`now`](Self::now), the batch size, then
    /// [`key_params`](Self::key_params) in order.
    pub sql: String,
    /// The prefix's key range: lower bound, upper bound (if any), `LIKE`
    /// pattern; none for the empty prefix.
    pub key_params: Vec<String>,
}

impl DeleteExpiredSql {
    /// `time` as the store binds it for "now": milliseconds since the Unix
    /// epoch, rounded down.
    pub fn now(time: SystemTime) -> i64 {
        millis::floor(time)
    }
}

/// The native sweep's statement of `store` under `prefix`.
pub fn delete_expired<D: Dialect>(store: &SqlStore<D>, prefix: &str) -> DeleteExpiredSql {
    let range = PrefixRange::new(prefix);
    DeleteExpiredSql {
        sql: delete_expired_sql(D::PLACEHOLDER, &store.statements().quoted, &range),
        key_params: range
            .sweep_params()
            .into_iter()
            .map(str::to_owned)
            .collect(),
    }
}
