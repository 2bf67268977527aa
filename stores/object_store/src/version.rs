//! The version tokens the store hands out with its records, and what they
//! stand for.

use std::hash::{DefaultHasher, Hasher};

use object_store::UpdateVersion;
use rocket_kvsession::Version;

/// What a [`Version`] of this store stands for. Which kind a store hands out
/// follows its `UpdateStrategy`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum VersionToken {
    /// With `UpdateStrategy::ConditionalPut`: what the backend compares, the
    /// object's ETag and its version if it has one.
    ///
    /// Encoded as the ETag, then a newline and the version if there is one
    /// (neither can hold a newline).
    Conditional {
        /// The object's ETag.
        e_tag: Option<String>,
        /// The object's version (e.g. an S3 version id).
        version: Option<String>,
    },
    /// With `UpdateStrategy::ProcessLocks`: the object's ETag and a hash of
    /// its bytes, compared by the store itself. The hash keeps a file whose
    /// inode was reused within one timestamp tick (and so has an old ETag)
    /// from passing for an old version.
    ///
    /// Encoded as the ETag, `~` and the hash as 16 hex digits.
    Content {
        /// The object's ETag.
        e_tag: Option<String>,
        /// A hash of the object's bytes.
        hash: u64,
    },
}

impl VersionToken {
    /// The token of an object the backend compares by this ETag and object
    /// version; `None` if the backend reports neither.
    pub(crate) fn conditional(e_tag: Option<&str>, version: Option<&str>) -> Option<Self> {
        if e_tag.is_none() && version.is_none() {
            return None;
        }
        Some(VersionToken::Conditional {
            e_tag: e_tag.map(str::to_owned),
            version: version.map(str::to_owned),
        })
    }

    /// The token of an object with this ETag and these bytes, compared by the
    /// store.
    pub(crate) fn content(e_tag: Option<&str>, bytes: &[u8]) -> Self {
        let mut hasher = DefaultHasher::new();
        hasher.write(bytes);
        VersionToken::Content {
            e_tag: e_tag.map(str::to_owned),
            hash: hasher.finish(),
        }
    }

    /// Decodes a token this store handed out with conditional puts.
    pub(crate) fn decode_conditional(token: &Version) -> Self {
        let (e_tag, version) = match token.as_str().split_once('\n') {
            Some((e_tag, version)) => (e_tag, Some(version.to_owned())),
            None => (token.as_str(), None),
        };
        VersionToken::Conditional {
            e_tag: Some(e_tag.to_owned()),
            version,
        }
    }

    /// The precondition the backend checks for a conditional update to this
    /// version; `None` if no object can match it (a token without an ETag,
    /// or one the store compares itself).
    pub(crate) fn precondition(&self) -> Option<UpdateVersion> {
        match self {
            VersionToken::Conditional {
                e_tag: Some(e_tag),
                version,
            } if !e_tag.is_empty() => Some(UpdateVersion {
                e_tag: Some(e_tag.clone()),
                version: version.clone(),
            }),
            _ => None,
        }
    }
}

impl From<VersionToken> for Version {
    fn from(token: VersionToken) -> Self {
        match token {
            VersionToken::Conditional { e_tag, version } => match version {
                None => Version::new(e_tag.unwrap_or_default()),
                Some(version) => Version::new(format!("{}\n{version}", e_tag.unwrap_or_default())),
            },
            VersionToken::Content { e_tag, hash } => {
                Version::new(format!("{}~{hash:016x}", e_tag.unwrap_or_default()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(token: VersionToken) -> (Version, Option<UpdateVersion>) {
        let version = Version::from(token);
        let precondition = VersionToken::decode_conditional(&version).precondition();
        (version, precondition)
    }

    #[test]
    fn an_etag_comes_back_as_the_precondition() {
        let token = VersionToken::conditional(Some("\"e1\""), None).unwrap();
        let (version, precondition) = round_trip(token);
        assert_eq!(version.as_str(), "\"e1\"");
        assert_eq!(
            precondition,
            Some(UpdateVersion {
                e_tag: Some("\"e1\"".to_owned()),
                version: None,
            })
        );
    }

    #[test]
    fn an_etag_and_an_object_version_both_come_back() {
        let token = VersionToken::conditional(Some("\"e1\""), Some("v7")).unwrap();
        let (version, precondition) = round_trip(token);
        assert_eq!(version.as_str(), "\"e1\"\nv7");
        assert_eq!(
            precondition,
            Some(UpdateVersion {
                e_tag: Some("\"e1\"".to_owned()),
                version: Some("v7".to_owned()),
            })
        );
    }

    #[test]
    fn without_an_etag_no_update_can_match() {
        assert_eq!(VersionToken::conditional(None, None), None);
        let token = VersionToken::conditional(None, Some("v7")).unwrap();
        assert_eq!(round_trip(token).1, None);
        assert_eq!(
            VersionToken::decode_conditional(&Version::new("")).precondition(),
            None
        );
    }

    #[test]
    fn content_tokens_follow_the_bytes_as_well_as_the_etag() {
        let token =
            |e_tag: &str, bytes: &[u8]| Version::from(VersionToken::content(Some(e_tag), bytes));
        assert_eq!(token("e1", b"one"), token("e1", b"one"));
        assert_ne!(token("e1", b"one"), token("e1", b"two"));
        assert_ne!(token("e1", b"one"), token("e2", b"one"));

        let encoded = token("e1", b"one");
        let (e_tag, hash) = encoded.as_str().rsplit_once('~').unwrap();
        assert_eq!(e_tag, "e1");
        assert_eq!(hash.len(), 16);
        assert!(hash.chars().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn content_tokens_are_never_backend_preconditions() {
        assert_eq!(
            VersionToken::content(Some("e1"), b"one").precondition(),
            None
        );
        assert_eq!(VersionToken::content(None, b"one").precondition(), None);
    }
}
