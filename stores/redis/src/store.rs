//! [`RedisStore`] and its [`KeyValueStore`] implementation.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use futures_util::stream::{self, BoxStream, Stream, StreamExt, TryStreamExt};
use redis::aio::ConnectionManager;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo, SingleNodeRoutingInfo, Slot};
use redis::{Cmd, FromRedisValue, Pipeline, RedisFuture, ServerErrorKind, Value};
use rocket_kvsession::{
    CreateOutcome, KeyInfo, KeyValueStore, Record, StoreError, UpdateOutcome, Version,
};

use crate::error::{convert, RedisStoreError};
use crate::record::{self, Header, Versions, EXPIRY_OFFSET, FORMAT, HEADER_LEN};

/// The store's name in logs and errors.
pub(crate) const STORE_NAME: &str = "redis";

/// The default bound on every store operation (and on connecting): a
/// request whose store does not answer within it fails with
/// `503 Service Unavailable`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// Keys per `UNLINK` in [`delete_many`](KeyValueStore::delete_many).
const UNLINK_BATCH: usize = 512;
/// `UNLINK` commands per pipeline on a single server.
const PIPELINE_COMMANDS: usize = 16;
/// Single-slot `UNLINK`s in flight at once on a cluster.
const CLUSTER_CONCURRENCY: usize = 64;
/// The `COUNT` hint of every `SCAN` page.
const SCAN_COUNT: usize = 1000;

/// Compare-and-swap update. `KEYS[1]`: the key. `ARGV[1]`: the expected
/// format byte and version (9 bytes); `ARGV[2]`: the new record; `ARGV[3]`:
/// the expiry in Unix milliseconds, or empty for none. Returns 1 (written),
/// 0 (no such key) or -1 (another version).
const UPDATE_SCRIPT: &str = r"
local current = redis.call('GETRANGE', KEYS[1], 0, 8)
if current == '' then return 0 end
if current ~= ARGV[1] then return -1 end
if ARGV[3] == '' then
  redis.call('SET', KEYS[1], ARGV[2])
else
  redis.call('SET', KEYS[1], ARGV[2], 'PXAT', ARGV[3])
end
return 1
";

/// Moves a record's expiry, value and version unchanged. `KEYS[1]`: the
/// key. `ARGV[1]`: the expiry as the header's 8 bytes; `ARGV[2]`: the same
/// in decimal for `PEXPIREAT`. Returns nil (no such key) or the record's
/// first 9 bytes (format and version).
static TOUCH_SCRIPT: LazyLock<String> = LazyLock::new(|| {
    format!(
        r"
local head = redis.call('GETRANGE', KEYS[1], 0, 8)
if head == '' then return false end
if #head < 9 or string.byte(head, 1) ~= {FORMAT} then
  return redis.error_reply('ERR kvsession: not a session record')
end
redis.call('SETRANGE', KEYS[1], {EXPIRY_OFFSET}, ARGV[1])
redis.call('PEXPIREAT', KEYS[1], ARGV[2])
return head
"
    )
});

/// A Lua script sent with `EVALSHA`, falling back to `EVAL` (which also
/// caches it on that server) when the server does not know it yet, e.g.
/// after a restart or on a new cluster node: one round trip in the usual
/// case, two once per server.
struct LuaScript {
    source: &'static str,
    sha1: String,
}

impl LuaScript {
    fn new(source: &'static str) -> LuaScript {
        LuaScript {
            source,
            sha1: redis::Script::new(source).get_hash().to_owned(),
        }
    }

    /// `EVALSHA sha1 1 key args...` (or `EVAL` with the source).
    fn cmd(&self, by_source: bool, key: &str, args: &[&[u8]]) -> Cmd {
        let mut cmd = if by_source {
            let mut cmd = redis::cmd("EVAL");
            cmd.arg(self.source);
            cmd
        } else {
            let mut cmd = redis::cmd("EVALSHA");
            cmd.arg(&self.sha1);
            cmd
        };
        cmd.arg(1).arg(key);
        for arg in args {
            cmd.arg(*arg);
        }
        cmd
    }
}

