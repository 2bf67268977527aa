//! The connection: [`MemcachedStore`] itself, over the client's pooled
//! [`AsyncMetaClient`]; the constructors ([`MemcachedStore::connect`],
//! [`MemcachedStoreBuilder`], [`MemcachedStore::new`]) and the URLs they
//! read; the timeout that bounds every command; and the item size limit
//! the servers report.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use memcache::exp::AsyncMetaClient;
use rocket_kvsession::StoreError;

use crate::admin;
use crate::error::{convert, MemcachedStoreError, STORE_NAME};
use crate::routing::StableRendezvous;

/// The default bound on every store operation (and on connecting): a
/// request whose store does not answer within it fails with
/// `503 Service Unavailable`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// The default number of connections per server: the most in use at once,
/// and the most kept open while idle.
pub const DEFAULT_POOL_SIZE: usize = 32;

/// How long a listing waits by default for a server's LRU crawler while it
/// serves another request (one crawl at a time per server).
pub const DEFAULT_CRAWL_WAIT: Duration = Duration::from_secs(30);

/// memcached's default item size limit (`-I 1m`), assumed until the
/// servers have said theirs (at [`MemcachedStore::connect`] and at
/// `init`).
pub const DEFAULT_ITEM_SIZE_LIMIT: usize = 1024 * 1024;

/// The port of a server named without one.
const DEFAULT_PORT: u16 = 11211;

/// What memcached adds to a value to make an item, beyond the key: its item
/// header (48 bytes on 64-bit builds), the CAS value, the key's NUL and the
/// data's CR LF, rounded up. Checked before sending, so a record too large
/// is refused with the limit named.
const ITEM_OVERHEAD: usize = 64;

/// A session store in memcached, on one server or several (keys spread
/// over them by rendezvous hashing).
///
/// Each session is one item under its key: a 9-byte header (format and
/// exact expiry) and the session's bytes; its version is the item's CAS
/// value. The operations:
///
/// | operation | command |
/// |---|---|
/// | `get` | `mg key v f c` |
/// | `create` | `ms key S T ME c` (add: insert-if-absent with its expiry) |
/// | `update` with a version | `ms key S T C<cas> c` (compare-and-swap; `NF` if the item is gone, never creates) |
/// | `update` without one | `mg` to read the CAS, then `ms ... C<cas>` (update-only, even for an item memcached still holds past the record's expiry) |
/// | `touch` | `mg`, then `ms ... C<cas>` with the header's expiry moved: value kept, the CAS changes |
/// | `delete_if` (compare-and-delete) | `md key C<cas>` |
/// | `delete` | `md key` |
/// | `delete_many` | `md` commands pipelined, one batch per server |
/// | `list` | `lru_crawler metadump hash` on every server, streamed and filtered by prefix |
///
/// Its [`capabilities`](rocket_kvsession::KeyValueStore::capabilities) are
/// [`Expiry::RemovedByBackend`](rocket_kvsession::Expiry::RemovedByBackend)
/// with compare-and-swap, and it hands out a
/// [`CompareAndDelete`](rocket_kvsession::CompareAndDelete): memcached
/// removes expired sessions itself, so no sweep is needed.
///
/// Every operation is bounded by [`timeout`](Self::timeout): when memcached
/// is down or stalls, the store fails with [`StoreError::Unavailable`]
/// within it (the session guard answers `503`); a connection that broke is
/// replaced by a new one at the next operation, so the store serves again
/// as soon as the server is back.
///
/// Cheap to clone; clones share the connections.
#[derive(Clone)]
pub struct MemcachedStore {
    client: AsyncMetaClient,
    servers: Arc<[String]>,
    timeout: Duration,
    crawl_wait: Duration,
    item_size_limit: Arc<AtomicUsize>,
}

impl fmt::Debug for MemcachedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemcachedStore")
            .field("servers", &self.servers)
            .field("timeout", &self.timeout)
            .field("crawl_wait", &self.crawl_wait)
            .field("item_size_limit", &self.item_size_limit())
            .finish_non_exhaustive()
    }
}

