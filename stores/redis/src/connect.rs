//! The connection: [`RedisStore`] itself, over a single server's
//! reconnecting [`ConnectionManager`] or a Redis Cluster connection; the
//! constructors ([`RedisStore::connect`], [`RedisStore::connect_cluster`],
//! [`RedisStoreBuilder`], [`RedisStore::new`], [`RedisStore::new_cluster`]);
//! and the timeout that bounds every command.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, FromRedisValue, Pipeline, RedisFuture, RedisResult, Value};
use rocket_kvsession::StoreError;

use crate::error::{convert, RedisStoreError, STORE_NAME};
use crate::record::Versions;

/// The default bound on every store operation (and on connecting): a
/// request whose store does not answer within it fails with
/// `503 Service Unavailable`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// How often the connection manager retries a lost connection before the
/// pending request fails; the next request starts a new round.
const RECONNECT_RETRIES: usize = 2;
/// The longest pause between two reconnection attempts.
const RECONNECT_MAX_DELAY: Duration = Duration::from_millis(500);

/// A connection to a single server (reconnecting) or to a cluster.
#[derive(Clone)]
pub(crate) enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

/// On a single server, a command whose connection could not be opened
/// (refused: nothing was sent) is sent once more: the failure made the
/// connection manager start a new connection, and when the server is back
/// that one succeeds, so the first request after an outage is served instead
/// of failing. A cluster connection retries by itself.
impl redis::aio::ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Single(c) => Box::pin(async move {
                match c.req_packed_command(cmd).await {
                    Err(e) if e.is_connection_refusal() => c.req_packed_command(cmd).await,
                    result => result,
                }
            }),
            Connection::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Single(c) => Box::pin(async move {
                match c.req_packed_commands(pipeline, offset, count).await {
                    Err(e) if e.is_connection_refusal() => {
                        c.req_packed_commands(pipeline, offset, count).await
                    }
                    result => result,
                }
            }),
            Connection::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Single(c) => c.get_db(),
            Connection::Cluster(c) => c.get_db(),
        }
    }
}

/// A session store in Redis, on a single server or a Redis Cluster.
///
/// Each session is one Redis string under its key: a 17-byte header (format,
/// version, expiry) and the session's bytes. Every operation is one round
/// trip and touches one key, so it works unchanged on a cluster:
///
/// | operation | command |
/// |---|---|
/// | `get` | `GET` |
/// | `create` | `SET key record NX PXAT ms` (insert-if-absent with its expiry) |
/// | `update` | a Lua script (`EVALSHA`): compare the version with `GETRANGE`, then `SET ... PXAT` |
/// | `touch` | a Lua script: `SETRANGE` of the header's expiry and `PEXPIREAT`; value and version unchanged |
/// | `delete_if` (compare-and-delete) | a Lua script: compare the version with `GETRANGE`, then `UNLINK` |
/// | `delete` | `UNLINK` |
/// | `delete_many` | `UNLINK` in pipelined batches (one slot per command on a cluster) |
/// | `list` | `SCAN` with `MATCH prefix*` (on every primary of a cluster), streamed page by page |
///
/// Its [`capabilities`](rocket_kvsession::KeyValueStore::capabilities) are
/// [`Expiry::RemovedByBackend`](rocket_kvsession::Expiry::RemovedByBackend)
/// with compare-and-swap, and it hands out a
/// [`CompareAndDelete`](rocket_kvsession::CompareAndDelete): Redis removes
/// expired sessions itself (`PXAT`/`PEXPIREAT`, to the millisecond), so no
/// sweep is needed; `get` (and `delete_if`) also check the expiry in the
/// header, so a record is never treated as live past its expiry. Versions
/// are random 64-bit numbers, drawn anew on every write.
///
/// Every operation is bounded by [`timeout`](Self::timeout): when Redis is
/// down or stalls, the store fails with [`StoreError::Unavailable`] within
/// it (the session guard answers `503`), and the connection is re-established
/// in the background once Redis is back.
///
/// Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct RedisStore {
    conn: Connection,
    timeout: Duration,
    versions: Arc<Versions>,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field(
                "mode",
                &match self.conn {
                    Connection::Single(_) => "single server",
                    Connection::Cluster(_) => "cluster",
                },
            )
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Connects to the single server at `url` through a reconnecting
    /// [`ConnectionManager`], with the default timeout ([`DEFAULT_TIMEOUT`]).
    ///
    /// `url` is a redis-rs connection URL: `redis://[[user]:password@]host[:port][/db]`,
    /// `rediss://...` for TLS (with this crate's `tls-rustls` feature), or
    /// `redis+unix:///path/to/socket`. Percent-encode special characters of
    /// the password.
    ///
    /// Connects right away: an unreachable server is a
    /// [`StoreError::Unavailable`], a bad URL or refused credentials a
    /// [`StoreError::Misconfigured`]. Once connected, a lost connection is
    /// re-established in the background.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), rocket_kvsession::StoreError> {
    /// use rocket_kvsession::KvSession;
    /// use rocket_kvsession_redis::RedisStore;
    ///
    /// let store = RedisStore::connect("redis://127.0.0.1:6379/0").await?;
    /// let rocket = rocket::build().attach(KvSession::new(store));
    /// # Ok(()) }
    /// ```
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::builder().connect(url).await
    }

    /// Connects to the Redis Cluster that the nodes at `urls` belong to (one
    /// reachable node is enough; the client discovers the others), with the
    /// default timeout.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), rocket_kvsession::StoreError> {
    /// use rocket_kvsession_redis::RedisStore;
    ///
    /// let store = RedisStore::connect_cluster(&[
    ///     "redis://10.0.0.1:6379",
    ///     "redis://10.0.0.2:6379",
    /// ])
    /// .await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect_cluster<U: AsRef<str>>(urls: &[U]) -> Result<Self, StoreError> {
        Self::builder().connect_cluster(urls).await
    }

    /// A builder for a connection with a non-default timeout.
    pub fn builder() -> RedisStoreBuilder {
        RedisStoreBuilder {
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// A store over a connection manager to a single server (or a proxy
    /// such as a Sentinel-aware one). The manager reconnects by itself.
    ///
    /// The manager's own response and connection timeouts are those it was
    /// built with; every store operation is bounded by
    /// [`DEFAULT_TIMEOUT`] (see [`with_timeout`](Self::with_timeout)).
    pub fn new(manager: ConnectionManager) -> Self {
        Self::from_connection(Connection::Single(manager))
    }

    /// A store over a Redis Cluster connection built by the caller (for
    /// options [`RedisStore::connect_cluster`] does not set).
    pub fn new_cluster(connection: ClusterConnection) -> Self {
        Self::from_connection(Connection::Cluster(connection))
    }

    fn from_connection(conn: Connection) -> Self {
        RedisStore {
            conn,
            timeout: DEFAULT_TIMEOUT,
            versions: Arc::new(Versions::new()),
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
            "the Redis store timeout must not be zero"
        );
        self.timeout = timeout;
        self
    }

    /// The bound on every store operation: past it, the operation fails
    /// with [`StoreError::Unavailable`].
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Whether the store talks to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.conn, Connection::Cluster(_))
    }

    /// The connection, for commands of its own (a clone: clones share the
    /// underlying connection).
    pub(crate) fn connection(&self) -> Connection {
        self.conn.clone()
    }

    /// The versions new records get.
    pub(crate) fn versions(&self) -> &Versions {
        &self.versions
    }

    /// Runs `fut` within the store's timeout, converting its error.
    pub(crate) async fn bounded<T>(
        &self,
        fut: impl Future<Output = RedisResult<T>>,
    ) -> Result<T, StoreError> {
        bounded(self.timeout, fut).await
    }

    /// Sends one command, within the timeout.
    pub(crate) async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, StoreError> {
        let mut conn = self.connection();
        self.bounded(cmd.query_async(&mut conn)).await
    }
}

