//! [`SessionConfig`]: the `kvsession` configuration table.

use rocket::serde::{Deserialize, Serialize};

use crate::cookie::{CookieConfig, CookieSettings, SameSitePolicy};
use crate::error::Error;
use crate::id::{MAX_KEY_BITS, MIN_KEY_BITS};

/// Session configuration, read from the `kvsession` table of Rocket's
/// figment (`[default.kvsession]` in `Rocket.toml`, or
/// `ROCKET_KVSESSION='{lifetime=3600}'`). A missing table means defaults;
/// unknown keys are refused. [`KvSession::config`](crate::KvSession::config)
/// overrides the table.
///
/// All durations are whole seconds.
///
/// Its `Debug` output never shows the keys of `secret_key_fallbacks`
/// ([`Secret`] redacts them).
///
/// New settings may be added in any minor release: build a configuration
/// from [`SessionConfig::default`] with struct update syntax
/// (`SessionConfig { lifetime: 3600, ..SessionConfig::default() }`) or read it
/// from the figment, never as a literal of every field.
///
/// The values are checked by [`validate`](Self::validate), group by group
/// (the cookie, lifetimes, keys, saves, secrets); the fairing calls it at
/// ignite and refuses launch on any error, and turns the cookie settings
/// into the typed attributes it uses from then on.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(crate = "rocket::serde", default, deny_unknown_fields)]
pub struct SessionConfig {
    /// The session cookie's name.
    ///
    /// _Default:_ `"session"`.
    pub cookie_name: String,
    /// The session cookie's `Path`.
    ///
    /// _Default:_ `"/"`.
    pub cookie_path: String,
    /// The session cookie's `Domain`; none means host-only.
    ///
    /// _Default:_ none.
    pub cookie_domain: Option<String>,
    /// Whether the session cookie is `Secure` (sent over HTTPS only). An
    /// explicit `true` or `false` wins. Unset, the cookie is `Secure` in
    /// every profile but Rocket's debug profile (so a development app on
    /// plain `http://127.0.0.1` works), and there it is `Secure` whenever
    /// Rocket serves TLS. Cookies named `__Host-…` or `__Secure-…`, and
    /// `cookie_same_site = "none"`, are always `Secure`.
    ///
    /// _Default:_ unset.
    pub cookie_secure: Option<bool>,
    /// Whether the session cookie is `HttpOnly` (hidden from scripts).
    ///
    /// _Default:_ `true`.
    pub cookie_http_only: bool,
    /// The session cookie's `SameSite`: `"strict"`, `"lax"` or `"none"`.
    ///
    /// _Default:_ `"lax"`.
    pub cookie_same_site: SameSitePolicy,
    /// Absolute lifetime of a session, from its creation (Flask's
    /// `PERMANENT_SESSION_LIFETIME`). Also the `Max-Age` of permanent cookies.
    ///
    /// _Default:_ `2678400` (31 days).
    pub lifetime: u64,
    /// Whether new sessions are permanent (cookie with `Max-Age`) rather than
    /// browser-session cookies.
    ///
    /// _Default:_ `true`.
    pub permanent: bool,
    /// Random bits in a session id: a multiple of 8 from 64 to 256.
    ///
    /// _Default:_ `64`.
    pub key_bits: u32,
    /// Prefix of every store key, so several apps can share one store. End it
    /// with a separator (e.g. `"shop:"`) so no prefix is the start of another.
    /// The sweep only ever deletes keys that start with it and end in an id
    /// of exactly this configuration's layout. An empty prefix, or one that
    /// ends in a hex digit (`0-9`, `a-f`), refuses launch: another app's keys
    /// could parse as this app's sessions.
    ///
    /// _Default:_ `"session:"`.
    pub key_prefix: String,
    /// Whether TTL-capable stores are handed each session's expiry.
    ///
    /// _Default:_ `true`.
    pub set_ttl: bool,
    /// Seconds between scheduled [`cleanup_sessions`](crate::cleanup_sessions)
    /// sweeps; none disables them.
    ///
    /// _Default:_ none.
    pub cleanup_interval: Option<u64>,
    /// Whether a response with a 5xx status still persists the request's
    /// session changes.
    ///
    /// _Default:_ `false`.
    pub save_on_error: bool,
    /// Idle timeout: a session also ends this many seconds after its last
    /// request, whichever comes first. None means only `lifetime` applies.
    ///
    /// _Default:_ none.
    pub idle_timeout: Option<u64>,
    /// With `idle_timeout`, a request that changes nothing refreshes the
    /// session's activity at most once per this many seconds.
    ///
    /// _Default:_ `60`.
    pub touch_after: u64,
    /// How many times a save is tried when concurrent requests on the same
    /// session keep changing it (each retry merges this request's changes
    /// into the newest record).
    ///
    /// _Default:_ `10`.
    pub save_attempts: u32,
    /// The most seconds one save spends on such retries (backoff sleeps
    /// included): past it, the save fails with a 503 rather than hold the
    /// response longer.
    ///
    /// _Default:_ `5`.
    pub save_timeout: u64,
    /// Earlier values of Rocket's `secret_key`, as strings in the encodings
    /// `secret_key` accepts (44 or 88 characters of base64, or 64 hex
    /// digits). The session cookie is sealed with the current `secret_key`;
    /// a cookie sealed with one of these still opens, its session is kept,
    /// and the response seals it again with the current key.
    ///
    /// To rotate the key: put the old `secret_key` here, set a new
    /// `secret_key`, and remove the old one from this list once `lifetime`
    /// has passed (by then every session still alive was re-sealed, and the
    /// sessions still sealed with the old key have expired). Removing a key
    /// earlier logs out exactly the sessions still sealed with it. A key
    /// equal to the current one is ignored.
    ///
    /// _Default:_ `[]`.
    pub secret_key_fallbacks: Vec<Secret>,
    /// A request header that may carry the session as a token instead of
    /// the cookie (API clients), e.g. `x-session-token`. With it set, a
    /// request may also send `Authorization: Bearer <token>`. A request
    /// that carries a token never reads or sets the session cookie; when
    /// its session gets a new id, the response carries the new token in
    /// this header. See [`Session::token`](crate::Session::token).
    ///
    /// _Default:_ none (sessions travel only in the cookie).
    pub token_header: Option<String>,
    /// Origins (`scheme://host[:port]`) that [`CsrfChecked`](crate::CsrfChecked)
    /// and [`CsrfForm`](crate::CsrfForm) accept in a request's `Origin`
    /// besides the request's own `Host`: the public origin of an app behind
    /// a proxy that rewrites `Host`, e.g. `["https://example.com"]`.
    ///
    /// _Default:_ `[]`.
    pub csrf_trusted_origins: Vec<String>,
}

