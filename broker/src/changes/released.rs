//! The released-claims cache: what userinfo builds its answer from (the account, decrypted, its
//! legacy links and its approved roles), per account, bounded. An entry is dropped whenever SQL
//! changes what it holds (`crate::changes`), and after `TTL_SECS` in any case (a writer outside
//! every listener: another process on SQLite). It holds personal data only in memory, for
//! accounts in active use, as a request would.
//!
//! A read that misses takes a ticket before it goes to SQL and fills the entry only if no
//! invalidation of that account (or of all) happened meanwhile: a fill can never put back what
//! an invalidation removed.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crate::accounts::Account;
use crate::roles::Role;

/// Accounts held per instance (a few KB each).
pub const CAPACITY: usize = 4096;
/// How long an entry is used at most.
pub const TTL_SECS: i64 = 300;
const STRIPES: usize = 64;

/// What userinfo releases about an account comes from these.
#[derive(Debug)]
pub struct Released {
    /// `legacy_accounts` is `None` here: links are below, by source.
    pub account: Account,
    /// (source, legacy id) of every legacy record linked to the account.
    pub legacy_links: Vec<(String, String)>,
    pub approved_roles: Vec<Role>,
}

impl Released {
    /// The account as a client with `legacy_source` sees it (`AccountResolver::find_for`).
    pub fn account_for(&self, legacy_source: Option<&str>) -> Account {
        let mut account = self.account.clone();
        if let Some(source) = legacy_source {
            let mut ids: Vec<String> = self
                .legacy_links
                .iter()
                .filter(|(s, _)| s == source)
                .map(|(_, id)| id.clone())
                .collect();
            ids.sort();
            account.legacy_accounts = Some(ids);
        }
        account
    }
}

/// Proof that no invalidation was missed between the ticket and the fill.
#[derive(Clone, Copy, Debug)]
pub struct Ticket {
    stripe: usize,
    global: u64,
    local: u64,
}

#[derive(Clone)]
pub struct ReleasedCache {
    inner: Arc<Inner>,
}

struct Inner {
    entries: quick_cache::sync::Cache<String, (i64, Arc<Released>)>,
    global: AtomicU64,
    stripes: [AtomicU64; STRIPES],
    vouched: AtomicBool,
}

fn stripe(account_id: &str) -> usize {
    let mut h = DefaultHasher::new();
    account_id.hash(&mut h);
    (h.finish() % STRIPES as u64) as usize
}

impl ReleasedCache {
    pub fn new(capacity: usize, vouched: bool) -> Self {
        Self {
            inner: Arc::new(Inner {
                entries: quick_cache::sync::Cache::new(capacity.max(1)),
                global: AtomicU64::new(0),
                stripes: std::array::from_fn(|_| AtomicU64::new(0)),
                vouched: AtomicBool::new(vouched),
            }),
        }
    }

    /// The cached entry, if the cache is vouched for and the entry young enough.
    pub fn get(&self, account_id: &str, now: i64) -> Option<Arc<Released>> {
        if !self.inner.vouched.load(Ordering::Acquire) {
            return None;
        }
        let (loaded_at, released) = self.inner.entries.get(account_id)?;
        (now - loaded_at <= TTL_SECS && now >= loaded_at).then_some(released)
    }

    /// Taken before reading SQL for a fill.
    pub fn ticket(&self, account_id: &str) -> Ticket {
        let stripe = stripe(account_id);
        Ticket {
            stripe,
            global: self.inner.global.load(Ordering::Acquire),
            local: self.inner.stripes[stripe].load(Ordering::Acquire),
        }
    }

    /// Keeps what was read under `ticket`, unless something was invalidated since.
    pub fn fill(&self, account_id: &str, ticket: Ticket, released: Arc<Released>, now: i64) {
        if !self.inner.vouched.load(Ordering::Acquire) {
            return;
        }
        self.inner
            .entries
            .insert(account_id.to_string(), (now, released));
        // Checked after the insert: an invalidation that raced with it either bumped the
        // counters before this check (the entry is taken out again) or removed the entry after
        // the insert.
        if self.inner.global.load(Ordering::Acquire) != ticket.global
            || self.inner.stripes[ticket.stripe].load(Ordering::Acquire) != ticket.local
        {
            self.inner.entries.remove(account_id);
        }
    }

    pub fn invalidate(&self, account_id: &str) {
        self.inner.stripes[stripe(account_id)].fetch_add(1, Ordering::AcqRel);
        self.inner.entries.remove(account_id);
    }

    pub fn invalidate_all(&self) {
        self.inner.global.fetch_add(1, Ordering::AcqRel);
        self.inner.entries.clear();
    }

    /// Unvouched, nothing is read or kept; vouched again, it starts empty (invalidations may
    /// have been missed meanwhile).
    pub fn set_vouched(&self, vouched: bool) {
        self.inner.vouched.store(vouched, Ordering::Release);
        self.invalidate_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounts::Loa;

    fn released(name: &str) -> Arc<Released> {
        Arc::new(Released {
            account: Account {
                id: "a".into(),
                personal_id: None,
                personal_id_flag: None,
                full_name: name.into(),
                birthdate: None,
                gender: None,
                account_type: "citizen".into(),
                loa: Loa::Two,
                phone: None,
                phone_verified: false,
                legacy_accounts: None,
                created_at: 0,
                updated_at: 0,
            },
            legacy_links: vec![("hue-s".into(), "2".into()), ("hue-s".into(), "1".into())],
            approved_roles: vec![],
        })
    }

    #[test]
    fn a_fill_never_restores_what_an_invalidation_removed() {
        let cache = ReleasedCache::new(16, true);
        let ticket = cache.ticket("a");
        cache.invalidate("a");
        cache.fill("a", ticket, released("old"), 10);
        assert!(cache.get("a", 10).is_none());

        let ticket = cache.ticket("a");
        cache.fill("a", ticket, released("new"), 10);
        assert_eq!(cache.get("a", 10).expect("kept").account.full_name, "new");
        assert!(cache.get("a", 10 + TTL_SECS + 1).is_none(), "too old");
        cache.invalidate_all();
        assert!(cache.get("a", 10).is_none());
    }

    #[test]
    fn unvouched_cache_keeps_nothing() {
        let cache = ReleasedCache::new(16, false);
        let ticket = cache.ticket("a");
        cache.fill("a", ticket, released("x"), 10);
        assert!(cache.get("a", 10).is_none());
    }

    #[test]
    fn legacy_links_by_source() {
        let r = released("x");
        assert_eq!(
            r.account_for(Some("hue-s")).legacy_accounts,
            Some(vec!["1".to_string(), "2".to_string()])
        );
        assert_eq!(r.account_for(None).legacy_accounts, None);
    }
}
