//! The server's memory limit: whether its `maxmemory-policy` can evict live
//! sessions and owner indexes, and the warning [`RedisStore::init`] logs
//! when it can.
//!
//! With `set_ttl` (the default) every key this store is handed has a TTL
//! (sessions, the markers of ended sessions, owner indexes), so every
//! evicting policy can choose any of them once `maxmemory` is reached: the
//! `allkeys-*` policies as well as the `volatile-*` ones (`volatile-ttl` starts with the keys nearest their
//! expiry, but takes live ones next). An evicted session is a user logged
//! out; an evicted owner index hides its sessions from `sessions_of` and
//! `revoke_owner` until they expire. Only `noeviction` (writes fail with an
//! `OOM` error, which the library reports as a store error, never as
//! success) or no `maxmemory` at all keep them.
//!
//! [`RedisStore::init`]: rocket_kvsession::KeyValueStore::init

use redis::Value;

/// The `CONFIG GET` pattern that answers both settings in one command (a
/// glob, which every Redis version accepts, unlike several parameters).
pub(crate) const CONFIG_PATTERN: &str = "maxmemory*";

/// The memory settings a server reported.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct MemorySettings {
    /// `maxmemory` in bytes; 0 is no limit.
    pub(crate) maxmemory: Option<u64>,
    pub(crate) policy: Option<String>,
}

impl MemorySettings {
    /// Reads the settings out of a `CONFIG GET` reply: name/value pairs as
    /// an array (RESP2) or a map (RESP3), or such replies nested per node
    /// (a cluster). What it cannot read stays `None`.
    pub(crate) fn from_reply(reply: &Value) -> Self {
        let mut settings = MemorySettings::default();
        settings.collect(reply);
        settings
    }

    fn collect(&mut self, reply: &Value) {
        match reply {
            Value::Array(items) if items.iter().all(|v| text(v).is_some()) => {
                for pair in items.chunks_exact(2) {
                    self.set(&pair[0], &pair[1]);
                }
            }
            Value::Array(items) | Value::Set(items) => items.iter().for_each(|v| self.collect(v)),
            Value::Map(pairs) => {
                for (name, value) in pairs {
                    if text(name).is_some() && text(value).is_some() {
                        self.set(name, value);
                    } else {
                        self.collect(value);
                    }
                }
            }
            _ => {}
        }
    }

    fn set(&mut self, name: &Value, value: &Value) {
        let (Some(name), Some(value)) = (text(name), text(value)) else {
            return;
        };
        match name.as_str() {
            "maxmemory" if self.maxmemory.is_none() => self.maxmemory = value.parse().ok(),
            "maxmemory-policy" if self.policy.is_none() => self.policy = Some(value),
            _ => {}
        }
    }

    /// Whether the server may evict live sessions and owner indexes: a
    /// `maxmemory` is set and the policy is an `allkeys-*` or `volatile-*`
    /// one.
    pub(crate) fn evicts_sessions(&self) -> bool {
        let limited = self.maxmemory.is_some_and(|bytes| bytes > 0);
        let evicting = self
            .policy
            .as_deref()
            .is_some_and(|p| p.starts_with("allkeys-") || p.starts_with("volatile-"));
        limited && evicting
    }

    /// The warning to log, if the server may evict sessions.
    pub(crate) fn warning(&self) -> Option<String> {
        if !self.evicts_sessions() {
            return None;
        }
        Some(format!(
            "kvsession: the Redis server has maxmemory {} bytes with maxmemory-policy {}: \
             when it is full it evicts keys that have a TTL, which includes live sessions \
             (users logged out) and owner indexes (sessions hidden from revoke_owner until \
             they expire). Use maxmemory-policy noeviction, or no maxmemory, for sessions",
            self.maxmemory.unwrap_or_default(),
            self.policy.as_deref().unwrap_or_default(),
        ))
    }
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    fn reply(pairs: &[(&str, &str)]) -> Value {
        Value::Array(pairs.iter().flat_map(|(k, v)| [bulk(k), bulk(v)]).collect())
    }

    fn settings(maxmemory: &str, policy: &str) -> MemorySettings {
        MemorySettings::from_reply(&reply(&[
            ("maxmemory", maxmemory),
            ("maxmemory-samples", "5"),
            ("maxmemory-policy", policy),
        ]))
    }

    #[test]
    fn evicting_policies_with_a_limit_warn() {
        for policy in [
            "allkeys-lru",
            "allkeys-lfu",
            "allkeys-random",
            "volatile-lru",
            "volatile-lfu",
            "volatile-random",
            "volatile-ttl",
        ] {
            let s = settings("104857600", policy);
            assert!(s.evicts_sessions(), "{policy}");
            let warning = s.warning().expect("a warning");
            assert!(
                warning.contains(policy) && warning.contains("104857600"),
                "{warning}"
            );
            assert!(warning.contains("noeviction"), "{warning}");
        }
    }

    #[test]
    fn no_limit_or_noeviction_is_quiet() {
        assert_eq!(settings("0", "allkeys-lru").warning(), None);
        assert_eq!(settings("104857600", "noeviction").warning(), None);
        assert_eq!(MemorySettings::from_reply(&Value::Nil).warning(), None);
        assert_eq!(
            MemorySettings::from_reply(&reply(&[])),
            MemorySettings::default()
        );
    }

    #[test]
    fn resp3_maps_and_per_node_replies_are_read() {
        let map = Value::Map(vec![
            (bulk("maxmemory-policy"), bulk("volatile-ttl")),
            (bulk("maxmemory"), bulk("1000")),
        ]);
        assert!(MemorySettings::from_reply(&map).evicts_sessions());
        let nodes = Value::Map(vec![(
            bulk("127.0.0.1:7000"),
            reply(&[("maxmemory", "1000"), ("maxmemory-policy", "allkeys-lfu")]),
        )]);
        assert!(MemorySettings::from_reply(&nodes).evicts_sessions());
        // Garbage is no limit, not an error.
        let odd = Value::Array(vec![bulk("maxmemory"), bulk("lots"), bulk("x")]);
        assert_eq!(MemorySettings::from_reply(&odd).maxmemory, None);
    }
}
