//! Compare-and-swap: how [`update`](rocket_kvsession::KeyValueStore::update)
//! is made atomic on a given backend (the [`UpdateStrategy`] and the probe
//! that finds it), and the two update paths, one per strategy.

use object_store::path::Path;
use object_store::{
    ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutPayload, PutResult, UpdateVersion,
};
use rocket_kvsession::{StoreError, UpdateOutcome, Version};

use crate::error::convert;
use crate::locks::KeyLocks;
use crate::objects;
use crate::version::VersionToken;

/// How often an update without an expected version re-reads the current
/// version after another writer changed the object in between.
const BLIND_UPDATE_ATTEMPTS: usize = 16;

/// The name of the object the conditional-update probe addresses. It is
/// never written on a backend that honours conditional updates, and it can
/// never collide with a session key (keys cannot start with `.`).
const PROBE_NAME: &str = ".kvsession-update-probe";

/// How [`update`](rocket_kvsession::KeyValueStore::update) makes its
/// compare-and-swap atomic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum UpdateStrategy {
    /// The backend checks the version itself (`PutMode::Update`: an
    /// `If-Match` conditional write on S3, GCS and Azure, an ETag check in
    /// `InMemory`). Safe across any number of processes and hosts.
    ConditionalPut,
    /// The backend has no conditional update (the local file system). The
    /// store reads, compares and rewrites while holding an in-process lock on
    /// the key: safe between the requests of one process, not between
    /// processes (see the guarantees of `ObjectStoreKv`).
    ProcessLocks,
}

impl UpdateStrategy {
    /// The version token of an object with this ETag, object version and
    /// bytes under this strategy: what the backend compares, or what the
    /// store compares itself.
    pub(crate) fn token(
        self,
        e_tag: Option<&str>,
        version: Option<&str>,
        bytes: &[u8],
    ) -> Option<VersionToken> {
        match self {
            UpdateStrategy::ConditionalPut => VersionToken::conditional(e_tag, version),
            UpdateStrategy::ProcessLocks => Some(VersionToken::content(e_tag, bytes)),
        }
    }

    /// The version of an object that was read.
    pub(crate) fn version_of_object(self, meta: &ObjectMeta, bytes: &[u8]) -> Option<Version> {
        self.token(meta.e_tag.as_deref(), meta.version.as_deref(), bytes)
            .map(Version::from)
    }

    /// The version of an object that was just written.
    pub(crate) fn version_of_put(self, put: &PutResult, bytes: &[u8]) -> Option<Version> {
        self.token(put.e_tag.as_deref(), put.version.as_deref(), bytes)
            .map(Version::from)
    }
}

/// Finds the strategy of the backend under `base` with a conditional put
/// naming a version no object has: a backend that honours conditional puts
/// refuses it and writes nothing; one that cannot do them says so; one that
/// ignores the condition writes the probe object, which is then removed.
pub(crate) async fn probe(
    store: &dyn ObjectStore,
    base: &Path,
) -> Result<UpdateStrategy, StoreError> {
    let path = base.clone().join(PROBE_NAME);
    let mode = PutMode::Update(UpdateVersion {
        e_tag: Some("\"kvsession-probe-no-such-version\"".to_owned()),
        version: None,
    });
    let result = store
        .put_opts(&path, PutPayload::from_static(b"probe"), mode.into())
        .await;
    use object_store::Error as E;
    let strategy = match result {
        Err(E::Precondition { .. } | E::NotFound { .. }) => UpdateStrategy::ConditionalPut,
        Err(E::NotImplemented { .. } | E::NotSupported { .. }) => UpdateStrategy::ProcessLocks,
        Ok(_) => {
            log::warn!(
                "{store}: the backend ignored a conditional put; updates are serialized \
                 in this process only"
            );
            match store.delete(&path).await {
                Ok(()) | Err(E::NotFound { .. }) => {}
                Err(e) => return Err(convert(e)),
            }
            UpdateStrategy::ProcessLocks
        }
        Err(e) => return Err(convert(e)),
    };
    log::debug!("{store}: update strategy {strategy:?}");
    Ok(strategy)
}

