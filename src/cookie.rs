//! The session cookie: building it, removing it, and taking it back out of
//! a response whose session was not stored.

use std::time::Duration;

use rocket::http::{Cookie, SameSite};
use rocket::Response;

use rocket::serde::{Deserialize, Serialize};

use crate::error::Error;

/// The `SameSite` attribute of the session cookie.
///
/// No setting stops a cross-site form from *replacing* the cookie: a
/// cross-site POST arrives without it (with `Lax` or `Strict`), the app
/// starts a fresh session, and its `Set-Cookie` replaces the browser's
/// (a logout, or at a login form a login as the attacker). Protect unsafe
/// routes with [`CsrfChecked`](crate::CsrfChecked) or
/// [`CsrfForm`](crate::CsrfForm).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(crate = "rocket::serde", rename_all = "lowercase")]
pub enum SameSitePolicy {
    /// `SameSite=Strict`: the cookie is never sent on cross-site requests.
    Strict,
    /// `SameSite=Lax`: sent on top-level cross-site navigations with a safe
    /// method (GET links), not on cross-site POSTs, frames or scripts (the
    /// default). It does not stop a cross-site POST from replacing the
    /// cookie (see above).
    #[default]
    Lax,
    /// `SameSite=None`: sent on every request; requires `cookie_secure`.
    None,
}

impl From<SameSitePolicy> for SameSite {
    fn from(policy: SameSitePolicy) -> Self {
        match policy {
            SameSitePolicy::Strict => SameSite::Strict,
            SameSitePolicy::Lax => SameSite::Lax,
            SameSitePolicy::None => SameSite::None,
        }
    }
}

/// The cookie's part of the configuration, as [`CookieSettings::parse`]
/// reads it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CookieConfig<'a> {
    pub(crate) name: &'a str,
    pub(crate) path: &'a str,
    pub(crate) domain: Option<&'a str>,
    pub(crate) secure: Option<bool>,
    pub(crate) http_only: bool,
    pub(crate) same_site: SameSitePolicy,
}

/// The session cookie's attributes, resolved once at ignite.
#[derive(Debug, Clone)]
pub(crate) struct CookieSettings {
    pub(crate) name: String,
    path: String,
    domain: Option<String>,
    /// `None` leaves the attribute to Rocket, which sets `Secure` when it
    /// serves TLS.
    secure: Option<bool>,
    http_only: bool,
    same_site: SameSite,
}

/// The cookie name prefixes browsers hold to extra rules (RFC 6265bis,
/// matched case-insensitively).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NamePrefix {
    /// `__Host-`: `Secure`, `Path=/`, no `Domain`.
    Host,
    /// `__Secure-`: `Secure`.
    Secure,
}

