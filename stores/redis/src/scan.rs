//! Listing keys with `SCAN ... MATCH prefix* COUNT 1000`, page by page,
//! never `KEYS`: on the single server, or on every primary of a cluster in
//! turn (each holds only its own slots).

use std::sync::Arc;

use futures_util::stream::{self, BoxStream, Stream, StreamExt, TryStreamExt};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo, SingleNodeRoutingInfo};
use redis::Value;
use rocket_kvsession::{KeyInfo, StoreError};

use crate::connect::{Connection, RedisStore};
use crate::error::{convert, unexpected};

/// The `COUNT` hint of every `SCAN` page.
const SCAN_COUNT: usize = 1000;

/// A cluster node, by the address the client knows it by.
#[derive(Debug, Clone)]
struct Node {
    host: String,
    port: u16,
}

/// Streams every key of `store` that starts with `prefix`, without reading
/// the values. A key may come twice while Redis resizes its tables.
pub(crate) fn keys_with_prefix<'a>(
    store: &'a RedisStore,
    prefix: &str,
) -> BoxStream<'a, Result<KeyInfo, StoreError>> {
    let pattern: Arc<str> = format!("{}*", escape_glob(prefix)).into();
    match store.connection() {
        Connection::Single(_) => scan(store, pattern, None).boxed(),
        Connection::Cluster(conn) => stream::once(async move {
            let nodes = primaries(store, &conn).await?;
            Ok(stream::iter(nodes)
                .map(move |node| scan(store, Arc::clone(&pattern), Some((conn.clone(), node))))
                .flatten())
        })
        .try_flatten()
        .boxed(),
    }
}

/// The addresses of the cluster's primaries, as the client knows them.
async fn primaries(store: &RedisStore, conn: &ClusterConnection) -> Result<Vec<Node>, StoreError> {
    let mut conn = conn.clone();
    let reply = store
        .bounded(conn.route_command(
            redis::cmd("PING"),
            RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None)),
        ))
        .await?;
    let unexpected = |reply: &Value| unexpected("PING to every primary", reply);
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
            .and_then(|(host, port)| {
                Some(Node {
                    host: host.to_owned(),
                    port: port.parse().ok()?,
                })
            });
        nodes.push(node.ok_or_else(|| unexpected(&reply))?);
    }
    Ok(nodes)
}

/// Streams the keys matching `pattern` on one server: the single server
/// (`node` is `None`), or one cluster node.
fn scan(
    store: &RedisStore,
    pattern: Arc<str>,
    node: Option<(ClusterConnection, Node)>,
) -> impl Stream<Item = Result<KeyInfo, StoreError>> + Send + '_ {
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
                None => store.query(&cmd).await?,
                Some((mut conn, Node { host, port })) => {
                    let routing =
                        RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress { host, port });
                    let reply = store.bounded(conn.route_command(cmd, routing)).await?;
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
                    // Session keys are text; a binary key under the prefix is not
                    // one of ours.
                    Err(_) => None,
                }),
        )
    })
    .try_flatten()
}

/// Escapes the glob metacharacters of `SCAN ... MATCH` in a literal prefix.
fn escape_glob(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
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
}
