//! The session document: the field names, which keys the store accepts, the
//! filters and update documents the store sends, and the conversion between
//! documents and [`Record`]s.
//!
//! Everything here is plain data; nothing talks to the server.

use std::time::SystemTime;

use mongodb::bson::{doc, spec::BinarySubtype, Binary, Bson, DateTime, Document, Regex};
use rocket_kvsession::{Record, StoreError, Version};

use crate::error::STORE_NAME;

/// The session key; the `_id` index makes it unique.
pub(crate) const ID: &str = "_id";
/// The session record, byte for byte (BSON binary).
pub(crate) const VALUE: &str = "value";
/// When the session ends (BSON date); absent when no expiry was given.
pub(crate) const EXPIRES_AT: &str = "expires_at";
/// Bumped by every update, for compare-and-swap (64-bit integer).
pub(crate) const VERSION: &str = "version";

/// The longest key the store accepts, in bytes.
pub const MAX_KEY_LEN: usize = 1024;

/// A stored document that does not have the shape this store writes.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DocumentError {
    #[error("session document {key:?} has no binary `value` field")]
    NoValue { key: String },
}

/// Checks a key before it reaches the server.
pub(crate) fn check_key(key: &str) -> Result<(), StoreError> {
    let reason = if key.is_empty() {
        "the key is empty"
    } else if key.len() > MAX_KEY_LEN {
        "the key is longer than 1024 bytes"
    } else if key.contains('\0') {
        "the key contains a NUL character"
    } else {
        return Ok(());
    };
    Err(StoreError::invalid_key(STORE_NAME, key, reason))
}

/// The document of a new session, at version 1.
pub(crate) fn new_document(key: &str, value: &[u8], expires_at: Option<SystemTime>) -> Document {
    let mut document = doc! { ID: key, VALUE: binary(value), VERSION: 1i64 };
    if let Some(at) = expires_at {
        document.insert(EXPIRES_AT, DateTime::from_system_time(at));
    }
    document
}

/// The update that rewrites a session's value and expiry (removing the
/// expiry when there is none) and bumps its version.
pub(crate) fn rewrite(value: &[u8], expires_at: Option<SystemTime>) -> Document {
    let mut update = doc! { "$inc": { VERSION: 1i64 } };
    let mut set = doc! { VALUE: binary(value) };
    match expires_at {
        Some(at) => {
            set.insert(EXPIRES_AT, DateTime::from_system_time(at));
        }
        None => {
            update.insert("$unset", doc! { EXPIRES_AT: "" });
        }
    }
    update.insert("$set", set);
    update
}

/// The update that moves only a session's expiry.
pub(crate) fn move_expiry(expires_at: SystemTime) -> Document {
    doc! { "$set": { EXPIRES_AT: DateTime::from_system_time(expires_at) } }
}

/// The filter for a live (unexpired) document with this key. A document
/// without `expires_at` never expires.
pub(crate) fn live(key: &str, now: DateTime) -> Document {
    doc! { ID: key, EXPIRES_AT: { "$not": { "$lte": now } } }
}

/// The filter for a live document with this key at this version: the
/// condition of a compare-and-swap update and of a compare-and-delete.
pub(crate) fn live_at_version(key: &str, now: DateTime, version: i64) -> Document {
    let mut filter = live(key, now);
    filter.insert(VERSION, version);
    filter
}

/// The filter for a document with this key that expired but was not removed
/// yet.
pub(crate) fn expired(key: &str, now: DateTime) -> Document {
    doc! { ID: key, EXPIRES_AT: { "$lte": now } }
}

/// The filter for the documents whose key starts with `prefix`: an anchored,
/// escaped regular expression, which the `_id` index serves.
pub(crate) fn key_prefix(prefix: &str) -> Result<Document, StoreError> {
    if prefix.is_empty() {
        return Ok(doc! {});
    }
    if prefix.contains('\0') {
        return Err(StoreError::invalid_key(
            STORE_NAME,
            prefix,
            "the prefix contains a NUL character",
        ));
    }
    let pattern = Regex {
        pattern: format!("^{}", regex_escape(prefix)),
        options: String::new(),
    };
    Ok(doc! { ID: pattern })
}

