//! `GrantStore` in SQL.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{opt_text, Db};
use crate::tokens::grants::{GrantRecord, GrantStore, RefreshRecord, RotateOutcome};

const GRANT_COLUMNS: &str = "g.id, g.client_id, g.account_id, g.sid, g.scope AS grant_scope, g.resource, g.acr, g.auth_time, g.created_at AS grant_created_at, g.revoked_at";

fn grant_from_row(row: &AnyRow) -> anyhow::Result<GrantRecord> {
    Ok(GrantRecord {
        id: row.try_get("id")?,
        client_id: row.try_get("client_id")?,
        account_id: opt_text(row, "account_id")?,
        sid: opt_text(row, "sid")?,
        scope: row.try_get("grant_scope")?,
        resource: opt_text(row, "resource")?,
        acr: opt_text(row, "acr")?,
        auth_time: row.try_get("auth_time")?,
        created_at: row.try_get("grant_created_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

async fn insert_refresh<'e, E>(executor: E, r: &RefreshRecord) -> anyhow::Result<()>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    sqlx::query("INSERT INTO refresh_tokens (token_hash, grant_id, scope, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(&r.token_hash)
        .bind(&r.grant_id)
        .bind(&r.scope)
        .bind(r.created_at)
        .bind(r.expires_at)
        .execute(executor)
        .await?;
    Ok(())
}

#[async_trait::async_trait]
impl GrantStore for Db {
    async fn create_grant(
        &self,
        g: &GrantRecord,
        refresh: Option<&RefreshRecord>,
    ) -> anyhow::Result<()> {
        let mut tx = self.pool().begin().await?;
        sqlx::query(
            "INSERT INTO grants (id, client_id, account_id, sid, scope, resource, acr, auth_time, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&g.id)
        .bind(&g.client_id)
        .bind(&g.account_id)
        .bind(&g.sid)
        .bind(&g.scope)
        .bind(&g.resource)
        .bind(&g.acr)
        .bind(g.auth_time)
        .bind(g.created_at)
        .execute(&mut *tx)
        .await?;
        if let Some(r) = refresh {
            insert_refresh(&mut *tx, r).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn find_refresh(
        &self,
        token_hash: &str,
    ) -> anyhow::Result<Option<(RefreshRecord, GrantRecord)>> {
        let sql = format!(
            "SELECT r.token_hash, r.grant_id, r.scope, r.created_at, r.expires_at, r.used_at, {GRANT_COLUMNS} \
             FROM refresh_tokens r JOIN grants g ON g.id = r.grant_id WHERE r.token_hash = $1"
        );
        let Some(row) = sqlx::query(&sql)
            .bind(token_hash)
            .fetch_optional(self.pool())
            .await?
        else {
            return Ok(None);
        };
        let refresh = RefreshRecord {
            token_hash: row.try_get("token_hash")?,
            grant_id: row.try_get("grant_id")?,
            scope: row.try_get("scope")?,
            created_at: row.try_get("created_at")?,
            expires_at: row.try_get("expires_at")?,
            used_at: row.try_get("used_at")?,
        };
        Ok(Some((refresh, grant_from_row(&row)?)))
    }

    async fn rotate_refresh(
        &self,
        old_hash: &str,
        new: &RefreshRecord,
        now: i64,
    ) -> anyhow::Result<RotateOutcome> {
        let mut tx = self.pool().begin().await?;
        let marked = sqlx::query(
            "UPDATE refresh_tokens SET used_at = $1 WHERE token_hash = $2 AND used_at IS NULL",
        )
        .bind(now)
        .bind(old_hash)
        .execute(&mut *tx)
        .await?;
        if marked.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(RotateOutcome::AlreadyUsed);
        }
        insert_refresh(&mut *tx, new).await?;
        tx.commit().await?;
        Ok(RotateOutcome::Rotated)
    }

    async fn revoke_grant(&self, grant_id: &str, reason: &str, now: i64) -> anyhow::Result<bool> {
        let result = sqlx::query("UPDATE grants SET revoked_at = $1, revoked_reason = $2 WHERE id = $3 AND revoked_at IS NULL")
            .bind(now)
            .bind(reason)
            .bind(grant_id)
            .execute(self.pool())
            .await?;
        Ok(result.rows_affected() > 0)
    }

    async fn find_grant(&self, grant_id: &str) -> anyhow::Result<Option<GrantRecord>> {
        let sql = format!("SELECT {GRANT_COLUMNS} FROM grants g WHERE g.id = $1");
        let row = sqlx::query(&sql)
            .bind(grant_id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(grant_from_row).transpose()
    }

    async fn deny_access_token(&self, jti_hash: &str, expires_at: i64) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO revoked_access_tokens (jti_hash, expires_at) VALUES ($1, $2) \
             ON CONFLICT (jti_hash) DO NOTHING",
        )
        .bind(jti_hash)
        .bind(expires_at)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    async fn access_token_live(
        &self,
        jti_hash: &str,
        grant_id: Option<&str>,
    ) -> anyhow::Result<bool> {
        // One round trip: the token's own revocation and its grant's.
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM revoked_access_tokens WHERE jti_hash = $1) AS denied, \
                    (SELECT COUNT(*) FROM grants WHERE id = $2 AND revoked_at IS NULL) AS live_grants",
        )
        .bind(jti_hash)
        .bind(grant_id.unwrap_or_default())
        .fetch_one(self.pool())
        .await?;
        let denied: i64 = row.try_get("denied")?;
        let live_grants: i64 = row.try_get("live_grants")?;
        Ok(denied == 0 && (grant_id.is_none() || live_grants > 0))
    }

    async fn revoke_session(&self, sid: &str, reason: &str, now: i64) -> anyhow::Result<u64> {
        let result = sqlx::query(
            "UPDATE grants SET revoked_at = $1, revoked_reason = $2 WHERE sid = $3 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(reason)
        .bind(sid)
        .execute(self.pool())
        .await?;
        Ok(result.rows_affected())
    }

    async fn purge_expired(&self, now: i64) -> anyhow::Result<u64> {
        let tokens = sqlx::query("DELETE FROM refresh_tokens WHERE expires_at < $1")
            .bind(now)
            .execute(self.pool())
            .await?;
        let denied = sqlx::query("DELETE FROM revoked_access_tokens WHERE expires_at < $1")
            .bind(now)
            .execute(self.pool())
            .await?;
        Ok(tokens.rows_affected() + denied.rows_affected())
    }
}
