//! [`RedisStore`]'s [`KeyValueStore`] and [`CompareAndDelete`]
//! implementations: which commands each operation sends, and what their
//! replies mean.

use std::collections::HashMap;
use std::time::SystemTime;

use async_trait::async_trait;
use futures_util::stream::{self, BoxStream, StreamExt, TryStreamExt};
use redis::cluster_routing::Slot;
use redis::{Cmd, FromRedisValue, Value};
use rocket_kvsession::{
    Capabilities, CompareAndDelete, CreateOutcome, DeleteOutcome, Expiry, KeyInfo, KeyValueStore,
    Record, StoreError, UpdateOutcome, Version,
};

use crate::connect::RedisStore;
use crate::error::{corrupt, unexpected, STORE_NAME};
use crate::memory_policy::{MemorySettings, CONFIG_PATTERN};
use crate::record::{self, Header, HEADER_LEN};
use crate::scan;
use crate::scripts::{LuaScript, DELETE_IF, TOUCH, UPDATE};

/// Keys per `UNLINK` in [`delete_many`](KeyValueStore::delete_many).
const UNLINK_BATCH: usize = 512;
/// `UNLINK` commands per pipeline on a single server.
const PIPELINE_COMMANDS: usize = 16;
/// Single-slot `UNLINK`s in flight at once on a cluster.
const CLUSTER_CONCURRENCY: usize = 64;

/// `SET`'s reply: written (`OK`) or not (nil, for `NX`/`XX`).
fn set_written(reply: &Value) -> Option<bool> {
    match reply {
        Value::Okay => Some(true),
        Value::SimpleString(s) if s == "OK" => Some(true),
        Value::Nil => Some(false),
        _ => None,
    }
}

/// Runs `script` on `key` within the store's timeout.
async fn eval<T: FromRedisValue>(
    store: &RedisStore,
    script: &LuaScript,
    key: &str,
    args: &[&[u8]],
) -> Result<T, StoreError> {
    let mut conn = store.connection();
    store.bounded(script.invoke(&mut conn, key, args)).await
}

/// The record prefix `expected` stands for, as a script argument: empty for
/// a token this store did not issue, which never equals a record's leading
/// bytes (so it matches no record).
fn expected_arg(expected: &Version) -> Vec<u8> {
    record::expected_prefix(expected).map_or_else(Vec::new, Vec::from)
}

