//! When to try a failed delivery again: exponential backoff with full jitter (a uniformly random
//! wait up to an exponentially growing ceiling), so that receivers that went down together are
//! not hit again in lockstep when they come back. Seconds, like the injected clock.

/// The retry schedule and when to give up.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    /// The ceiling after the first failure; it doubles with each one.
    pub base_secs: i64,
    /// The ceiling never grows past this.
    pub cap_secs: i64,
    /// After this many attempts the delivery fails.
    pub max_attempts: i64,
    /// A delivery older than this fails at its next failure.
    pub max_age_secs: i64,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base_secs: 2,
            cap_secs: 600,
            max_attempts: 10,
            max_age_secs: 24 * 3600,
        }
    }
}

impl Backoff {
    /// The wait after `failures` failed attempts (1 for the first), drawn with `random`: at
    /// least one second, at most the ceiling `min(cap, base · 2^(failures-1))`.
    pub fn delay(&self, failures: i64, random: u64) -> i64 {
        let doublings = failures.saturating_sub(1).clamp(0, 30) as u32;
        let ceiling = self
            .base_secs
            .max(1)
            .saturating_mul(1_i64 << doublings)
            .min(self.cap_secs.max(1));
        1 + (random % ceiling as u64) as i64
    }

    /// Whether a delivery made at `created_at` that has now failed `failures` times is done for.
    pub fn exhausted(&self, failures: i64, created_at: i64, now: i64) -> bool {
        failures >= self.max_attempts || now - created_at >= self.max_age_secs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ceiling_doubles_up_to_the_cap_and_the_wait_is_jittered_below_it() {
        let b = Backoff {
            base_secs: 2,
            cap_secs: 60,
            max_attempts: 10,
            max_age_secs: 3600,
        };
        for (failures, ceiling) in [(1, 2), (2, 4), (3, 8), (5, 32), (6, 60), (40, 60)] {
            let waits: Vec<i64> = (0..1000u64).map(|r| b.delay(failures, r * 7919)).collect();
            assert!(
                waits.iter().all(|w| (1..=ceiling).contains(w)),
                "{failures}"
            );
            assert_eq!(
                waits.iter().max(),
                Some(&ceiling),
                "{failures}: reaches the ceiling"
            );
            assert_eq!(
                waits.iter().min(),
                Some(&1),
                "{failures}: full jitter reaches down"
            );
        }
        assert!((1..=60).contains(&b.delay(i64::MAX, u64::MAX)));
        assert_eq!(b.delay(0, 5), 1 + 5 % 2, "no failure counts as the first");
    }

    #[test]
    fn gives_up_after_the_attempts_or_the_age() {
        let b = Backoff {
            base_secs: 2,
            cap_secs: 60,
            max_attempts: 3,
            max_age_secs: 100,
        };
        assert!(!b.exhausted(2, 0, 99));
        assert!(b.exhausted(3, 0, 10));
        assert!(b.exhausted(1, 0, 100));
    }
}
