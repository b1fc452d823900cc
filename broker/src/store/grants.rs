//! `GrantStore` in SQL. The hot path, refresh-token rotation, is one conditional UPDATE (on
//! PostgreSQL shared by the rotations that arrive together: `rotations.rs`).

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{opt_text, Db};
use crate::devices::Device;
use crate::scope::Scope;
use crate::tokens::refresh_families::{GrantCreated, GrantRecord, GrantStore, RotateOutcome};
use crate::transaction::Transaction;

pub(super) const GRANT_COLUMNS: &str =
    "id, client_id, account_id, sid, scope, resource, acr, auth_time, amr, created_at, revoked_at, \
                             refresh_generation, refresh_expires_at, device_group, device_id, dpop_jkt";

/// A grant is recorded unless its id exists or its session has ended in SQL (a logout or an
/// eviction committed while the code was on its way): one statement, no extra round trip. On
/// PostgreSQL the session's row is read `FOR SHARE`, so an insert that meets a session being
/// ended waits for that transaction and then sees it ended (`SessionEnds::end` marks the session
/// before it revokes the grants, so a grant inserted first is revoked by it). SQLite has one
/// writer at a time: the same order holds without a lock.
const INSERT_GRANT_POSTGRES: &str = "INSERT INTO grants (id, client_id, account_id, sid, scope, \
     resource, acr, auth_time, created_at, refresh_generation, refresh_expires_at, amr, \
     device_group, device_id, dpop_jkt) \
     SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15 \
     WHERE (SELECT ended_at FROM sessions WHERE sid = $4 FOR SHARE) IS NULL \
     ON CONFLICT (id) DO NOTHING";
const INSERT_GRANT_SQLITE: &str = "INSERT INTO grants (id, client_id, account_id, sid, scope, \
     resource, acr, auth_time, created_at, refresh_generation, refresh_expires_at, amr, \
     device_group, device_id, dpop_jkt) \
     SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15 \
     WHERE NOT EXISTS (SELECT 1 FROM sessions WHERE sid = $4 AND ended_at IS NOT NULL) \
     ON CONFLICT (id) DO NOTHING";

fn insert_grant<'q>(
    backend: super::Backend,
    g: &'q GrantRecord,
    amr: String,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    let sql = match backend {
        super::Backend::Postgres => INSERT_GRANT_POSTGRES,
        super::Backend::Sqlite => INSERT_GRANT_SQLITE,
    };
    grant_query(sql, g, amr)
}

/// `sql` with the grant's columns bound as $1 to $15, in `INSERT_GRANT_POSTGRES`'s order.
pub(super) fn grant_query<'q>(
    sql: &'q str,
    g: &'q GrantRecord,
    amr: String,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    sqlx::query(sql)
        .bind(&g.id)
        .bind(&g.client_id)
        .bind(&g.account_id)
        .bind(&g.sid)
        .bind(g.scope.to_string())
        .bind(&g.resource)
        .bind(&g.acr)
        .bind(g.auth_time)
        .bind(g.created_at)
        .bind(g.refresh_generation)
        .bind(g.refresh_expires_at)
        .bind(amr)
        .bind(g.device.as_ref().map(|d| d.group.clone()))
        .bind(g.device.as_ref().map(|d| d.id.clone()))
        .bind(&g.dpop_jkt)
}

/// Why a grant's insert inserted nothing: the id exists (a second redemption), or the session
/// ended. Read in a statement of its own, after the insert, so that a grant committed while the
/// insert waited is seen.
pub(super) async fn not_created<'e, E>(executor: E, grant_id: &str) -> anyhow::Result<GrantCreated>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let exists = sqlx::query("SELECT 1 AS one FROM grants WHERE id = $1")
        .bind(grant_id)
        .fetch_optional(executor)
        .await?;
    Ok(if exists.is_some() {
        GrantCreated::Duplicate
    } else {
        GrantCreated::SessionEnded
    })
}