/// After a failed conditional put: did the object vanish or change?
async fn missing_or_conflict(
    store: &dyn ObjectStore,
    path: &Path,
) -> Result<UpdateOutcome, StoreError> {
    Ok(if objects::exists(store, path).await? {
        UpdateOutcome::Conflict
    } else {
        UpdateOutcome::Missing
    })
}

/// The outcome of a successful write of `value`.
fn updated(strategy: UpdateStrategy, put: &PutResult, value: &[u8]) -> UpdateOutcome {
    UpdateOutcome::Updated(strategy.version_of_put(put, value))
}

/// [`UpdateStrategy::ConditionalPut`]: the backend compares the version.
///
/// With an expected version, one conditional put on it. Without, the current
/// version is read and the object overwritten on that condition, so an
/// object deleted in between is never brought back; a writer that keeps
/// changing the object in between makes it a conflict after
/// [`BLIND_UPDATE_ATTEMPTS`].
pub(crate) async fn update_conditional(
    store: &dyn ObjectStore,
    path: &Path,
    value: &[u8],
    expected: Option<&Version>,
) -> Result<UpdateOutcome, StoreError> {
    use object_store::Error as E;
    let strategy = UpdateStrategy::ConditionalPut;
    if let Some(expected) = expected {
        let Some(precondition) = VersionToken::decode_conditional(expected).precondition() else {
            return missing_or_conflict(store, path).await;
        };
        return match objects::put(store, path, value, PutMode::Update(precondition)).await {
            Ok(put) => Ok(updated(strategy, &put, value)),
            Err(E::Precondition { .. } | E::NotFound { .. }) => {
                missing_or_conflict(store, path).await
            }
            Err(e) => Err(convert(e)),
        };
    }
    for _ in 0..BLIND_UPDATE_ATTEMPTS {
        let meta = match store.head(path).await {
            Ok(meta) => meta,
            Err(E::NotFound { .. }) => return Ok(UpdateOutcome::Missing),
            Err(e) => return Err(convert(e)),
        };
        let precondition = UpdateVersion {
            e_tag: meta.e_tag,
            version: meta.version,
        };
        match objects::put(store, path, value, PutMode::Update(precondition)).await {
            Ok(put) => return Ok(updated(strategy, &put, value)),
            Err(E::Precondition { .. } | E::NotFound { .. }) => continue,
            Err(e) => return Err(convert(e)),
        }
    }
    Ok(UpdateOutcome::Conflict)
}

/// [`UpdateStrategy::ProcessLocks`]: under the key's lock, read and compare
/// the version (or only check that the object exists, without an expected
/// version), then overwrite.
pub(crate) async fn update_locked(
    store: &dyn ObjectStore,
    locks: &KeyLocks,
    key: &str,
    path: &Path,
    value: &[u8],
    expected: Option<&Version>,
) -> Result<UpdateOutcome, StoreError> {
    let strategy = UpdateStrategy::ProcessLocks;
    let _guard = locks.lock(key).await;
    match expected {
        Some(expected) => {
            let Some((bytes, meta)) = objects::read(store, path).await? else {
                return Ok(UpdateOutcome::Missing);
            };
            if strategy.version_of_object(&meta, &bytes).as_ref() != Some(expected) {
                return Ok(UpdateOutcome::Conflict);
            }
        }
        None => {
            if !objects::exists(store, path).await? {
                return Ok(UpdateOutcome::Missing);
            }
        }
    }
    let put = objects::put(store, path, value, PutMode::Overwrite)
        .await
        .map_err(convert)?;
    Ok(updated(strategy, &put, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_strategy_hands_out_its_own_kind_of_token() {
        let conditional = UpdateStrategy::ConditionalPut;
        assert_eq!(conditional.token(None, None, b"v"), None);
        assert!(matches!(
            conditional.token(Some("e"), None, b"v"),
            Some(VersionToken::Conditional { .. })
        ));
        let locks = UpdateStrategy::ProcessLocks;
        assert!(matches!(
            locks.token(None, None, b"v"),
            Some(VersionToken::Content { .. })
        ));
    }
}
