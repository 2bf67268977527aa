//! How long a compare-and-swap loop keeps trying: the one retry budget
//! every such loop of the crate uses (a save, a rotation, a logout or
//! revocation, an owner index write).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::SessionConfig;
use crate::error::Error;
use crate::rng::SharedRng;

/// The longest backoff exponent: waits grow to at most 2^10 ms.
const MAX_EXPONENT: u32 = 10;

/// The retry budget of a configuration (`save_attempts` writes and
/// `save_timeout` seconds, backoff included) and the generator its jitter
/// is drawn from.
#[derive(Debug, Clone)]
pub(crate) struct RetryPolicy {
    attempts: u32,
    timeout: Duration,
    rng: Arc<SharedRng>,
}

impl RetryPolicy {
    pub(crate) fn new(config: &SessionConfig, rng: Arc<SharedRng>) -> Self {
        RetryPolicy {
            attempts: config.save_attempts,
            timeout: Duration::from_secs(config.save_timeout),
            rng,
        }
    }

    /// A fresh budget for one loop, starting now.
    pub(crate) fn start(&self) -> Retries<'_> {
        Retries {
            policy: self,
            attempt: 1,
            deadline: Instant::now() + self.timeout,
        }
    }
}

/// One loop's budget: at most `save_attempts` tries within `save_timeout`.
#[derive(Debug)]
pub(crate) struct Retries<'a> {
    policy: &'a RetryPolicy,
    attempt: u32,
    deadline: Instant,
}

impl Retries<'_> {
    /// Called after a conflicting write: fails with [`Error::Conflict`] when
    /// the budget is spent (without sleeping first), else waits a
    /// full-jitter exponential backoff (from the second retry on) that
    /// spreads the retries of many requests racing on one record.
    pub(crate) async fn next(&mut self) -> Result<(), Error> {
        let now = Instant::now();
        if self.attempt >= self.policy.attempts || now >= self.deadline {
            return Err(Error::Conflict {
                attempts: self.attempt,
            });
        }
        if self.attempt > 1 {
            let max_ms = 1u64 << self.attempt.min(MAX_EXPONENT);
            let backoff = Duration::from_millis(self.policy.rng.below(max_ms));
            tokio::time::sleep(backoff.min(self.deadline - now)).await;
        }
        self.attempt += 1;
        crate::metrics::conflict();
        Ok(())
    }

    /// Like [`next`](Self::next), but retries at once, without backoff:
    /// for a loop that must win against writers that keep coming (a logout
    /// or revocation ending a session that a copy of its cookie keeps
    /// saving). Such a loop writes nothing the others must merge, so it
    /// does not add to their contention; their saves back off and never
    /// overwrite what it writes.
    pub(crate) fn next_now(&mut self) -> Result<(), Error> {
        if self.attempt >= self.policy.attempts || Instant::now() >= self.deadline {
            return Err(Error::Conflict {
                attempts: self.attempt,
            });
        }
        self.attempt += 1;
        crate::metrics::conflict();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn policy(attempts: u32, timeout: u64) -> RetryPolicy {
        let config = SessionConfig {
            save_attempts: attempts,
            save_timeout: timeout,
            ..SessionConfig::default()
        };
        let rng = SharedRng::new(Box::new(ChaCha20Rng::seed_from_u64(1)));
        RetryPolicy::new(&config, Arc::new(rng))
    }

    #[tokio::test(start_paused = true)]
    async fn a_budget_allows_save_attempts_tries_in_all() {
        let policy = policy(4, 60);
        let mut retries = policy.start();
        for _ in 0..3 {
            retries.next().await.expect("within the budget");
        }
        assert!(matches!(
            retries.next().await,
            Err(Error::Conflict { attempts: 4 })
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn retries_now_never_wait_and_keep_the_budget() {
        let policy = policy(5, 60);
        let mut retries = policy.start();
        let started = tokio::time::Instant::now();
        for _ in 0..4 {
            retries.next_now().expect("within the budget");
        }
        assert_eq!(started.elapsed(), Duration::ZERO);
        assert!(matches!(
            retries.next_now(),
            Err(Error::Conflict { attempts: 5 })
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_retry_is_immediate_and_later_ones_back_off_within_bounds() {
        let policy = policy(20, 60);
        let mut retries = policy.start();
        let started = tokio::time::Instant::now();
        retries.next().await.expect("first retry");
        assert_eq!(
            started.elapsed(),
            Duration::ZERO,
            "no wait before the first retry"
        );
        for attempt in 2..20u32 {
            let before = tokio::time::Instant::now();
            retries.next().await.expect("within the budget");
            let waited = before.elapsed();
            let bound = Duration::from_millis(1 << attempt.min(MAX_EXPONENT));
            assert!(waited < bound, "attempt {attempt} waited {waited:?}");
        }
    }
}
