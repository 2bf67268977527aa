//! Connecting: [`RedisStore::connect`], [`RedisStore::connect_cluster`] and
//! [`RedisStoreBuilder`].

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use rocket_kvsession::StoreError;

use crate::error::{convert, RedisStoreError};
use crate::store::{Connection, RedisStore, DEFAULT_TIMEOUT, STORE_NAME};

/// How often the connection manager retries a lost connection before the
/// pending request fails; the next request starts a new round.
const RECONNECT_RETRIES: usize = 2;
/// The longest pause between two reconnection attempts.
const RECONNECT_MAX_DELAY: Duration = Duration::from_millis(500);

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
        let manager = self
            .bounded(ConnectionManager::new_with_config(client, config))
            .await?;
        Ok(RedisStore::from_connection(Connection::Single(manager)).with_timeout(self.timeout))
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
        let connection = self.bounded(client.get_async_connection()).await?;
        Ok(RedisStore::from_connection(Connection::Cluster(connection)).with_timeout(self.timeout))
    }

    async fn bounded<T>(
        &self,
        fut: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(result) => result.map_err(convert),
            Err(_) => Err(RedisStoreError::Timeout {
                after: self.timeout,
            }
            .into_store_error()),
        }
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
