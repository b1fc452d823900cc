//! Budgets that keep unauthenticated callers from making the broker hold state or call VNeID
//! on their behalf: pending logins per client address and per instance, and failed upstream
//! code exchanges per address. Free of actix: the HTTP layer finds the [`ClientKey`] and asks.
//!
//! Per-address budgets are generous (carrier-grade NAT puts many honest citizens behind one
//! address); the per-instance cap is what protects memory and the session store.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// Who a request comes from, for limits: an IPv4 address, or the /64 of an IPv6 address (one
/// subscriber usually holds a whole /64, so counting single addresses would be no limit at all).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClientKey(IpAddr);

impl ClientKey {
    /// The address (an IPv6 address's /64).
    pub fn ip(&self) -> IpAddr {
        self.0
    }

    pub fn from_ip(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self(IpAddr::V4(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self(IpAddr::V4(v4)),
                None => {
                    let bits = u128::from(v6) & !((1u128 << 64) - 1);
                    Self(IpAddr::V6(Ipv6Addr::from(bits)))
                }
            },
        }
    }
}

/// The address, or the /64 as `2001:db8:1:2::`: the name of a counter shared between instances.
impl std::fmt::Display for ClientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Why a login was not started or finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// This address has too many logins in progress.
    AddressBusy { retry_after: u64 },
    /// This instance holds as many pending logins as it may.
    InstanceFull { retry_after: u64 },
    /// Too many callbacks from this address failed at the upstream lately.
    TooManyFailures { retry_after: u64 },
}

impl Refusal {
    pub fn retry_after(&self) -> u64 {
        match *self {
            Refusal::AddressBusy { retry_after }
            | Refusal::InstanceFull { retry_after }
            | Refusal::TooManyFailures { retry_after } => retry_after.max(1),
        }
    }
}

/// The caps, each counted over the pending-login lifetime; 0 means no cap.
#[derive(Clone, Copy, Debug)]
pub struct Budgets {
    /// Pending logins one address (one IPv6 /64) may start.
    pub pending_logins_per_address: u32,
    /// Pending logins this instance holds at once.
    pub pending_logins_per_instance: u32,
    /// Failed upstream code exchanges one address may cause.
    pub upstream_failures_per_address: u32,
}

#[derive(Clone)]
pub struct LoginBudget {
    inner: Arc<Inner>,
}

struct Inner {
    per_address: Option<DefaultKeyedRateLimiter<ClientKey>>,
    live: LiveCount,
    max_live: u32,
    failures: Option<FailureWindows>,
}

impl LoginBudget {
    /// `ttl` is the lifetime of a pending login: the window the budgets are counted over.
    pub fn new(budgets: Budgets, ttl: Duration) -> Self {
        let ttl = ttl.max(Duration::from_secs(1));
        let per_address = NonZeroU32::new(budgets.pending_logins_per_address).and_then(|n| {
            Quota::with_period(ttl / n.get()).map(|q| RateLimiter::keyed(q.allow_burst(n)))
        });
        let failures = (budgets.upstream_failures_per_address > 0).then(|| FailureWindows {
            limit: budgets.upstream_failures_per_address,
            window: ttl.as_secs() as i64,
            counts: Mutex::new(HashMap::new()),
        });
        Self {
            inner: Arc::new(Inner {
                per_address,
                live: LiveCount::new(ttl.as_secs() as i64),
                max_live: budgets.pending_logins_per_instance,
                failures,
            }),
        }
    }

    /// Admits one more pending login from `key` at `now`, or says why not.
    pub fn admit(&self, key: Option<ClientKey>, now: i64) -> Result<(), Refusal> {
        let inner = &self.inner;
        if inner.max_live > 0 && inner.live.count(now) >= inner.max_live {
            return Err(Refusal::InstanceFull {
                retry_after: inner.live.bucket_secs() as u64,
            });
        }
        if let (Some(limiter), Some(key)) = (&inner.per_address, key) {
            if let Err(not_until) = limiter.check_key(&key) {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                return Err(Refusal::AddressBusy {
                    retry_after: wait.as_secs(),
                });
            }
        }
        inner.live.add(now);
        Ok(())
    }

    /// A pending login created at `created_at` was consumed (finished or refused).
    pub fn finished(&self, created_at: i64) {
        self.inner.live.remove(created_at);
    }

    /// Whether `key` may still spend a pending login on an upstream code exchange.
    pub fn may_exchange(&self, key: Option<ClientKey>, now: i64) -> Result<(), Refusal> {
        match (&self.inner.failures, key) {
            (Some(f), Some(key)) => f.check(key, now),
            _ => Ok(()),
        }
    }

    /// The upstream refused a code or token that `key` brought back.
    pub fn upstream_failed(&self, key: Option<ClientKey>, now: i64) {
        if let (Some(f), Some(key)) = (&self.inner.failures, key) {
            f.record(key, now);
        }
    }

    /// Forgets idle addresses now and then, so that the maps do not grow forever.
    pub fn spawn_cleanup(&self, clock: crate::clock::SharedClock) {
        let budget = self.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(Duration::from_secs(60));
            loop {
                ticker.tick().await;
                if let Some(limiter) = &budget.inner.per_address {
                    limiter.retain_recent();
                    limiter.shrink_to_fit();
                }
                if let Some(f) = &budget.inner.failures {
                    f.forget_old(clock.now());
                }
            }
        });
    }

    #[cfg(test)]
    fn live(&self, now: i64) -> u32 {
        self.inner.live.count(now)
    }
}

