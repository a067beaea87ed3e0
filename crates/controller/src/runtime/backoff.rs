//! Per-object exponential backoff with jitter for transient errors: one
//! failing object retries ever more slowly without slowing the others, and
//! objects that failed together do not retry in lockstep.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use rand::Rng;

/// Consecutive failures per object key.
#[derive(Debug)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    pub fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max,
            failures: Mutex::default(),
        }
    }

    /// Records a failure of `key`; returns how long to wait before the
    /// retry: `base · 2^(failures-1)`, capped at `max`, then scaled by a
    /// random factor in [0.5, 1].
    pub fn failed(&self, key: &str) -> Duration {
        let failures = {
            let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
            let count = map.entry(key.to_owned()).or_insert(0);
            *count = count.saturating_add(1);
            *count
        };
        let ceiling = self.ceiling(failures);
        ceiling.mul_f64(rand::rng().random_range(0.5..=1.0))
    }

    /// Forgets `key`'s failures: it reconciled, or it is gone.
    pub fn forget(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }

    /// Objects waiting for a retry.
    pub fn pending(&self) -> usize {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    fn ceiling(&self, failures: u32) -> Duration {
        let exponent = failures.saturating_sub(1).min(20);
        self.base.saturating_mul(1 << exponent).min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_with_jitter_below_them() {
        let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        for ceiling_ms in [100, 200, 400, 800, 1000, 1000] {
            let delay = backoff.failed("ns/a");
            let ceiling = Duration::from_millis(ceiling_ms);
            assert!(
                delay <= ceiling && delay >= ceiling / 2,
                "{delay:?} for {ceiling:?}"
            );
        }
        assert_eq!(backoff.pending(), 1);
    }

    #[test]
    fn objects_back_off_independently_and_success_resets() {
        let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
        for _ in 0..5 {
            backoff.failed("ns/a");
        }
        assert!(backoff.failed("ns/b") <= Duration::from_millis(100));
        backoff.forget("ns/a");
        assert!(backoff.failed("ns/a") <= Duration::from_millis(100));
    }
}
