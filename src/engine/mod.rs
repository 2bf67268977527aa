//! The session engine: every store round trip of a session, shared by the
//! fairing, the guard and the [`SessionManager`](crate::SessionManager).
//!
//! - `load`: the request's session from its cookie (`load.rs`);
//! - `save`: carrying out the [`SavePlan`](crate::state::SavePlan) a
//!   response's session decides (`save.rs`);
//! - `end`: logout, revocation, and the compare-and-swap that ends a record
//!   and follows its rotations (`end.rs`);
//! - `owned`: the owner index as the engine uses it: indexing a login,
//!   listing an owner's sessions, the per-owner cap (`owned.rs`).

mod end;
mod load;
mod owned;
mod save;

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use rocket::http::Cookie;
use rocket::{Phase, Request, Rocket};

use crate::clock::Clock;
use crate::config::SessionConfig;
use crate::cookie::{self, CookieSettings};
use crate::error::Error;
use crate::events::Events;
use crate::id::SessionId;
use crate::keys::Keys;
use crate::lifetime::{Lifetime, StoreExpiry};
use crate::owners::OwnerIndex;
use crate::record::{Handle, OwnExpiry};
use crate::retry::RetryPolicy;
use crate::rng::SharedRng;
use crate::seal::CookieCipher;
use crate::state::{CookieSpec, SessionState};
use crate::store::KeyValueStore;

pub(crate) use save::SaveOutcome;

/// The session of one request, cached in the request's local cache.
#[derive(Debug)]
pub(crate) struct SessionCell {
    state: Mutex<SessionState>,
}

impl SessionCell {
    fn new(state: SessionState) -> Self {
        SessionCell {
            state: Mutex::new(state),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, SessionState> {
        // Every mutation under this lock is completed before any code that
        // could panic runs, so a poisoned lock still holds a consistent state.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The per-request cache slot: empty until a `Session` guard loads the
/// session. Only the engine reads and writes it.
struct Slot(Option<Result<SessionCell, Error>>);

/// The engine: store, configuration and id source of one Rocket instance,
/// kept in Rocket's managed state by the fairing.
pub(crate) struct Engine {
    pub(crate) store: Arc<dyn KeyValueStore>,
    pub(crate) config: SessionConfig,
    pub(crate) cookies: CookieSettings,
    /// Which keys are this app's.
    pub(crate) keys: Keys,
    /// When sessions end.
    pub(crate) rules: Lifetime,
    /// Which expiries the store is handed.
    pub(crate) expiry: StoreExpiry,
    /// How long compare-and-swap loops retry.
    pub(crate) retry: RetryPolicy,
    /// Where the time is read.
    pub(crate) clock: Clock,
    /// Where lifecycle events go.
    pub(crate) events: Events,
    cipher: CookieCipher,
    rng: Arc<SharedRng>,
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("store", &self.store.name())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Engine {
    pub(crate) fn new(
        store: Arc<dyn KeyValueStore>,
        config: SessionConfig,
        cookies: CookieSettings,
        cipher: CookieCipher,
        rng: SharedRng,
        clock: Clock,
        events: Events,
    ) -> Self {
        let rng = Arc::new(rng);
        // Every store call measured, with the feature.
        #[cfg(feature = "metrics")]
        let store: Arc<dyn KeyValueStore> = Arc::new(crate::metrics::Instrumented(store));
        Engine {
            keys: Keys::of(&config),
            rules: Lifetime::of(&config),
            expiry: StoreExpiry::new(&config, store.capabilities().expiry.is_kept()),
            retry: RetryPolicy::new(&config, rng.clone()),
            store,
            config,
            cookies,
            cipher,
            rng,
            clock,
            events,
        }
    }

    /// The engine the fairing put into `rocket`'s managed state, if attached.
    pub(crate) fn fetch<P: Phase>(rocket: &Rocket<P>) -> Option<&Arc<Engine>> {
        rocket.state::<Arc<Engine>>()
    }

    /// The request's session, loaded once per request however many guards
    /// ask for it.
    pub(crate) async fn session<'r>(&self, req: &'r Request<'_>) -> &'r Result<SessionCell, Error> {
        let slot: &'r Slot = req
            .local_cache_async(async { Slot(Some(self.load(req.cookies()).await)) })
            .await;
        slot.0
            .as_ref()
            .expect("a slot filled by the guard always holds a session")
    }

    /// The request's session if a guard loaded it successfully; `None` for
    /// requests that never asked for one (they touch no store).
    pub(crate) fn loaded<'r>(req: &'r Request<'_>) -> Option<&'r SessionCell> {
        match req.local_cache(|| Slot(None)) {
            Slot(Some(Ok(cell))) => Some(cell),
            _ => None,
        }
    }

    /// The owner indexes of this app.
    pub(crate) fn owners(&self) -> OwnerIndex<'_, dyn KeyValueStore> {
        OwnerIndex {
            store: &*self.store,
            keys: &self.keys,
            rules: self.rules,
            expiry: self.expiry,
            retry: &self.retry,
            clock: &self.clock,
        }
    }

    /// A new session id, created now.
    pub(crate) fn new_id(&self) -> SessionId {
        self.rng
            .with(|rng| SessionId::generate(rng, self.config.key_bits, self.clock.now()))
    }

    /// A new random session handle.
    pub(crate) fn new_handle(&self) -> Handle {
        let mut bytes = [0u8; 16];
        self.rng.with(|rng| rng.fill_bytes(&mut bytes));
        Handle(bytes)
    }

    /// The session cookie for `spec`: its id sealed with the current key.
    pub(crate) fn session_cookie(&self, spec: &CookieSpec) -> Cookie<'static> {
        let mut id = String::with_capacity(82);
        spec.id.push_to(&mut id);
        let sealed = self.rng.with(|rng| {
            self.cipher
                .seal(&self.config.cookie_name, id.as_bytes(), rng)
        });
        let own = OwnExpiry {
            lifetime: spec.lifetime,
            idle_timeout: None,
        };
        let max_age = spec.permanent.then(|| {
            self.rules
                .for_session(&own)
                .cookie_max_age(&spec.id, self.clock.now())
        });
        cookie::session_cookie(&self.cookies, max_age, sealed)
    }
}