/// Pending logins this instance created that are still alive, counted in time buckets over
/// the pending-login lifetime. With several instances a login may be started on one and
/// finished on another, which then takes one off its own count instead: each count is
/// approximate, the sum over instances is right. governor counts requests, not live records,
/// hence this small structure.
struct LiveCount {
    bucket: i64,
    slots: Mutex<Vec<(i64, u32)>>,
}

impl LiveCount {
    fn new(ttl: i64) -> Self {
        let bucket = (ttl / 60).max(1);
        let n = (ttl / bucket + 2) as usize;
        Self {
            bucket,
            slots: Mutex::new(vec![(i64::MIN, 0); n]),
        }
    }

    fn bucket_secs(&self) -> i64 {
        self.bucket
    }

    fn slot_of(&self, len: usize, t: i64) -> (i64, usize) {
        let id = t.div_euclid(self.bucket);
        (id, id.rem_euclid(len as i64) as usize)
    }

    fn add(&self, now: i64) {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let (id, i) = self.slot_of(slots.len(), now);
        if slots[i].0 != id {
            slots[i] = (id, 0);
        }
        slots[i].1 = slots[i].1.saturating_add(1);
    }

    fn remove(&self, created_at: i64) {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let (id, i) = self.slot_of(slots.len(), created_at);
        if slots[i].0 == id {
            slots[i].1 = slots[i].1.saturating_sub(1);
        }
    }

    fn count(&self, now: i64) -> u32 {
        let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let newest = now.div_euclid(self.bucket);
        let oldest = newest - slots.len() as i64 + 1;
        slots
            .iter()
            .filter(|(id, _)| *id >= oldest && *id <= newest)
            .map(|(_, n)| *n)
            .sum()
    }
}

/// Failed upstream exchanges per address in fixed windows. Checked before each exchange and
/// counted after a failure, which a token bucket cannot do without spending a token.
struct FailureWindows {
    limit: u32,
    window: i64,
    counts: Mutex<HashMap<ClientKey, (i64, u32)>>,
}

impl FailureWindows {
    fn check(&self, key: ClientKey, now: i64) -> Result<(), Refusal> {
        let counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        match counts.get(&key) {
            Some(&(start, n)) if now - start < self.window && n >= self.limit => {
                Err(Refusal::TooManyFailures {
                    retry_after: (start + self.window - now) as u64,
                })
            }
            _ => Ok(()),
        }
    }

    fn record(&self, key: ClientKey, now: i64) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let entry = counts.entry(key).or_insert((now, 0));
        if now - entry.0 >= self.window {
            *entry = (now, 0);
        }
        entry.1 = entry.1.saturating_add(1);
    }

    fn forget_old(&self, now: i64) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts.retain(|_, (start, _)| now - *start < self.window);
        counts.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budgets(per_address: u32, per_instance: u32, failures: u32) -> Budgets {
        Budgets {
            pending_logins_per_address: per_address,
            pending_logins_per_instance: per_instance,
            upstream_failures_per_address: failures,
        }
    }

    fn key(s: &str) -> Option<ClientKey> {
        Some(ClientKey::from_ip(s.parse().unwrap()))
    }

    #[test]
    fn ipv6_addresses_count_by_their_64() {
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("::ffff:10.0.0.1"), key("10.0.0.1"));
        assert_ne!(key("10.0.0.1"), key("10.0.0.2"));
    }

    #[test]
    fn per_address_cap_leaves_other_addresses_alone() {
        let b = LoginBudget::new(budgets(3, 0, 0), Duration::from_secs(600));
        for _ in 0..3 {
            assert!(b.admit(key("10.0.0.1"), 1000).is_ok());
        }
        assert!(matches!(
            b.admit(key("10.0.0.1"), 1000),
            Err(Refusal::AddressBusy { .. })
        ));
        assert!(b.admit(key("10.0.0.2"), 1000).is_ok());
    }

    #[test]
    fn instance_cap_counts_live_logins_only() {
        let b = LoginBudget::new(budgets(0, 2, 0), Duration::from_secs(600));
        assert!(b.admit(key("10.0.0.1"), 1000).is_ok());
        assert!(b.admit(key("10.0.0.2"), 1001).is_ok());
        assert!(matches!(
            b.admit(key("10.0.0.3"), 1002),
            Err(Refusal::InstanceFull { .. })
        ));
        b.finished(1000);
        assert_eq!(b.live(1003), 1);
        assert!(b.admit(key("10.0.0.3"), 1003).is_ok());
        // Unfinished logins stop counting once they have expired.
        assert_eq!(b.live(1003 + 700), 0);
    }

    #[test]
    fn failures_block_an_address_until_the_window_ends() {
        let b = LoginBudget::new(budgets(0, 0, 2), Duration::from_secs(600));
        let k = key("2001:db8::1");
        assert!(b.may_exchange(k, 0).is_ok());
        b.upstream_failed(k, 0);
        b.upstream_failed(k, 1);
        assert!(matches!(
            b.may_exchange(key("2001:db8::2"), 2),
            Err(Refusal::TooManyFailures { retry_after: 598 })
        ));
        assert!(b.may_exchange(key("10.0.0.1"), 2).is_ok());
        assert!(b.may_exchange(k, 600).is_ok());
    }
}
