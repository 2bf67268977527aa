//! Session-bound CSRF protection: masked per-session tokens
//! ([`Session::csrf_token`](crate::Session::csrf_token)), the
//! [`CsrfChecked`] request guard and the [`CsrfForm`] data guard.
//!
//! An unsafe request (any method but GET, HEAD, OPTIONS and TRACE) passes
//! when it proves it comes from the app's own pages:
//!
//! 1. It is refused, whatever it carries, when the browser says it is
//!    cross-site (`Sec-Fetch-Site: cross-site`) or its `Origin` is not the
//!    request's own (`Host`) nor one of `csrf_trusted_origins`.
//! 2. Then it passes when its session came from a token header (a browser
//!    never sends one cross-site by itself), when it has no session yet (a
//!    login form: judged by the headers of 1 alone), or when it carries a
//!    valid token of its session (`X-CSRF-Token` header, or the
//!    `csrf_token` form field).
//!
//! A refused request gets `403 Forbidden` from Rocket's catcher: no detail,
//! no session created, no cookie set or removed.

use std::ops::{Deref, DerefMut};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rocket::data::{self, Data, FromData};
use rocket::form::{self, DataField, Errors, Form, FromForm, Options, ValueField};
use rocket::http::{Method, Status};
use rocket::request::{self, FromRequest, Request};
use subtle::ConstantTimeEq;

use crate::engine::{Carrier, Engine, SessionCell};
use crate::state::SessionState;

/// The reserved session key under which a session's CSRF secret is stored
/// (see [`Session::csrf_token`](crate::Session::csrf_token)).
pub const CSRF_KEY: &str = "_csrf";

/// The request header [`CsrfChecked`] reads the token from.
pub const CSRF_HEADER: &str = "X-CSRF-Token";

/// The form field [`CsrfForm`] reads the token from.
pub const CSRF_FIELD: &str = "csrf_token";

/// Bytes in a CSRF secret (as the cipher derives it).
pub(crate) const SECRET_LEN: usize = crate::seal::CSRF_SECRET_LEN;

/// Characters of a masked token: the base64url of a pad and the masked
/// secret.
const TOKEN_LEN: usize = (2 * SECRET_LEN * 4).div_ceil(3);

/// The secret as stored: a MessagePack `bin`.
pub(crate) fn encode_secret(secret: &[u8; SECRET_LEN]) -> Vec<u8> {
    let mut out = Vec::with_capacity(SECRET_LEN + 2);
    rmp::encode::write_bin(&mut out, secret).expect("writing to a Vec cannot fail");
    out
}

/// A stored secret; `None` for anything else (which `csrf_token` then
/// replaces).
pub(crate) fn decode_secret(bytes: &[u8]) -> Option<[u8; SECRET_LEN]> {
    let mut rest = bytes;
    let len = rmp::decode::read_bin_len(&mut rest).ok()?;
    if len as usize != SECRET_LEN || rest.len() != SECRET_LEN {
        return None;
    }
    rest.try_into().ok()
}

/// `secret` masked with a fresh pad that `fill` draws: base64url of
/// `pad || pad ^ secret`.
pub(crate) fn mask(secret: &[u8; SECRET_LEN], fill: impl FnOnce(&mut [u8])) -> String {
    let mut buf = [0u8; 2 * SECRET_LEN];
    let (pad, masked) = buf.split_at_mut(SECRET_LEN);
    fill(pad);
    for ((m, p), s) in masked.iter_mut().zip(pad.iter()).zip(secret) {
        *m = p ^ s;
    }
    URL_SAFE_NO_PAD.encode(buf)
}

