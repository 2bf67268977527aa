//! Loading a request's session from its cookie or its token.

use rocket::Request;

use super::end::Step;
use super::{Carrier, Engine, SessionCell};
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

    /// Loads the session named by the request's token (with
    /// `token_header`) or else its cookie, or a new one: a credential that
    /// does not open, does not parse, names an id of another layout, has
    /// outlived its lifetime or names no live record gives a new, empty
    /// session (a client's id is never adopted).
    pub(super) async fn load(&self, req: &Request<'_>) -> Result<SessionCell, Error> {
        let token = crate::token::carried(req, self.config.token_header.as_deref());
        let (carrier, credential) = match token {
            Some(token) => (Carrier::Token, Some(token)),
            None => (
                Carrier::Cookie,
                req.cookies()
                    .get(&self.config.cookie_name)
                    .map(|cookie| cookie.value()),
            ),
        };
        let credential = credential.filter(|value| !value.is_empty());
        let (state, outcome, store_key) = self.open(credential, carrier).await?;
        if let (Some(credential), Load::Rejected) = (credential, outcome) {
            // Forged, or its session ended: if it opened before, it opens
            // nothing now.
            self.opened.forget(carrier, credential);
        }
        metrics::load(outcome);
        Ok(SessionCell::new(state, carrier, store_key))
    }

    fn new_session(&self) -> SessionState {
        SessionState::fresh(self.config.permanent)
    }

    /// The id sealed into `credential` (a cookie's or a token's value, as
    /// `carrier` carried it), and whether it was sealed with a fallback
    /// key; `None` if it does not open or holds no id of this app's layout.
    /// A value that opened lately is found in `opened` instead of opened
    /// again. Not async, so the opened bytes never live in a load's future.
    fn opened_id(&self, credential: &str, carrier: Carrier) -> Option<(SessionId, bool)> {
        if let Some((id, needs_reseal)) = self.opened.get(carrier, credential) {
            if needs_reseal {
                metrics::fallback_key_open();
            }
            return Some((id, needs_reseal));
        }
        let aad = match carrier {
            Carrier::Cookie => self.config.cookie_name.as_str(),
            Carrier::Token => crate::token::TOKEN_AAD,
        };
        // Sealed with another key, for the other carrier, changed, or not
        // sealed at all: `None`.
        let opened = self.cipher.open(aad, credential)?;
        if opened.needs_reseal {
            metrics::fallback_key_open();
        }
        let id = std::str::from_utf8(opened.plaintext())
            .ok()?
            .parse::<SessionId>()
            .ok()
            .filter(|id| self.keys.fits(id))?;
        self.opened
            .insert(carrier, credential, &id, opened.needs_reseal);
        Some((id, opened.needs_reseal))
    }

    /// The session `credential` (a cookie's or a token's value, as
    /// `carrier` carried it) names, saying how the load ended; for a
    /// session found, its id and store key.
    async fn open(
        &self,
        credential: Option<&str>,
        carrier: Carrier,
    ) -> Result<(SessionState, Load, Option<(SessionId, String)>), Error> {
        let rejected = || Ok((self.new_session(), Load::Rejected, None));
        let Some(credential) = credential else {
            return Ok((self.new_session(), Load::None, None));
        };
        let Some((id, needs_reseal)) = self.opened_id(credential, carrier) else {
            return rejected();
        };
        let now = self.clock.now();
        if self.rules.outlived(&id, unix(now)) {
            // Expired: no need to ask the store.
            return rejected();
        }
        let key = self.keys.session(&id);
        let Some(record) = self.store.get(&key).await? else {
            return rejected();
        };
        let envelope = match Stored::decode(record.value) {
            Ok(Stored::Live(envelope)) => envelope,
            // Logged out or rotated away a moment ago.
            Ok(Stored::Ended(_)) => return rejected(),
            Err(e) => {
                log::warn!("kvsession: ignoring unreadable session record: {e}");
                return rejected();
            }
        };
        let rules = self.rules.for_session(&envelope.expiry);
        if !rules.is_live(&id, envelope.last_active, record.expires_at, now) {
            // Boxed: a rare path, whose future would otherwise make every
            // load's future (and its allocation) several times larger.
            Box::pin(self.end_expired(&id, record.version, envelope.owner)).await;
            return rejected();
        }
        let store_key = Some((id.clone(), key));
        let mut state = SessionState::loaded(id, envelope, record.version, record.expires_at);
        if needs_reseal {
            // Sealed with a key of `secret_key_fallbacks`: the response
            // carries the cookie sealed with the current key.
            state.reissue_cookie();
        }
        Ok((state, Load::Found, store_key))
    }
}
