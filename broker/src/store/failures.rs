//! `FailureStore` in SQL.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{opt_text, Db};
use crate::accounts::failures::{Failure, FailureStore, Reason};

const COLUMNS: &str = "id, created_at, upstream_iss, upstream_sub, account_id, reason, fields, \
                       compared, resolved_at, resolved_by, resolution";

fn from_row(row: &AnyRow) -> anyhow::Result<Failure> {
    let fields: String = row.try_get("fields")?;
    let compared: String = row.try_get("compared")?;
    Ok(Failure {
        id: row.try_get("id")?,
        created_at: row.try_get("created_at")?,
        upstream_iss: row.try_get("upstream_iss")?,
        upstream_sub: row.try_get("upstream_sub")?,
        account_id: opt_text(row, "account_id")?,
        reason: row.try_get("reason")?,
        fields: serde_json::from_str(&fields)?,
        compared: serde_json::from_str(&compared)?,
        resolved_at: row.try_get("resolved_at")?,
        resolved_by: opt_text(row, "resolved_by")?,
        resolution: opt_text(row, "resolution")?,
    })
}

/// Gives the identity's failures recorded before it had an account to that account.
pub(super) async fn attach<'c, E>(
    executor: E,
    iss: &str,
    sub: &str,
    account_id: &str,
) -> anyhow::Result<()>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    sqlx::query(
        "UPDATE standardisation_failures SET account_id = $1 \
         WHERE upstream_iss = $2 AND upstream_sub = $3 AND account_id IS NULL",
    )
    .bind(account_id)
    .bind(iss)
    .bind(sub)
    .execute(executor)
    .await?;
    Ok(())
}

#[async_trait::async_trait]
impl FailureStore for Db {
    async fn record_failure(&self, f: &Failure) -> anyhow::Result<()> {
        sqlx::query(&format!(
            "INSERT INTO standardisation_failures ({COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, NULL, NULL)"
        ))
        .bind(&f.id)
        .bind(f.created_at)
        .bind(&f.upstream_iss)
        .bind(&f.upstream_sub)
        .bind(&f.account_id)
        .bind(&f.reason)
        .bind(serde_json::to_string(&f.fields)?)
        .bind(f.compared.to_string())
        .execute(&self.pool())
        .await?;
        Ok(())
    }

    async fn open_failure(
        &self,
        iss: &str,
        sub: &str,
        reason: Reason,
    ) -> anyhow::Result<Option<Failure>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM standardisation_failures WHERE upstream_iss = $1 \
             AND upstream_sub = $2 AND reason = $3 AND resolved_at IS NULL \
             ORDER BY created_at DESC, id DESC LIMIT 1"
        ))
        .bind(iss)
        .bind(sub)
        .bind(reason.as_str())
        .fetch_optional(&self.pool())
        .await?;
        row.as_ref().map(from_row).transpose()
    }

    async fn attach_failures(&self, iss: &str, sub: &str, account_id: &str) -> anyhow::Result<()> {
        attach(&self.pool(), iss, sub, account_id).await
    }

    async fn failures(&self, open_only: bool, limit: i64) -> anyhow::Result<Vec<Failure>> {
        let filter = if open_only {
            "WHERE resolved_at IS NULL"
        } else {
            ""
        };
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM standardisation_failures {filter} \
             ORDER BY created_at DESC, id LIMIT $1"
        ))
        .bind(limit)
        .fetch_all(&self.pool())
        .await?;
        rows.iter().map(from_row).collect()
    }

    async fn failures_by_reference(&self, reference: &str) -> anyhow::Result<Vec<Failure>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM standardisation_failures WHERE id LIKE $1 \
             ORDER BY created_at DESC, id LIMIT 20"
        ))
        .bind(format!("%{reference}"))
        .fetch_all(&self.pool())
        .await?;
        rows.iter().map(from_row).collect()
    }

    async fn failure(&self, id: &str) -> anyhow::Result<Option<Failure>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM standardisation_failures WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool())
        .await?;
        row.as_ref().map(from_row).transpose()
    }

    async fn resolve_failure(
        &self,
        id: &str,
        by: &str,
        resolution: &str,
        now: i64,
    ) -> anyhow::Result<bool> {
        let done = sqlx::query(
            "UPDATE standardisation_failures SET resolved_at = $1, resolved_by = $2, \
             resolution = $3 WHERE id = $4 AND resolved_at IS NULL",
        )
        .bind(now)
        .bind(by)
        .bind(resolution)
        .bind(id)
        .execute(&self.pool())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn block_link(
        &self,
        tx: &mut crate::transaction::Transaction,
        source: &str,
        legacy_id: &str,
        account_id: &str,
        now: i64,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO legacy_link_blocks (source, legacy_id, account_id, created_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (source, legacy_id, account_id) DO NOTHING",
        )
        .bind(source)
        .bind(legacy_id)
        .bind(account_id)
        .bind(now)
        .execute(tx.connection())
        .await?;
        Ok(())
    }

    async fn unblock_link(
        &self,
        tx: &mut crate::transaction::Transaction,
        source: &str,
        legacy_id: &str,
        account_id: &str,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "DELETE FROM legacy_link_blocks WHERE source = $1 AND legacy_id = $2 AND account_id = $3",
        )
        .bind(source)
        .bind(legacy_id)
        .bind(account_id)
        .execute(tx.connection())
        .await?;
        Ok(())
    }

    async fn blocked_links(&self, account_id: &str) -> anyhow::Result<Vec<(String, String)>> {
        let rows =
            sqlx::query("SELECT source, legacy_id FROM legacy_link_blocks WHERE account_id = $1")
                .bind(account_id)
                .fetch_all(&self.pool())
                .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("source")?, r.try_get("legacy_id")?)))
            .collect()
    }
}
