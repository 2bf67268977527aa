//! The Lua scripts of the store's conditional writes, and how they are sent:
//! `EVALSHA`, falling back to `EVAL` when the server does not know the
//! script yet.
//!
//! Each script reads and writes only `KEYS[1]`, so it runs unchanged on a
//! Redis Cluster (the client routes it by that key's slot).

use std::sync::LazyLock;

use redis::aio::ConnectionLike;
use redis::{Cmd, ErrorKind, FromRedisValue, RedisResult, ServerErrorKind};

use crate::record::{EXPIRY_OFFSET, FORMAT, HEADER_LEN, VERSION_PREFIX_LEN};

/// The compare-and-swap update. `KEYS[1]`: the key. `ARGV[1]`: the
/// expected format byte and version (the record's first 9 bytes); `ARGV[2]`:
/// the new record; `ARGV[3]`: the expiry in Unix milliseconds, or empty for
/// none. Returns 1 (written), 0 (no such key) or -1 (another version).
pub const UPDATE_SCRIPT: &str = r"
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
/// first 9 bytes (format and version); an error for a value that is not a
/// record of this crate, which it leaves alone.
static TOUCH_SCRIPT: LazyLock<String> = LazyLock::new(|| {
    format!(
        r"
local head = redis.call('GETRANGE', KEYS[1], 0, {last})
if head == '' then return false end
if #head < {VERSION_PREFIX_LEN} or string.byte(head, 1) ~= {FORMAT} then
  return redis.error_reply('ERR kvsession: not a session record')
end
redis.call('SETRANGE', KEYS[1], {EXPIRY_OFFSET}, ARGV[1])
redis.call('PEXPIREAT', KEYS[1], ARGV[2])
return head
",
        last = VERSION_PREFIX_LEN - 1,
    )
});

/// The compare-and-delete. `KEYS[1]`: the key. `ARGV[1]`: the expected
/// format byte and version (as for the update); `ARGV[2]`: the caller's
/// time in Unix milliseconds. Returns 1 (deleted), 0 (no such key, or the
/// record is past the expiry in its header at that time: not live, as `get`
/// sees it) or -1 (another version: the record is kept); an error for a
/// value that is not a record of this crate, which it leaves alone.
///
/// The expiry is read from the header's 8 big-endian bytes into a Lua
/// number, exact for every time before the year 285000.
static DELETE_IF_SCRIPT: LazyLock<String> = LazyLock::new(|| {
    format!(
        r"
local head = redis.call('GETRANGE', KEYS[1], 0, {last})
if head == '' then return 0 end
if #head < {HEADER_LEN} or string.byte(head, 1) ~= {FORMAT} then
  return redis.error_reply('ERR kvsession: not a session record')
end
local expires = 0
for i = {first_expiry_byte}, {HEADER_LEN} do
  expires = expires * 256 + string.byte(head, i)
end
if expires ~= 0 and expires <= tonumber(ARGV[2]) then return 0 end
if string.sub(head, 1, {VERSION_PREFIX_LEN}) ~= ARGV[1] then return -1 end
redis.call('UNLINK', KEYS[1])
return 1
",
        last = HEADER_LEN - 1,
        first_expiry_byte = EXPIRY_OFFSET + 1,
    )
});

/// A Lua script sent with `EVALSHA`, falling back to `EVAL` (which also
/// caches it on that server) when the server does not know it yet, e.g.
/// after a restart or on a new cluster node: one round trip in the usual
/// case, two once per server. (`redis::Script::invoke_async` would load it
/// with `SCRIPT LOAD` and send `EVALSHA` again: three.)
#[derive(Debug)]
pub(crate) struct LuaScript {
    source: &'static str,
    script: redis::Script,
}

/// [`UPDATE_SCRIPT`].
pub(crate) static UPDATE: LazyLock<LuaScript> = LazyLock::new(|| LuaScript::new(UPDATE_SCRIPT));
/// [`TOUCH_SCRIPT`].
pub(crate) static TOUCH: LazyLock<LuaScript> =
    LazyLock::new(|| LuaScript::new(TOUCH_SCRIPT.as_str()));
/// [`DELETE_IF_SCRIPT`].
pub(crate) static DELETE_IF: LazyLock<LuaScript> =
    LazyLock::new(|| LuaScript::new(DELETE_IF_SCRIPT.as_str()));

impl LuaScript {
    fn new(source: &'static str) -> LuaScript {
        LuaScript {
            source,
            script: redis::Script::new(source),
        }
    }

    /// The script's SHA-1, as `EVALSHA` names it.
    pub(crate) fn sha1(&self) -> &str {
        self.script.get_hash()
    }

    /// `EVALSHA sha1 1 key args...`, or `EVAL source 1 key args...`.
    fn cmd(&self, by_source: bool, key: &str, args: &[&[u8]]) -> Cmd {
        let mut cmd = if by_source {
            let mut cmd = redis::cmd("EVAL");
            cmd.arg(self.source);
            cmd
        } else {
            let mut cmd = redis::cmd("EVALSHA");
            cmd.arg(self.sha1());
            cmd
        };
        cmd.arg(1).arg(key);
        for arg in args {
            cmd.arg(*arg);
        }
        cmd
    }

    /// Runs the script on `key`: `EVALSHA`, and `EVAL` if the server does
    /// not have the script cached.
    pub(crate) async fn invoke<T: FromRedisValue>(
        &self,
        conn: &mut (impl ConnectionLike + Send),
        key: &str,
        args: &[&[u8]],
    ) -> RedisResult<T> {
        match self.cmd(false, key, args).query_async(conn).await {
            Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                self.cmd(true, key, args).query_async(conn).await
            }
            result => result,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_have_distinct_stable_hashes() {
        let hashes = [UPDATE.sha1(), TOUCH.sha1(), DELETE_IF.sha1()];
        for (i, hash) in hashes.iter().enumerate() {
            assert_eq!(hash.len(), 40);
            assert!(!hashes[..i].contains(hash), "{hash} twice");
        }
        assert_eq!(UPDATE.sha1(), redis::Script::new(UPDATE_SCRIPT).get_hash());
    }

    #[test]
    fn commands_name_one_key() {
        let cmd = UPDATE.cmd(false, "k", &[b"a"]);
        let args: Vec<&[u8]> = cmd
            .args_iter()
            .map(|arg| match arg {
                redis::Arg::Simple(bytes) => bytes,
                _ => panic!("a plain argument"),
            })
            .collect();
        let expected: [&[u8]; 5] = [b"EVALSHA", UPDATE.sha1().as_bytes(), b"1", b"k", b"a"];
        assert_eq!(args, expected);
        let cmd = DELETE_IF.cmd(true, "k", &[b"a", b"b"]);
        let args: Vec<_> = cmd.args_iter().collect();
        assert_eq!(args.len(), 6);
    }

    #[test]
    fn the_header_layout_is_filled_in() {
        // The update compares the first 9 bytes (`GETRANGE key 0 8`).
        assert_eq!(VERSION_PREFIX_LEN, 9);
        assert!(TOUCH.source.contains("GETRANGE', KEYS[1], 0, 8)"));
        assert!(TOUCH.source.contains("SETRANGE', KEYS[1], 9, ARGV[1])"));
        assert!(DELETE_IF.source.contains("GETRANGE', KEYS[1], 0, 16)"));
        assert!(DELETE_IF.source.contains("for i = 10, 17 do"));
        assert!(DELETE_IF.source.contains("string.byte(head, 1) ~= 1 then"));
    }
}
