//! Building a store on a local directory, in memory, or from a URL.

use std::path::PathBuf;
use std::sync::Arc;

use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::ObjectStoreScheme;
use rocket_kvsession::StoreError;
use url::Url;

use crate::error::STORE_NAME;
use crate::keys::parse_prefix;
use crate::local_dir::create_dir;
use crate::store::ObjectStoreKv;
use crate::update::UpdateStrategy;

impl ObjectStoreKv {
    /// A store in the local directory `dir`, created (with its parents) if
    /// missing. Sessions are files directly in `dir`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Misconfigured`] if the directory cannot be created or
    /// opened.
    pub fn local_dir(dir: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let dir = dir.into();
        create_dir(&dir)?;
        let local = LocalFileSystem::new_with_prefix(&dir).map_err(|e| {
            StoreError::misconfigured_by(
                STORE_NAME,
                format!("cannot use session directory {}", dir.display()),
                e,
            )
        })?;
        Ok(Self::build(
            Arc::new(local),
            Path::default(),
            Some(dir),
            Some(UpdateStrategy::ProcessLocks),
        ))
    }

    /// A store in this process's memory (object_store's `InMemory`), mostly
    /// for tests. Data is lost when the store is dropped.
    pub fn in_memory() -> Self {
        Self::build(
            Arc::new(InMemory::new()),
            Path::default(),
            None,
            Some(UpdateStrategy::ConditionalPut),
        )
    }

    /// A store from a URL and backend options, through object_store's own
    /// URL parsing ([`object_store::parse_url_opts`]): `file:///var/sessions`,
    /// `memory:///`, `s3://bucket/prefix`, `gs://bucket/prefix`,
    /// `az://container/prefix` and the other forms object_store knows. The
    /// URL's path is the store prefix. Options are the backends' config keys,
    /// e.g. `("aws_endpoint", "http://127.0.0.1:9000")`,
    /// `("aws_allow_http", "true")`, `("aws_region", "eu-west-1")`. Nothing
    /// is read from the environment; pass credentials as options.
    ///
    /// A `file://` URL is the same as [`local_dir`](Self::local_dir) on its
    /// path (created if missing). S3 needs the crate feature `aws`, GCS
    /// `gcp`, Azure `azure` (all opt-in).
    ///
    /// # Errors
    ///
    /// [`StoreError::Misconfigured`] for a URL that does not parse, a scheme
    /// whose feature is off, or options the backend rejects.
    pub fn from_url<I, K, V>(url: &str, options: I) -> Result<Self, StoreError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: Into<String>,
    {
        let misconfigured_by = |message: String, source: rocket_kvsession::BoxError| {
            StoreError::misconfigured_by(STORE_NAME, message, source)
        };
        let parsed = Url::parse(url)
            .map_err(|e| misconfigured_by(format!("invalid store URL {url:?}"), e.into()))?;
        let (scheme, _) = ObjectStoreScheme::parse(&parsed)
            .map_err(|e| misconfigured_by(format!("unsupported store URL {url:?}"), e.into()))?;
        match scheme {
            ObjectStoreScheme::Local => {
                let dir = parsed.to_file_path().map_err(|()| {
                    StoreError::misconfigured(
                        STORE_NAME,
                        format!("{url:?} is not a local file path"),
                    )
                })?;
                Self::local_dir(dir)
            }
            scheme => {
                let (store, prefix) =
                    object_store::parse_url_opts(&parsed, options).map_err(|e| {
                        misconfigured_by(
                            format!("cannot build the object store for {url:?}"),
                            e.into(),
                        )
                    })?;
                let strategy =
                    (scheme == ObjectStoreScheme::Memory).then_some(UpdateStrategy::ConditionalPut);
                Ok(Self::build(
                    Arc::from(store),
                    parse_prefix(prefix.as_ref())?,
                    None,
                    strategy,
                ))
            }
        }
    }
}
