//! The session engine: every store round trip of a session, shared by the
//! fairing, the guard and the [`SessionManager`](crate::SessionManager).
//!
//! - `load`: the request's session from its cookie (`load.rs`);
//! - `save`: carrying out the [`SavePlan`](crate::state::SavePlan) a
//!   response's session decides (`save.rs`);
//! - `end`: logout, revocation, and the compare-and-swap that ends a record
//!   and follows its rotations (`end.rs`);
//! - `owned`: the owner index as the engine uses it: indexing a login,
//!   listing an owner's sessions, the per-owner cap (`owned.rs`);
//! - `opened`: the ids of the cookie and token values the engine opened
//!   lately, so a session's later requests skip the cipher (`opened.rs`);
//! - `serial`: the per-session gate that makes saves of one session in
//!   this process take turns instead of racing (`serial.rs`).

mod end;
mod load;
mod opened;
mod owned;
mod save;
mod serial;

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
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

/// How a request's session travels between client and server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Carrier {
    /// The session cookie (browsers).
    Cookie,
    /// The `token_header` or `Authorization: Bearer` (API clients): the
    /// cookie is neither read nor set.
    Token,
}

/// The session of one request, cached in the request's local cache.
#[derive(Debug)]
pub(crate) struct SessionCell {
    state: Mutex<SessionState>,
    /// How the request carried its session.
    carrier: Carrier,
    /// Whether the handler asked for the session's token
    /// (`Session::token`): the response then answers with a token, not a
    /// cookie, whatever the request carried.
    token_wanted: AtomicBool,
    /// Whether the probe cookie that tells a handler's response from a
    /// catcher's is in the jar.
    probing: AtomicBool,
    /// The token handed to the handler, for the id it seals: the response
    /// header repeats it rather than sealing the id again.
    token: Mutex<Option<(SessionId, String)>>,
    /// The store key the load read, for the id it names: the save of that
    /// id takes it instead of building it again.
    store_key: Mutex<Option<(SessionId, String)>>,
}

impl SessionCell {
    fn new(state: SessionState, carrier: Carrier, store_key: Option<(SessionId, String)>) -> Self {
        SessionCell {
            state: Mutex::new(state),
            carrier,
            token_wanted: AtomicBool::new(false),
            probing: AtomicBool::new(false),
            token: Mutex::new(None),
            store_key: Mutex::new(store_key),
        }
    }

