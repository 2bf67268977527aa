//! [`KvSession`]: the fairing.

use std::fmt;
use std::io::Cursor;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand_chacha::ChaCha20Rng;
use rand_core::{CryptoRng, RngCore, SeedableRng};
use rocket::fairing::{self, Fairing, Info, Kind};
use rocket::http::{ContentType, Status};
use rocket::{Build, Orbit, Request, Response, Rocket};

use crate::cleanup::sweep;
use crate::clock::Clock;
use crate::config::{Secret, SessionConfig};
use crate::cookie::{self, CookieSettings};
use crate::engine::{Engine, SaveOutcome, SessionCell};
use crate::error::{chain, Error};
use crate::events::{Events, SessionEvent};
use crate::manager::SessionManager;
use crate::rng::{SessionRng, SharedRng};
use crate::seal::CookieCipher;
use crate::store::KeyValueStore;
use crate::time::seconds;

/// The session fairing: attach it once to a Rocket instance.
///
/// ```rust,no_run
/// use rocket_kvsession::{KvSession, MemoryStore};
///
/// #[rocket::launch]
/// fn rocket() -> _ {
///     rocket::build().attach(KvSession::new(MemoryStore::new()))
/// }
/// ```
///
/// At ignite it reads the `kvsession` configuration table (unless
/// [`config`](Self::config) was given), validates it, prepares the store
/// ([`KeyValueStore::init`]) and refuses launch on any error. After each
/// response it saves the request's session if it changed. At liftoff it
/// starts the scheduled sweep, if `cleanup_interval` is set; the sweep stops
/// at shutdown.
pub struct KvSession {
    store: Arc<dyn KeyValueStore>,
    rng: Mutex<Option<SessionRng>>,
    config: Option<SessionConfig>,
    cleanup_interval: Option<Duration>,
    /// Where the engine reads the time.
    clock: Clock,
    /// Where the engine sends lifecycle events.
    events: Events,
    /// The engine built at ignite (also in Rocket's managed state, where the
    /// guard finds it): the response fairing reads it from here.
    engine: std::sync::OnceLock<Arc<Engine>>,
}

impl fmt::Debug for KvSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KvSession")
            .field("store", &self.store.name())
            .field("config", &self.config)
            .field("cleanup_interval", &self.cleanup_interval)
            .finish_non_exhaustive()
    }
}

impl KvSession {
    /// A fairing keeping sessions in `store`.
    pub fn new<S: KeyValueStore>(store: S) -> Self {
        Self::from_arc(Arc::new(store))
    }

    /// A fairing keeping sessions in a shared store.
    pub fn from_arc(store: Arc<dyn KeyValueStore>) -> Self {
        KvSession {
            store,
            rng: Mutex::new(None),
            config: None,
            cleanup_interval: None,
            clock: Clock::system(),
            events: Events::default(),
            engine: std::sync::OnceLock::new(),
        }
    }

    /// Draws session ids (and retry jitter) from `rng` instead of a
    /// `ChaCha20Rng` seeded from the operating system. It must be a
    /// cryptographically secure generator: ids are bearer secrets. Cookie
    /// and token nonces, owner handles and CSRF pads always come from an
    /// OS-seeded generator, so a seeded `rng` (in tests) never repeats an
    /// AES-GCM nonce across restarts.
    pub fn rng<R: RngCore + CryptoRng + Send + 'static>(self, rng: R) -> Self {
        *self.rng.lock().unwrap_or_else(|e| e.into_inner()) = Some(Box::new(rng));
        self
    }

    /// Uses `config` instead of the `kvsession` table of Rocket's figment.
    pub fn config(mut self, config: SessionConfig) -> Self {
        self.config = Some(config);
        self
    }

    /// Runs [`cleanup_sessions`](crate::cleanup_sessions) every `interval` from liftoff to shutdown,
    /// overriding `cleanup_interval` from the configuration.
    pub fn cleanup_interval(mut self, interval: Duration) -> Self {
        self.cleanup_interval = Some(interval);
        self
    }

    /// Calls `handler` with every session lifecycle event (created,
    /// rotated, destroyed, revoked, expired: [`SessionEvent`]), for audit
    /// logs. It is called after the store write that makes the event true,
    /// never for a write that failed and never twice for one event, inline
    /// on the request's task: keep it cheap, and hand anything slow (I/O, a
    /// database insert) to a channel or a spawned task. A handler that
    /// panics is logged and ignored; the request goes on.
    ///
    /// ```rust,no_run
    /// use rocket_kvsession::{KvSession, MemoryStore, SessionEvent};
    ///
    /// let fairing = KvSession::new(MemoryStore::new()).on_event(|event: &SessionEvent| {
    ///     log::info!("session {:?} (owner {:?})", event.kind(), event.owner());
    /// });
    /// # let _ = fairing;
    /// ```
    pub fn on_event(mut self, handler: impl Fn(&SessionEvent) + Send + Sync + 'static) -> Self {
        self.events = Events::new(Arc::new(handler));
        self
    }

    /// Reads the time from `clock` instead of the system clock, so a test
    /// can move time (lifetimes, idle timeouts, touches, sweeps) without
    /// sleeping. Feature `testing`.
    #[cfg(any(test, feature = "testing", feature = "conformance"))]
    #[cfg_attr(docsrs, doc(cfg(any(feature = "testing", feature = "conformance"))))]
    pub fn clock(mut self, clock: crate::clock::ManualClock) -> Self {
        self.clock = Clock::manual(clock);
        self
    }

    fn read_config(&self, rocket: &Rocket<Build>) -> Result<SessionConfig, ()> {
        let config = match &self.config {
            Some(config) => config.clone(),
            None => match rocket.figment().extract_inner::<SessionConfig>("kvsession") {
                Ok(config) => config,
                Err(e) if e.missing() => SessionConfig::default(),
                Err(e) => {
                    rocket::config::pretty_print_error(e);
                    log::error!("kvsession: invalid `kvsession` configuration");
                    return Err(());
                }
            },
        };
        if let Err(e) = config.validate() {
            log::error!("kvsession: {e}");
            return Err(());
        }
        Ok(config)
    }
}

