//! A circuit breaker for the upstream leg: after `failures_to_open` calls in a row failed for
//! want of an answer (a timeout, a refused connection, a 5xx), the upstream is taken as down for
//! `open_for`: logins are answered at once with the "VNeID đang gián đoạn" page instead of each
//! holding a worker for the whole timeout. When that time is up, calls go through again as
//! probes (half-open): the first answer closes the breaker, the first call without one opens it
//! again. Calls that got an answer, even a refusal (a bad code, a 4xx), count as the upstream
//! being up.
//!
//! Per instance, in memory: each instance learns of an outage from its own calls, which is what
//! keeps its own workers free. Written by hand: the state is three fields under a mutex, and
//! the crates that offer breakers wrap calls in their own futures and error types for no gain.

use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug)]
enum State {
    Closed {
        failures: u32,
    },
    /// Refusing calls until `until`; after it calls go through again as probes, and the first
    /// result decides: an answer closes the breaker, no answer opens it again.
    Open {
        until: Instant,
    },
}

#[derive(Debug)]
pub struct Breaker {
    failures_to_open: u32,
    open_for: Duration,
    state: Mutex<State>,
}

/// The breaker refuses the call: the upstream is taken as down for `retry_after` more.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Open {
    pub retry_after: Duration,
}

impl Breaker {
    /// `failures_to_open = 0` disables the breaker (every call goes through).
    pub fn new(failures_to_open: u32, open_for: Duration) -> Self {
        Self {
            failures_to_open,
            open_for,
            state: Mutex::new(State::Closed { failures: 0 }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a call may go out now.
    pub fn check(&self) -> Result<(), Open> {
        self.check_at(Instant::now())
    }

    fn check_at(&self, now: Instant) -> Result<(), Open> {
        if self.failures_to_open == 0 {
            return Ok(());
        }
        match *self.state() {
            State::Open { until } if now < until => Err(Open {
                retry_after: until - now,
            }),
            _ => Ok(()),
        }
    }

    /// The upstream answered.
    pub fn success(&self) {
        let mut state = self.state();
        match *state {
            State::Closed { failures: 0 } => {}
            State::Closed { .. } => *state = State::Closed { failures: 0 },
            State::Open { .. } => {
                tracing::info!("the upstream answers again: circuit closed");
                *state = State::Closed { failures: 0 };
            }
        }
    }

    /// The upstream did not answer.
    pub fn failure(&self) {
        self.failure_at(Instant::now());
    }

    fn failure_at(&self, now: Instant) {
        if self.failures_to_open == 0 {
            return;
        }
        let mut state = self.state();
        let open = match *state {
            State::Closed { failures } if failures + 1 < self.failures_to_open => {
                *state = State::Closed {
                    failures: failures + 1,
                };
                false
            }
            State::Closed { .. } => true,
            // A probe after the wait got no answer: open again. (A call that started before the
            // breaker opened and fails late changes nothing.)
            State::Open { until } => now >= until,
        };
        if open {
            *state = State::Open {
                until: now + self.open_for,
            };
            tracing::warn!(
                open_for_secs = self.open_for.as_secs(),
                "the upstream is not answering: circuit open, logins answered with the outage page"
            );
        }
    }

    pub fn is_open(&self) -> bool {
        matches!(*self.state(), State::Open { until } if Instant::now() < until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_the_failures_in_a_row_and_probes_when_the_time_is_up() {
        let b = Breaker::new(3, Duration::from_secs(30));
        let t0 = Instant::now();
        b.failure_at(t0);
        b.failure_at(t0);
        assert!(b.check_at(t0).is_ok(), "two failures: still closed");
        b.success();
        b.failure_at(t0);
        b.failure_at(t0);
        assert!(b.check_at(t0).is_ok(), "a success resets the count");
        b.failure_at(t0);
        let refused = b.check_at(t0 + Duration::from_secs(10)).unwrap_err();
        assert_eq!(refused.retry_after, Duration::from_secs(20));
        // A late failure of a call made before it opened does not extend the wait.
        b.failure_at(t0 + Duration::from_secs(10));
        // Time is up: calls go through as probes; the first without an answer opens it again.
        let later = t0 + Duration::from_secs(31);
        assert!(b.check_at(later).is_ok());
        assert!(b.check_at(later).is_ok(), "never stuck waiting for a probe");
        b.failure_at(later);
        assert!(b.check_at(later + Duration::from_secs(29)).is_err());
        assert!(b.check_at(later + Duration::from_secs(31)).is_ok());
        b.success();
        assert!(!b.is_open());
        b.failure_at(later + Duration::from_secs(31));
        assert!(
            b.check_at(later + Duration::from_secs(31)).is_ok(),
            "closed again: one failure counts from zero"
        );
    }

    #[test]
    fn zero_disables_it() {
        let b = Breaker::new(0, Duration::from_secs(30));
        for _ in 0..100 {
            b.failure();
        }
        assert!(b.check().is_ok());
    }
}