/// Connects a [`RedisStore`] with a chosen timeout.
///
/// ```no_run
/// # async fn demo() -> Result<(), rocket_kvsession::StoreError> {
/// use std::time::Duration;
/// use rocket_kvsession_redis::RedisStore;
///
/// let store = RedisStore::builder()
///     .timeout(Duration::from_millis(500))
///     .connect("redis://:secret@127.0.0.1:6379")
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct RedisStoreBuilder {
    timeout: Duration,
}

impl RedisStoreBuilder {
    /// The bound on connecting, on every command's reply, and on every store
    /// operation as a whole (see [`RedisStore::timeout`]). _Default:_
    /// [`DEFAULT_TIMEOUT`].
    ///
    /// # Panics
    ///
    /// If `timeout` is zero.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        assert!(
            !timeout.is_zero(),
            "the Redis store timeout must not be zero"
        );
        self.timeout = timeout;
        self
    }

    /// Connects to a single server. See [`RedisStore::connect`].
    pub async fn connect(self, url: &str) -> Result<RedisStore, StoreError> {
        install_crypto_provider();
        let client = redis::Client::open(url).map_err(convert)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(RECONNECT_RETRIES)
            .set_max_delay(RECONNECT_MAX_DELAY);
        let manager = bounded(
            self.timeout,
            ConnectionManager::new_with_config(client, config),
        )
        .await?;
        Ok(RedisStore::new(manager).with_timeout(self.timeout))
    }

    /// Connects to a cluster. See [`RedisStore::connect_cluster`].
    pub async fn connect_cluster<U: AsRef<str>>(
        self,
        urls: &[U],
    ) -> Result<RedisStore, StoreError> {
        if urls.is_empty() {
            return Err(StoreError::misconfigured(
                STORE_NAME,
                "connect_cluster needs the URL of at least one cluster node",
            ));
        }
        install_crypto_provider();
        let client = ClusterClientBuilder::new(urls.iter().map(|u| u.as_ref()))
            .connection_timeout(self.timeout)
            .response_timeout(self.timeout)
            .build()
            .map_err(convert)?;
        let connection = bounded(self.timeout, client.get_async_connection()).await?;
        Ok(RedisStore::new_cluster(connection).with_timeout(self.timeout))
    }
}

/// Runs `fut` within `timeout`: its Redis error converted, or
/// [`RedisStoreError::Timeout`] (unavailable) once the time is up.
async fn bounded<T>(
    timeout: Duration,
    fut: impl Future<Output = RedisResult<T>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(result) => result.map_err(convert),
        Err(_) => Err(RedisStoreError::Timeout { after: timeout }.into_store_error()),
    }
}

/// With `tls-rustls`: makes ring the process's rustls crypto provider unless
/// the application installed one, so `rediss://` works even when other crates
/// enable a second provider (rustls then cannot pick one by itself).
fn install_crypto_provider() {
    #[cfg(feature = "tls-rustls")]
    {
        // An error only means a provider is already installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}
