//! The TTL index on `expires_at`.

use std::time::Duration;

use futures_util::TryStreamExt;
use mongodb::bson::{doc, Bson, Document};
use mongodb::options::IndexOptions;
use mongodb::{Collection, IndexModel};
use rocket_kvsession::StoreError;

use crate::error::{convert, write_error_code, STORE_NAME};
use crate::schema::EXPIRES_AT;
use crate::timeout;

/// The name MongoDB gives an ascending index on `expires_at`, and so the name
/// of the index this store creates.
pub const TTL_INDEX_NAME: &str = "expires_at_1";

/// NamespaceNotFound: the collection does not exist yet.
const NAMESPACE_NOT_FOUND: i32 = 26;
/// IndexOptionsConflict / IndexKeySpecsConflict: an index of that name or key
/// exists with other options.
const INDEX_CONFLICT: &[i32] = &[85, 86];

/// Makes sure the collection has a TTL index on `expires_at` with
/// `expireAfterSeconds: 0`, creating it if needed. Idempotent. An existing
/// index that would expire sessions at another time, or that blocks the
/// creation of the right one, is reported as [`StoreError::Misconfigured`]
/// with its name. Every command is bounded by `limit`.
pub(crate) async fn ensure_ttl_index(
    collection: &Collection<Document>,
    limit: Option<Duration>,
) -> Result<(), StoreError> {
    let namespace = collection.namespace();
    let conflict = |name: &str, problem: String| {
        StoreError::misconfigured(
            STORE_NAME,
            format!(
                "index {name:?} on `{namespace}` {problem}; the session store needs a TTL \
                 index `{{{EXPIRES_AT}: 1}}` with `expireAfterSeconds: 0`. Drop the \
                 conflicting index (`db.getSiblingDB({db:?}).{coll}.dropIndex({name:?})`) \
                 and restart",
                db = namespace.db,
                coll = namespace.coll,
            ),
        )
    };

    let mut satisfied = false;
    for index in list_indexes(collection, limit).await? {
        let name = index.get_str("name").unwrap_or("<unnamed>");
        let Ok(key) = index.get_document("key") else {
            continue;
        };
        let single_field_on_expiry = key.len() == 1 && key.contains_key(EXPIRES_AT);
        if !single_field_on_expiry {
            if name == TTL_INDEX_NAME {
                return Err(conflict(name, format!("has another key ({key})")));
            }
            continue;
        }
        let ascending = key.get(EXPIRES_AT).and_then(number) == Some(1.0);
        match index.get("expireAfterSeconds").and_then(number) {
            Some(seconds) if seconds != 0.0 => {
                return Err(conflict(
                    name,
                    format!(
                        "removes sessions {seconds} s after their expiry \
                         (`expireAfterSeconds: {seconds}`)"
                    ),
                ));
            }
            Some(_) if index.contains_key("partialFilterExpression") => {
                return Err(conflict(
                    name,
                    "has a `partialFilterExpression`, so the server would not remove every \
                     expired session"
                        .to_owned(),
                ));
            }
            Some(_) => satisfied = true,
            None if ascending || name == TTL_INDEX_NAME => {
                return Err(conflict(
                    name,
                    "is not a TTL index (it has no `expireAfterSeconds`)".to_owned(),
                ));
            }
            None => {}
        }
    }
    if satisfied {
        return Ok(());
    }

    let model = IndexModel::builder()
        .keys(doc! { EXPIRES_AT: 1 })
        .options(
            IndexOptions::builder()
                .name(TTL_INDEX_NAME.to_owned())
                .expire_after(Duration::ZERO)
                .build(),
        )
        .build();
    match timeout::run_raw(limit, collection.create_index(model)).await? {
        Ok(_) => {
            log::info!("mongodb store: ensured TTL index {TTL_INDEX_NAME:?} on `{namespace}`");
            Ok(())
        }
        Err(e) if write_error_code(&e).is_some_and(|code| INDEX_CONFLICT.contains(&code)) => {
            Err(StoreError::misconfigured_by(
                STORE_NAME,
                format!(
                    "cannot create the TTL index {TTL_INDEX_NAME:?} on `{namespace}`: a \
                     conflicting index exists; drop it and restart"
                ),
                e,
            ))
        }
        Err(e) => Err(convert(e)),
    }
}

/// The collection's index specifications (`listIndexes`); none if the
/// collection does not exist yet.
async fn list_indexes(
    collection: &Collection<Document>,
    limit: Option<Duration>,
) -> Result<Vec<Document>, StoreError> {
    let database = collection.client().database(&collection.namespace().db);
    let listing = async {
        database
            .run_cursor_command(doc! { "listIndexes": collection.name() })
            .await?
            .try_collect::<Vec<Document>>()
            .await
    };
    match timeout::run_raw(limit, listing).await? {
        Ok(indexes) => Ok(indexes),
        Err(e) if write_error_code(&e) == Some(NAMESPACE_NOT_FOUND) => Ok(Vec::new()),
        Err(e) => Err(convert(e)),
    }
}

fn number(value: &Bson) -> Option<f64> {
    match value {
        Bson::Int32(n) => Some(f64::from(*n)),
        Bson::Int64(n) => Some(*n as f64),
        Bson::Double(n) => Some(*n),
        _ => None,
    }
}
