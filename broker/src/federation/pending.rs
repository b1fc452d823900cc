//! Pending upstream logins: single use, with a TTL, bound to the browser that started them by
//! a cookie as well as `state` (RFC 6749 §10.12), and carrying the original downstream request.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::crypto::{ct_eq, random_token, sha256_b64url};
use crate::oidc::authorize::AuthorizeRequest;
use crate::sessions::SessionStore;

pub const COOKIE: &str = "broker_login";

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PendingLogin {
    pub request: AuthorizeRequest,
    pub nonce: Option<String>,
    pub pkce_verifier: Option<String>,
    /// SHA-256 of the browser-binding cookie.
    pub browser_hash: String,
    pub created_at: i64,
}

#[derive(Debug, PartialEq, Eq)]
pub enum PendingError {
    /// Unknown, expired or already used `state`.
    Unknown,
    /// The callback came from another browser than the one that started the login.
    WrongBrowser,
}

#[derive(Clone)]
pub struct PendingLogins {
    store: Arc<dyn SessionStore>,
    ttl: Duration,
}

pub struct Started {
    pub state: String,
    pub browser_secret: String,
    pub nonce: Option<String>,
    pub pkce_verifier: Option<String>,
}

impl PendingLogins {
    pub fn new(store: Arc<dyn SessionStore>, ttl: Duration) -> Self {
        Self { store, ttl }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    fn key(state: &str) -> String {
        format!("pending:{}", sha256_b64url(state))
    }

    /// Stores a pending login. Reuses the browser's binding secret when it already has one, so
    /// that two tabs logging in at once do not overwrite each other's cookie.
    pub async fn start(
        &self,
        request: AuthorizeRequest,
        browser_secret: Option<String>,
        use_nonce: bool,
        use_pkce: bool,
        now: i64,
    ) -> anyhow::Result<Started> {
        let browser_secret = browser_secret
            .filter(|s| s.len() == 43)
            .unwrap_or_else(random_token);
        let started = Started {
            state: random_token(),
            nonce: use_nonce.then(random_token),
            pkce_verifier: use_pkce.then(random_token),
            browser_secret,
        };
        let pending = PendingLogin {
            request,
            nonce: started.nonce.clone(),
            pkce_verifier: started.pkce_verifier.clone(),
            browser_hash: sha256_b64url(&started.browser_secret),
            created_at: now,
        };
        self.store
            .put(
                &Self::key(&started.state),
                &serde_json::to_vec(&pending)?,
                self.ttl,
            )
            .await?;
        Ok(started)
    }

    /// Consumes the pending login for `state` if this browser started it. A callback from the
    /// wrong browser leaves it in place.
    pub async fn finish(
        &self,
        state: &str,
        browser_secret: Option<&str>,
    ) -> anyhow::Result<Result<PendingLogin, PendingError>> {
        if state.len() != 43 {
            return Ok(Err(PendingError::Unknown));
        }
        let key = Self::key(state);
        let Some(bytes) = self.store.get(&key).await? else {
            return Ok(Err(PendingError::Unknown));
        };
        let pending: PendingLogin = serde_json::from_slice(&bytes)?;
        let offered = sha256_b64url(browser_secret.unwrap_or_default());
        if !ct_eq(offered.as_bytes(), pending.browser_hash.as_bytes()) {
            return Ok(Err(PendingError::WrongBrowser));
        }
        match self.store.take(&key).await? {
            Some(_) => Ok(Ok(pending)),
            None => Ok(Err(PendingError::Unknown)),
        }
    }
}