#[async_trait]
impl KeyValueStore for RedisStore {
    fn name(&self) -> &'static str {
        STORE_NAME
    }

    /// Redis expires every key at the session's expiry itself, and updates
    /// are compare-and-swap.
    fn capabilities(&self) -> Capabilities {
        Capabilities::new(Expiry::RemovedByBackend).with_compare_and_swap()
    }

    /// Reads the server's `maxmemory` and `maxmemory-policy` with one
    /// `CONFIG GET` and logs a warning when the server may evict live
    /// sessions and owner indexes (a `maxmemory` with an `allkeys-*` or
    /// `volatile-*` policy; see the crate docs). A `CONFIG GET` that is
    /// refused (a managed Redis, an ACL without `CONFIG`) or fails is
    /// logged at debug level and does not stop the launch.
    async fn init(&self) -> Result<(), StoreError> {
        let mut cmd = redis::cmd("CONFIG");
        cmd.arg("GET").arg(CONFIG_PATTERN);
        match self.query::<Value>(&cmd).await {
            Ok(reply) => {
                if let Some(warning) = MemorySettings::from_reply(&reply).warning() {
                    log::warn!("{warning}");
                }
            }
            Err(e) => log::debug!(
                "kvsession: could not read the Redis server's maxmemory-policy, not checked: {e}"
            ),
        }
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Record>, StoreError> {
        let bytes: Option<Vec<u8>> = self.query(redis::cmd("GET").arg(key)).await?;
        let Some(mut bytes) = bytes else {
            return Ok(None);
        };
        let header = Header::parse(&bytes).map_err(|m| corrupt(key, m.reason()))?;
        if header.expired_at(record::unix_ms(SystemTime::now())) {
            return Ok(None);
        }
        bytes.drain(..HEADER_LEN);
        Ok(Some(Record::new(
            bytes,
            Some(Version::from(header.version)),
            header.expires_ms.map(record::from_unix_ms),
        )))
    }

    async fn create(
        &self,
        key: &str,
        value: &[u8],
        expires_at: Option<SystemTime>,
    ) -> Result<CreateOutcome, StoreError> {
        let version = self.versions().next();
        let expires_ms = expires_at.map(record::unix_ms);
        let mut cmd = redis::cmd("SET");
        cmd.arg(key)
            .arg(record::encode(version, expires_ms, value))
            .arg("NX");
        if let Some(ms) = expires_ms {
            cmd.arg("PXAT").arg(ms);
        }
        let reply: Value = self.query(&cmd).await?;
        match set_written(&reply) {
            Some(true) => Ok(CreateOutcome::Created(Some(Version::from(version)))),
            Some(false) => Ok(CreateOutcome::AlreadyExists),
            None => Err(unexpected("SET NX", &reply)),
        }
    }

    async fn update(
        &self,
        key: &str,
        value: &[u8],
        expected: Option<&Version>,
        expires_at: Option<SystemTime>,
    ) -> Result<UpdateOutcome, StoreError> {
        let version = self.versions().next();
        let expires_ms = expires_at.map(record::unix_ms);
        let bytes = record::encode(version, expires_ms, value);
        let updated = UpdateOutcome::Updated(Some(Version::from(version)));
        let Some(expected) = expected else {
            // Update-only without a compare: `SET ... XX`.
            let mut cmd = redis::cmd("SET");
            cmd.arg(key).arg(bytes).arg("XX");
            if let Some(ms) = expires_ms {
                cmd.arg("PXAT").arg(ms);
            }
            let reply: Value = self.query(&cmd).await?;
            return match set_written(&reply) {
                Some(true) => Ok(updated),
                Some(false) => Ok(UpdateOutcome::Missing),
                None => Err(unexpected("SET XX", &reply)),
            };
        };
        let ms = expires_ms.map(|ms| ms.to_string()).unwrap_or_default();
        let outcome: i64 = eval(
            self,
            &UPDATE,
            key,
            &[&expected_arg(expected), &bytes, ms.as_bytes()],
        )
        .await?;
        match outcome {
            1 => Ok(updated),
            0 => Ok(UpdateOutcome::Missing),
            -1 => Ok(UpdateOutcome::Conflict),
            other => Err(unexpected("the update script", &Value::Int(other))),
        }
    }

    async fn touch(&self, key: &str, expires_at: SystemTime) -> Result<UpdateOutcome, StoreError> {
        let ms = record::unix_ms(expires_at);
        let head: Option<Vec<u8>> = eval(
            self,
            &TOUCH,
            key,
            &[&ms.to_be_bytes(), ms.to_string().as_bytes()],
        )
        .await?;
        let Some(head) = head else {
            return Ok(UpdateOutcome::Missing);
        };
        let version = record::version_of_prefix(&head)
            .ok_or_else(|| corrupt(key, "record header cut short".to_owned()))?;
        Ok(UpdateOutcome::Updated(Some(Version::from(version))))
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let _removed: i64 = self.query(redis::cmd("UNLINK").arg(key)).await?;
        Ok(())
    }

    async fn delete_many(&self, keys: Vec<String>) -> Result<(), StoreError> {
        if !self.is_cluster() {
            for group in keys.chunks(UNLINK_BATCH * PIPELINE_COMMANDS) {
                let mut pipe = redis::pipe();
                for batch in group.chunks(UNLINK_BATCH) {
                    pipe.cmd("UNLINK").arg(batch).ignore();
                }
                let mut conn = self.connection();
                self.bounded(pipe.exec_async(&mut conn)).await?;
            }
            return Ok(());
        }
        // On a cluster, a multi-key command must stay within one hash slot.
        let mut by_slot: HashMap<Slot, Vec<String>> = HashMap::new();
        for key in keys {
            by_slot.entry(Slot::for_key(&key)).or_default().push(key);
        }
        let commands: Vec<Cmd> = by_slot
            .values()
            .flat_map(|keys| keys.chunks(UNLINK_BATCH))
            .map(|batch| {
                let mut cmd = redis::cmd("UNLINK");
                cmd.arg(batch);
                cmd
            })
            .collect();
        stream::iter(commands)
            .map(|cmd| async move { self.query::<i64>(&cmd).await })
            .buffer_unordered(CLUSTER_CONCURRENCY)
            .try_collect::<Vec<_>>()
            .await?;
        Ok(())
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxStream<'a, Result<KeyInfo, StoreError>> {
        scan::keys_with_prefix(self, prefix)
    }

    fn compare_and_delete(&self) -> Option<&dyn CompareAndDelete> {
        Some(self)
    }
}

/// One script (`EVALSHA`): compare the version with `GETRANGE`, then
/// `UNLINK`, on one key.
#[async_trait]
impl CompareAndDelete for RedisStore {
    async fn delete_if(&self, key: &str, expected: &Version) -> Result<DeleteOutcome, StoreError> {
        let now = record::unix_ms(SystemTime::now()).to_string();
        let outcome: i64 = eval(
            self,
            &DELETE_IF,
            key,
            &[&expected_arg(expected), now.as_bytes()],
        )
        .await?;
        match outcome {
            1 => Ok(DeleteOutcome::Deleted),
            0 => Ok(DeleteOutcome::Missing),
            -1 => Ok(DeleteOutcome::Conflict),
            other => Err(unexpected("the delete script", &Value::Int(other))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_replies() {
        assert_eq!(set_written(&Value::Okay), Some(true));
        assert_eq!(set_written(&Value::Nil), Some(false));
        assert_eq!(set_written(&Value::Int(1)), None);
    }

    #[test]
    fn foreign_tokens_expect_nothing() {
        assert_eq!(expected_arg(&Version::new("junk")), Vec::<u8>::new());
        assert_eq!(expected_arg(&Version::from(1u64)).len(), 9);
    }
}
