//! Bounding driver operations by the store's operation timeout.

use std::future::IntoFuture;
use std::time::Duration;

use rocket_kvsession::StoreError;

use crate::error::{convert, STORE_NAME};

/// An operation that did not finish within the store's operation timeout.
#[derive(Debug, thiserror::Error)]
#[error("MongoDB operation did not complete within {0:?}")]
pub(crate) struct OperationTimedOut(pub(crate) Duration);

/// Runs one driver operation within `limit` (without a bound for `None`),
/// converting its error.
pub(crate) async fn run<T>(
    limit: Option<Duration>,
    operation: impl IntoFuture<Output = mongodb::error::Result<T>>,
) -> Result<T, StoreError> {
    run_raw(limit, operation).await?.map_err(convert)
}

/// Like [`run`], but hands back the driver's own result so the caller can
/// look at specific error codes; only running out of time is an error here.
pub(crate) async fn run_raw<T>(
    limit: Option<Duration>,
    operation: impl IntoFuture<Output = mongodb::error::Result<T>>,
) -> Result<mongodb::error::Result<T>, StoreError> {
    let operation = operation.into_future();
    match limit {
        Some(limit) => tokio::time::timeout(limit, operation)
            .await
            .map_err(|_| StoreError::unavailable(STORE_NAME, OperationTimedOut(limit))),
        None => Ok(operation.await),
    }
}