static UPDATE: LazyLock<LuaScript> = LazyLock::new(|| LuaScript::new(UPDATE_SCRIPT));
static TOUCH: LazyLock<LuaScript> = LazyLock::new(|| LuaScript::new(TOUCH_SCRIPT.as_str()));

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
/// | `delete` | `UNLINK` |
/// | `delete_many` | `UNLINK` in pipelined batches (one slot per command on a cluster) |
/// | `list` | `SCAN` with `MATCH prefix*` (on every primary of a cluster), streamed page by page |
///
/// Redis removes expired sessions itself (`PXAT`/`PEXPIREAT`, to the
/// millisecond); `get` also checks the expiry in the header, so a record is
/// never returned past its expiry. Versions are random 64-bit numbers, drawn
/// anew on every write.
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

    pub(crate) fn from_connection(conn: Connection) -> Self {
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

    /// Runs `fut` within the timeout.
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

    /// Sends one command.
    async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, StoreError> {
        let mut conn = self.conn.clone();
        self.bounded(cmd.query_async(&mut conn)).await
    }

    /// Runs a script on `key`: `EVALSHA`, and `EVAL` if the server does not
    /// have the script cached.
    async fn eval<T: FromRedisValue>(
        &self,
        script: &LuaScript,
        key: &str,
        args: &[&[u8]],
    ) -> Result<T, StoreError> {
        let mut conn = self.conn.clone();
        self.bounded(async {
            match script.cmd(false, key, args).query_async(&mut conn).await {
                Err(e) if e.kind() == redis::ErrorKind::Server(ServerErrorKind::NoScript) => {
                    script.cmd(true, key, args).query_async(&mut conn).await
                }
                result => result,
            }
        })
        .await
    }

    /// The addresses of the cluster's primaries, as the client knows them.
    async fn primaries(&self, conn: &ClusterConnection) -> Result<Vec<(String, u16)>, StoreError> {
        let mut conn = conn.clone();
        let reply = self
            .bounded(conn.route_command(
                redis::cmd("PING"),
                RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None)),
            ))
            .await?;
        let unexpected = |reply: &Value| {
            RedisStoreError::UnexpectedReply {
                command: "PING to every primary",
                reply: format!("{reply:?}"),
            }
            .into_store_error()
        };
        let Value::Map(entries) = &reply else {
            return Err(unexpected(&reply));
        };
        let mut nodes = Vec::with_capacity(entries.len());
        for (address, _) in entries {
            let address = match address {
                Value::BulkString(bytes) => std::str::from_utf8(bytes).ok(),
                Value::SimpleString(s) => Some(s.as_str()),
                _ => None,
            };
            let node = address
                .and_then(|a| a.rsplit_once(':'))
                .and_then(|(host, port)| Some((host.to_owned(), port.parse().ok()?)));
            nodes.push(node.ok_or_else(|| unexpected(&reply))?);
        }
        Ok(nodes)
    }

    /// Streams the keys matching `pattern` on one server: the single
    /// server, or one cluster node.
    fn scan<'a>(
        &'a self,
        pattern: Arc<str>,
        node: Option<(ClusterConnection, String, u16)>,
    ) -> impl Stream<Item = Result<KeyInfo, StoreError>> + Send + 'a {
        stream::try_unfold(Some(0u64), move |cursor| {
            let pattern = Arc::clone(&pattern);
            let node = node.clone();
            async move {
                let Some(cursor) = cursor else {
                    return Ok(None);
                };
                let mut cmd = redis::cmd("SCAN");
                cmd.arg(cursor)
                    .arg("MATCH")
                    .arg(&*pattern)
                    .arg("COUNT")
                    .arg(SCAN_COUNT);
                let (next, keys): (u64, Vec<Vec<u8>>) = match node {
                    None => self.query(&cmd).await?,
                    Some((mut conn, host, port)) => {
                        let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                            host,
                            port,
                        });
                        let reply = self.bounded(conn.route_command(cmd, routing)).await?;
                        redis::from_redis_value(reply).map_err(|e| convert(e.into()))?
                    }
                };
                Ok(Some((keys, (next != 0).then_some(next))))
            }
        })
        .map_ok(|keys| {
            stream::iter(
                keys.into_iter()
                    .filter_map(|key| match String::from_utf8(key) {
                        Ok(key) => Some(Ok(KeyInfo::new(key, None))),
                        // Session keys are text; a binary key under the prefix is
                        // not one of ours.
                        Err(_) => None,
                    }),
            )
        })
        .try_flatten()
    }
}