/// A secret configuration value (a key of `secret_key_fallbacks`): read and
/// written as a plain string, but its `Debug` output is redacted, so a
/// logged [`SessionConfig`] never shows it.
///
/// ```
/// use rocket_kvsession::Secret;
///
/// let key = Secret::from("hPRYyVRiMyxpw5sBB1XeCMN1kFsDCqKvBi2QJxBVHQk=");
/// assert_eq!(format!("{key:?}"), "Secret(redacted)");
/// assert!(key.expose().starts_with("hPRY"));
/// ```
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(crate = "rocket::serde", transparent)]
pub struct Secret(String);

impl Secret {
    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret(value.to_owned())
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(redacted)")
    }
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            cookie_name: "session".into(),
            cookie_path: "/".into(),
            cookie_domain: None,
            cookie_secure: None,
            cookie_http_only: true,
            cookie_same_site: SameSitePolicy::Lax,
            lifetime: 31 * 24 * 3600,
            permanent: true,
            key_bits: 64,
            key_prefix: DEFAULT_KEY_PREFIX.into(),
            set_ttl: true,
            cleanup_interval: None,
            save_on_error: false,
            idle_timeout: None,
            touch_after: 60,
            save_attempts: 10,
            save_timeout: 5,
            secret_key_fallbacks: Vec::new(),
            token_header: None,
            csrf_trusted_origins: Vec::new(),
        }
    }
}