pub(super) fn grant_from_row(row: &AnyRow) -> anyhow::Result<GrantRecord> {
    Ok(GrantRecord {
        id: row.try_get("id")?,
        client_id: row.try_get("client_id")?,
        account_id: opt_text(row, "account_id")?,
        sid: opt_text(row, "sid")?,
        scope: Scope::parse(&row.try_get::<String, _>("scope")?),
        resource: opt_text(row, "resource")?,
        acr: opt_text(row, "acr")?,
        auth_time: row.try_get("auth_time")?,
        amr: match opt_text(row, "amr")? {
            Some(json) => serde_json::from_str(&json)?,
            None => Vec::new(),
        },
        created_at: row.try_get("created_at")?,
        revoked_at: row.try_get("revoked_at")?,
        refresh_generation: row.try_get("refresh_generation")?,
        refresh_expires_at: row.try_get("refresh_expires_at")?,
        device: match (opt_text(row, "device_group")?, opt_text(row, "device_id")?) {
            (Some(group), Some(id)) => Some(Device { group, id }),
            _ => None,
        },
        dpop_jkt: opt_text(row, "dpop_jkt")?,
    })
}

/// The ids a revoking `UPDATE … RETURNING id` revoked.
pub(super) fn revoked_ids(rows: Vec<AnyRow>) -> anyhow::Result<Vec<String>> {
    rows.iter()
        .map(|row| Ok(row.try_get::<String, _>("id")?))
        .collect()
}

