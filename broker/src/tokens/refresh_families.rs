//! Grants and their refresh-token families. A grant is what one authorization (code exchange)
//! gave a client; its refresh tokens form one family, numbered by generation. A refresh token is
//! `{grant id}.{generation}.{MAC}`, the MAC keyed by a key derived from the master key, so the
//! database holds no token secret at all, only the current generation. Rotation moves the
//! generation on in one conditional UPDATE. An authentic token of an earlier generation is a
//! replay and revokes the whole grant (RFC 9700 §4.14.2); a forged one (bad MAC) changes nothing,
//! so knowing a grant id (it is in access tokens) is not enough to revoke anyone's family.

use async_trait::async_trait;

use crate::crypto::{ct_eq, MasterKey};
use crate::scope::Scope;
use crate::transaction::Transaction;

#[derive(Clone, Debug)]
pub struct GrantRecord {
    pub id: String,
    pub client_id: String,
    pub account_id: Option<String>,
    pub sid: Option<String>,
    pub scope: Scope,
    /// The RFC 8707 resource of the authorization request: refreshed tokens keep their audience.
    pub resource: Option<String>,
    pub acr: Option<String>,
    pub auth_time: Option<i64>,
    /// How the person authenticated (OIDC Core §2 `amr`), for ID tokens issued on refresh.
    pub amr: Vec<String>,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
    /// The generation of the current refresh token; `None` when the grant has none (any more).
    pub refresh_generation: Option<i64>,
    pub refresh_expires_at: Option<i64>,
    /// The mobile device the grant was issued to (mobile clients only): the family lives only
    /// while that device holds the account's mobile slot (`crate::devices`).
    pub device: Option<crate::devices::Device>,
    /// The DPoP key (RFC 7638 thumbprint) the refresh family is bound to (RFC 9449 §5).
    pub dpop_jkt: Option<String>,
}

/// What recording a grant did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrantCreated {
    Created,
    /// A grant with this id exists: its code is being redeemed twice.
    Duplicate,
    /// The session it belongs to has ended (in SQL): no grant may join it.
    SessionEnded,
}

impl GrantRecord {
    /// Whether `token` is this family's current refresh token, still usable at `now`.
    pub fn refresh_is_current(&self, token: &RefreshToken, now: i64) -> bool {
        self.id == token.grant_id
            && self.revoked_at.is_none()
            && self.refresh_expires_at.is_some_and(|t| t > now)
            && self.refresh_generation == Some(token.generation)
    }
}

/// An authentic refresh token: its grant and generation.
#[derive(Debug, PartialEq, Eq)]
pub struct RefreshToken {
    pub grant_id: String,
    pub generation: i64,
}

/// Mints and checks refresh tokens.
#[derive(Clone)]
pub struct RefreshTokens {
    master: MasterKey,
}

impl RefreshTokens {
    pub fn new(master: MasterKey) -> Self {
        Self { master }
    }

    pub fn mint(&self, grant_id: &str, generation: i64) -> String {
        let body = format!("{grant_id}.{generation}");
        let mac = self.master.refresh_mac(&body);
        format!("{body}.{mac}")
    }

    /// The token's grant and generation if its MAC is right; `None` for anything else.
    pub fn verify(&self, token: &str) -> Option<RefreshToken> {
        if token.len() > 128 {
            return None;
        }
        let (body, mac) = token.rsplit_once('.')?;
        let (grant_id, generation) = body.split_once('.')?;
        let generation: i64 = generation.parse().ok().filter(|g| *g >= 0)?;
        let expected = self.master.refresh_mac(body);
        ct_eq(expected.as_bytes(), mac.as_bytes()).then(|| RefreshToken {
            grant_id: grant_id.to_string(),
            generation,
        })
    }
}

#[derive(Debug)]
pub enum RotateOutcome {
    Rotated(Box<GrantRecord>),
    /// The offered token is not the live current one of a live grant of this client.
    NotCurrent,
}

