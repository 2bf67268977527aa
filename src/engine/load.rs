//! Loading a request's session from its cookie.

use rocket::http::CookieJar;

use super::end::Step;
use super::{Engine, SessionCell};
use crate::error::Error;
use crate::events::SessionEventKind;
use crate::id::SessionId;
use crate::metrics::{self, Load};
use crate::record::{Owner, Stored};
use crate::state::SessionState;
use crate::store::Version;
use crate::time::unix;

impl Engine {
    /// Ends a record found past its deadline (a cookie that came back after
    /// its session expired), conditionally on the version read, and emits
    /// `Expired` if this request ended it (once, whoever else races it). A
    /// failure only logs: the request goes on with a new session, and the
    /// store's expiry or the sweep removes the record.
    async fn end_expired(&self, id: &SessionId, version: Option<Version>, owner: Option<Owner>) {
        match self.end_one(id, version, None).await {
            Ok(Step::Ended(_)) => self.events.emit(SessionEventKind::Expired, owner.as_ref()),
            Ok(_) => {}
            Err(e) => log::warn!("kvsession: could not end an expired session: {e}"),
        }
    }

    fn new_session(&self) -> SessionCell {
        SessionCell::new(SessionState::fresh(self.config.permanent))
    }

    /// Loads the session named by the request's cookie, or a new one: a
    /// cookie that does not open, does not parse, names an id of another
    /// layout, has outlived its lifetime or names no live record gives a
    /// new, empty session (a client's id is never adopted).
    pub(super) async fn load(&self, jar: &CookieJar<'_>) -> Result<SessionCell, Error> {
        let (cell, outcome) = self.open(jar).await?;
        metrics::load(outcome);
        Ok(cell)
    }

    /// [`Engine::load`], saying how the load ended.
    async fn open(&self, jar: &CookieJar<'_>) -> Result<(SessionCell, Load), Error> {
        let Some(cookie) = jar.get(&self.config.cookie_name) else {
            return Ok((self.new_session(), Load::None));
        };
        let Some(opened) = self.cipher.open(&self.config.cookie_name, cookie.value()) else {
            // Sealed with another key, changed, or not sealed at all.
            return Ok((self.new_session(), Load::Rejected));
        };
        if opened.needs_reseal {
            metrics::fallback_key_open();
        }
        let Some(id) = std::str::from_utf8(opened.plaintext())
            .ok()
            .and_then(|id| id.parse::<SessionId>().ok())
            .filter(|id| self.keys.fits(id))
        else {
            return Ok((self.new_session(), Load::Rejected));
        };
        let now = self.clock.now();
        if self.rules.outlived(&id, unix(now)) {
            // Expired: no need to ask the store.
            return Ok((self.new_session(), Load::Rejected));
        }
        let Some(record) = self.store.get(&self.keys.session(&id)).await? else {
            return Ok((self.new_session(), Load::Rejected));
        };
        let envelope = match Stored::decode(record.value) {
            Ok(Stored::Live(envelope)) => envelope,
            // Logged out or rotated away a moment ago.
            Ok(Stored::Ended(_)) => return Ok((self.new_session(), Load::Rejected)),
            Err(e) => {
                log::warn!("kvsession: ignoring unreadable session record: {e}");
                return Ok((self.new_session(), Load::Rejected));
            }
        };
        let rules = self.rules.for_session(&envelope.expiry);
        if !rules.is_live(&id, envelope.last_active, record.expires_at, now) {
            self.end_expired(&id, record.version, envelope.owner).await;
            return Ok((self.new_session(), Load::Rejected));
        }
        let mut state = SessionState::loaded(id, envelope, record.version, record.expires_at);
        if opened.needs_reseal {
            // Sealed with a key of `secret_key_fallbacks`: the response
            // carries the cookie sealed with the current key.
            state.reissue_cookie();
        }
        Ok((SessionCell::new(state), Load::Found))
    }
}
