//! Connecting with short timeouts: [`MongoStore::connect`] and [`MongoStoreBuilder`].

use std::fmt;
use std::time::Duration;

use mongodb::bson::Document;
use mongodb::error::ErrorKind;
use mongodb::options::ClientOptions;
use mongodb::Client;
use rocket_kvsession::StoreError;

use crate::error::{convert, STORE_NAME};
use crate::store::{MongoStore, DEFAULT_OPERATION_TIMEOUT};

/// The default time the driver waits for a usable server before an operation
/// fails (the driver's own default is 30 s).
pub const DEFAULT_SERVER_SELECTION_TIMEOUT: Duration = Duration::from_secs(2);

/// The default time the driver waits for a TCP connection (and TLS handshake)
/// to open (the driver's own default is 10 s).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

type Configure = Box<dyn FnOnce(&mut ClientOptions) + Send>;

impl MongoStore {
    /// Connects to `uri` and stores sessions in `database`.`collection`, with
    /// the default timeouts ([`DEFAULT_SERVER_SELECTION_TIMEOUT`],
    /// [`DEFAULT_CONNECT_TIMEOUT`], [`DEFAULT_OPERATION_TIMEOUT`]), so a
    /// request fails with 503 within a couple of seconds when the database is
    /// down, instead of hanging for the driver's 30 s.
    ///
    /// No connection is opened yet: the driver connects in the background and
    /// on first use, so an application can start while the database is down.
    /// Errors: an invalid connection string or names
    /// ([`StoreError::Misconfigured`]), or a `mongodb+srv://` name that cannot
    /// be resolved ([`StoreError::Unavailable`]).
    pub async fn connect(uri: &str, database: &str, collection: &str) -> Result<Self, StoreError> {
        Self::builder(uri, database, collection).connect().await
    }

    /// A builder for a connection with non-default timeouts or client options.
    pub fn builder(uri: &str, database: &str, collection: &str) -> MongoStoreBuilder {
        MongoStoreBuilder {
            uri: uri.to_owned(),
            database: database.to_owned(),
            collection: collection.to_owned(),
            server_selection_timeout: None,
            connect_timeout: None,
            operation_timeout: Some(DEFAULT_OPERATION_TIMEOUT),
            ensure_ttl_index: true,
            configure: None,
        }
    }
}

/// Builds a [`MongoStore`] with its own client: timeouts, index creation,
/// and any other [`ClientOptions`].
///
/// Timeouts given in the connection string (`serverSelectionTimeoutMS`,
/// `connectTimeoutMS`) are kept unless set here; where neither sets them, the
/// short defaults of this crate apply.
///
/// ```no_run
/// # async fn demo() -> Result<(), rocket_kvsession::StoreError> {
/// use std::time::Duration;
/// use rocket_kvsession_mongodb::MongoStore;
///
/// let store = MongoStore::builder("mongodb://127.0.0.1:27017", "app", "sessions")
///     .server_selection_timeout(Duration::from_secs(1))
///     .operation_timeout(Some(Duration::from_secs(3)))
///     .client_options(|options| options.max_pool_size = Some(50))
///     .connect()
///     .await?;
/// # Ok(()) }
/// ```
#[must_use]
pub struct MongoStoreBuilder {
    uri: String,
    database: String,
    collection: String,
    server_selection_timeout: Option<Duration>,
    connect_timeout: Option<Duration>,
    operation_timeout: Option<Duration>,
    ensure_ttl_index: bool,
    configure: Option<Configure>,
}

impl fmt::Debug for MongoStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URI may hold credentials: it is not printed.
        f.debug_struct("MongoStoreBuilder")
            .field("database", &self.database)
            .field("collection", &self.collection)
            .field("server_selection_timeout", &self.server_selection_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("operation_timeout", &self.operation_timeout)
            .field("ensure_ttl_index", &self.ensure_ttl_index)
            .field("client_options", &self.configure.as_ref().map(|_| ".."))
            .finish_non_exhaustive()
    }
}

impl MongoStoreBuilder {
    /// How long the driver waits for a usable server before an operation
    /// fails with [`StoreError::Unavailable`]. _Default:_ 2 s.
    pub fn server_selection_timeout(mut self, timeout: Duration) -> Self {
        self.server_selection_timeout = Some(timeout);
        self
    }

    /// How long the driver waits for a connection to open. _Default:_ 2 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// The bound on every store operation, see
    /// [`MongoStore::operation_timeout`]. _Default:_ 10 s.
    pub fn operation_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.operation_timeout = timeout;
        self
    }

    /// Whether the TTL index is created at init, see
    /// [`MongoStore::ensure_ttl_index`]. _Default:_ `true`.
    pub fn ensure_ttl_index(mut self, ensure: bool) -> Self {
        self.ensure_ttl_index = ensure;
        self
    }

    /// Adjusts the driver's [`ClientOptions`] last, after the connection
    /// string and the timeouts above were applied (pool size, command
    /// monitoring, compression, ...).
    pub fn client_options(
        mut self,
        configure: impl FnOnce(&mut ClientOptions) + Send + 'static,
    ) -> Self {
        self.configure = Some(Box::new(configure));
        self
    }

    /// Creates the client and the store. See [`MongoStore::connect`].
    pub async fn connect(self) -> Result<MongoStore, StoreError> {
        if self.database.is_empty() || self.collection.is_empty() {
            return Err(StoreError::misconfigured(
                STORE_NAME,
                "the database and collection names must not be empty",
            ));
        }
        let mut options =
            ClientOptions::parse(&self.uri)
                .await
                .map_err(|e| match e.kind.as_ref() {
                    ErrorKind::InvalidArgument { .. } => StoreError::misconfigured_by(
                        STORE_NAME,
                        "invalid MongoDB connection string",
                        e,
                    ),
                    _ => convert(e),
                })?;
        options.server_selection_timeout = self
            .server_selection_timeout
            .or(options.server_selection_timeout)
            .or(Some(DEFAULT_SERVER_SELECTION_TIMEOUT));
        options.connect_timeout = self
            .connect_timeout
            .or(options.connect_timeout)
            .or(Some(DEFAULT_CONNECT_TIMEOUT));
        if options.app_name.is_none() {
            options.app_name = Some("rocket_kvsession".to_owned());
        }
        if let Some(configure) = self.configure {
            configure(&mut options);
        }
        let client = Client::with_options(options).map_err(|e| match e.kind.as_ref() {
            ErrorKind::InvalidArgument { .. } => {
                StoreError::misconfigured_by(STORE_NAME, "invalid MongoDB client options", e)
            }
            _ => convert(e),
        })?;
        let collection = client
            .database(&self.database)
            .collection::<Document>(&self.collection);
        Ok(MongoStore::new(collection)
            .ensure_ttl_index(self.ensure_ttl_index)
            .operation_timeout(self.operation_timeout))
    }
}