/// Escapes the glob metacharacters of `SCAN ... MATCH` in a literal prefix.
pub(crate) fn escape_glob(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn corrupt(key: &str, reason: String) -> StoreError {
    RedisStoreError::CorruptRecord {
        key: key.to_owned(),
        reason,
    }
    .into_store_error()
}

fn unexpected(command: &'static str, reply: &Value) -> StoreError {
    RedisStoreError::UnexpectedReply {
        command,
        reply: format!("{reply:?}"),
    }
    .into_store_error()
}

/// `SET`'s reply: written (`OK`) or not (nil, for `NX`/`XX`).
fn set_written(reply: &Value) -> Option<bool> {
    match reply {
        Value::Okay => Some(true),
        Value::SimpleString(s) if s == "OK" => Some(true),
        Value::Nil => Some(false),
        _ => None,
    }
}

#[async_trait]
impl KeyValueStore for RedisStore {
    fn name(&self) -> &'static str {
        STORE_NAME
    }

    fn supports_ttl(&self) -> bool {
        true
    }

    fn supports_versioning(&self) -> bool {
        true
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
        let version = self.versions.next();
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
        let version = self.versions.next();
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
        // A token this store did not issue matches no record: an empty
        // expectation never equals a record's 9 leading bytes.
        let expected = expected
            .as_str()
            .parse::<u64>()
            .map(record::version_prefix)
            .ok();
        let expected: &[u8] = expected.as_ref().map_or(&[], |e| e.as_slice());
        let ms = expires_ms.map(|ms| ms.to_string()).unwrap_or_default();
        let outcome: i64 = self
            .eval(&UPDATE, key, &[expected, &bytes, ms.as_bytes()])
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
        let head: Option<Vec<u8>> = self
            .eval(&TOUCH, key, &[&ms.to_be_bytes(), ms.to_string().as_bytes()])
            .await?;
        let Some(head) = head else {
            return Ok(UpdateOutcome::Missing);
        };
        let version = head
            .get(1..9)
            .and_then(|v| <[u8; 8]>::try_from(v).ok())
            .map(u64::from_be_bytes)
            .ok_or_else(|| corrupt(key, "record header cut short".to_owned()))?;
        Ok(UpdateOutcome::Updated(Some(Version::from(version))))
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let _removed: i64 = self.query(redis::cmd("UNLINK").arg(key)).await?;
        Ok(())
    }

    async fn delete_many(&self, keys: Vec<String>) -> Result<(), StoreError> {
        match &self.conn {
            Connection::Single(_) => {
                for group in keys.chunks(UNLINK_BATCH * PIPELINE_COMMANDS) {
                    let mut pipe = redis::pipe();
                    for batch in group.chunks(UNLINK_BATCH) {
                        pipe.cmd("UNLINK").arg(batch).ignore();
                    }
                    let mut conn = self.conn.clone();
                    self.bounded(pipe.exec_async(&mut conn)).await?;
                }
            }
            Connection::Cluster(_) => {
                // A multi-key command must stay within one hash slot.
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
            }
        }
        Ok(())
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxStream<'a, Result<KeyInfo, StoreError>> {
        let pattern: Arc<str> = format!("{}*", escape_glob(prefix)).into();
        match &self.conn {
            Connection::Single(_) => self.scan(pattern, None).boxed(),
            Connection::Cluster(conn) => stream::once(self.primaries(conn))
                .map_ok(move |nodes| {
                    let pattern = Arc::clone(&pattern);
                    stream::iter(nodes)
                        .map(move |(host, port)| {
                            self.scan(Arc::clone(&pattern), Some((conn.clone(), host, port)))
                        })
                        .flatten()
                })
                .try_flatten()
                .boxed(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_metacharacters_are_escaped() {
        assert_eq!(escape_glob("app:"), "app:");
        assert_eq!(escape_glob("a*b?c[d]e\\f"), "a\\*b\\?c\\[d\\]e\\\\f");
        assert_eq!(escape_glob(""), "");
    }

    #[test]
    fn scripts_have_stable_hashes() {
        assert_eq!(UPDATE.sha1.len(), 40);
        assert_ne!(UPDATE.sha1, TOUCH.sha1);
        let cmd = UPDATE.cmd(false, "k", &[b"a"]);
        let args: Vec<_> = cmd.args_iter().collect();
        assert_eq!(args.len(), 5);
        assert!(TOUCH.source.contains("SETRANGE"));
    }

    #[test]
    fn set_replies() {
        assert_eq!(set_written(&Value::Okay), Some(true));
        assert_eq!(set_written(&Value::Nil), Some(false));
        assert_eq!(set_written(&Value::Int(1)), None);
    }
}
