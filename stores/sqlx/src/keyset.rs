//! Prefix matching and keyset pagination, shared by both stores.

use futures_util::stream::{self, BoxStream, StreamExt, TryStreamExt};
use rocket_kvsession::{KeyInfo, StoreError};
use std::future::Future;

/// How many keys one page of [`list`](rocket_kvsession::KeyValueStore::list) reads.
pub(crate) const PAGE: usize = 1000;

/// The keys under a prefix, as statement parameters.
///
/// The prefix is matched literally: `LIKE {pattern} ESCAPE '\'` with `%`,
/// `_` and `\` escaped, and also as the key range `[lower, upper)`, which
/// is exactly the keys that start with the prefix in byte order (PostgreSQL
/// `COLLATE "C"`, SQLite `BINARY`). The range lets the primary-key index
/// find the first key and stop after the last one, and keeps the match
/// case-sensitive where SQLite's `LIKE` is not.
#[derive(Debug, Clone)]
pub(crate) struct PrefixRange {
    /// `prefix` with `%`, `_` and `\` escaped, then `%`.
    pub(crate) pattern: String,
    /// The prefix itself: the smallest key under it.
    pub(crate) lower: String,
    /// The smallest string greater than every key under the prefix, if any
    /// (none for the empty prefix).
    pub(crate) upper: Option<String>,
}

impl PrefixRange {
    pub(crate) fn new(prefix: &str) -> Self {
        PrefixRange {
            pattern: like_pattern(prefix),
            lower: prefix.to_owned(),
            upper: successor(prefix),
        }
    }

    /// Whether this matches every key (the empty prefix).
    pub(crate) fn is_all(&self) -> bool {
        self.lower.is_empty()
    }

    /// The parameters [`delete_expired_sql`] takes after now and the batch
    /// size: the lower bound, the upper bound if any, the `LIKE` pattern;
    /// none for the empty prefix.
    pub(crate) fn sweep_params(&self) -> Vec<&str> {
        if self.is_all() {
            return Vec::new();
        }
        let mut params = vec![self.lower.as_str()];
        params.extend(self.upper.as_deref());
        params.push(&self.pattern);
        params
    }
}

