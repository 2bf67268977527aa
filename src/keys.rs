//! Which store keys are ours: the key of a session, the key of an owner's
//! index, and whether a listed key is a session this configuration could
//! have written (the only keys the sweep and `revoke_all` ever touch).

use sha2::{Digest, Sha256};

use crate::config::SessionConfig;
use crate::id::SessionId;
use crate::record::Handle;

/// What follows the key prefix in the key of an owner index.
pub(crate) const INDEX_MARK: &str = "owner_";

/// The earliest creation time an id of this crate can carry: 2020-01-01.
/// A key claiming to be older was not written by it.
const EARLIEST_CREATED: u64 = 1_577_836_800;

/// How far in the future a creation time may lie (clock skew between app
/// servers) before the key is taken as not written by this crate.
const CLOCK_SKEW: u64 = 24 * 3600;

/// The key layout of one configuration: its `key_prefix` and `key_bits`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Keys {
    prefix: String,
    key_bits: u32,
}

impl Keys {
    /// The layout `config` sets.
    pub(crate) fn of(config: &SessionConfig) -> Self {
        Keys {
            prefix: config.key_prefix.clone(),
            key_bits: config.key_bits,
        }
    }

    /// The prefix every key of this app starts with.
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The store key of session `id`: the prefix, then the id.
    pub(crate) fn session(&self, id: &SessionId) -> String {
        let mut key = String::with_capacity(self.prefix.len() + 82);
        key.push_str(&self.prefix);
        id.push_to(&mut key);
        key
    }

    /// The store key of `owner`'s index: the prefix, [`INDEX_MARK`], and the
    /// first 128 bits of the SHA-256 of the owner's name as hex (the name
    /// itself never reaches the store's keys).
    pub(crate) fn index(&self, owner: &str) -> String {
        let digest = Sha256::digest(owner.as_bytes());
        let mut key = String::with_capacity(self.prefix.len() + INDEX_MARK.len() + 32);
        key.push_str(&self.prefix);
        key.push_str(INDEX_MARK);
        key.push_str(&Handle(digest[..16].try_into().expect("16 of 32 bytes")).to_hex());
        key
    }

    /// Whether `key` is the key of an owner index of this app.
    pub(crate) fn is_index(&self, key: &str) -> bool {
        key.strip_prefix(&self.prefix)
            .and_then(|rest| rest.strip_prefix(INDEX_MARK))
            .is_some_and(|hex| Handle::from_hex(hex).is_some())
    }

    /// Whether the id of a cookie can name a session of this app (it has
    /// this configuration's number of random bits).
    pub(crate) fn fits(&self, id: &SessionId) -> bool {
        id.key_bits() == self.key_bits
    }

    /// The session id stored under `key`, if `key` is a session key this
    /// configuration could have written by `now` (Unix seconds): its
    /// prefix, exactly `key_bits` random bits and a plausible creation time.
    /// Keys of another app sharing the store are never taken for ours.
    pub(crate) fn own_session_id(&self, key: &str, now: u64) -> Option<SessionId> {
        let id: SessionId = key.strip_prefix(&self.prefix)?.parse().ok()?;
        let plausible = self.fits(&id)
            && id.created_unix() >= EARLIEST_CREATED
            && id.created_unix() <= now.saturating_add(CLOCK_SKEW);
        plausible.then_some(id)
    }

    /// The longest keys this configuration writes (sessions until the year
    /// 2106, and owner indexes), for the store's ignite check.
    pub(crate) fn longest(&self) -> [String; 2] {
        let session = format!(
            "{}{}_{:x}",
            self.prefix,
            "0".repeat(self.key_bits as usize / 4),
            u32::MAX
        );
        [session, self.index("")]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::prefix_problem;
    use crate::time::now_unix;

    fn id(n: u64) -> SessionId {
        format!("{n:016x}_6745c1a0").parse().unwrap()
    }

    #[test]
    fn session_keys_are_the_prefix_then_the_id() {
        let keys = Keys::of(&SessionConfig::default());
        assert_eq!(keys.session(&id(1)), "session:0000000000000001_6745c1a0");
    }

    #[test]
    fn index_keys_hide_the_owner_and_are_recognised() {
        let keys = Keys::of(&SessionConfig::default());
        let key = keys.index("alice");
        assert!(key.starts_with("session:owner_"));
        assert!(!key.contains("alice"));
        assert_eq!(key.len(), "session:owner_".len() + 32);
        assert_ne!(key, keys.index("bob"));
        assert!(keys.is_index(&key));
        assert!(!keys.is_index("session:owner_xyz"));
        assert!(!keys.is_index(&format!("session:{}", id(1))));
        // Not a session id: the sweep never takes an index for a session.
        assert_eq!(keys.own_session_id(&key, now_unix()), None);
    }

    #[test]
    fn only_plausible_ids_of_this_layout_are_ours() {
        let keys = Keys::of(&SessionConfig::default());
        let now = now_unix();
        let ours = format!("session:{:016x}_{:x}", 5, now - 10);
        assert!(keys.own_session_id(&ours, now).is_some());
        for foreign in [
            // Another prefix, before 2020, days ahead, other key_bits.
            format!("other:{:016x}_{:x}", 5, now - 10),
            format!("session:{:016x}_1", 5),
            format!("session:{:016x}_{:x}", 5, now + 3 * CLOCK_SKEW),
            format!("session:{:032x}_{:x}", 5, now - 10),
            "session:0123456789abcdef_ffffffffffffffff".to_owned(),
        ] {
            assert_eq!(keys.own_session_id(&foreign, now), None, "{foreign}");
        }
    }

    #[test]
    fn a_prefix_must_end_in_something_an_id_cannot_start_with() {
        for good in ["session:", "app-", "shop/", "a_", "myapp", "x.y:"] {
            assert_eq!(prefix_problem(good), None, "{good:?}");
        }
        for bad in ["", "app1", "cafe", "session:A", "x_f"] {
            assert!(prefix_problem(bad).is_some(), "{bad:?}");
        }
    }

    #[test]
    fn keys_under_a_valid_prefix_are_never_another_valid_prefixs_sessions() {
        let now = now_unix();
        let id = format!("{:014x}_{:x}", 5, now - 10); // 56 random bits
                                                       // A prefix that extends ours by hex digits is refused, so an app of
                                                       // 56-bit ids under "app:ab" cannot exist beside "app:" of 64 bits.
        assert!(prefix_problem("app:ab").is_some());
        let ours = Keys::of(&SessionConfig {
            key_prefix: "app:".into(),
            ..SessionConfig::default()
        });
        for theirs in ["app:ab_", "app:x", "app:_"] {
            assert_eq!(prefix_problem(theirs), None);
            let key = format!("{theirs}{id}");
            assert_eq!(ours.own_session_id(&key, now), None, "{key}");
        }
    }

    #[test]
    fn the_longest_keys_cover_sessions_and_indexes() {
        let keys = Keys::of(&SessionConfig {
            key_bits: 256,
            ..SessionConfig::default()
        });
        let [session, index] = keys.longest();
        assert_eq!(session.len(), "session:".len() + 64 + 1 + 8);
        assert_eq!(index.len(), keys.index("alice").len());
        // With the default 64 bits, the index key is the longest.
        let [session, index] = Keys::of(&SessionConfig::default()).longest();
        assert!(index.len() > session.len());
    }
}