impl NamePrefix {
    fn of(name: &str) -> Option<Self> {
        let starts = |prefix: &str| {
            name.get(..prefix.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
        };
        if starts("__Host-") {
            Some(NamePrefix::Host)
        } else if starts("__Secure-") {
            Some(NamePrefix::Secure)
        } else {
            None
        }
    }
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

impl CookieSettings {
    /// The attributes `config` asks for, in a Rocket instance whose profile
    /// is (`debug`) or is not Rocket's debug profile; the error names the
    /// configuration key that breaks a cookie rule. The rules, all here:
    /// the name is an HTTP token; the path starts with `/` and the domain
    /// is a host, neither with `;`; `__Host-` cookies (any case) are
    /// `Secure` with `Path=/` and no domain, `__Secure-` cookies are
    /// `Secure`, and `SameSite=None` needs `Secure` (browsers drop such
    /// cookies otherwise). An unset `cookie_secure` means `Secure` outside
    /// the debug profile; in it, the attribute is left to Rocket (`Secure`
    /// under TLS), except for the cookies above, which are always `Secure`.
    pub(crate) fn parse(config: &CookieConfig<'_>, debug: bool) -> Result<Self, Error> {
        if !is_token(config.name) {
            return Err(Error::config(
                "cookie_name",
                format!("{:?} is not a valid cookie name", config.name),
            ));
        }
        if !config.path.starts_with('/')
            || config
                .path
                .bytes()
                .any(|b| b == b';' || b.is_ascii_control())
        {
            return Err(Error::config(
                "cookie_path",
                format!("{:?} must start with `/` and hold no `;`", config.path),
            ));
        }
        if let Some(domain) = config.domain {
            if domain.is_empty() || domain.bytes().any(|b| b == b';' || b <= b' ') {
                return Err(Error::config(
                    "cookie_domain",
                    format!("{domain:?} is not a domain"),
                ));
            }
        }
        let prefix = NamePrefix::of(config.name);
        let explicitly_insecure = config.secure == Some(false);
        if config.same_site == SameSitePolicy::None && explicitly_insecure {
            return Err(Error::config(
                "cookie_same_site",
                "\"none\" requires a Secure cookie, but `cookie_secure = false` \
                 (browsers drop such cookies)",
            ));
        }
        match prefix {
            Some(NamePrefix::Secure) if explicitly_insecure => {
                return Err(Error::config(
                    "cookie_secure",
                    "a `__Secure-` cookie must be Secure: remove `cookie_secure = false`",
                ));
            }
            Some(NamePrefix::Host) => {
                if explicitly_insecure {
                    return Err(Error::config(
                        "cookie_secure",
                        "a `__Host-` cookie must be Secure: remove `cookie_secure = false`",
                    ));
                }
                if config.path != "/" {
                    return Err(Error::config(
                        "cookie_path",
                        "a `__Host-` cookie must have `cookie_path = \"/\"`",
                    ));
                }
                if config.domain.is_some() {
                    return Err(Error::config(
                        "cookie_domain",
                        "a `__Host-` cookie must not have a domain",
                    ));
                }
            }
            _ => {}
        }
        let must_be_secure = prefix.is_some() || config.same_site == SameSitePolicy::None;
        let secure = match config.secure {
            Some(explicit) => Some(explicit),
            None if must_be_secure || !debug => Some(true),
            None => None,
        };
        Ok(CookieSettings {
            name: config.name.to_owned(),
            path: config.path.to_owned(),
            domain: config.domain.map(str::to_owned),
            secure,
            http_only: config.http_only,
            same_site: config.same_site.into(),
        })
    }

    /// Whether the cookie is certainly `Secure` whatever Rocket serves.
    pub(crate) fn always_secure(&self) -> bool {
        self.secure == Some(true)
    }
}

/// The cookie that carries a session id as `sealed` (the id sealed by the
/// engine's cipher), with the configured attributes. A permanent session's
/// cookie gets `Max-Age` (and `Expires`) of `max_age`, the rest of its
/// lifetime; `None` makes a browser-session cookie.
pub(crate) fn session_cookie(
    settings: &CookieSettings,
    max_age: Option<Duration>,
    sealed: String,
) -> Cookie<'static> {
    let mut cookie = base(settings, sealed);
    match max_age {
        Some(remaining) => {
            // Rounded up, and at least a second: a live session's cookie
            // never gets `Max-Age=0`, which browsers drop at once.
            let seconds = remaining.as_secs() + u64::from(remaining.subsec_nanos() > 0);
            let remaining =
                rocket::time::Duration::seconds(i64::try_from(seconds.max(1)).unwrap_or(i64::MAX));
            cookie.set_max_age(remaining);
            cookie.set_expires(rocket::time::OffsetDateTime::now_utc().saturating_add(remaining));
        }
        // A browser-session cookie.
        None => cookie.set_expires(None),
    }
    cookie
}

/// A cookie that, given to `CookieJar::remove`, removes the session cookie.
/// It carries the session cookie's attributes (`Path`, `Domain`, `Secure`,
/// `SameSite`), so browsers also delete `__Host-` and `__Secure-` cookies.
pub(crate) fn removal_for_jar(settings: &CookieSettings) -> Cookie<'static> {
    base(settings, String::new())
}

/// A `Set-Cookie` header value that makes the browser delete the session
/// cookie, for responses whose cookies were already sealed.
pub(crate) fn removal_header(settings: &CookieSettings) -> Cookie<'static> {
    let mut cookie = base(settings, String::new());
    cookie.make_removal();
    cookie
}