/// `prefix` as a `LIKE` pattern with `\` as the escape character.
pub(crate) fn like_pattern(prefix: &str) -> String {
    let mut pattern = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// The smallest string that sorts after every string starting with
/// `prefix` (in code point order, which is UTF-8 byte order), or `None` if
/// there is none.
fn successor(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = match last {
            '\u{D7FF}' => Some('\u{E000}'),
            c => char::from_u32(c as u32 + 1),
        };
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// The conditions on `key` for a prefix range, numbering parameters from
/// `first` with the placeholder character `p` (`$` or `?`): `key >= {p}n`
/// (`>` after a page), `key < {p}n` if the range has an upper bound, and
/// `key LIKE {p}n ESCAPE '\'`. Returns the SQL and the next free number.
fn range_sql(p: char, range: &PrefixRange, after: bool, first: usize) -> (String, usize) {
    let mut n = first;
    let mut sql = format!("key {} {p}{n}", if after { ">" } else { ">=" });
    n += 1;
    if range.upper.is_some() {
        sql.push_str(&format!(" AND key < {p}{n}"));
        n += 1;
    }
    sql.push_str(&format!(" AND key LIKE {p}{n} ESCAPE '\\'"));
    (sql, n + 1)
}

/// One page of keys (and last-modified times) in key order. Parameters:
/// the lower bound (the prefix, or the last key of the previous page), the
/// upper bound if the range has one, the `LIKE` pattern, the page size.
pub(crate) fn list_sql(
    p: char,
    table: &str,
    range: &PrefixRange,
    after: bool,
    without_expiry: bool,
) -> String {
    let (keys, n) = range_sql(p, range, after, 1);
    let expiry = if without_expiry {
        " AND expires_at IS NULL"
    } else {
        ""
    };
    format!("SELECT key, modified_at FROM {table} WHERE {keys}{expiry} ORDER BY key LIMIT {p}{n}")
}

/// One batch of the native sweep. Parameters: now (milliseconds), the batch
/// size, then the range's [`sweep_params`](PrefixRange::sweep_params).
pub(crate) fn delete_expired_sql(p: char, table: &str, range: &PrefixRange) -> String {
    let keys = if range.is_all() {
        String::new()
    } else {
        format!(" AND {}", range_sql(p, range, false, 3).0)
    };
    format!(
        "DELETE FROM {table} WHERE key IN \
         (SELECT key FROM {table} WHERE expires_at <= {p}1{keys} LIMIT {p}2)"
    )
}

/// Streams every key of a keyset-paginated listing: `page(after)` reads the
/// next page of at most [`PAGE`] keys in key order, the keys after `after`
/// (from the start for `None`). Stops after a short page.
pub(crate) fn pages<'a, F, Fut>(page: F) -> BoxStream<'a, Result<KeyInfo, StoreError>>
where
    F: Fn(Option<String>) -> Fut + Send + 'a,
    Fut: Future<Output = Result<Vec<KeyInfo>, StoreError>> + Send + 'a,
{
    // State: the last key seen, or `None` before the first page; `done`
    // after a short page.
    stream::try_unfold((Some(None::<String>), page), |(after, page)| async move {
        let Some(after) = after else {
            return Ok(None);
        };
        let keys = page(after).await?;
        let next = if keys.len() < PAGE {
            None
        } else {
            keys.last().map(|info| Some(info.key.clone()))
        };
        Ok(Some((stream::iter(keys.into_iter().map(Ok)), (next, page))))
    })
    .try_flatten()
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_pattern_escapes_wildcards_and_the_escape_character() {
        assert_eq!(like_pattern(""), "%");
        assert_eq!(like_pattern("app:"), "app:%");
        assert_eq!(like_pattern("a%b_c\\d"), "a\\%b\\_c\\\\d%");
    }

    #[test]
    fn successor_bounds_the_prefix() {
        assert_eq!(successor(""), None);
        assert_eq!(successor("app:").as_deref(), Some("app;"));
        assert_eq!(successor("a\u{D7FF}").as_deref(), Some("a\u{E000}"));
        assert_eq!(successor("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(successor("\u{10FFFF}"), None);
        let range = PrefixRange::new("app:");
        for key in ["app:", "app:x", "app:\u{10FFFF}"] {
            assert!(key >= range.lower.as_str() && key < range.upper.as_deref().unwrap());
        }
        for key in ["app", "apq", "app;", "APP:x"] {
            let inside = key >= range.lower.as_str() && key < range.upper.as_deref().unwrap();
            assert!(!inside, "{key}");
        }
    }

    #[test]
    fn list_and_sweep_statements_number_their_parameters() {
        let t = "\"t\"";
        let range = PrefixRange::new("app:");
        assert_eq!(
            list_sql('$', t, &range, false, false),
            "SELECT key, modified_at FROM \"t\" WHERE key >= $1 AND key < $2 \
             AND key LIKE $3 ESCAPE '\\' ORDER BY key LIMIT $4"
        );
        assert_eq!(
            list_sql('?', t, &PrefixRange::new(""), true, true),
            "SELECT key, modified_at FROM \"t\" WHERE key > ?1 \
             AND key LIKE ?2 ESCAPE '\\' AND expires_at IS NULL ORDER BY key LIMIT ?3"
        );
        assert_eq!(
            delete_expired_sql('$', t, &range),
            "DELETE FROM \"t\" WHERE key IN (SELECT key FROM \"t\" WHERE expires_at <= $1 \
             AND key >= $3 AND key < $4 AND key LIKE $5 ESCAPE '\\' LIMIT $2)"
        );
        assert_eq!(
            delete_expired_sql('?', t, &PrefixRange::new("")),
            "DELETE FROM \"t\" WHERE key IN (SELECT key FROM \"t\" WHERE expires_at <= ?1 LIMIT ?2)"
        );
    }
}
