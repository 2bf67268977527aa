//! The session cookie: building it, removing it, and taking it back out of
//! a response whose session was not stored.

use std::time::SystemTime;

use rocket::http::Cookie;
use rocket::Response;

use crate::config::SessionConfig;
use crate::state::CookieSpec;
use crate::time::seconds;

/// The cookie that carries `spec.id`, with the configured attributes.
/// Permanent sessions get `Max-Age` (and `Expires`) of their remaining
/// lifetime; others a browser-session cookie.
pub(crate) fn session_cookie(config: &SessionConfig, spec: &CookieSpec) -> Cookie<'static> {
    let mut cookie = base(config, spec.id.to_string());
    if spec.permanent {
        let remaining = spec
            .id
            .expires(seconds(config.lifetime))
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        let remaining = rocket::time::Duration::seconds(remaining.as_secs() as i64);
        cookie.set_max_age(remaining);
        cookie.set_expires(rocket::time::OffsetDateTime::now_utc() + remaining);
    } else {
        // A browser-session cookie. Setting the expiration explicitly to
        // "session" keeps Rocket from giving private cookies a week.
        cookie.set_expires(None);
    }
    cookie
}

/// A cookie that, given to `CookieJar::remove`, removes the session cookie.
pub(crate) fn removal_for_jar(config: &SessionConfig) -> Cookie<'static> {
    base(config, String::new())
}

/// A `Set-Cookie` header value that makes the browser delete the session
/// cookie, for responses whose cookies were already sealed.
pub(crate) fn removal_header(config: &SessionConfig) -> Cookie<'static> {
    let mut cookie = base(config, String::new());
    cookie.make_removal();
    cookie
}

fn base(config: &SessionConfig, value: String) -> Cookie<'static> {
    let mut cookie = Cookie::build((config.cookie_name.clone(), value))
        .path(config.cookie_path.clone())
        .secure(config.cookie_secure)
        .http_only(config.cookie_http_only)
        .same_site(config.cookie_same_site.into())
        .build();
    if let Some(domain) = &config.cookie_domain {
        cookie.set_domain(domain.clone());
    }
    cookie
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
    use rocket::http::SameSite;

    fn spec(permanent: bool) -> CookieSpec {
        CookieSpec {
            id: format!("{:016x}_{:x}", 1, crate::time::now_unix())
                .parse()
                .unwrap(),
            permanent,
        }
    }

    #[test]
    fn permanent_cookies_live_for_the_rest_of_the_lifetime() {
        let config = SessionConfig {
            lifetime: 3600,
            ..SessionConfig::default()
        };
        let cookie = session_cookie(&config, &spec(true));
        let max_age = cookie.max_age().expect("Max-Age").whole_seconds();
        assert!((3590..=3600).contains(&max_age), "{max_age}");
        assert_eq!(cookie.http_only(), Some(true));
        assert_eq!(cookie.same_site(), Some(SameSite::Lax));
        assert_eq!(cookie.path(), Some("/"));
    }

    #[test]
    fn browser_session_cookies_have_no_expiry() {
        let cookie = session_cookie(&SessionConfig::default(), &spec(false));
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
        let removal = removal_header(&config);
        assert_eq!(removal.path(), Some("/app"));
        assert_eq!(removal.domain(), Some("example.com"));
        assert_eq!(removal.value(), "");
        assert_eq!(removal.max_age(), Some(rocket::time::Duration::ZERO));
    }

    #[test]
    fn dropping_a_set_cookie_keeps_the_others() {
        let mut res = Response::new();
        res.adjoin_raw_header("Set-Cookie", "session=abc; Path=/");
        res.adjoin_raw_header("Set-Cookie", "sessionx=keep; Path=/");
        res.adjoin_raw_header("Set-Cookie", " other = 1");
        res.adjoin_raw_header("X-Other", "1");
        drop_set_cookie(&mut res, "session");
        let left: Vec<_> = res.headers().get("Set-Cookie").collect();
        assert_eq!(left, ["sessionx=keep; Path=/", " other = 1"]);
        assert_eq!(res.headers().get_one("X-Other"), Some("1"));
    }
}