#[async_trait]
pub trait GrantStore: Send + Sync {
    /// Records a grant (with its refresh family, if any), unless a grant with this id exists
    /// already (the code it comes from is being redeemed twice at once) or its session has
    /// ended in SQL.
    async fn create_grant(&self, grant: &GrantRecord) -> anyhow::Result<GrantCreated>;
    /// The same within the caller's transaction.
    async fn create_grant_in(
        &self,
        tx: &mut crate::transaction::Transaction,
        grant: &GrantRecord,
    ) -> anyhow::Result<GrantCreated>;
    async fn find_grant(&self, grant_id: &str) -> anyhow::Result<Option<GrantRecord>>;
    /// Moves the family from `generation` to the next in one atomic statement, only if the grant
    /// is live, belongs to `client_id`, is at that generation, its refresh token has not expired,
    /// and it is bound to no DPoP key or to `dpop_jkt`.
    async fn rotate_refresh(
        &self,
        grant_id: &str,
        client_id: &str,
        generation: i64,
        dpop_jkt: Option<&str>,
        now: i64,
    ) -> anyhow::Result<RotateOutcome>;
    /// Revokes a grant (its refresh family and access tokens). True if it was live.
    async fn revoke_grant(&self, grant_id: &str, reason: &str, now: i64) -> anyhow::Result<bool>;
    /// Revokes one access token until it expires.
    async fn deny_access_token(
        &self,
        jti_hash: &str,
        expires_at: i64,
        now: i64,
    ) -> anyhow::Result<()>;
    /// Whether an access token is still live: not denied itself, and its grant (if any) not revoked.
    async fn access_token_live(
        &self,
        jti_hash: &str,
        grant_id: Option<&str>,
    ) -> anyhow::Result<bool>;
    /// Drops expired refresh credentials and access-token revocations. Returns how many.
    async fn purge_expired(&self, now: i64) -> anyhow::Result<u64>;
    /// Revokes every live grant of a browser session (logout). Returns how many.
    async fn revoke_session(&self, sid: &str, reason: &str, now: i64) -> anyhow::Result<u64>;
    /// The same within the caller's transaction (with the session's `session:ended` event).
    async fn revoke_session_in(
        &self,
        tx: &mut Transaction,
        sid: &str,
        reason: &str,
        now: i64,
    ) -> anyhow::Result<u64>;
    /// Every grant issued under a session, revoked or not: who had a part in it.
    async fn grants_of_session(&self, sid: &str) -> anyhow::Result<Vec<GrantRecord>>;
    /// Who had a part in each of these sessions, in one read: `(sid, account_id, client_id)`
    /// of their grants, revoked or not, each once.
    async fn clients_of_sessions(
        &self,
        sids: &[&str],
    ) -> anyhow::Result<Vec<(String, Option<String>, String)>>;
    /// The live (not revoked) grants of a client.
    async fn live_grants_of_client(&self, client_id: &str) -> anyhow::Result<Vec<GrantRecord>>;
    /// Revokes every live grant of a client (the client is being deleted). Returns how many.
    async fn revoke_client(&self, client_id: &str, reason: &str, now: i64) -> anyhow::Result<u64>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    #[test]
    fn refresh_tokens_are_authenticated() {
        let tokens = RefreshTokens::new(
            MasterKey::from_secret(&Secret::new(MasterKey::generate_encoded())).unwrap(),
        );
        let token = tokens.mint("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", 7);
        assert_eq!(
            tokens.verify(&token),
            Some(RefreshToken {
                grant_id: "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b".into(),
                generation: 7
            })
        );
        assert_eq!(
            tokens.verify(&token.replacen(".7.", ".6.", 1)),
            None,
            "the generation is covered by the MAC"
        );
        assert_eq!(
            tokens.verify(&token.replacen("0190", "0191", 1)),
            None,
            "so is the grant id"
        );
        let other = RefreshTokens::new(
            MasterKey::from_secret(&Secret::new(MasterKey::generate_encoded())).unwrap(),
        );
        assert_eq!(other.verify(&token), None, "another master key");
        assert_eq!(tokens.verify("garbage"), None);
    }
}
