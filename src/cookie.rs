//! The session cookie: building it, removing it, and taking it back out of
//! a response whose session was not stored.

use std::time::Duration;

use rocket::http::{Cookie, SameSite};
use rocket::Response;

use crate::config::{SameSitePolicy, SessionConfig};

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

impl CookieSettings {
    /// The attributes `config` asks for, in a Rocket instance whose profile
    /// is (`debug`) or is not Rocket's debug profile. An unset
    /// `cookie_secure` means `Secure` outside the debug profile; in it, the
    /// attribute is left to Rocket (`Secure` under TLS). `__Host-` and
    /// `__Secure-` cookies and `SameSite=None` are always `Secure`.
    pub(crate) fn resolve(config: &SessionConfig, debug: bool) -> Self {
        let must_be_secure = config.cookie_name.starts_with("__Host-")
            || config.cookie_name.starts_with("__Secure-")
            || config.cookie_same_site == SameSitePolicy::None;
        let secure = match config.cookie_secure {
            Some(explicit) => Some(explicit),
            None if must_be_secure || !debug => Some(true),
            None => None,
        };
        CookieSettings {
            name: config.cookie_name.clone(),
            path: config.cookie_path.clone(),
            domain: config.cookie_domain.clone(),
            secure,
            http_only: config.cookie_http_only,
            same_site: config.cookie_same_site.into(),
        }
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
            let remaining = rocket::time::Duration::seconds(
                i64::try_from(remaining.as_secs()).unwrap_or(i64::MAX),
            );
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

/// Whether the response sets cookie `name`.
pub(crate) fn has_set_cookie(res: &Response<'_>, name: &str) -> bool {
    res.headers()
        .get("Set-Cookie")
        .any(|value| Cookie::parse(value).is_ok_and(|cookie| cookie.name() == name))
}

/// Removes the `Set-Cookie` headers for cookie `name` from a response,
/// keeping every other header and cookie.
pub(crate) fn drop_set_cookie(res: &mut Response<'_>, name: &str) {
    let keep: Vec<String> = res
        .headers()
        .get("Set-Cookie")
        .filter(|value| Cookie::parse(*value).map_or(true, |cookie| cookie.name() != name))
        .map(str::to_owned)
        .collect();
    res.remove_header("Set-Cookie");
    for value in keep {
        res.adjoin_raw_header("Set-Cookie", value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(config: &SessionConfig) -> CookieSettings {
        CookieSettings::resolve(config, false)
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
        assert_eq!(CookieSettings::resolve(&unset, false).secure, Some(true));
        assert_eq!(CookieSettings::resolve(&unset, true).secure, None);
        for debug in [false, true] {
            let off = SessionConfig {
                cookie_secure: Some(false),
                ..SessionConfig::default()
            };
            assert_eq!(CookieSettings::resolve(&off, debug).secure, Some(false));
            let host = SessionConfig {
                cookie_name: "__Host-s".into(),
                ..SessionConfig::default()
            };
            assert_eq!(CookieSettings::resolve(&host, debug).secure, Some(true));
            let none = SessionConfig {
                cookie_same_site: SameSitePolicy::None,
                ..SessionConfig::default()
            };
            assert_eq!(CookieSettings::resolve(&none, debug).secure, Some(true));
        }
        let cookie = session_cookie(
            &CookieSettings::resolve(&unset, true),
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
        res.adjoin_raw_header("X-Other", "1");
        assert!(has_set_cookie(&res, "session"));
        drop_set_cookie(&mut res, "session");
        assert!(!has_set_cookie(&res, "session"));
        assert!(has_set_cookie(&res, "sessionx"));
        let left: Vec<_> = res.headers().get("Set-Cookie").collect();
        assert_eq!(left, ["sessionx=keep; Path=/", " other = 1"]);
        assert_eq!(res.headers().get_one("X-Other"), Some("1"));
    }
}