#[rocket::async_trait]
impl Fairing for KvSession {
    fn info(&self) -> Info {
        Info {
            name: "KvSession",
            kind: Kind::Ignite | Kind::Liftoff | Kind::Response,
        }
    }

    async fn on_ignite(&self, rocket: Rocket<Build>) -> fairing::Result {
        if Engine::fetch(&rocket).is_some() {
            log::error!("kvsession: the KvSession fairing is attached twice");
            return Err(rocket);
        }
        let Ok(config) = self.read_config(&rocket) else {
            return Err(rocket);
        };
        // The longest keys this configuration writes (sessions until the
        // year 2106, and owner indexes).
        let keys = crate::keys::Keys::of(&config);
        if let Some(e) = keys
            .longest()
            .iter()
            .find_map(|key| self.store.check_key(key).err())
        {
            log::error!(
                "kvsession: invalid `kvsession` configuration: `key_prefix` {:?} makes keys \
                 the {} store cannot hold: {}",
                config.key_prefix,
                self.store.name(),
                chain(&e)
            );
            return Err(rocket);
        }
        if let Err(e) = self.store.init().await {
            log::error!(
                "kvsession: cannot prepare the {} store: {}",
                self.store.name(),
                chain(&e)
            );
            return Err(rocket);
        }
        let rng = self
            .rng
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .unwrap_or_else(|| Box::new(ChaCha20Rng::from_os_rng()));
        let rng = SharedRng::new(rng);
        let debug = rocket.figment().profile() == rocket::Config::DEBUG_PROFILE;
        let cookies = match CookieSettings::parse(&config.cookie(), debug) {
            Ok(cookies) => cookies,
            Err(e) => {
                log::error!("kvsession: {e}");
                return Err(rocket);
            }
        };
        if !debug && !cookies.always_secure() {
            log::warn!(
                "kvsession: the session cookie is not Secure (`cookie_secure = false`) \
                 in the {} profile: browsers send it over plain HTTP",
                rocket.figment().profile()
            );
        }
        let fallbacks: Vec<&str> = config
            .secret_key_fallbacks
            .iter()
            .map(Secret::expose)
            .collect();
        let cipher = match CookieCipher::from_figment(rocket.figment(), &fallbacks, debug) {
            Ok(cipher) => cipher,
            Err(e) => {
                log::error!("kvsession: {e}");
                return Err(rocket);
            }
        };
        let engine = Arc::new(Engine::new(
            self.store.clone(),
            config,
            cookies,
            cipher,
            rng,
            self.clock.clone(),
            self.events.clone(),
        ));
        let manager = SessionManager::new(engine.clone());
        let _ = self.engine.set(engine.clone());
        Ok(rocket.manage(engine).manage(manager))
    }

    async fn on_liftoff(&self, rocket: &Rocket<Orbit>) {
        let Some(engine) = Engine::fetch(rocket).cloned() else {
            return;
        };
        let configured = engine.config.cleanup_interval.map(seconds);
        let Some(interval) = self.cleanup_interval.or(configured) else {
            return;
        };
        let shutdown = rocket.shutdown();
        rocket::tokio::spawn(async move {
            let mut shutdown = std::pin::pin!(shutdown);
            let mut ticks = rocket::tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(rocket::tokio::time::MissedTickBehavior::Delay);
            loop {
                rocket::tokio::select! {
                    _ = &mut shutdown => break,
                    _ = ticks.tick() => {}
                }
                let owners = engine.owners();
                let sweep = sweep(&owners, &engine.events);
                rocket::tokio::select! {
                    _ = &mut shutdown => break,
                    result = sweep => match result {
                        Ok(report) => log::info!(
                            "kvsession: sweep scanned {} keys, deleted {} expired sessions in {:?}",
                            report.scanned, report.deleted, report.elapsed
                        ),
                        Err(e) => log::error!("kvsession: sweep failed: {}", chain(&e)),
                    }
                }
            }
        });
    }

