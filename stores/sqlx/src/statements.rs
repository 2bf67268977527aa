//! [`Statements`]: the SQL of one table, written once for every dialect.
//!
//! Every statement binds its values as numbered parameters (in the
//! dialect's placeholder style, `$1` or `?1`); the only text put into SQL is
//! the validated, quoted table name. "Now" is always a parameter, the
//! application's clock (see `millis.rs`).

use crate::dialect::Dialect;
use crate::table::TableName;

/// The statements of one table, built once when the table is chosen.
#[derive(Debug)]
pub(crate) struct Statements {
    /// The quoted table name, for the statements built per call (`keyset.rs`).
    pub(crate) quoted: String,
    /// The table name for messages.
    pub(crate) display: String,
    pub(crate) create_table: String,
    pub(crate) create_index: String,
    /// Parameters: key, now.
    pub(crate) get: String,
    /// Whether a live row has the key. Parameters: key, now.
    pub(crate) exists: String,
    /// Insert-if-absent; returns the version, or no row if a live row has
    /// the key. Parameters: key, value, expiry, now.
    pub(crate) create: String,
    /// Update-only; returns the new version, or no row. Parameters: key,
    /// value, expiry, now.
    pub(crate) update: String,
    /// Update-only compare-and-swap. Parameters: key, value, expiry, now,
    /// expected version.
    pub(crate) update_versioned: Conditional,
    /// Moves the expiry and the last-modified time; returns the (kept)
    /// version, or no row. Parameters: key, expiry, now.
    pub(crate) touch: String,
    /// Parameters: key.
    pub(crate) delete: String,
    /// Compare-and-delete. Parameters: key, expected version, now.
    pub(crate) delete_if: Conditional,
}

/// A write conditional on the row's version, and how it tells a conflict
/// (a live row with another version) from a missing row when it wrote
/// nothing.
#[derive(Debug)]
pub(crate) enum Conditional {
    /// One statement, always one row back: the written row's version (NULL
    /// if nothing was written) and whether a live row had the key.
    Telling(String),
    /// The version of the row written, or no row back; only then
    /// [`Statements::exists`] asks whether a live row has the key.
    Probing(String),
}

impl Conditional {
    /// The statement's text.
    pub(crate) fn sql(&self) -> &str {
        match self {
            Conditional::Telling(sql) | Conditional::Probing(sql) => sql,
        }
    }

    fn new<D: Dialect>(write: String, table: &str, live_row: &str) -> Self {
        match D::telling_liveness(&write, table, live_row) {
            Some(telling) => Conditional::Telling(telling),
            None => Conditional::Probing(write),
        }
    }
}

/// A row is live at `now` (milliseconds) if it has no expiry or a later one.
fn live(now: &str) -> String {
    format!("(expires_at IS NULL OR expires_at > {now})")
}

impl Statements {
    pub(crate) fn new<D: Dialect>(table: &TableName) -> Self {
        let t = table.quoted();
        let p = D::PLACEHOLDER;
        // The live row of the key; what a conflict needs and a missing row lacks.
        let live_row = |now: usize| format!("key = {p}1 AND {}", live(&format!("{p}{now}")));
        Statements {
            create_table: D::create_table(table),
            create_index: D::create_index(table),
            get: format!(
                "SELECT value, version, expires_at FROM {t} WHERE {}",
                live_row(2)
            ),
            exists: format!("SELECT 1 FROM {t} WHERE {}", live_row(2)),
            // An expired row is taken over; its version counts on, so a
            // stale compare-and-swap cannot match the new record. `excluded`
            // is the row that was to be inserted, `s` the existing one.
            create: format!(
                "INSERT INTO {t} AS s (key, value, version, expires_at, modified_at) \
                 VALUES ({p}1, {p}2, 1, {p}3, {p}4) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value, \
                 version = s.version + 1, expires_at = excluded.expires_at, \
                 modified_at = excluded.modified_at \
                 WHERE s.expires_at IS NOT NULL AND s.expires_at <= {p}4 \
                 RETURNING version"
            ),
            update: format!(
                "UPDATE {t} SET value = {p}2, version = version + 1, expires_at = {p}3, \
                 modified_at = {p}4 WHERE {} RETURNING version",
                live_row(4)
            ),
            update_versioned: Conditional::new::<D>(
                format!(
                    "UPDATE {t} SET value = {p}2, version = version + 1, expires_at = {p}3, \
                     modified_at = {p}4 WHERE {} AND version = {p}5 RETURNING version",
                    live_row(4)
                ),
                &t,
                &live_row(4),
            ),
            touch: format!(
                "UPDATE {t} SET expires_at = {p}2, modified_at = {p}3 WHERE {} \
                 RETURNING version",
                live_row(3)
            ),
            delete: format!("DELETE FROM {t} WHERE key = {p}1"),
            delete_if: Conditional::new::<D>(
                format!(
                    "DELETE FROM {t} WHERE {} AND version = {p}2 RETURNING version",
                    live_row(3)
                ),
                &t,
                &live_row(3),
            ),
            display: table.to_string(),
            quoted: t,
        }
    }
}
