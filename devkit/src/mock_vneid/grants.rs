//! In-memory authorization codes and access tokens, with their lifetimes.
//!
//! A mock needs no durability: a restart forgets every code and token, which is fine in dev.

use std::collections::HashMap;
use std::sync::Mutex;

use super::citizens::Citizen;
use crate::util::{lock, random_token};

pub(crate) const CODE_TTL_SECS: u64 = 60;
pub(crate) const ACCESS_TOKEN_TTL_SECS: u64 = 600;

/// Everything a code is bound to, checked again at `/token`.
#[derive(Clone, Debug)]
pub(crate) struct CodeGrant {
    pub(crate) client_id: String,
    pub(crate) redirect_uri: String,
    pub(crate) scope: String,
    pub(crate) nonce: Option<String>,
    pub(crate) code_challenge: Option<String>,
    /// Who logs in (a copy: synthetic citizens exist only in their grants).
    pub(crate) citizen: Citizen,
    pub(crate) auth_time: u64,
}

/// A map whose entries lapse. Expired entries are swept at most once a second, so a load test
/// issuing thousands of codes a second does not pay a full scan on every insert.
struct ExpiringMap<T> {
    entries: HashMap<String, (T, u64)>,
    last_sweep: u64,
}

impl<T> Default for ExpiringMap<T> {
    fn default() -> Self {
        Self {
            entries: HashMap::new(),
            last_sweep: 0,
        }
    }
}

impl<T> ExpiringMap<T> {
    fn insert(&mut self, value: T, expires_at: u64, now: u64) -> anyhow::Result<String> {
        if now > self.last_sweep {
            self.entries.retain(|_, (_, exp)| *exp > now);
            self.last_sweep = now;
        }
        let key = random_token()?;
        self.entries.insert(key.clone(), (value, expires_at));
        Ok(key)
    }

    fn live(entry: Option<(T, u64)>, now: u64) -> Option<T> {
        entry.filter(|(_, exp)| *exp > now).map(|(value, _)| value)
    }
}

#[derive(Default)]
pub(crate) struct Grants {
    codes: Mutex<ExpiringMap<CodeGrant>>,
    access_tokens: Mutex<ExpiringMap<Citizen>>,
}

impl Grants {
    pub(crate) fn issue_code(&self, grant: CodeGrant, now: u64) -> anyhow::Result<String> {
        lock(&self.codes).insert(grant, now + CODE_TTL_SECS, now)
    }

    /// Removes the code whatever happens next, so a code is spent by its first redemption
    /// attempt, successful or not (RFC 6749 §4.1.2: single use).
    pub(crate) fn take_code(&self, code: &str, now: u64) -> Option<CodeGrant> {
        ExpiringMap::live(lock(&self.codes).entries.remove(code), now)
    }

    pub(crate) fn issue_access_token(&self, citizen: Citizen, now: u64) -> anyhow::Result<String> {
        lock(&self.access_tokens).insert(citizen, now + ACCESS_TOKEN_TTL_SECS, now)
    }

    /// The citizen an access token was issued for, while it is live.
    pub(crate) fn access_token_citizen(&self, token: &str, now: u64) -> Option<Citizen> {
        let entry = lock(&self.access_tokens).entries.get(token).cloned();
        ExpiringMap::live(entry, now)
    }
}