fn base(settings: &CookieSettings, value: String) -> Cookie<'static> {
    let mut cookie = Cookie::build((settings.name.clone(), value))
        .path(settings.path.clone())
        .http_only(settings.http_only)
        .same_site(settings.same_site)
        .build();
    if let Some(secure) = settings.secure {
        cookie.set_secure(secure);
    }
    if let Some(domain) = &settings.domain {
        cookie.set_domain(domain.clone());
    }
    cookie
}

/// The name of the probe cookie (see [`probe`]).
pub(crate) const PROBE_NAME: &str = "kvsession-probe";

/// A cookie put into the jar on a session's first change: Rocket drops the
/// jar's cookies when a catcher answers, so a response without it came
/// from a catcher. The response fairing always strips it.
pub(crate) fn probe() -> Cookie<'static> {
    Cookie::new(PROBE_NAME, "1")
}

/// What the session's response work needs to know of a response's
/// headers, read in one pass over them: a lookup by name hashes the name
/// (case-folded, byte by byte, with SipHash) each time, and the fairing
/// would otherwise ask for `Set-Cookie` up to four times and for `Vary`
/// twice. [`drop_set_cookies`] and [`vary_by_cookie`] keep it current.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ResponseHeaders {
    /// A `Set-Cookie` of the probe cookie.
    pub(crate) probe: bool,
    /// A `Set-Cookie` of the session cookie.
    pub(crate) session: bool,
    /// A `Set-Cookie` of any other cookie.
    others: bool,
    /// `Vary` names `Cookie` already, or is `*`.
    varies_by_cookie: bool,
    /// The response has a `Cache-Control` header.
    pub(crate) cache_control: bool,
}

impl ResponseHeaders {
    /// The headers of `res`, for the session cookie `name`.
    pub(crate) fn of(res: &Response<'_>, name: &str) -> Self {
        let mut seen = ResponseHeaders::default();
        for header in res.headers().iter() {
            let value = header.value();
            if header.name() == "Set-Cookie" {
                if sets(value, name) {
                    seen.session = true;
                } else if sets(value, PROBE_NAME) {
                    seen.probe = true;
                } else {
                    seen.others = true;
                }
            } else if header.name() == "Vary" {
                seen.varies_by_cookie |= lists(value, "Cookie");
            } else if header.name() == "Cache-Control" {
                seen.cache_control = true;
            }
        }
        seen
    }
}

/// Whether the `Set-Cookie` header value `value` sets cookie `name`.
fn sets(value: &str, name: &str) -> bool {
    value
        .trim_start()
        .strip_prefix(name)
        .is_some_and(|rest| rest.trim_start().starts_with('='))
}

/// Whether the `Vary` header value `value` lists `name` (or is `*`).
fn lists(value: &str, name: &str) -> bool {
    value
        .split(',')
        .any(|v| v.trim() == "*" || v.trim().eq_ignore_ascii_case(name))
}

/// Removes the `Set-Cookie` headers of the probe (if `probe`) and of the
/// session cookie `name` (if `session`) from a response, keeping every
/// other header and cookie. `seen` says which of them the response has
/// (nothing is looked up when it has neither), and is kept current.
pub(crate) fn drop_set_cookies(
    res: &mut Response<'_>,
    seen: &mut ResponseHeaders,
    name: &str,
    probe: bool,
    session: bool,
) {
    let probe = probe && seen.probe;
    let session = session && seen.session;
    if !probe && !session {
        return;
    }
    let keeps_some = seen.others || (seen.probe && !probe) || (seen.session && !session);
    let keep: Vec<String> = if keeps_some {
        res.headers()
            .get("Set-Cookie")
            .filter(|value| {
                let dropped = (probe && sets(value, PROBE_NAME)) || (session && sets(value, name));
                !dropped
            })
            .map(str::to_owned)
            .collect()
    } else {
        Vec::new()
    };
    res.remove_header("Set-Cookie");
    for value in keep {
        res.adjoin_raw_header("Set-Cookie", value);
    }
    seen.probe &= !probe;
    seen.session &= !session;
}

/// Adds `Cookie` to the response's `Vary` unless `seen` says it is there
/// already (or `Vary: *`).
pub(crate) fn vary_by_cookie(res: &mut Response<'_>, seen: &mut ResponseHeaders) {
    if !seen.varies_by_cookie {
        res.adjoin_raw_header("Vary", "Cookie");
        seen.varies_by_cookie = true;
    }
}

