//! Sessions carried by API clients in a request header instead of the
//! cookie (`token_header`, or `Authorization: Bearer`).
//!
//! A token is the session id sealed like the cookie, with associated data
//! of its own ([`TOKEN_AAD`]): a cookie value opens nothing as a token, and
//! a token nothing as a cookie. A request that carries a token, even one
//! that does not open, never reads or sets the session cookie.

use rocket::Request;

/// The associated data tokens are sealed with. It holds a space, which no
/// cookie name can (cookie names are HTTP tokens), so it never equals the
/// cookie's.
pub(crate) const TOKEN_AAD: &str = "session token";

/// The token a request carries, if `token_header` is configured and the
/// request sends it, or sends `Authorization: Bearer <token>`; the header
/// wins over `Authorization`. A header that carries nothing usable (empty,
/// huge, not sealed) still makes a token request, so the cookie is neither
/// read nor set (the cipher refuses a value of the wrong length before
/// decoding it). An `Authorization` header of another scheme
/// (`Basic`, from a proxy's login) is not a token: the request is judged by
/// its cookie.
pub(crate) fn carried<'r>(req: &'r Request<'_>, header: Option<&str>) -> Option<&'r str> {
    let header = header?;
    match req.headers().get_one(header) {
        Some(value) => Some(value.trim()),
        None => bearer(req.headers().get_one("Authorization")?),
    }
}

/// The credentials of an `Authorization` value of the `Bearer` scheme
/// (case-insensitive, RFC 9110).
fn bearer(value: &str) -> Option<&str> {
    let value = value.trim_start();
    let scheme = value.get(..6)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let rest = &value[6..];
    if !rest.is_empty() && !rest.starts_with([' ', '\t']) {
        // `Bearerx ...`: another scheme.
        return None;
    }
    Some(rest.trim())
}

#[cfg(test)]
mod tests {
    use super::bearer;

    #[test]
    fn bearer_scheme_is_case_insensitive_and_exact() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("BEARER\tabc"), Some("abc"));
        assert_eq!(bearer("Bearer"), Some(""));
        assert_eq!(bearer("Bearerabc"), None);
        assert_eq!(bearer("Basic YWxhZGRpbjpvcGVu"), None);
        assert_eq!(bearer("Bear"), None);
        assert_eq!(bearer(""), None);
        assert_eq!(bearer("Beärer x"), None);
    }
}