/// The default `key_prefix`.
pub(crate) const DEFAULT_KEY_PREFIX: &str = "session:";

/// The longest lifetime accepted: 100 years. Anything longer is a typo.
const MAX_LIFETIME: u64 = 100 * 365 * 24 * 3600;

impl SessionConfig {
    /// Checks every value; the error names the offending key.
    pub fn validate(&self) -> Result<(), Error> {
        // The cookie's rules have one owner: the settings built from them.
        CookieSettings::parse(&self.cookie(), false)?;
        self.validate_lifetimes()?;
        self.validate_keys()?;
        self.validate_saves()?;
        self.validate_token_header()?;
        self.validate_origins()?;
        self.validate_secrets()
    }

    /// `csrf_trusted_origins`: each a `scheme://host[:port]`.
    fn validate_origins(&self) -> Result<(), Error> {
        for (i, origin) in self.csrf_trusted_origins.iter().enumerate() {
            if normalize_origin(origin).is_none() {
                return Err(Error::config(
                    "csrf_trusted_origins",
                    format!("[{i}] {origin:?} is not an origin like \"https://example.com\""),
                ));
            }
        }
        Ok(())
    }

    /// `token_header`: a header name a client can send, not one HTTP or
    /// the cookie already gives a meaning.
    fn validate_token_header(&self) -> Result<(), Error> {
        let Some(name) = &self.token_header else {
            return Ok(());
        };
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid {
            return Err(Error::config(
                "token_header",
                "must be a header name of 1 to 64 letters, digits, '-' or '_'",
            ));
        }
        const TAKEN: [&str; 7] = [
            "authorization",
            "cookie",
            "set-cookie",
            "host",
            "origin",
            "vary",
            "cache-control",
        ];
        if TAKEN.iter().any(|taken| name.eq_ignore_ascii_case(taken)) {
            return Err(Error::config(
                "token_header",
                format!("must not be a standard header, got {name:?}"),
            ));
        }
        Ok(())
    }

    /// The cookie's part of the configuration.
    pub(crate) fn cookie(&self) -> CookieConfig<'_> {
        CookieConfig {
            name: &self.cookie_name,
            path: &self.cookie_path,
            domain: self.cookie_domain.as_deref(),
            secure: self.cookie_secure,
            http_only: self.cookie_http_only,
            same_site: self.cookie_same_site,
        }
    }

    /// `lifetime`, `idle_timeout`, `touch_after`, `cleanup_interval`.
    fn validate_lifetimes(&self) -> Result<(), Error> {
        if self.lifetime == 0 || self.lifetime > MAX_LIFETIME {
            return Err(Error::config(
                "lifetime",
                format!(
                    "must be from 1 to {MAX_LIFETIME} seconds, got {}",
                    self.lifetime
                ),
            ));
        }
        if self.cleanup_interval == Some(0) {
            return Err(Error::config(
                "cleanup_interval",
                "must be at least 1 second",
            ));
        }
        if let Some(idle) = self.idle_timeout {
            if idle == 0 {
                return Err(Error::config("idle_timeout", "must be at least 1 second"));
            }
            if self.touch_after >= idle {
                return Err(Error::config(
                    "touch_after",
                    format!(
                        "must be shorter than idle_timeout ({idle}), got {}",
                        self.touch_after
                    ),
                ));
            }
        }
        Ok(())
    }

    /// `key_bits`, `key_prefix`.
    fn validate_keys(&self) -> Result<(), Error> {
        if !(MIN_KEY_BITS..=MAX_KEY_BITS).contains(&self.key_bits)
            || !self.key_bits.is_multiple_of(8)
        {
            return Err(Error::config(
                "key_bits",
                format!(
                    "must be a multiple of 8 from {MIN_KEY_BITS} to {MAX_KEY_BITS}, got {}",
                    self.key_bits
                ),
            ));
        }
        if self.key_prefix.len() > 256 || self.key_prefix.chars().any(char::is_control) {
            return Err(Error::config(
                "key_prefix",
                "must be at most 256 bytes with no control characters",
            ));
        }
        if let Some(problem) = prefix_problem(&self.key_prefix) {
            return Err(Error::config(
                "key_prefix",
                format!("{problem}, got {:?}", self.key_prefix),
            ));
        }
        Ok(())
    }

    /// `save_attempts`, `save_timeout`.
    fn validate_saves(&self) -> Result<(), Error> {
        if self.save_attempts == 0 || self.save_attempts > 1000 {
            return Err(Error::config("save_attempts", "must be from 1 to 1000"));
        }
        if self.save_timeout == 0 || self.save_timeout > 600 {
            return Err(Error::config(
                "save_timeout",
                "must be from 1 to 600 seconds",
            ));
        }
        Ok(())
    }

    /// `secret_key_fallbacks`: each in an encoding `secret_key` accepts.
    fn validate_secrets(&self) -> Result<(), Error> {
        for (i, key) in self.secret_key_fallbacks.iter().enumerate() {
            crate::seal::parse_fallback(key.expose()).map_err(|problem| {
                Error::config("secret_key_fallbacks", format!("[{i}] {problem}"))
            })?;
        }
        Ok(())
    }
}