#[async_trait::async_trait]
impl GrantStore for Db {
    #[tracing::instrument(level = "debug", skip_all)]
    async fn create_grant(&self, g: &GrantRecord) -> anyhow::Result<GrantCreated> {
        let result = insert_grant(self.backend, g, serde_json::to_string(&g.amr)?)
            .execute(&self.pool())
            .await?;
        if result.rows_affected() == 1 {
            return Ok(GrantCreated::Created);
        }
        not_created(&self.pool(), &g.id).await
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn create_grant_in(
        &self,
        tx: &mut Transaction,
        g: &GrantRecord,
    ) -> anyhow::Result<GrantCreated> {
        let result = insert_grant(self.backend, g, serde_json::to_string(&g.amr)?)
            .execute(tx.connection())
            .await?;
        if result.rows_affected() == 1 {
            return Ok(GrantCreated::Created);
        }
        not_created(tx.connection(), &g.id).await
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn find_grant(&self, grant_id: &str) -> anyhow::Result<Option<GrantRecord>> {
        let sql = format!("SELECT {GRANT_COLUMNS} FROM grants WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(grant_id)
            .fetch_optional(&self.pool())
            .await?;
        row.as_ref().map(grant_from_row).transpose()
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn rotate_refresh(
        &self,
        grant_id: &str,
        client_id: &str,
        generation: i64,
        dpop_jkt: Option<&str>,
        now: i64,
    ) -> anyhow::Result<RotateOutcome> {
        let rotation = super::rotations::Rotation {
            grant_id: grant_id.to_owned(),
            client_id: client_id.to_owned(),
            generation,
            jkt: dpop_jkt.map(str::to_owned),
            now,
        };
        match self.rotations() {
            Some(rotations) => rotations.rotate(rotation).await,
            None => super::rotations::rotate_one(&self.pool(), &rotation).await,
        }
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn revoke_grant(&self, grant_id: &str, reason: &str, now: i64) -> anyhow::Result<bool> {
        let result = sqlx::query("UPDATE grants SET revoked_at = $1, revoked_reason = $2 WHERE id = $3 AND revoked_at IS NULL")
            .bind(now)
            .bind(reason)
            .bind(grant_id)
            .execute(&self.pool())
            .await?;
        let revoked = result.rows_affected() > 0;
        if revoked {
            self.grants_revoked([grant_id.to_string()], now);
        }
        Ok(revoked)
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn deny_access_token(
        &self,
        jti_hash: &str,
        expires_at: i64,
        now: i64,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO revoked_access_tokens (jti_hash, expires_at, revoked_at) \
             VALUES ($1, $2, $3) ON CONFLICT (jti_hash) DO NOTHING",
        )
        .bind(jti_hash)
        .bind(expires_at)
        .bind(now)
        .execute(&self.pool())
        .await?;
        self.token_denied(jti_hash, expires_at);
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip_all)]
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
        .fetch_one(&self.pool())
        .await?;
        let denied: i64 = row.try_get("denied")?;
        let live_grants: i64 = row.try_get("live_grants")?;
        Ok(denied == 0 && (grant_id.is_none() || live_grants > 0))
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn purge_expired(&self, now: i64) -> anyhow::Result<u64> {
        let credentials = sqlx::query(
            "UPDATE grants SET refresh_generation = NULL WHERE refresh_generation IS NOT NULL AND refresh_expires_at < $1",
        )
        .bind(now)
        .execute(&self.pool())
        .await?;
        let denied = sqlx::query("DELETE FROM revoked_access_tokens WHERE expires_at < $1")
            .bind(now)
            .execute(&self.pool())
            .await?;
        Ok(credentials.rows_affected() + denied.rows_affected())
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn revoke_session(&self, sid: &str, reason: &str, now: i64) -> anyhow::Result<u64> {
        let ids = revoked_ids(
            sqlx::query("UPDATE grants SET revoked_at = $1, revoked_reason = $2 WHERE sid = $3 AND revoked_at IS NULL RETURNING id")
                .bind(now)
                .bind(reason)
                .bind(sid)
                .fetch_all(&self.pool())
                .await?,
        )?;
        let n = ids.len() as u64;
        self.grants_revoked(ids, now);
        Ok(n)
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn revoke_session_in(
        &self,
        tx: &mut Transaction,
        sid: &str,
        reason: &str,
        now: i64,
    ) -> anyhow::Result<u64> {
        let ids = revoked_ids(
            sqlx::query("UPDATE grants SET revoked_at = $1, revoked_reason = $2 WHERE sid = $3 AND revoked_at IS NULL RETURNING id")
                .bind(now)
                .bind(reason)
                .bind(sid)
                .fetch_all(tx.connection())
                .await?,
        )?;
        let n = ids.len() as u64;
        self.grants_revoked_in(tx, ids, now);
        Ok(n)
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn grants_of_session(&self, sid: &str) -> anyhow::Result<Vec<GrantRecord>> {
        let sql = format!("SELECT {GRANT_COLUMNS} FROM grants WHERE sid = $1 ORDER BY created_at");
        let rows = sqlx::query(&sql).bind(sid).fetch_all(&self.pool()).await?;
        rows.iter().map(grant_from_row).collect()
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn clients_of_sessions(
        &self,
        sids: &[&str],
    ) -> anyhow::Result<Vec<(String, Option<String>, String)>> {
        let mut found = Vec::new();
        for chunk in sids.chunks(500) {
            let sql = format!(
                "SELECT DISTINCT sid, account_id, client_id FROM grants WHERE sid IN ({})",
                super::placeholders(1, chunk.len())
            );
            let mut query = sqlx::query(&sql);
            for sid in chunk {
                query = query.bind(*sid);
            }
            for row in query.fetch_all(&self.pool()).await? {
                found.push((
                    row.try_get("sid")?,
                    opt_text(&row, "account_id")?,
                    row.try_get("client_id")?,
                ));
            }
        }
        Ok(found)
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn live_grants_of_client(&self, client_id: &str) -> anyhow::Result<Vec<GrantRecord>> {
        let sql = format!(
            "SELECT {GRANT_COLUMNS} FROM grants WHERE client_id = $1 AND revoked_at IS NULL"
        );
        let rows = sqlx::query(&sql)
            .bind(client_id)
            .fetch_all(&self.pool())
            .await?;
        rows.iter().map(grant_from_row).collect()
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn revoke_client(&self, client_id: &str, reason: &str, now: i64) -> anyhow::Result<u64> {
        let ids = revoked_ids(
            sqlx::query("UPDATE grants SET revoked_at = $1, revoked_reason = $2 WHERE client_id = $3 AND revoked_at IS NULL RETURNING id")
                .bind(now)
                .bind(reason)
                .bind(client_id)
                .fetch_all(&self.pool())
                .await?,
        )?;
        let n = ids.len() as u64;
        self.grants_revoked(ids, now);
        Ok(n)
    }
}
