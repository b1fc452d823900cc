//! Grants and refresh-token families. A grant is what one authorization (code exchange) gave a
//! client; its refresh tokens form one family. Rotation: each refresh token is used once; a
//! second use is a replay and revokes the whole grant (RFC 9700 §4.14.2).

use async_trait::async_trait;

#[derive(Clone, Debug)]
pub struct GrantRecord {
    pub id: String,
    pub client_id: String,
    pub account_id: Option<String>,
    pub sid: Option<String>,
    pub scope: String,
    /// The RFC 8707 resource of the authorization request: refreshed tokens keep their audience.
    pub resource: Option<String>,
    pub acr: Option<String>,
    pub auth_time: Option<i64>,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

#[derive(Clone, Debug)]
pub struct RefreshRecord {
    pub token_hash: String,
    pub grant_id: String,
    pub scope: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
}

#[derive(Debug)]
pub enum RotateOutcome {
    Rotated,
    /// Someone used the token between our read and our write: treat as replay.
    AlreadyUsed,
}

#[async_trait]
pub trait GrantStore: Send + Sync {
    /// Records a grant and, optionally, its first refresh token, atomically.
    async fn create_grant(
        &self,
        grant: &GrantRecord,
        refresh: Option<&RefreshRecord>,
    ) -> anyhow::Result<()>;
    async fn find_refresh(
        &self,
        token_hash: &str,
    ) -> anyhow::Result<Option<(RefreshRecord, GrantRecord)>>;
    /// Marks `old_hash` used and stores `new` in one transaction, only if `old_hash` was unused.
    async fn rotate_refresh(
        &self,
        old_hash: &str,
        new: &RefreshRecord,
        now: i64,
    ) -> anyhow::Result<RotateOutcome>;
    /// Revokes a grant (and so its refresh family and access tokens). True if it was live.
    async fn revoke_grant(&self, grant_id: &str, reason: &str, now: i64) -> anyhow::Result<bool>;
    async fn find_grant(&self, grant_id: &str) -> anyhow::Result<Option<GrantRecord>>;
    /// Revokes one access token until it expires.
    async fn deny_access_token(&self, jti_hash: &str, expires_at: i64) -> anyhow::Result<()>;
    /// Whether an access token is still live: not denied itself, and its grant (if any) not revoked.
    async fn access_token_live(
        &self,
        jti_hash: &str,
        grant_id: Option<&str>,
    ) -> anyhow::Result<bool>;
    /// Deletes refresh tokens and access-token revocations that have expired. Returns how many.
    async fn purge_expired(&self, now: i64) -> anyhow::Result<u64>;
    /// Revokes every live grant of a browser session (logout). Returns how many.
    async fn revoke_session(&self, sid: &str, reason: &str, now: i64) -> anyhow::Result<u64>;
}