    async fn on_response<'r>(&self, req: &'r Request<'_>, res: &mut Response<'r>) {
        let Some(cell) = Engine::loaded(req) else {
            return;
        };
        let Some(engine) = self.engine.get() else {
            return;
        };
        let cookies = &engine.cookies;
        let uses_token = cell.uses_token();
        // One pass over the headers instead of a lookup by name per question.
        let mut seen = cookie::ResponseHeaders::of(res, &cookies.name);
        // A changed session put a probe into the jar: Rocket drops the
        // jar's cookies when a catcher answers, so the probe tells the
        // handler's response from a catcher's. It never reaches the client.
        let from_handler = if cell.probing() {
            let probed = seen.probe;
            cookie::drop_set_cookies(res, &mut seen, &cookies.name, true, false);
            probed
        } else {
            // Nothing changed: only a re-issued cookie can tell.
            !cell.lock().cookie_issued() || seen.session
        };
        // A read-only request whose activity refresh is not due (most of
        // them) has nothing to save: it skips the save's state machine,
        // whose future is large enough to cost a slow-path allocation.
        let idle = cell
            .lock()
            .untouched()
            .is_some_and(|untouched| !untouched.touch_due(&engine.rules, engine.clock.now_unix()));
        let outcome = if idle {
            SaveOutcome::Done
        } else {
            Box::pin(engine.save(cell, res.status(), from_handler)).await
        };
        // A token request never sets or removes the session cookie.
        let mut drop_cookie = uses_token;
        let mut credential_sent = false;
        match outcome {
            SaveOutcome::Done => {
                if uses_token {
                    credential_sent = self.send_token(engine, cell, res);
                }
            }
            SaveOutcome::DropCookie => drop_cookie = true,
            SaveOutcome::RemoveCookie => {
                cookie::drop_set_cookies(res, &mut seen, &cookies.name, false, true);
                if !uses_token {
                    res.adjoin_header(cookie::removal_header(cookies));
                    seen.session = true;
                }
            }
            SaveOutcome::Failed {
                error,
                drop_cookie: drop_new,
            } => {
                if matches!(error, Error::Superseded) {
                    log::info!("kvsession: {error}; its changes were not saved");
                } else {
                    log::error!("kvsession: cannot save session: {}", chain(&error));
                }
                drop_cookie |= drop_new;
                let (status, body) = match error.status() {
                    Status::Conflict => (
                        Status::Conflict,
                        "409 Conflict: the session changed meanwhile; this request's changes were not saved\n",
                    ),
                    _ => (
                        Status::ServiceUnavailable,
                        "503 Service Unavailable: the session could not be saved\n",
                    ),
                };
                res.set_status(status);
                res.set_header(ContentType::Plain);
                res.set_sized_body(body.len(), Cursor::new(body));
            }
        }
        if drop_cookie {
            cookie::drop_set_cookies(res, &mut seen, &cookies.name, false, true);
        }
        let credential = credential_sent || seen.session;
        cache_headers(engine, res, &mut seen, credential);
    }
}

impl KvSession {
    /// Puts the session's new token into the `token_header` response
    /// header, if its credential changed in this request (a first save, a
    /// rotation, a re-seal with the current key); returns whether it did.
    fn send_token(&self, engine: &Engine, cell: &SessionCell, res: &mut Response<'_>) -> bool {
        let Some(header) = engine.config.token_header.as_ref() else {
            return false;
        };
        let spec = {
            let st = cell.lock();
            if !st.cookie_issued() || !st.is_stored() {
                return false;
            }
            match st.credential() {
                Some(spec) => spec.id.clone(),
                None => return false,
            }
        };
        let token = cell.token_for(&spec, || engine.seal_token(&spec));
        res.set_raw_header(header.clone(), token);
        true
    }
}

/// `Vary` for a response that read the session, and `Cache-Control:
/// no-store` (unless the handler set its own) for one that sets or removes
/// its credential: no shared cache may serve one user's page, or cookie,
/// to another. `seen` is what the response's headers hold.
fn cache_headers(
    engine: &Engine,
    res: &mut Response<'_>,
    seen: &mut cookie::ResponseHeaders,
    credential: bool,
) {
    cookie::vary_by_cookie(res, seen);
    if let Some(header) = &engine.config.token_header {
        cookie::vary(res, header);
        cookie::vary(res, "Authorization");
    }
    if credential && !seen.cache_control {
        res.set_raw_header("Cache-Control", "no-store");
    }
}