/// Adds `value` to the response's `Vary` unless it is there already (or
/// `Vary: *`).
pub(crate) fn vary(res: &mut Response<'_>, value: &str) {
    let present = res.headers().get("Vary").any(|header| lists(header, value));
    if !present {
        res.adjoin_raw_header("Vary", value.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SessionConfig;

    fn settings(config: &SessionConfig) -> CookieSettings {
        CookieSettings::parse(&config.cookie(), false).unwrap()
    }

    #[test]
    fn permanent_cookies_carry_their_max_age() {
        let config = SessionConfig::default();
        let max_age = Some(Duration::from_secs(3599));
        let cookie = session_cookie(&settings(&config), max_age, "sealed".into());
        assert_eq!(cookie.max_age().expect("Max-Age").whole_seconds(), 3599);
        assert!(cookie.expires().is_some_and(|e| e.datetime().is_some()));
        assert_eq!(cookie.http_only(), Some(true));
        assert_eq!(cookie.same_site(), Some(SameSite::Lax));
        assert_eq!(cookie.path(), Some("/"));
    }

    #[test]
    fn browser_session_cookies_have_no_expiry() {
        let cookie = session_cookie(&settings(&SessionConfig::default()), None, "sealed".into());
        assert_eq!(cookie.max_age(), None);
        assert!(cookie.expires().is_some_and(|e| e.datetime().is_none()));
    }

    #[test]
    fn the_removal_header_names_the_same_path_and_domain() {
        let config = SessionConfig {
            cookie_path: "/app".into(),
            cookie_domain: Some("example.com".into()),
            ..SessionConfig::default()
        };
        let removal = removal_header(&settings(&config));
        assert_eq!(removal.path(), Some("/app"));
        assert_eq!(removal.domain(), Some("example.com"));
        assert_eq!(removal.secure(), Some(true));
        assert_eq!(removal.same_site(), Some(SameSite::Lax));
        assert_eq!(removal.value(), "");
        assert_eq!(removal.max_age(), Some(rocket::time::Duration::ZERO));
    }

    #[test]
    fn secure_is_explicit_outside_debug_and_left_to_rocket_in_debug() {
        let unset = SessionConfig::default();
        assert_eq!(
            CookieSettings::parse(&unset.cookie(), false)
                .unwrap()
                .secure,
            Some(true)
        );
        assert_eq!(
            CookieSettings::parse(&unset.cookie(), true).unwrap().secure,
            None
        );
        for debug in [false, true] {
            let off = SessionConfig {
                cookie_secure: Some(false),
                ..SessionConfig::default()
            };
            assert_eq!(
                CookieSettings::parse(&off.cookie(), debug).unwrap().secure,
                Some(false)
            );
            let host = SessionConfig {
                cookie_name: "__Host-s".into(),
                ..SessionConfig::default()
            };
            assert_eq!(
                CookieSettings::parse(&host.cookie(), debug).unwrap().secure,
                Some(true)
            );
            let none = SessionConfig {
                cookie_same_site: SameSitePolicy::None,
                ..SessionConfig::default()
            };
            assert_eq!(
                CookieSettings::parse(&none.cookie(), debug).unwrap().secure,
                Some(true)
            );
        }
        let cookie = session_cookie(
            &CookieSettings::parse(&unset.cookie(), true).unwrap(),
            Some(Duration::from_secs(60)),
            "sealed".into(),
        );
        assert_eq!(cookie.secure(), None, "Rocket decides (Secure under TLS)");
    }

    #[test]
    fn dropping_a_set_cookie_keeps_the_others() {
        let mut res = Response::new();
        res.adjoin_raw_header("Set-Cookie", "session=abc; Path=/");
        res.adjoin_raw_header("Set-Cookie", "sessionx=keep; Path=/");
        res.adjoin_raw_header("Set-Cookie", " other = 1");
        res.adjoin_raw_header("Set-Cookie", "kvsession-probe=1; Path=/");
        res.adjoin_raw_header("X-Other", "1");
        let mut seen = ResponseHeaders::of(&res, "session");
        assert!(seen.session && seen.probe && seen.others);
        drop_set_cookies(&mut res, &mut seen, "session", false, true);
        assert_eq!(seen, ResponseHeaders::of(&res, "session"));
        assert!(!seen.session && seen.probe);
        let left: Vec<_> = res.headers().get("Set-Cookie").collect();
        assert_eq!(
            left,
            [
                "sessionx=keep; Path=/",
                " other = 1",
                "kvsession-probe=1; Path=/"
            ]
        );
        drop_set_cookies(&mut res, &mut seen, "session", true, true);
        assert_eq!(seen, ResponseHeaders::of(&res, "session"));
        let left: Vec<_> = res.headers().get("Set-Cookie").collect();
        assert_eq!(left, ["sessionx=keep; Path=/", " other = 1"]);
        assert_eq!(res.headers().get_one("X-Other"), Some("1"));
    }

    #[test]
    fn dropping_the_only_set_cookie_removes_the_header() {
        let mut res = Response::new();
        res.adjoin_raw_header("set-cookie", "kvsession-probe=1; Path=/");
        let mut seen = ResponseHeaders::of(&res, "session");
        assert!(seen.probe && !seen.session);
        // Asked to drop what is not there: nothing changes.
        drop_set_cookies(&mut res, &mut seen, "session", false, true);
        assert_eq!(res.headers().get("Set-Cookie").count(), 1);
        drop_set_cookies(&mut res, &mut seen, "session", true, false);
        assert!(!res.headers().contains("Set-Cookie"));
        assert_eq!(seen, ResponseHeaders::default());
    }

    #[test]
    fn vary_and_cache_control_are_read_in_any_case() {
        let mut res = Response::new();
        res.adjoin_raw_header("vary", "Accept-Encoding, cookie");
        res.adjoin_raw_header("cache-control", "private");
        let mut seen = ResponseHeaders::of(&res, "session");
        assert!(seen.cache_control);
        vary_by_cookie(&mut res, &mut seen);
        assert_eq!(
            res.headers().get("Vary").count(),
            1,
            "Cookie is listed already"
        );

        let mut res = Response::new();
        res.adjoin_raw_header("Vary", "*");
        let mut seen = ResponseHeaders::of(&res, "session");
        vary_by_cookie(&mut res, &mut seen);
        assert_eq!(res.headers().get("Vary").collect::<Vec<_>>(), ["*"]);

        let mut res = Response::new();
        res.adjoin_raw_header("Vary", "Accept-Encoding");
        let mut seen = ResponseHeaders::of(&res, "session");
        assert!(!seen.cache_control);
        vary_by_cookie(&mut res, &mut seen);
        vary_by_cookie(&mut res, &mut seen);
        assert_eq!(
            res.headers().get("Vary").collect::<Vec<_>>(),
            ["Accept-Encoding", "Cookie"]
        );
    }

    #[test]
    fn prefixed_names_are_recognised_in_any_case() {
        for name in [
            "__Host-s",
            "__host-s",
            "__HOST-s",
            "__Secure-s",
            "__secure-s",
        ] {
            let config = SessionConfig {
                cookie_name: name.into(),
                ..SessionConfig::default()
            };
            let settings = CookieSettings::parse(&config.cookie(), true).unwrap();
            assert_eq!(
                settings.secure,
                Some(true),
                "{name} must be Secure even in debug"
            );
            let insecure = SessionConfig {
                cookie_secure: Some(false),
                ..config
            };
            let err = CookieSettings::parse(&insecure.cookie(), true).unwrap_err();
            assert!(
                matches!(
                    err,
                    Error::Config {
                        key: "cookie_secure",
                        ..
                    }
                ),
                "{name}: {err}"
            );
        }
        let host_with_path = SessionConfig {
            cookie_name: "__HoSt-s".into(),
            cookie_path: "/app".into(),
            ..SessionConfig::default()
        };
        let err = CookieSettings::parse(&host_with_path.cookie(), false).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Config {
                    key: "cookie_path",
                    ..
                }
            ),
            "{err}"
        );
        // Not a prefix: a name that merely contains it.
        let plain = SessionConfig {
            cookie_name: "x__Host-s".into(),
            cookie_path: "/app".into(),
            ..SessionConfig::default()
        };
        assert_eq!(
            CookieSettings::parse(&plain.cookie(), true).unwrap().secure,
            None
        );
    }
}