/// Whether `token` unmasks to `secret`, compared in constant time.
pub(crate) fn verify(secret: &[u8; SECRET_LEN], token: &str) -> bool {
    let token = token.trim();
    if token.len() != TOKEN_LEN {
        return false;
    }
    let mut buf = [0u8; 2 * SECRET_LEN];
    match URL_SAFE_NO_PAD.decode_slice(token, &mut buf) {
        Ok(len) if len == buf.len() => {}
        _ => return false,
    }
    let (pad, masked) = buf.split_at(SECRET_LEN);
    let mut unmasked = [0u8; SECRET_LEN];
    for ((u, p), m) in unmasked.iter_mut().zip(pad).zip(masked) {
        *u = p ^ m;
    }
    bool::from(unmasked.ct_eq(secret))
}

/// Whether `token` is a valid CSRF token of the session in `st`: against
/// its stored secret, or, for a stored session that has none yet as this
/// request loaded it, the secret derived from its id (a concurrent request
/// may have issued the token and stored that secret since).
pub(crate) fn verify_state(engine: &Engine, st: &SessionState, token: &str) -> bool {
    let secret = match st.value(CSRF_KEY).and_then(decode_secret) {
        Some(secret) => secret,
        None => match st.id() {
            Some(id) if st.is_stored() => engine.csrf_secret(id),
            _ => return false,
        },
    };
    verify(&secret, token)
}

/// Whether `method` never needs a CSRF check.
fn is_safe(method: Method) -> bool {
    matches!(
        method,
        Method::Get | Method::Head | Method::Options | Method::Trace
    )
}

/// Rule 1: `false` if the browser says the request is cross-site, or its
/// `Origin` names another origin than the request's `Host` and none of
/// `trusted` (normalized origins).
fn same_origin(req: &Request<'_>, trusted: &[String]) -> bool {
    let headers = req.headers();
    if headers
        .get("Sec-Fetch-Site")
        .any(|site| site.trim().eq_ignore_ascii_case("cross-site"))
    {
        return false;
    }
    let Some(origin) = headers.get_one("Origin") else {
        // Not sent (an older browser, a non-browser client): the token
        // decides.
        return true;
    };
    // `null` (a sandboxed frame, a redirect across origins) and anything
    // that is not an origin are foreign.
    let Some(origin) = crate::config::normalize_origin(origin) else {
        return false;
    };
    if trusted.contains(&origin) {
        return true;
    }
    let authority = origin.split_once("://").map_or("", |(_, a)| a);
    headers
        .get_one("Host")
        .is_some_and(|host| host.trim().eq_ignore_ascii_case(authority))
}

/// Why a CSRF guard refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CsrfError {
    /// The request is cross-site, from a foreign origin, or without a valid
    /// token: `403 Forbidden`.
    Refused,
    /// The session could not be loaded (the store failed): `503`.
    Unavailable,
    /// The `KvSession` fairing is not attached: `500`.
    NotAttached,
}

/// The judgement of an unsafe request, once its headers passed rule 1:
/// the session decides (its carrier, whether it is stored, the token).
async fn judge(req: &Request<'_>, token: Option<&str>) -> Result<(), (Status, CsrfError)> {
    let Some(engine) = Engine::fetch(req.rocket()) else {
        return Err((Status::InternalServerError, CsrfError::NotAttached));
    };
    let cell: &SessionCell = match engine.session(req).await {
        Ok(cell) => cell,
        Err(_) => return Err((Status::ServiceUnavailable, CsrfError::Unavailable)),
    };
    if cell.carrier() == Carrier::Token {
        return Ok(());
    }
    let st = cell.lock();
    if !st.is_stored() {
        // No session yet (a login form): the headers alone decide.
        return Ok(());
    }
    match token {
        Some(token) if verify_state(engine, &st, token) => Ok(()),
        _ => Err((Status::Forbidden, CsrfError::Refused)),
    }
}

/// Rule 1 for `req`, with the app's trusted origins.
fn origin_allowed(req: &Request<'_>) -> Result<(), (Status, CsrfError)> {
    let Some(engine) = Engine::fetch(req.rocket()) else {
        return Err((Status::InternalServerError, CsrfError::NotAttached));
    };
    if same_origin(req, engine.trusted_origins()) {
        Ok(())
    } else {
        Err((Status::Forbidden, CsrfError::Refused))
    }
}

