//! Browser SSO sessions at the broker. The cookie holds a random secret; the store key is its
//! hash, and the `sid` given to relying parties is a separate identifier, so a leaked `sid`
//! never lets anyone take over the session.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::SessionStore;
use crate::accounts::Loa;
use crate::crypto::{random_token, sha256_b64url, TOKEN_LEN};

pub const COOKIE: &str = "broker_session";

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SsoSession {
    pub sid: String,
    pub account_id: String,
    /// When the person authenticated, if known. Unknown (the upstream answered from its own
    /// session without saying when) never satisfies an RP's `max_age`.
    pub auth_time: Option<i64>,
    /// The VNeID assurance level this session was authenticated at.
    pub loa: Loa,
    pub amr: Vec<String>,
    pub upstream: String,
    /// The mobile device whose login started the session, if a mobile app's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
}

#[derive(Clone)]
pub struct SsoSessions {
    store: Arc<dyn SessionStore>,
    ttl: Duration,
}

impl SsoSessions {
    pub fn new(store: Arc<dyn SessionStore>, ttl: Duration) -> Self {
        Self { store, ttl }
    }

    fn key(secret: &str) -> String {
        format!("sso:{}", sha256_b64url(secret))
    }

    /// Starts a session; returns the cookie secret.
    pub async fn start(&self, session: &SsoSession) -> anyhow::Result<String> {
        let secret = random_token();
        self.store
            .put(&Self::key(&secret), &serde_json::to_vec(session)?, self.ttl)
            .await?;
        Ok(secret)
    }

    pub async fn find(&self, cookie_secret: &str) -> anyhow::Result<Option<SsoSession>> {
        if cookie_secret.len() != TOKEN_LEN {
            return Ok(None);
        }
        let Some(bytes) = self.store.get(&Self::key(cookie_secret)).await? else {
            return Ok(None);
        };
        Ok(serde_json::from_slice(&bytes).ok())
    }

    pub async fn end(&self, cookie_secret: &str) -> anyhow::Result<Option<SsoSession>> {
        let Some(bytes) = self.store.take(&Self::key(cookie_secret)).await? else {
            return Ok(None);
        };
        Ok(serde_json::from_slice(&bytes).ok())
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }
}