/// Escapes `text` for use inside a PCRE pattern, matching it literally.
fn regex_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len() * 2);
    for c in text.chars() {
        if c.is_ascii() && !c.is_ascii_alphanumeric() && c != '_' {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

fn binary(value: &[u8]) -> Binary {
    Binary {
        subtype: BinarySubtype::Generic,
        bytes: value.to_vec(),
    }
}

/// A version token this store handed out, back as the number a document
/// holds; `None` for a token from elsewhere (no document can match it).
pub(crate) fn stored_version(version: &Version) -> Option<i64> {
    version.as_str().parse().ok()
}

/// A version token an update can name: [`stored_version`], unless the
/// version could not be incremented (such an update can never match).
pub(crate) fn parse_version(version: &Version) -> Option<i64> {
    stored_version(version).filter(|&n| n < i64::MAX)
}

/// The version of a document (or of a projection holding `version`).
pub(crate) fn version_of(document: &Document) -> Option<Version> {
    match document.get(VERSION)? {
        Bson::Int64(n) => Some(Version::from(*n)),
        Bson::Int32(n) => Some(Version::from(i64::from(*n))),
        _ => None,
    }
}

/// The record a session document holds.
pub(crate) fn record_of(key: &str, document: &Document) -> Result<Record, StoreError> {
    let value = match document.get(VALUE) {
        Some(Bson::Binary(b)) => b.bytes.clone(),
        _ => {
            return Err(StoreError::backend(
                STORE_NAME,
                DocumentError::NoValue {
                    key: key.to_owned(),
                },
            ))
        }
    };
    let expires_at = match document.get(EXPIRES_AT) {
        Some(Bson::DateTime(at)) => Some(at.to_system_time()),
        _ => None,
    };
    Ok(Record::new(value, version_of(document), expires_at))
}

/// The key of a listed document; `None` for an `_id` of another type, which
/// is not a session document.
pub(crate) fn key_of(document: &Document) -> Option<String> {
    match document.get(ID) {
        Some(Bson::String(key)) => Some(key.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    #[test]
    fn a_new_document_reads_back_as_its_record() {
        let at = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let document = new_document("k_1", b"bytes", Some(at));
        assert_eq!(document.get_str(ID).unwrap(), "k_1");
        let record = record_of("k_1", &document).unwrap();
        assert_eq!(record.value, b"bytes");
        assert_eq!(record.version, Some(Version::from(1i64)));
        assert_eq!(record.expires_at, Some(at));

        let forever = record_of("k_2", &new_document("k_2", b"", None)).unwrap();
        assert_eq!(forever.expires_at, None);
        assert!(forever.value.is_empty());
    }

    #[test]
    fn a_document_without_a_binary_value_is_a_backend_error() {
        for document in [doc! { ID: "k" }, doc! { ID: "k", VALUE: "text" }] {
            let error = record_of("k", &document).unwrap_err();
            assert!(
                matches!(
                    error,
                    StoreError::Backend {
                        store: STORE_NAME,
                        ..
                    }
                ),
                "{error:?}"
            );
        }
    }

    #[test]
    fn versions_are_read_from_either_integer_width() {
        assert_eq!(
            version_of(&doc! { VERSION: 7i64 }),
            Some(Version::from(7i64))
        );
        assert_eq!(
            version_of(&doc! { VERSION: 7i32 }),
            Some(Version::from(7i64))
        );
        assert_eq!(version_of(&doc! { VERSION: "7" }), None);
        assert_eq!(version_of(&doc! {}), None);
    }

    #[test]
    fn only_incrementable_numeric_tokens_parse() {
        assert_eq!(parse_version(&Version::from(41i64)), Some(41));
        assert_eq!(parse_version(&Version::new("etag")), None);
        assert_eq!(parse_version(&Version::from(i64::MAX)), None);
    }

    #[test]
    fn any_numeric_token_names_a_stored_version() {
        assert_eq!(stored_version(&Version::from(41i64)), Some(41));
        assert_eq!(stored_version(&Version::from(i64::MAX)), Some(i64::MAX));
        assert_eq!(stored_version(&Version::new("etag")), None);
        assert_eq!(stored_version(&Version::new("1e3")), None);
    }

    #[test]
    fn a_versioned_filter_is_the_liveness_filter_and_the_version() {
        let now = DateTime::from_millis(1_800_000_000_000);
        let mut expected = live("k_1", now);
        expected.insert(VERSION, 7i64);
        assert_eq!(live_at_version("k_1", now, 7), expected);
    }

    #[test]
    fn a_rewrite_sets_or_unsets_the_expiry_and_bumps_the_version() {
        let with = rewrite(b"v", Some(UNIX_EPOCH));
        assert_eq!(with.get_document("$inc").unwrap(), &doc! { VERSION: 1i64 });
        assert!(with.get_document("$set").unwrap().contains_key(EXPIRES_AT));
        assert!(!with.contains_key("$unset"));

        let without = rewrite(b"v", None);
        assert!(!without
            .get_document("$set")
            .unwrap()
            .contains_key(EXPIRES_AT));
        assert_eq!(
            without.get_document("$unset").unwrap(),
            &doc! { EXPIRES_AT: "" }
        );
    }

    #[test]
    fn keys_are_checked() {
        assert!(check_key("app:0123abcd_65a1b2c3").is_ok());
        assert!(check_key(&"k".repeat(MAX_KEY_LEN)).is_ok());
        for key in [
            String::new(),
            "k".repeat(MAX_KEY_LEN + 1),
            "a\0b".to_owned(),
        ] {
            assert!(
                matches!(check_key(&key), Err(StoreError::InvalidKey { .. })),
                "{key:?}"
            );
        }
    }

    #[test]
    fn a_key_prefix_matches_literally() {
        assert_eq!(key_prefix("").unwrap(), doc! {});
        let filter = key_prefix("a.b*c_1:").unwrap();
        match filter.get(ID) {
            Some(Bson::RegularExpression(regex)) => {
                assert_eq!(regex.pattern, r"^a\.b\*c_1\:");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            key_prefix("a\0"),
            Err(StoreError::InvalidKey { .. })
        ));
    }

    #[test]
    fn listed_keys_are_string_ids_only() {
        assert_eq!(key_of(&doc! { ID: "k_1" }).as_deref(), Some("k_1"));
        assert_eq!(key_of(&doc! { ID: 5 }), None);
        assert_eq!(key_of(&doc! {}), None);
    }
}