/// A request guard that succeeds only for requests that are safe (GET,
/// HEAD, OPTIONS, TRACE) or prove they come from the app's own pages: a
/// valid token of the session in the `X-CSRF-Token` header, a session
/// carried by a token header, or no session yet; and never a request that
/// is cross-site (`Sec-Fetch-Site`) or from a foreign `Origin`. Otherwise
/// the request fails with `403 Forbidden` (the README's "CSRF" section
/// has the whole rules).
///
/// Put it first among a handler's guards, so that nothing runs for a
/// refused request.
///
/// ```rust,no_run
/// # use rocket::post;
/// use rocket_kvsession::{CsrfChecked, Session};
///
/// // A script sends the token of `session.csrf_token()` as `X-CSRF-Token`.
/// #[post("/api/star/<item>")]
/// fn star(_csrf: CsrfChecked, session: Session<'_>, item: u32) -> Result<(), rocket_kvsession::Error> {
///     let mut stars: Vec<u32> = session.get("stars")?.unwrap_or_default();
///     stars.push(item);
///     session.insert("stars", stars)
/// }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct CsrfChecked(());

#[rocket::async_trait]
impl<'r> FromRequest<'r> for CsrfChecked {
    type Error = CsrfError;

    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, Self::Error> {
        if is_safe(req.method()) {
            return request::Outcome::Success(CsrfChecked(()));
        }
        let checked = match origin_allowed(req) {
            Ok(()) => judge(req, req.headers().get_one(CSRF_HEADER)).await,
            Err(refused) => Err(refused),
        };
        match checked {
            Ok(()) => request::Outcome::Success(CsrfChecked(())),
            Err(failure) => request::Outcome::Error(failure),
        }
    }
}

/// A data guard like [`Form<T>`]: parses the body (URL-encoded or
/// multipart) as `T`, after taking the `csrf_token` field out of it, and
/// checks that token as [`CsrfChecked`] checks its header. A refused
/// request fails with `403 Forbidden`; a body that does not parse fails as
/// `Form<T>` would. Dereferences to `T`.
///
/// ```rust,no_run
/// # use rocket::{post, FromForm};
/// use rocket_kvsession::{CsrfForm, Session};
///
/// #[derive(FromForm)]
/// struct Transfer {
///     to: String,
///     amount: u64,
/// }
///
/// // The form has `<input type="hidden" name="csrf_token" value="...">`
/// // from `session.csrf_token()`.
/// #[post("/transfer", data = "<form>")]
/// fn transfer(form: CsrfForm<Transfer>) -> String {
///     format!("sent {} to {}", form.amount, form.to)
/// }
/// ```
#[derive(Debug)]
pub struct CsrfForm<T>(T);

impl<T> CsrfForm<T> {
    /// The parsed form.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> Deref for CsrfForm<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> DerefMut for CsrfForm<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

#[rocket::async_trait]
impl<'r, T: FromForm<'r>> FromData<'r> for CsrfForm<T> {
    type Error = Errors<'r>;

    async fn from_data(req: &'r Request<'_>, data: Data<'r>) -> data::Outcome<'r, Self> {
        // Refused before the body is read.
        if !is_safe(req.method()) {
            if let Err((status, _)) = origin_allowed(req) {
                return data::Outcome::Error((status, Errors::new()));
            }
        }
        let form = match Form::<WithCsrf<T>>::from_data(req, data).await {
            data::Outcome::Success(form) => form.into_inner(),
            data::Outcome::Error(e) => return data::Outcome::Error(e),
            data::Outcome::Forward(f) => return data::Outcome::Forward(f),
        };
        if !is_safe(req.method()) {
            if let Err((status, _)) = judge(req, form.token.as_deref()).await {
                return data::Outcome::Error((status, Errors::new()));
            }
        }
        data::Outcome::Success(CsrfForm(form.inner))
    }
}

/// `T` and the `csrf_token` field, which `T` never sees.
struct WithCsrf<T> {
    token: Option<String>,
    inner: T,
}

/// The parsing context of [`WithCsrf`].
struct WithCsrfContext<'r, T: FromForm<'r>> {
    token: Option<String>,
    inner: T::Context,
}

#[rocket::async_trait]
impl<'r, T: FromForm<'r>> FromForm<'r> for WithCsrf<T> {
    type Context = WithCsrfContext<'r, T>;

