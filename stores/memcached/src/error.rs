//! The store's name, its own errors, and the conversion of the client's
//! errors into [`StoreError`]s.

use std::time::Duration;

use memcache::exp::Error as ClientError;
use rocket_kvsession::StoreError;

/// The store's name in logs and errors.
pub(crate) const STORE_NAME: &str = "memcached";

/// Failures the store detects itself. They reach callers as the source of a
/// [`StoreError`]: [`Timeout`](Self::Timeout) and
/// [`CrawlerBusy`](Self::CrawlerBusy) inside [`StoreError::Unavailable`],
/// [`CrawlerRefused`](Self::CrawlerRefused) inside
/// [`StoreError::Misconfigured`], the others inside [`StoreError::Backend`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MemcachedStoreError {
    /// memcached did not answer within the store's timeout
    /// (`MemcachedStore::timeout`).
    #[error("no reply from memcached within {after:?}")]
    Timeout {
        /// The timeout that passed.
        after: Duration,
    },
    /// A session record (with its key and memcached's per-item overhead)
    /// is larger than the largest item memcached stores. Nothing was
    /// written.
    #[error(
        "a session record of {size} bytes does not fit memcached's item size limit of \
         {limit} bytes (the server's `-I` setting, 1 MiB by default): keep less in the \
         session, or start memcached with a larger `-I`"
    )]
    ValueTooLarge {
        /// The record's size in bytes, key and item overhead included where
        /// the store checked it itself.
        size: usize,
        /// The item size limit in bytes.
        limit: usize,
    },
    /// A key holds a value that is not a record of this crate (written by
    /// something else under the session key prefix).
    #[error("key {key:?} does not hold a session record: {reason}")]
    CorruptRecord {
        /// The key.
        key: String,
        /// What is wrong with the value.
        reason: &'static str,
    },
    /// A server refused to list its keys: the LRU crawler is disabled
    /// (`-o no_lru_crawler`), or the server is older than memcached 1.4.31
    /// or a proxy without `lru_crawler metadump`.
    #[error(
        "memcached at {server} refused `lru_crawler metadump` ({reply}): listing sessions \
         (revoke_all, sweeps) needs memcached 1.4.31 or later with its LRU crawler enabled"
    )]
    CrawlerRefused {
        /// The server, `host:port`.
        server: String,
        /// The server's reply.
        reply: String,
    },
    /// A server's LRU crawler stayed busy with other requests (other
    /// listings, a `lru_crawler crawl`) for longer than the store waits for
    /// it (`MemcachedStoreBuilder::crawl_wait`).
    #[error("the LRU crawler of memcached at {server} stayed busy for {waited:?}")]
    CrawlerBusy {
        /// The server, `host:port`.
        server: String,
        /// How long the store waited.
        waited: Duration,
    },
    /// memcached answered with a reply the command never returns.
    #[error("unexpected reply from memcached to `{command}`: {reply}")]
    UnexpectedReply {
        /// The command.
        command: &'static str,
        /// The reply (and the server that sent it, where the store knows).
        reply: String,
    },
}

impl MemcachedStoreError {
    pub(crate) fn into_store_error(self) -> StoreError {
        match self {
            MemcachedStoreError::Timeout { .. } | MemcachedStoreError::CrawlerBusy { .. } => {
                StoreError::unavailable(STORE_NAME, self)
            }
            MemcachedStoreError::CrawlerRefused { .. } => StoreError::misconfigured_by(
                STORE_NAME,
                "memcached cannot list its keys: enable its LRU crawler",
                self,
            ),
            _ => StoreError::backend(STORE_NAME, self),
        }
    }
}

/// A [`MemcachedStoreError::CorruptRecord`] for `key`, as a [`StoreError`].
pub(crate) fn corrupt(key: &str, reason: &'static str) -> StoreError {
    MemcachedStoreError::CorruptRecord {
        key: key.to_owned(),
        reason,
    }
    .into_store_error()
}

/// A [`MemcachedStoreError::UnexpectedReply`] to `command`, as a
/// [`StoreError`].
pub(crate) fn unexpected(command: &'static str, reply: impl Into<String>) -> StoreError {
    MemcachedStoreError::UnexpectedReply {
        command,
        reply: reply.into(),
    }
    .into_store_error()
}