    /// The store key of `id`: the one the load read, the first time it is
    /// asked for (a save writes once), else built by `keys`.
    pub(crate) fn store_key(&self, keys: &Keys, id: &SessionId) -> String {
        let mut loaded = self.store_key.lock().unwrap_or_else(|e| e.into_inner());
        match loaded.take() {
            Some((loaded_id, key)) if loaded_id == *id => key,
            other => {
                *loaded = other;
                keys.session(id)
            }
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, SessionState> {
        // Every mutation under this lock is completed before any code that
        // could panic runs, so a poisoned lock still holds a consistent state.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How the request carried its session.
    pub(crate) fn carrier(&self) -> Carrier {
        self.carrier
    }

    /// Whether the response answers with a token instead of a cookie: the
    /// request carried one, or the handler asked for it.
    pub(crate) fn uses_token(&self) -> bool {
        self.carrier == Carrier::Token || self.token_wanted.load(Ordering::Relaxed)
    }

    /// From now on the session answers with a token.
    pub(crate) fn want_token(&self) {
        self.token_wanted.store(true, Ordering::Relaxed);
    }

    /// Marks the probe as placed; `true` the first time only.
    pub(crate) fn start_probe(&self) -> bool {
        !self.probing.swap(true, Ordering::Relaxed)
    }

    /// Whether the probe cookie was placed.
    pub(crate) fn probing(&self) -> bool {
        self.probing.load(Ordering::Relaxed)
    }

    /// The token sealed for `id`, sealing it with `seal` the first time.
    pub(crate) fn token_for(&self, id: &SessionId, seal: impl FnOnce() -> String) -> String {
        let mut cached = self.token.lock().unwrap_or_else(|e| e.into_inner());
        match &*cached {
            Some((sealed_id, token)) if sealed_id == id => token.clone(),
            _ => {
                let token = seal();
                *cached = Some((id.clone(), token.clone()));
                token
            }
        }
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
    /// Saves of one session in this process take turns.
    gates: serial::Gates,
    /// `csrf_trusted_origins`, normalized.
    trusted_origins: Vec<String>,
    cipher: CookieCipher,
    /// The values `cipher` opened lately, and their ids.
    opened: opened::OpenedIds,
    /// Session ids and retry jitter: `KvSession::rng`, or OS-seeded.
    rng: Arc<SharedRng>,
    /// Cookie and token nonces, owner handles, CSRF pads: always seeded
    /// from the OS, whatever `KvSession::rng` is, so a seeded generator
    /// (tests) can never repeat an AES-GCM nonce across restarts.
    secrets: SharedRng,
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
            trusted_origins: config
                .csrf_trusted_origins
                .iter()
                .filter_map(|origin| crate::config::normalize_origin(origin))
                .collect(),
            keys: Keys::of(&config),
            rules: Lifetime::of(&config),
            expiry: StoreExpiry::new(&config, store.capabilities().expiry.is_kept()),
            retry: RetryPolicy::new(&config, rng.clone()),
            store,
            config,
            cookies,
            cipher,
            opened: opened::OpenedIds::default(),
            rng,
            secrets: SharedRng::new(Box::new(ChaCha20Rng::from_os_rng())),
            clock,
            events,
            gates: serial::Gates::default(),
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
            .local_cache_async(async { Slot(Some(self.load(req).await)) })
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

    /// The origins CSRF checks accept besides the request's own.
    pub(crate) fn trusted_origins(&self) -> &[String] {
        &self.trusted_origins
    }

    /// A new random session handle.
    pub(crate) fn new_handle(&self) -> Handle {
        let mut bytes = [0u8; 16];
        self.secrets.with(|rng| rng.fill_bytes(&mut bytes));
        Handle(bytes)
    }

    /// `bytes` filled from the OS-seeded generator.
    pub(crate) fn fill_secret(&self, bytes: &mut [u8]) {
        self.secrets.with(|rng| rng.fill_bytes(bytes));
    }

    /// `id` sealed for `aad` (the cookie name, or the token's label) with
    /// the current key.
    fn seal_id(&self, aad: &str, id: &SessionId) -> String {
        let mut plain = String::with_capacity(82);
        id.push_to(&mut plain);
        self.secrets
            .with(|rng| self.cipher.seal(aad, plain.as_bytes(), rng))
    }

    /// The token of `id`: sealed like the cookie, with the token's own
    /// associated data, so neither opens as the other.
    pub(crate) fn seal_token(&self, id: &SessionId) -> String {
        self.seal_id(crate::token::TOKEN_AAD, id)
    }

    /// The CSRF secret of session `id` (see `crate::csrf`).
    pub(crate) fn csrf_secret(&self, id: &SessionId) -> [u8; crate::seal::CSRF_SECRET_LEN] {
        let mut plain = String::with_capacity(82);
        id.push_to(&mut plain);
        self.cipher.csrf_secret(plain.as_bytes())
    }

    /// The session cookie for `spec`: its id sealed with the current key.
    pub(crate) fn session_cookie(&self, spec: &CookieSpec) -> Cookie<'static> {
        let sealed = self.seal_id(&self.config.cookie_name, &spec.id);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loaded_store_key_is_handed_out_once_and_for_its_id_only() {
        let keys = Keys::of(&SessionConfig::default());
        let loaded: SessionId = "00000000000000aa_6745c1a0".parse().unwrap();
        let other: SessionId = "00000000000000bb_6745c1a0".parse().unwrap();
        let cell = SessionCell::new(
            SessionState::fresh(true),
            Carrier::Cookie,
            Some((loaded.clone(), keys.session(&loaded))),
        );
        // Another id (a rotation's new one) gets its own key, and leaves
        // the loaded one in place.
        assert_eq!(cell.store_key(&keys, &other), keys.session(&other));
        assert_eq!(cell.store_key(&keys, &loaded), keys.session(&loaded));
        // Taken: built again, the same.
        assert_eq!(cell.store_key(&keys, &loaded), keys.session(&loaded));
        let without = SessionCell::new(SessionState::fresh(true), Carrier::Token, None);
        assert_eq!(without.store_key(&keys, &loaded), keys.session(&loaded));
    }
}
