//! Where the engine reads the time: the system clock, or in tests a clock
//! the test moves ([`ManualClock`], feature `testing`), so that lifetime,
//! idle-timeout, touch and sweep behaviour is tested without sleeping and
//! whatever the machine's speed.

use std::time::SystemTime;

#[cfg(any(test, feature = "testing", feature = "conformance"))]
use std::sync::{Arc, Mutex};
#[cfg(any(test, feature = "testing", feature = "conformance"))]
use std::time::Duration;

use crate::time::unix;

/// The engine's clock.
#[derive(Debug, Clone, Default)]
pub(crate) struct Clock {
    #[cfg(any(test, feature = "testing", feature = "conformance"))]
    manual: Option<ManualClock>,
}

impl Clock {
    /// The system clock.
    pub(crate) fn system() -> Self {
        Clock::default()
    }

    /// A clock that reads `manual`.
    #[cfg(any(test, feature = "testing", feature = "conformance"))]
    pub(crate) fn manual(manual: ManualClock) -> Self {
        Clock {
            manual: Some(manual),
        }
    }

    /// The current time.
    pub(crate) fn now(&self) -> SystemTime {
        #[cfg(any(test, feature = "testing", feature = "conformance"))]
        if let Some(manual) = &self.manual {
            return manual.now();
        }
        SystemTime::now()
    }

    /// The current time in whole Unix seconds.
    pub(crate) fn now_unix(&self) -> u64 {
        unix(self.now())
    }
}

/// A clock for tests: it starts at the current time and moves only when
/// the test moves it. Give it to the fairing with
/// [`KvSession::clock`](crate::KvSession::clock); clones share the time.
///
/// Stores keep their own time: a store that expires records itself (Redis,
/// MongoDB, memcached, `MemoryStore`) still does so by the real clock, and
/// the expiries the engine hands it are taken from this clock. Moving this
/// clock forward makes the engine judge sessions later than they really
/// are; the stores then hold records the engine already deems ended.
///
/// ```
/// use std::time::Duration;
/// use rocket_kvsession::testing::ManualClock;
///
/// let clock = ManualClock::new();
/// let start = clock.now();
/// clock.advance(Duration::from_secs(3600));
/// assert_eq!(clock.now().duration_since(start).unwrap(), Duration::from_secs(3600));
/// ```
#[cfg(any(test, feature = "testing", feature = "conformance"))]
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<Mutex<SystemTime>>);

#[cfg(any(test, feature = "testing", feature = "conformance"))]
impl ManualClock {
    /// A clock standing at the current time.
    pub fn new() -> Self {
        ManualClock(Arc::new(Mutex::new(SystemTime::now())))
    }

    /// The time the clock shows.
    pub fn now(&self) -> SystemTime {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let mut now = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *now += by;
    }
}

#[cfg(any(test, feature = "testing", feature = "conformance"))]
impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}