    fn init(opts: Options) -> Self::Context {
        WithCsrfContext {
            token: None,
            inner: T::init(opts),
        }
    }

    fn push_value(ctxt: &mut Self::Context, field: ValueField<'r>) {
        if field.name.source().as_str() == CSRF_FIELD {
            // The first one counts: a second cannot replace a valid token.
            ctxt.token.get_or_insert_with(|| field.value.to_owned());
        } else {
            T::push_value(&mut ctxt.inner, field);
        }
    }

    async fn push_data(ctxt: &mut Self::Context, field: DataField<'r, '_>) {
        // A file named `csrf_token` is no token: `T` gets it.
        T::push_data(&mut ctxt.inner, field).await;
    }

    fn push_error(ctxt: &mut Self::Context, error: form::Error<'r>) {
        T::push_error(&mut ctxt.inner, error);
    }

    fn finalize(ctxt: Self::Context) -> form::Result<'r, Self> {
        Ok(WithCsrf {
            token: ctxt.token,
            inner: T::finalize(ctxt.inner)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::normalize_origin;

    #[test]
    fn a_masked_token_verifies_and_differs_every_time() {
        let secret = [7u8; SECRET_LEN];
        let mut n = 0u8;
        let mut fill = |pad: &mut [u8]| {
            n += 1;
            pad.fill(n);
        };
        let a = mask(&secret, &mut fill);
        let b = mask(&secret, &mut fill);
        assert_ne!(a, b);
        assert_eq!(a.len(), TOKEN_LEN);
        assert!(verify(&secret, &a));
        assert!(verify(&secret, &b));
        assert!(!verify(&[8u8; SECRET_LEN], &a));
    }

    #[test]
    fn changed_truncated_or_garbage_tokens_fail() {
        let secret = [42u8; SECRET_LEN];
        let token = mask(&secret, |pad| pad.fill(3));
        for cut in 0..token.len() {
            assert!(!verify(&secret, &token[..cut]));
        }
        let mut bytes = token.clone().into_bytes();
        for i in 0..bytes.len() {
            let original = bytes[i];
            bytes[i] = if original == b'A' { b'B' } else { b'A' };
            let changed = String::from_utf8(bytes.clone()).unwrap();
            assert!(!verify(&secret, &changed), "byte {i}");
            bytes[i] = original;
        }
        assert!(!verify(&secret, ""));
        assert!(!verify(&secret, &"é".repeat(TOKEN_LEN)));
        assert!(!verify(&secret, &format!("{token}AA")));
    }

    #[test]
    fn secrets_round_trip_and_others_are_refused() {
        let secret = [9u8; SECRET_LEN];
        assert_eq!(decode_secret(&encode_secret(&secret)), Some(secret));
        assert_eq!(decode_secret(&[]), None);
        assert_eq!(decode_secret(&[0xc4, 2, 1, 2]), None);
        let mut long = encode_secret(&secret);
        long.push(0);
        assert_eq!(decode_secret(&long), None);
    }

    #[test]
    fn origins_are_normalized() {
        assert_eq!(
            normalize_origin("HTTPS://Example.com/").as_deref(),
            Some("https://example.com")
        );
        assert_eq!(
            normalize_origin("http://127.0.0.1:8000").as_deref(),
            Some("http://127.0.0.1:8000")
        );
        assert_eq!(normalize_origin("null"), None);
        assert_eq!(normalize_origin("example.com"), None);
        assert_eq!(normalize_origin("https://"), None);
        assert_eq!(normalize_origin("https://a.com/path"), None);
    }
}