impl MemcachedStore {
    /// Connects to the servers of `url`, with the default timeout
    /// ([`DEFAULT_TIMEOUT`]) and pool size ([`DEFAULT_POOL_SIZE`]).
    ///
    /// `url` is `memcache://host[:port]` (port 11211 by default), or
    /// several servers separated by commas:
    /// `memcache://10.0.0.1:11211,10.0.0.2:11211`; IPv6 addresses in
    /// brackets (`memcache://[::1]:11211`). Keys are spread over several
    /// servers by rendezvous hashing with a hash fixed by this crate, so
    /// every process of the app finds a session on the same server; give
    /// every process the same servers.
    ///
    /// Connects right away and reads each server's settings (its item size
    /// limit): an unreachable server is a [`StoreError::Unavailable`], a
    /// bad URL a [`StoreError::Misconfigured`]. A connection that breaks
    /// later is replaced at the next operation.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), rocket_kvsession::StoreError> {
    /// use rocket_kvsession::KvSession;
    /// use rocket_kvsession_memcached::MemcachedStore;
    ///
    /// let store = MemcachedStore::connect("memcache://127.0.0.1:11211").await?;
    /// let rocket = rocket::build().attach(KvSession::new(store));
    /// # Ok(()) }
    /// ```
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::builder().connect(url).await
    }

    /// A builder for a connection with a non-default timeout, pool size or
    /// crawler wait.
    pub fn builder() -> MemcachedStoreBuilder {
        MemcachedStoreBuilder {
            timeout: DEFAULT_TIMEOUT,
            pool_size: DEFAULT_POOL_SIZE,
            crawl_wait: DEFAULT_CRAWL_WAIT,
        }
    }

    /// A store over a client built by the caller (for pool and timeout
    /// settings of its own), whose servers are `servers` (`host:port`, the
    /// addresses the client was connected to).
    ///
    /// The client does not say which servers it talks to, and listing
    /// (`revoke_all`, sweeps) crawls every one of them, so they are given
    /// here too: name every server of the client, or listing misses the
    /// sessions on the others. Build the client with this crate's
    /// re-export ([`memcache`](crate::memcache)) so its version matches.
    /// A client connected to several servers should route keys the same
    /// way in every process of the app: [`connect`](Self::connect) uses a
    /// router with a fixed hash, the client's default hashes server names
    /// with the standard library's `DefaultHasher`, which may change
    /// between Rust releases.
    ///
    /// Every store operation is bounded by [`DEFAULT_TIMEOUT`] (see
    /// [`with_timeout`](Self::with_timeout)), on top of the client's own
    /// timeouts.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use rocket_kvsession_memcached::memcache::exp::AsyncMetaClient;
    /// use rocket_kvsession_memcached::MemcachedStore;
    ///
    /// let client = AsyncMetaClient::builder()
    ///     .max_idle(64)
    ///     .io_timeout(Some(Duration::from_millis(500)))
    ///     .connect_async("127.0.0.1:11211")
    ///     .await?;
    /// let store = MemcachedStore::new(client, ["127.0.0.1:11211"]);
    /// # Ok(()) }
    /// ```
    ///
    /// # Panics
    ///
    /// If `servers` is empty.
    pub fn new<S: Into<String>>(
        client: AsyncMetaClient,
        servers: impl IntoIterator<Item = S>,
    ) -> Self {
        let servers: Arc<[String]> = servers.into_iter().map(Into::into).collect();
        assert!(
            !servers.is_empty(),
            "MemcachedStore::new needs the addresses of the client's servers, to list sessions"
        );
        MemcachedStore {
            client,
            servers,
            timeout: DEFAULT_TIMEOUT,
            crawl_wait: DEFAULT_CRAWL_WAIT,
            item_size_limit: Arc::new(AtomicUsize::new(DEFAULT_ITEM_SIZE_LIMIT)),
        }
    }

    /// Sets the bound on every store operation. _Default:_
    /// [`DEFAULT_TIMEOUT`].
    ///
    /// # Panics
    ///
    /// If `timeout` is zero.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        assert!(
            !timeout.is_zero(),
            "the memcached store timeout must not be zero"
        );
        self.timeout = timeout;
        self
    }

    /// Sets how long a listing waits for a server's LRU crawler while it
    /// serves another request. _Default:_ [`DEFAULT_CRAWL_WAIT`].
    #[must_use]
    pub fn with_crawl_wait(mut self, wait: Duration) -> Self {
        self.crawl_wait = wait;
        self
    }

    /// The bound on every store operation: past it, the operation fails
    /// with [`StoreError::Unavailable`]. Listing applies it to every read
    /// of the crawler's output, not to the whole listing.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The servers, `host:port`.
    pub fn servers(&self) -> &[String] {
        &self.servers
    }

    /// The largest item, in bytes, the store writes: the smallest `-I`
    /// limit of the servers, as read at [`connect`](Self::connect) and
    /// `init` ([`DEFAULT_ITEM_SIZE_LIMIT`] before). A session record that
    /// does not fit (with its key and memcached's item overhead) fails to
    /// save with [`MemcachedStoreError::ValueTooLarge`].
    pub fn item_size_limit(&self) -> usize {
        self.item_size_limit.load(Ordering::Relaxed)
    }

    /// How long a listing waits for a busy LRU crawler.
    pub(crate) fn crawl_wait(&self) -> Duration {
        self.crawl_wait
    }

    /// The client.
    pub(crate) fn client(&self) -> &AsyncMetaClient {
        &self.client
    }

    /// Runs `fut` within the store's timeout, converting its error.
    pub(crate) async fn bounded<T>(
        &self,
        fut: impl Future<Output = memcache::exp::Result<T>>,
    ) -> Result<T, StoreError> {
        self.bounded_raw(fut).await?.map_err(convert)
    }

    /// Runs `fut` within the store's timeout, leaving its own result as it
    /// is (for callers that look at the client's error first).
    pub(crate) async fn bounded_raw<T>(
        &self,
        fut: impl Future<Output = memcache::exp::Result<T>>,
    ) -> Result<memcache::exp::Result<T>, StoreError> {
        tokio::time::timeout(self.timeout, fut).await.map_err(|_| {
            MemcachedStoreError::Timeout {
                after: self.timeout,
            }
            .into_store_error()
        })
    }

    /// `Ok` if an item of `record_len` bytes of value under `key` fits the
    /// item size limit, else [`MemcachedStoreError::ValueTooLarge`].
    pub(crate) fn check_size(&self, key: &str, record_len: usize) -> Result<(), StoreError> {
        item_fits(record_len, key, self.item_size_limit())
            .map_err(MemcachedStoreError::into_store_error)
    }

    /// The error for a write the server refused as too large: its limit is
    /// below the one the store knows (the store's estimate of the item
    /// overhead fell short, or `-I` changed since `init`).
    pub(crate) fn refused_as_too_large(&self, key: &str, record_len: usize) -> StoreError {
        MemcachedStoreError::ValueTooLarge {
            size: record_len + key.len(),
            limit: self.item_size_limit(),
        }
        .into_store_error()
    }

    /// Reads every server's settings: the smallest item size limit becomes
    /// the store's; a server whose LRU crawler is off is logged (listing
    /// will fail on it). Fails if a server cannot be reached.
    pub(crate) async fn read_settings(&self) -> Result<(), StoreError> {
        let mut limit = None::<usize>;
        for server in self.servers.iter() {
            let settings = admin::settings(server, self.timeout).await?;
            if let Some(max) = settings.item_size_max {
                limit = Some(limit.map_or(max, |l| l.min(max)));
            }
            if settings.lru_crawler == Some(false) {
                log::warn!(
                    "kvsession: memcached at {server} runs without its LRU crawler: listing \
                     sessions (revoke_all, sweeps) will fail until it is enabled \
                     (`lru_crawler enable`, or start it without `-o no_lru_crawler`)"
                );
            }
        }
        if let Some(limit) = limit {
            self.item_size_limit.store(limit, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// Connects a [`MemcachedStore`] with chosen settings.
///
/// ```no_run
/// # async fn demo() -> Result<(), rocket_kvsession::StoreError> {
/// use std::time::Duration;
/// use rocket_kvsession_memcached::MemcachedStore;
///
/// let store = MemcachedStore::builder()
///     .timeout(Duration::from_millis(500))
///     .pool_size(64)
///     .connect("memcache://10.0.0.1:11211,10.0.0.2:11211")
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct MemcachedStoreBuilder {
    timeout: Duration,
    pool_size: usize,
    crawl_wait: Duration,
}

impl MemcachedStoreBuilder {
    /// The bound on connecting, on every exchange with a server, and on
    /// every store operation as a whole (see [`MemcachedStore::timeout`]).
    /// _Default:_ [`DEFAULT_TIMEOUT`].
    ///
    /// # Panics
    ///
    /// If `timeout` is zero.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        assert!(
            !timeout.is_zero(),
            "the memcached store timeout must not be zero"
        );
        self.timeout = timeout;
        self
    }

    /// The connections per server: at most this many in use at once (an
    /// operation waits for one, up to the timeout), and as many kept open
    /// while idle. _Default:_ [`DEFAULT_POOL_SIZE`].
    ///
    /// # Panics
    ///
    /// If `size` is zero.
    pub fn pool_size(mut self, size: usize) -> Self {
        assert!(size > 0, "the memcached pool size must not be zero");
        self.pool_size = size;
        self
    }

    /// How long a listing waits for a server's LRU crawler while it serves
    /// another request. _Default:_ [`DEFAULT_CRAWL_WAIT`].
    pub fn crawl_wait(mut self, wait: Duration) -> Self {
        self.crawl_wait = wait;
        self
    }

    /// Connects to the servers of `url`. See [`MemcachedStore::connect`].
    pub async fn connect(self, url: &str) -> Result<MemcachedStore, StoreError> {
        let servers = parse_url(url)?;
        let connecting = AsyncMetaClient::builder()
            .router(StableRendezvous)
            .connect_timeout(Some(self.timeout))
            .io_timeout(Some(self.timeout))
            .max_connections(Some(self.pool_size))
            .max_idle(self.pool_size)
            .connect_multiple_async(servers.iter().map(String::as_str));
        let client = match tokio::time::timeout(self.timeout, connecting).await {
            Ok(client) => client.map_err(convert)?,
            Err(_) => {
                return Err(MemcachedStoreError::Timeout {
                    after: self.timeout,
                }
                .into_store_error())
            }
        };
        let store = MemcachedStore::new(client, servers)
            .with_timeout(self.timeout)
            .with_crawl_wait(self.crawl_wait);
        store.read_settings().await?;
        Ok(store)
    }
}

/// `Ok` if an item of `record_len` bytes of value under `key` fits `limit`.
fn item_fits(record_len: usize, key: &str, limit: usize) -> Result<(), MemcachedStoreError> {
    let size = record_len + key.len() + ITEM_OVERHEAD;
    if size > limit {
        return Err(MemcachedStoreError::ValueTooLarge { size, limit });
    }
    Ok(())
}

/// The servers (`host:port`) of a `memcache://` URL.
pub(crate) fn parse_url(url: &str) -> Result<Vec<String>, StoreError> {
    let bad = |why: &str| {
        StoreError::misconfigured(
            STORE_NAME,
            format!(
                "{why} in the memcached URL {url:?}: use memcache://host[:port], several \
                 servers separated by commas"
            ),
        )
    };
    let rest = url
        .get(..11)
        .filter(|scheme| scheme.eq_ignore_ascii_case("memcache://"))
        .map(|_| &url[11..])
        .ok_or_else(|| bad("no memcache:// scheme"))?;
    if rest.contains(['/', '?', '#', '@']) {
        return Err(bad("a path, query or credentials (not supported)"));
    }
    let mut servers: Vec<String> = Vec::new();
    for server in rest.split(',').map(str::trim) {
        if server.is_empty() {
            return Err(bad("an empty server"));
        }
        let (host, port) = split_host_port(server).ok_or_else(|| bad("a bad host or port"))?;
        let server = format!("{host}:{port}");
        if servers.contains(&server) {
            return Err(bad("a server named twice"));
        }
        servers.push(server);
    }
    Ok(servers)
}

/// `host` and port of `host`, `host:port`, `[v6]` or `[v6]:port`.
fn split_host_port(server: &str) -> Option<(&str, u16)> {
    let (host, port) = if let Some(v6) = server.strip_prefix('[') {
        let (inside, after) = v6.split_once(']')?;
        let host = &server[..inside.len() + 2];
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':')?)),
        }
    } else {
        match server.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (server, None),
        }
    };
    let valid_host = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._[]:".contains(&b));
    let port = match port {
        None => DEFAULT_PORT,
        Some(port) => port.parse::<u16>().ok().filter(|&p| p != 0)?,
    };
    valid_host.then_some((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("memcache://127.0.0.1:11311").unwrap(),
            ["127.0.0.1:11311"]
        );
        assert_eq!(parse_url("memcache://cache").unwrap(), ["cache:11211"]);
        assert_eq!(
            parse_url("MEMCACHE://a:1, b ,[::1]:3,[fe80::1]").unwrap(),
            ["a:1", "b:11211", "[::1]:3", "[fe80::1]:11211"]
        );
    }

    #[test]
    fn bad_urls_are_misconfigured() {
        for url in [
            "",
            "redis://a:1",
            "memcache://",
            "memcache://a:1,",
            "memcache://a:0",
            "memcache://a:99999",
            "memcache://a:b",
            "memcache://a:1/db",
            "memcache://user@a:1",
            "memcache://a:1?timeout=3",
            "memcache://a:1,a:1",
            "memcache://[::1",
            "memcache://a b:1",
        ] {
            let e = parse_url(url).expect_err(url);
            assert!(
                matches!(e, StoreError::Misconfigured { .. }),
                "{url}: {e:?}"
            );
        }
    }

    #[test]
    fn sizes_are_checked_against_the_limit() {
        let limit = DEFAULT_ITEM_SIZE_LIMIT;
        let fits = limit - ITEM_OVERHEAD - 3;
        assert!(item_fits(fits, "key", limit).is_ok());
        let e = item_fits(fits + 1, "key", limit).unwrap_err();
        assert!(
            matches!(e, MemcachedStoreError::ValueTooLarge { size, limit: l } if size == limit + 1 && l == limit),
            "{e:?}"
        );
        assert!(e.to_string().contains("1048576 bytes"), "{e}");
    }
}
