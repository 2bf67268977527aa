//! Loading a request's session from its cookie.

use rocket::http::CookieJar;

use super::{Engine, SessionCell};
use crate::error::Error;
use crate::id::SessionId;
use crate::record::Stored;
use crate::state::SessionState;
use crate::time::unix;

impl Engine {
    fn new_session(&self) -> SessionCell {
        SessionCell::new(SessionState::fresh(self.config.permanent))
    }

    /// Loads the session named by the request's cookie, or a new one: a
    /// cookie that does not open, does not parse, names an id of another
    /// layout, has outlived its lifetime or names no live record gives a
    /// new, empty session (a client's id is never adopted).
    pub(super) async fn load(&self, jar: &CookieJar<'_>) -> Result<SessionCell, Error> {
        let Some(cookie) = jar.get(&self.config.cookie_name) else {
            return Ok(self.new_session());
        };
        let Some(opened) = self.cipher.open(&self.config.cookie_name, cookie.value()) else {
            // Sealed with another key, changed, or not sealed at all.
            return Ok(self.new_session());
        };
        let Some(id) = std::str::from_utf8(opened.plaintext())
            .ok()
            .and_then(|id| id.parse::<SessionId>().ok())
            .filter(|id| self.keys.fits(id))
        else {
            return Ok(self.new_session());
        };
        let now = self.clock.now();
        if self.rules.outlived(&id, unix(now)) {
            // Expired: no need to ask the store.
            return Ok(self.new_session());
        }
        let Some(record) = self.store.get(&self.keys.session(&id)).await? else {
            return Ok(self.new_session());
        };
        let envelope = match Stored::decode(record.value) {
            Ok(Stored::Live(envelope)) => envelope,
            // Logged out or rotated away a moment ago.
            Ok(Stored::Ended(_)) => return Ok(self.new_session()),
            Err(e) => {
                log::warn!("kvsession: ignoring unreadable session record: {e}");
                return Ok(self.new_session());
            }
        };
        if !self.rules.for_session(&envelope.expiry).is_live(
            &id,
            envelope.last_active,
            record.expires_at,
            now,
        ) {
            return Ok(self.new_session());
        }
        let mut state = SessionState::loaded(id, envelope, record.version, record.expires_at);
        if opened.needs_reseal {
            // Sealed with a key of `secret_key_fallbacks`: the response
            // carries the cookie sealed with the current key.
            state.reissue_cookie();
        }
        Ok(SessionCell::new(state))
    }
}