/// What memcached says (`SERVER_ERROR object too large for cache`) when an
/// item is over its `-I` limit.
const TOO_LARGE: &str = "object too large";
/// What memcached says when it cannot make room for an item (`-M`, or every
/// slab in use): the cache is full right now.
const OUT_OF_MEMORY: &str = "out of memory";

/// The `SERVER_ERROR` message inside a client error, if it is one (also
/// when the client reports it as the outcome of an ambiguous write).
fn server_message(e: &ClientError) -> Option<&str> {
    match e {
        ClientError::Server(message) => Some(message),
        ClientError::Ambiguous { source, .. } => server_message(source),
        _ => None,
    }
}

/// Whether memcached refused a write because the item is over its size
/// limit.
pub(crate) fn is_too_large(e: &ClientError) -> bool {
    server_message(e).is_some_and(|m| m.contains(TOO_LARGE))
}

/// Whether a client error means "the server cannot be reached or cannot
/// serve right now" (so the request gets a 503 and may be retried) rather
/// than a failure of the command itself.
fn is_unavailable(e: &ClientError) -> bool {
    match e {
        ClientError::Io(_) | ClientError::Timeout { .. } => true,
        ClientError::Ambiguous { source, .. } => is_unavailable(source),
        _ => server_message(e).is_some_and(|m| m.contains(OUT_OF_MEMORY)),
    }
}

/// Converts a client error, keeping it as the source.
pub(crate) fn convert(e: ClientError) -> StoreError {
    if is_unavailable(&e) {
        StoreError::unavailable(STORE_NAME, e)
    } else {
        StoreError::backend(STORE_NAME, e)
    }
}

/// Converts an I/O error of the store's own connections (listing, server
/// settings): the server cannot be reached.
pub(crate) fn unreachable(e: std::io::Error) -> StoreError {
    StoreError::unavailable(STORE_NAME, e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn transport_failures_are_unavailable() {
        let refused = ClientError::Io(std::io::ErrorKind::ConnectionRefused.into());
        let e = convert(refused);
        assert!(matches!(e, StoreError::Unavailable { .. }), "{e:?}");
        assert!(e.source().is_some());
        let timeout = ClientError::Timeout { key: b"k".to_vec() };
        assert!(matches!(convert(timeout), StoreError::Unavailable { .. }));
        let ambiguous = ClientError::Ambiguous {
            key: b"k".to_vec(),
            source: Box::new(ClientError::Timeout { key: b"k".to_vec() }),
        };
        assert!(matches!(convert(ambiguous), StoreError::Unavailable { .. }));
        let full = ClientError::Server("out of memory storing object".into());
        assert!(matches!(convert(full), StoreError::Unavailable { .. }));
    }

    #[test]
    fn command_failures_are_backend_failures() {
        let rejected = ClientError::Rejected("bad command line format".into());
        assert!(matches!(convert(rejected), StoreError::Backend { .. }));
        let protocol = ClientError::Protocol("garbage".into());
        assert!(matches!(convert(protocol), StoreError::Backend { .. }));
    }

    #[test]
    fn too_large_is_recognised_inside_an_ambiguous_write() {
        let e = ClientError::Ambiguous {
            key: b"k".to_vec(),
            source: Box::new(ClientError::Server("object too large for cache".into())),
        };
        assert!(is_too_large(&e));
        assert!(!is_too_large(&ClientError::Server("out of memory".into())));
        let message = MemcachedStoreError::ValueTooLarge {
            size: 2_000_000,
            limit: 1_048_576,
        }
        .to_string();
        assert!(
            message.contains("1048576 bytes") && message.contains("-I"),
            "{message}"
        );
    }

    #[test]
    fn store_errors_by_kind() {
        let timeout = MemcachedStoreError::Timeout {
            after: Duration::from_millis(5),
        };
        assert!(timeout.to_string().contains("5ms"));
        assert!(matches!(
            timeout.into_store_error(),
            StoreError::Unavailable { .. }
        ));
        let refused = MemcachedStoreError::CrawlerRefused {
            server: "127.0.0.1:11211".into(),
            reply: "CLIENT_ERROR lru crawler disabled".into(),
        };
        assert!(matches!(
            refused.into_store_error(),
            StoreError::Misconfigured { .. }
        ));
        let e = corrupt("k", "too short");
        assert!(matches!(e, StoreError::Backend { .. }));
        assert!(e.source().unwrap().to_string().contains("too short"));
    }
}
