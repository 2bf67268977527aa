//! Reading, writing and deleting the objects that hold sessions, with
//! `object_store`'s errors converted and "not found" made an answer rather
//! than an error where that is what the caller wants.

use futures_util::stream::{self, StreamExt};
use object_store::path::Path;
use object_store::{
    GetOptions, ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
    PutResult, Result as BackendResult,
};
use rocket_kvsession::StoreError;

use crate::error::convert;

/// Reads an object: its bytes and metadata, or `None` if it does not exist.
pub(crate) async fn read(
    store: &dyn ObjectStore,
    path: &Path,
) -> Result<Option<(Vec<u8>, ObjectMeta)>, StoreError> {
    let result = match store.get_opts(path, GetOptions::default()).await {
        Ok(result) => result,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(convert(e)),
    };
    let meta = result.meta.clone();
    let bytes = match result.bytes().await {
        Ok(bytes) => bytes,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(convert(e)),
    };
    Ok(Some((bytes.to_vec(), meta)))
}

/// Whether an object exists.
pub(crate) async fn exists(store: &dyn ObjectStore, path: &Path) -> Result<bool, StoreError> {
    match store.head(path).await {
        Ok(_) => Ok(true),
        Err(object_store::Error::NotFound { .. }) => Ok(false),
        Err(e) => Err(convert(e)),
    }
}

/// Writes an object in `mode`, handing back the backend's own error so the
/// caller can tell a failed precondition from a failure.
pub(crate) async fn put(
    store: &dyn ObjectStore,
    path: &Path,
    value: &[u8],
    mode: PutMode,
) -> BackendResult<PutResult> {
    store
        .put_opts(
            path,
            PutPayload::from(value.to_vec()),
            PutOptions::from(mode),
        )
        .await
}

/// Deletes an object; an absent object counts as deleted.
pub(crate) async fn delete(store: &dyn ObjectStore, path: &Path) -> Result<(), StoreError> {
    match store.delete(path).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(convert(e)),
    }
}

/// Deletes `paths` with the backend's bulk delete; absent objects count as
/// deleted.
pub(crate) async fn delete_all(
    store: &dyn ObjectStore,
    paths: Vec<Path>,
) -> Result<(), StoreError> {
    let mut results = store.delete_stream(stream::iter(paths.into_iter().map(Ok)).boxed());
    while let Some(result) = results.next().await {
        match result {
            Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(convert(e)),
        }
    }
    Ok(())
}
