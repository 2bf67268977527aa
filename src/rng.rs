//! The engine's random generator, shared by everything that draws: session
//! ids, cookie nonces, owner handles and retry jitter.

use std::fmt;
use std::sync::Mutex;

use rand_core::RngCore;

/// A boxed generator: `KvSession::rng`, or a `ChaCha20Rng` seeded from the
/// operating system.
pub(crate) type SessionRng = Box<dyn RngCore + Send>;

/// The engine's generator behind a lock.
pub(crate) struct SharedRng(Mutex<SessionRng>);

impl fmt::Debug for SharedRng {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedRng")
    }
}

impl SharedRng {
    pub(crate) fn new(rng: SessionRng) -> Self {
        SharedRng(Mutex::new(rng))
    }

    /// Runs `f` with the generator.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut dyn RngCore) -> R) -> R {
        // Drawing cannot leave the generator inconsistent: a poisoned lock
        // is still usable.
        let mut rng = self.0.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut **rng)
    }

    /// A number drawn uniformly enough from `0..bound` (`bound` at least 1).
    pub(crate) fn below(&self, bound: u64) -> u64 {
        self.with(|rng| rng.next_u64()) % bound.max(1)
    }
}