/// Why `prefix` cannot be a `key_prefix`, if it cannot.
///
/// A key is ours when it is the prefix followed by an id of our layout
/// (lower-case hex, `_`, lower-case hex). Another app sharing the store
/// could write keys that parse as ours only under a prefix that is ours
/// followed by hex digits, and so ends in one (`"app1"` holds keys of
/// `"app"` with a random part one digit longer; the empty prefix holds
/// every bare id, Flask-KVSession's among them). So a prefix must be
/// non-empty and end in something an id cannot start with: then no two
/// valid prefixes ever see each other's keys as their own.
pub(crate) fn prefix_problem(prefix: &str) -> Option<&'static str> {
    match prefix.chars().last() {
        None => Some(
            "must not be empty: every bare session id in the store, another app's too, \
             would be taken for one of this app's (use e.g. \"session:\")",
        ),
        Some(last) if last.is_ascii_hexdigit() => Some(
            "must not end in a hex digit (0-9, a-f): another app's keys could then parse \
             as this app's sessions (end it with a separator such as ':')",
        ),
        Some(_) => None,
    }
}

/// `scheme://host[:port]` of an origin, lower-cased, without a trailing
/// slash; `None` if it is not one.
pub(crate) fn normalize_origin(origin: &str) -> Option<String> {
    let origin = origin.trim().trim_end_matches('/');
    let (scheme, authority) = origin.split_once("://")?;
    let valid_scheme = !scheme.is_empty()
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
    let valid_authority = !authority.is_empty()
        && authority
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b));
    (valid_scheme && valid_authority).then(|| origin.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        SessionConfig::default().validate().unwrap();
    }

    #[test]
    fn host_and_secure_prefixed_cookies_with_the_right_attributes_are_valid() {
        for name in ["__Host-session", "__Secure-session"] {
            for secure in [None, Some(true)] {
                SessionConfig {
                    cookie_name: name.into(),
                    cookie_secure: secure,
                    ..Default::default()
                }
                .validate()
                .unwrap();
            }
        }
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases: Vec<(&str, SessionConfig)> = vec![
            (
                "key_bits",
                SessionConfig {
                    key_bits: 12,
                    ..Default::default()
                },
            ),
            (
                "key_bits",
                SessionConfig {
                    key_bits: 72 + 1,
                    ..Default::default()
                },
            ),
            (
                "key_bits",
                SessionConfig {
                    key_bits: 264,
                    ..Default::default()
                },
            ),
            (
                "lifetime",
                SessionConfig {
                    lifetime: 0,
                    ..Default::default()
                },
            ),
            (
                "cookie_name",
                SessionConfig {
                    cookie_name: "a b".into(),
                    ..Default::default()
                },
            ),
            (
                "cookie_name",
                SessionConfig {
                    cookie_name: String::new(),
                    ..Default::default()
                },
            ),
            (
                "cookie_path",
                SessionConfig {
                    cookie_path: "app".into(),
                    ..Default::default()
                },
            ),
            (
                "cookie_same_site",
                SessionConfig {
                    cookie_same_site: SameSitePolicy::None,
                    cookie_secure: Some(false),
                    ..Default::default()
                },
            ),
            (
                "cookie_secure",
                SessionConfig {
                    cookie_name: "__Host-session".into(),
                    cookie_secure: Some(false),
                    ..Default::default()
                },
            ),
            (
                "cookie_path",
                SessionConfig {
                    cookie_name: "__Host-session".into(),
                    cookie_path: "/app".into(),
                    ..Default::default()
                },
            ),
            (
                "cookie_domain",
                SessionConfig {
                    cookie_name: "__Host-session".into(),
                    cookie_domain: Some("example.com".into()),
                    ..Default::default()
                },
            ),
            (
                "cookie_secure",
                SessionConfig {
                    cookie_name: "__Secure-session".into(),
                    cookie_secure: Some(false),
                    ..Default::default()
                },
            ),
            (
                "save_timeout",
                SessionConfig {
                    save_timeout: 0,
                    ..Default::default()
                },
            ),
            (
                "cleanup_interval",
                SessionConfig {
                    cleanup_interval: Some(0),
                    ..Default::default()
                },
            ),
            (
                "idle_timeout",
                SessionConfig {
                    idle_timeout: Some(0),
                    ..Default::default()
                },
            ),
            (
                "touch_after",
                SessionConfig {
                    idle_timeout: Some(30),
                    touch_after: 30,
                    ..Default::default()
                },
            ),
            (
                "save_attempts",
                SessionConfig {
                    save_attempts: 0,
                    ..Default::default()
                },
            ),
            (
                "secret_key_fallbacks",
                SessionConfig {
                    secret_key_fallbacks: vec!["tooshort".into()],
                    ..Default::default()
                },
            ),
        ];
        for (key, config) in cases {
            let err = config.validate().unwrap_err();
            assert!(
                matches!(err, Error::Config { key: k, .. } if k == key),
                "{key}: {err}"
            );
            assert!(err.to_string().contains(key), "{err}");
        }
    }

    /// A 512-bit key, base64.
    const KEY_512: &str =
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+Pw==";
    /// A 256-bit key, hex.
    const KEY_256_HEX: &str = "404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f";

    #[test]
    fn secret_key_fallbacks_are_read_from_the_table_and_checked() {
        use rocket::figment::Figment;

        let config: SessionConfig = Figment::new()
            .merge((
                "kvsession",
                rocket::figment::value::Value::serialize(rocket::figment::util::map! {
                    "secret_key_fallbacks" => vec![KEY_512, KEY_256_HEX],
                })
                .unwrap(),
            ))
            .extract_inner("kvsession")
            .unwrap();
        assert_eq!(
            config.secret_key_fallbacks,
            [Secret::from(KEY_512), Secret::from(KEY_256_HEX)]
        );
        config.validate().unwrap();
        assert!(SessionConfig::default().secret_key_fallbacks.is_empty());

        let secret = "c2VjcmV0IGJ1dCBub3QgYSBrZXk=";
        let err = SessionConfig {
            secret_key_fallbacks: vec![KEY_512.into(), secret.into()],
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        let shown = err.to_string();
        assert!(
            shown.contains("secret_key_fallbacks") && shown.contains("[1]"),
            "{shown}"
        );
        assert!(!shown.contains(secret), "{shown}");

        let zero = SessionConfig {
            secret_key_fallbacks: vec!["0".repeat(64).into()],
            ..Default::default()
        };
        assert!(zero.validate().is_err());
    }

    #[test]
    fn debug_output_redacts_secret_key_fallbacks() {
        let config = SessionConfig {
            secret_key_fallbacks: vec![KEY_512.into(), KEY_256_HEX.into()],
            ..Default::default()
        };
        let shown = format!("{config:?}");
        assert!(
            shown.contains("secret_key_fallbacks: [Secret(redacted), Secret(redacted)]"),
            "{shown}"
        );
        assert!(!shown.contains(&KEY_512[..16]) && !shown.contains(&KEY_256_HEX[..16]));
        assert!(shown.contains("cookie_name: \"session\""), "{shown}");
        assert!(shown.contains("save_timeout: 5"), "{shown}");
    }
}
