//! Signing keys: one ring per algorithm (RS256, ES256, EdDSA). A key's state is derived from
//! its schedule, so every instance agrees on it without a promotion job:
//! `next` (published, not signing) until `activates_at`, `active` (signing) until `retires_at`,
//! `retired` (published, verify only) until `removes_at`, then `removed`.
//! Private keys are PKCS#8, sealed under the master key; `store` keeps them in SQL or files.

pub mod file_store;
pub mod generate;
pub mod keyring;
pub mod rotation;
pub mod signer;

use serde::{Deserialize, Serialize};

#[allow(clippy::upper_case_acronyms)]
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub enum Alg {
    RS256,
    ES256,
    EdDSA,
}

impl Alg {
    pub const ALL: [Alg; 3] = [Alg::RS256, Alg::ES256, Alg::EdDSA];

    pub fn as_str(self) -> &'static str {
        match self {
            Alg::RS256 => "RS256",
            Alg::ES256 => "ES256",
            Alg::EdDSA => "EdDSA",
        }
    }

    pub fn parse(text: &str) -> Option<Alg> {
        Alg::ALL
            .into_iter()
            .find(|a| a.as_str().eq_ignore_ascii_case(text))
    }

    pub fn jwt(self) -> jsonwebtoken::Algorithm {
        match self {
            Alg::RS256 => jsonwebtoken::Algorithm::RS256,
            Alg::ES256 => jsonwebtoken::Algorithm::ES256,
            Alg::EdDSA => jsonwebtoken::Algorithm::EdDSA,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyState {
    Next,
    Active,
    Retired,
    Removed,
}

/// A key as stored: the sealed private half, the public JWK and the schedule.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StoredKey {
    pub kid: String,
    pub alg: Alg,
    pub private_enc: String,
    pub public_jwk: serde_json::Value,
    pub created_at: i64,
    pub activates_at: i64,
    pub retires_at: Option<i64>,
    pub removes_at: Option<i64>,
}

impl StoredKey {
    pub fn state(&self, now: i64) -> KeyState {
        if self.removes_at.is_some_and(|t| t <= now) {
            KeyState::Removed
        } else if self.retires_at.is_some_and(|t| t <= now) {
            KeyState::Retired
        } else if self.activates_at > now {
            KeyState::Next
        } else {
            KeyState::Active
        }
    }

    pub fn is_published(&self, now: i64) -> bool {
        self.state(now) != KeyState::Removed
    }
}

#[async_trait::async_trait]
pub trait KeyStore: Send + Sync {
    async fn list(&self) -> anyhow::Result<Vec<StoredKey>>;
    async fn insert(&self, key: &StoredKey) -> anyhow::Result<()>;
    async fn set_schedule(
        &self,
        kid: &str,
        retires_at: Option<i64>,
        removes_at: Option<i64>,
    ) -> anyhow::Result<()>;
}
