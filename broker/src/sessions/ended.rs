//! Ended-session markers: a browser session that was logged out is remembered for twice the
//! code lifetime, so that a code issued in it just before the logout cannot be redeemed after.

use std::sync::Arc;
use std::time::Duration;

use super::SessionStore;
use crate::crypto::sha256_b64url;

#[derive(Clone)]
pub struct EndedSessions {
    store: Arc<dyn SessionStore>,
    /// Outlives every code of the session.
    ttl: Duration,
}

impl EndedSessions {
    /// `code_ttl`: the lifetime of an authorization code.
    pub fn new(store: Arc<dyn SessionStore>, code_ttl: Duration) -> Self {
        Self {
            store,
            ttl: code_ttl * 2,
        }
    }

    fn key(sid: &str) -> String {
        format!("ended-sid:{}", sha256_b64url(sid))
    }

    /// Marks the session `sid` as ended.
    pub async fn mark(&self, sid: &str) -> anyhow::Result<()> {
        self.store.put(&Self::key(sid), b"1", self.ttl).await
    }

    pub async fn is_ended(&self, sid: &str) -> anyhow::Result<bool> {
        Ok(self.store.get(&Self::key(sid)).await?.is_some())
    }
}
