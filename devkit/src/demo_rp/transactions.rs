//! Logins in flight: what `/login` must remember for `/callback`, keyed by the random id in the
//! `demo_rp_tx` cookie. Kept server-side so the PKCE verifier never reaches the browser.

use std::collections::HashMap;
use std::sync::Mutex;

use openidconnect::{CsrfToken, Nonce, PkceCodeVerifier};

use crate::util::{lock, random_token};

/// How long a citizen may take at the broker and VNeID before the login is forgotten.
const TX_TTL_SECS: u64 = 600;

pub(crate) struct Pending {
    pub(crate) state: CsrfToken,
    pub(crate) nonce: Nonce,
    pub(crate) pkce_verifier: PkceCodeVerifier,
}

#[derive(Default)]
pub(crate) struct Transactions {
    pending: Mutex<HashMap<String, (Pending, u64)>>,
}

impl Transactions {
    /// Stores a login and returns the id to put in the cookie.
    pub(crate) fn insert(&self, pending: Pending, now: u64) -> anyhow::Result<String> {
        let id = random_token()?;
        let mut map = lock(&self.pending);
        // A demo sees few logins, so a full sweep per insert costs nothing.
        map.retain(|_, (_, expires_at)| *expires_at > now);
        map.insert(id.clone(), (pending, now + TX_TTL_SECS));
        Ok(id)
    }

    /// Takes a login out (single use), if it has not expired.
    pub(crate) fn take(&self, id: &str, now: u64) -> Option<Pending> {
        lock(&self.pending)
            .remove(id)
            .filter(|(_, expires_at)| *expires_at > now)
            .map(|(pending, _)| pending)
    }
}
