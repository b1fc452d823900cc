//! Authorization codes: 256-bit random, held in the session store for `code_ttl` under a key
//! scoped by client, so another client's code is simply unknown. Redemption swaps the record
//! for a "used" marker atomically; a second redemption finds the marker and the grant the code
//! gave is revoked (RFC 6749 §4.1.2, RFC 9700 §4.5.1).

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::accounts::Loa;
use crate::crypto::{random_token, sha256_b64url, TOKEN_LEN};
use crate::scope::Scope;
use crate::sessions::SessionStore;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CodeRecord {
    pub client_id: String,
    pub redirect_uri: String,
    pub code_challenge: Option<String>,
    pub nonce: Option<String>,
    pub scope: Scope,
    pub resource: Option<String>,
    pub account_id: String,
    pub sid: String,
    pub auth_time: Option<i64>,
    pub loa: Loa,
    pub amr: Vec<String>,
    /// Claims the RP asked for in the ID token (`claims` parameter).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub id_token_claims: Vec<String>,
    /// RFC 9449 §10: the code is redeemed only with a DPoP proof of this key (`dpop_jkt`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpop_jkt: Option<String>,
    /// Decided when the code is issued, so a replay can revoke what the first redemption got.
    pub grant_id: String,
    /// The mobile device the code was issued to (its client's `device_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    pub expires_at: i64,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "state")]
enum Stored {
    #[serde(rename = "fresh")]
    Fresh(Box<CodeRecord>),
    #[serde(rename = "used")]
    Used { grant_id: String },
}

pub enum Redemption {
    Fresh(Box<CodeRecord>),
    /// The code was redeemed before: the caller revokes this grant.
    Replayed {
        grant_id: String,
    },
    Unknown,
}

#[derive(Clone)]
pub struct Codes {
    store: Arc<dyn SessionStore>,
    ttl: Duration,
}

impl Codes {
    pub fn new(store: Arc<dyn SessionStore>, ttl: Duration) -> Self {
        Self { store, ttl }
    }

    fn key(client_id: &str, code: &str) -> String {
        format!("code:{}:{}", sha256_b64url(client_id), sha256_b64url(code))
    }

    pub async fn issue(&self, record: CodeRecord) -> anyhow::Result<String> {
        let code = random_token();
        let value = serde_json::to_vec(&Stored::Fresh(Box::new(record.clone())))?;
        // Keep the replay marker a little longer than the code itself.
        self.store
            .put(&Self::key(&record.client_id, &code), &value, self.ttl * 10)
            .await?;
        Ok(code)
    }

    /// Reads a code without consuming it; an expired code is unknown (to check bindings before redeeming).
    pub async fn peek(&self, client_id: &str, code: &str, now: i64) -> anyhow::Result<Redemption> {
        if code.len() != TOKEN_LEN {
            return Ok(Redemption::Unknown);
        }
        let Some(bytes) = self.store.get(&Self::key(client_id, code)).await? else {
            return Ok(Redemption::Unknown);
        };
        Ok(match serde_json::from_slice::<Stored>(&bytes)? {
            Stored::Fresh(record) if record.expires_at > now => Redemption::Fresh(record),
            Stored::Fresh(_) => Redemption::Unknown,
            Stored::Used { grant_id } => Redemption::Replayed { grant_id },
        })
    }

    /// Consumes the code atomically; only one caller ever gets `Fresh`.
    pub async fn redeem(
        &self,
        client_id: &str,
        code: &str,
        grant_id: &str,
    ) -> anyhow::Result<Redemption> {
        let marker = serde_json::to_vec(&Stored::Used {
            grant_id: grant_id.to_string(),
        })?;
        let Some(previous) = self
            .store
            .swap(&Self::key(client_id, code), &marker)
            .await?
        else {
            return Ok(Redemption::Unknown);
        };
        Ok(match serde_json::from_slice::<Stored>(&previous)? {
            Stored::Fresh(record) => Redemption::Fresh(record),
            Stored::Used { grant_id } => Redemption::Replayed { grant_id },
        })
    }
}
