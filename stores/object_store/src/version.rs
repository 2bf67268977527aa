//! The version tokens the store hands out with its records, and what they
//! stand for.

use std::hash::{DefaultHasher, Hasher};

use object_store::{ObjectMeta, PutResult, UpdateVersion};
use rocket_kvsession::Version;

use crate::update::UpdateStrategy;

/// What a [`Version`] of this store stands for. Which kind a store hands out
/// follows its [`UpdateStrategy`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum VersionToken {
    /// With [`ConditionalPut`](UpdateStrategy::ConditionalPut): what the
    /// backend compares, the object's ETag and its version if it has one.
    ///
    /// Encoded as the ETag, then a newline and the version if there is one
    /// (neither can hold a newline).
    Conditional {
        /// The object's ETag.
        e_tag: Option<String>,
        /// The object's version (e.g. an S3 version id).
        version: Option<String>,
    },
    /// With [`ProcessLocks`](UpdateStrategy::ProcessLocks): the object's
    /// ETag and a hash of its bytes, compared by the store itself. The hash
    /// keeps a file whose inode was reused within one timestamp tick (and so
    /// has an old ETag) from passing for an old version.
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
    /// The token of an object with this ETag, version and bytes; `None` with
    /// conditional puts on a backend that reports neither.
    pub(crate) fn new(
        strategy: UpdateStrategy,
        e_tag: Option<&str>,
        version: Option<&str>,
        bytes: &[u8],
    ) -> Option<Self> {
        match strategy {
            UpdateStrategy::ConditionalPut => {
                if e_tag.is_none() && version.is_none() {
                    return None;
                }
                Some(VersionToken::Conditional {
                    e_tag: e_tag.map(str::to_owned),
                    version: version.map(str::to_owned),
                })
            }
            UpdateStrategy::ProcessLocks => {
                let mut hasher = DefaultHasher::new();
                hasher.write(bytes);
                Some(VersionToken::Content {
                    e_tag: e_tag.map(str::to_owned),
                    hash: hasher.finish(),
                })
            }
        }
    }

    /// The token of an object that was read.
    pub(crate) fn of_object(
        strategy: UpdateStrategy,
        meta: &ObjectMeta,
        bytes: &[u8],
    ) -> Option<Self> {
        Self::new(
            strategy,
            meta.e_tag.as_deref(),
            meta.version.as_deref(),
            bytes,
        )
    }

    /// The token of an object that was just written.
    pub(crate) fn of_put(strategy: UpdateStrategy, put: &PutResult, bytes: &[u8]) -> Option<Self> {
        Self::new(
            strategy,
            put.e_tag.as_deref(),
            put.version.as_deref(),
            bytes,
        )
    }

    /// Decodes a token this store handed out with conditional puts.
    pub(crate) fn conditional(token: &Version) -> Self {
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

    const CONDITIONAL: UpdateStrategy = UpdateStrategy::ConditionalPut;
    const LOCKS: UpdateStrategy = UpdateStrategy::ProcessLocks;

    fn round_trip(token: VersionToken) -> (Version, Option<UpdateVersion>) {
        let version = Version::from(token);
        let precondition = VersionToken::conditional(&version).precondition();
        (version, precondition)
    }

    #[test]
    fn an_etag_comes_back_as_the_precondition() {
        let token = VersionToken::new(CONDITIONAL, Some("\"e1\""), None, b"x").unwrap();
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
        let token = VersionToken::new(CONDITIONAL, Some("\"e1\""), Some("v7"), b"x").unwrap();
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
        assert_eq!(VersionToken::new(CONDITIONAL, None, None, b"x"), None);
        let token = VersionToken::new(CONDITIONAL, None, Some("v7"), b"x").unwrap();
        assert_eq!(round_trip(token).1, None);
        assert_eq!(
            VersionToken::conditional(&Version::new("")).precondition(),
            None
        );
    }

    #[test]
    fn content_tokens_follow_the_bytes_as_well_as_the_etag() {
        let token = |e_tag: &str, bytes: &[u8]| {
            Version::from(VersionToken::new(LOCKS, Some(e_tag), None, bytes).unwrap())
        };
        assert_eq!(token("e1", b"one"), token("e1", b"one"));
        assert_ne!(token("e1", b"one"), token("e1", b"two"));
        assert_ne!(token("e1", b"one"), token("e2", b"one"));

        let encoded = token("e1", b"one");
        let (e_tag, hash) = encoded.as_str().rsplit_once('~').unwrap();
        assert_eq!(e_tag, "e1");
        assert_eq!(hash.len(), 16);
        assert!(hash.chars().all(|c| c.is_ascii_hexdigit()));

        // Even without an ETag, the store can compare versions.
        assert!(VersionToken::new(LOCKS, None, None, b"one").is_some());
    }

    #[test]
    fn content_tokens_are_never_backend_preconditions() {
        let token = VersionToken::new(LOCKS, Some("e1"), None, b"one").unwrap();
        assert_eq!(token.precondition(), None);
    }
}
