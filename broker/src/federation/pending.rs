//! Pending upstream logins: single use, with a TTL, bound to the browser that started them by
//! a cookie as well as `state` (RFC 6749 §10.12), and carrying the original downstream request.
//!
//! Each pending login has its own binding cookie, named after its `state`, holding a fresh
//! random secret. Two tabs logging in at once each keep their own cookie, and a cookie planted
//! from a sibling subdomain (cookie tossing) cannot fix the binding: the broker never adopts a
//! secret it finds in the browser, it only checks one it set itself.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::crypto::{random_token, sha256_b64url, TOKEN_LEN};
use crate::oidc::authorize::AuthorizeRequest;
use crate::sessions::SessionStore;

/// Prefix of the binding cookies' names; the rest of the name comes from the login's `state`.
pub const COOKIE_PREFIX: &str = "broker_login_";

/// The name of the binding cookie of the login with this `state` (before any `__Host-`).
pub fn cookie_name(state: &str) -> String {
    let digest = sha256_b64url(state);
    format!("{COOKIE_PREFIX}{}", &digest[..16])
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PendingLogin {
    pub request: AuthorizeRequest,
    pub nonce: Option<String>,
    pub pkce_verifier: Option<String>,
    pub created_at: i64,
    /// The broker asked the upstream for a fresh authentication (`prompt=login`), so the time of
    /// the callback may stand for `auth_time` when the upstream does not send one.
    #[serde(default)]
    pub forced_login: bool,
}

/// Unknown, expired or already used `state`, or a callback from another browser than the one
/// that started the login (the binding is part of the key, so that case changes nothing).
#[derive(Debug, PartialEq, Eq)]
pub struct UnknownLogin;

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

    fn key(state: &str, browser_secret: &str) -> String {
        format!(
            "pending:{}:{}",
            sha256_b64url(state),
            sha256_b64url(browser_secret)
        )
    }

    /// Stores a pending login with a fresh state and binding secret.
    pub async fn start(
        &self,
        request: AuthorizeRequest,
        forced_login: bool,
        use_nonce: bool,
        use_pkce: bool,
        now: i64,
    ) -> anyhow::Result<Started> {
        let started = Started {
            state: random_token(),
            nonce: use_nonce.then(random_token),
            pkce_verifier: use_pkce.then(random_token),
            browser_secret: random_token(),
        };
        let pending = PendingLogin {
            request,
            nonce: started.nonce.clone(),
            pkce_verifier: started.pkce_verifier.clone(),
            created_at: now,
            forced_login,
        };
        self.store
            .put(
                &Self::key(&started.state, &started.browser_secret),
                &serde_json::to_vec(&pending)?,
                self.ttl,
            )
            .await?;
        Ok(started)
    }

    /// Consumes the pending login for `state` if this browser started it, in one atomic step. A
    /// callback from another browser looks for another key and leaves the login in place.
    pub async fn finish(
        &self,
        state: &str,
        browser_secret: Option<&str>,
    ) -> anyhow::Result<Result<PendingLogin, UnknownLogin>> {
        let Some(browser_secret) = browser_secret.filter(|s| s.len() == TOKEN_LEN) else {
            return Ok(Err(UnknownLogin));
        };
        if state.len() != TOKEN_LEN {
            return Ok(Err(UnknownLogin));
        }
        match self.store.take(&Self::key(state, browser_secret)).await? {
            Some(bytes) => Ok(Ok(serde_json::from_slice(&bytes)?)),
            None => Ok(Err(UnknownLogin)),
        }
    }
}
