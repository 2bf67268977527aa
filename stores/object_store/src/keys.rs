//! How session keys and store prefixes map to object paths.
//!
//! Every key becomes exactly one path segment directly under the store's
//! prefix. Keys are checked against a small, portable alphabet before they
//! reach the backend, so no key can name a parent directory, a subdirectory,
//! a hidden file, or a path another object store would encode differently.

use object_store::path::{Path, PathPart};
use rocket_kvsession::StoreError;

use crate::error::STORE_NAME;

/// The longest key accepted, in bytes.
///
/// A session key is the key prefix and a session id (at most 64 + 1 + 16
/// characters), so this leaves room for prefixes of more than 100
/// characters, while staying well below the 255-byte file name limit of
/// common file systems (the local store adds a short suffix to its temporary
/// files) and S3's 1,024-byte object names.
pub const MAX_KEY_LEN: usize = 200;

/// The longest store prefix accepted, in bytes.
pub const MAX_PREFIX_LEN: usize = 512;

/// Whether `c` may appear in a key or a prefix segment.
fn allowed(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':')
}

/// Why `text` is not a valid key or prefix segment (`None` if it is).
///
/// `partial` allows the empty string (a key prefix of `""` lists all keys).
fn problem(text: &str, max: usize, partial: bool) -> Option<&'static str> {
    if text.is_empty() {
        return (!partial).then_some("empty");
    }
    if text.len() > max {
        return Some("longer than 200 bytes");
    }
    if text.starts_with('.') {
        return Some("starts with `.`");
    }
    if text.contains('/') {
        return Some("contains `/`");
    }
    if !text.chars().all(allowed) {
        return Some("contains a character other than ASCII letters, digits, `_`, `-`, `.`, `:`");
    }
    None
}

/// Checks a session key; the error names the key and the reason.
pub(crate) fn check_key(key: &str) -> Result<(), StoreError> {
    match problem(key, MAX_KEY_LEN, false) {
        None => Ok(()),
        Some(reason) => Err(invalid(key, reason)),
    }
}

/// Checks a key prefix given to `list` (the empty prefix is allowed).
pub(crate) fn check_key_prefix(prefix: &str) -> Result<(), StoreError> {
    match problem(prefix, MAX_KEY_LEN, true) {
        None => Ok(()),
        Some(reason) => Err(invalid(prefix, reason)),
    }
}

fn invalid(key: &str, reason: &'static str) -> StoreError {
    StoreError::invalid_key(STORE_NAME, truncated(key), reason)
}

/// At most 300 bytes of `text`, for error messages.
fn truncated(text: &str) -> String {
    if text.len() <= 300 {
        return text.to_owned();
    }
    let mut end = 300;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

/// Parses a store prefix: `/`-separated segments with the key alphabet, none
/// empty (leading and trailing `/` are ignored), none starting with `.`.
pub(crate) fn parse_prefix(prefix: &str) -> Result<Path, StoreError> {
    let trimmed = prefix.trim_matches('/');
    if trimmed.is_empty() {
        return Ok(Path::default());
    }
    let bad = |reason: &'static str| invalid(prefix, reason);
    if trimmed.len() > MAX_PREFIX_LEN {
        return Err(bad("store prefix longer than 512 bytes"));
    }
    let mut parts = Vec::new();
    for segment in trimmed.split('/') {
        if let Some(reason) = problem(segment, MAX_KEY_LEN, false) {
            return Err(bad(if reason == "empty" {
                "store prefix has an empty segment (`//`)"
            } else {
                reason
            }));
        }
        parts.push(PathPart::from(segment));
    }
    Ok(Path::from_iter(parts))
}

/// The object path of a checked key under `base`.
pub(crate) fn object_path(base: &Path, key: &str) -> Result<Path, StoreError> {
    check_key(key)?;
    Ok(base.clone().join(key))
}

/// The key stored at `location`, if it is a direct child of `base` whose name
/// is a valid key; anything else under the prefix is not a session.
pub(crate) fn key_of(base: &Path, location: &Path) -> Option<String> {
    let mut parts = location.prefix_match(base)?;
    let name = parts.next()?;
    if parts.next().is_some() {
        return None;
    }
    let name = name.as_ref();
    check_key(name).ok()?;
    Some(name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_keys_are_accepted() {
        for key in [
            "0123456789abcdef_65a1b2c3",
            "app:0123456789abcdef_65a1b2c3",
            "APP-v1.2_x",
        ] {
            assert!(check_key(key).is_ok(), "{key}");
        }
    }

    #[test]
    fn unsafe_keys_are_refused() {
        let long = "a".repeat(MAX_KEY_LEN + 1);
        for key in [
            "",
            ".",
            "..",
            ".hidden",
            "a/b",
            "../x",
            "/abs",
            "a\\b",
            "sp ace",
            "caf\u{e9}",
            "\u{1F600}",
            "nul\0",
            "pct%2F",
            "hash#1",
            long.as_str(),
        ] {
            assert!(
                matches!(check_key(key), Err(StoreError::InvalidKey { .. })),
                "{key:?}"
            );
        }
        assert!(check_key(&"a".repeat(MAX_KEY_LEN)).is_ok());
    }

    #[test]
    fn prefixes_parse_into_segments() {
        assert_eq!(parse_prefix("").unwrap(), Path::default());
        assert_eq!(parse_prefix("/").unwrap(), Path::default());
        assert_eq!(
            parse_prefix("/apps/one/").unwrap(),
            Path::from_iter(["apps", "one"])
        );
        for bad in ["a//b", "../x", "a/../b", "a/.git", "caf\u{e9}", "a b"] {
            assert!(
                matches!(parse_prefix(bad), Err(StoreError::InvalidKey { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn listing_maps_back_only_direct_children() {
        let base = parse_prefix("sessions").unwrap();
        let path = object_path(&base, "k_1").unwrap();
        assert_eq!(path.as_ref(), "sessions/k_1");
        assert_eq!(key_of(&base, &path).as_deref(), Some("k_1"));
        assert_eq!(key_of(&base, &Path::from("sessions/sub/k_1")), None);
        assert_eq!(key_of(&base, &Path::from("other/k_1")), None);
        assert_eq!(key_of(&base, &Path::from("sessions/.probe")), None);
        let root = Path::default();
        assert_eq!(key_of(&root, &Path::from("k_2")).as_deref(), Some("k_2"));
    }
}
