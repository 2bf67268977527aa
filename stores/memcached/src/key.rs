//! Which keys memcached can hold: at most 250 bytes, none of them a space
//! or a control character (the text protocol separates tokens by spaces and
//! ends lines with CR LF).

use rocket_kvsession::StoreError;

use crate::error::STORE_NAME;

/// memcached's longest key, in bytes.
pub(crate) const MAX_KEY_LEN: usize = 250;

/// `Ok` if memcached can hold `key`, else [`StoreError::InvalidKey`].
pub(crate) fn check(key: &str) -> Result<(), StoreError> {
    let reason = if key.is_empty() {
        "memcached keys must not be empty"
    } else if key.len() > MAX_KEY_LEN {
        "memcached keys are at most 250 bytes"
    } else if key.bytes().any(|b| b <= b' ' || b == 0x7f) {
        "memcached keys must not contain spaces or control characters"
    } else {
        return Ok(());
    };
    Err(StoreError::invalid_key(STORE_NAME, key, reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_keys_pass() {
        assert!(check("session:0123456789abcdef_6745c1a0").is_ok());
        assert!(check("app/ü:owner_ab").is_ok());
        assert!(check(&"k".repeat(MAX_KEY_LEN)).is_ok());
    }

    #[test]
    fn others_are_refused() {
        for key in [
            String::new(),
            "k".repeat(MAX_KEY_LEN + 1),
            "a b".into(),
            "a\tb".into(),
            "a\r\nb".into(),
            "a\0b".into(),
            "a\x7fb".into(),
        ] {
            let e = check(&key).expect_err(&key);
            assert!(matches!(e, StoreError::InvalidKey { .. }), "{e:?}");
        }
    }
}
