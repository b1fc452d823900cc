//! `AuditLog` in SQL.

use sqlx::{AnyConnection, Executor};

use super::{AnyQuery, Db};
use crate::audit::{AuditEntry, AuditLog};
use crate::transaction::Transaction;

async fn insert<'c, E>(executor: E, entry: &AuditEntry<'_>) -> anyhow::Result<()>
where
    E: Executor<'c, Database = sqlx::Any>,
{
    bind_entry(
        sqlx::query(
            "INSERT INTO audit_log (at, kind, account_id, client_id, actor, detail) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        ),
        entry,
    )
    .execute(executor)
    .await?;
    Ok(())
}

/// Binds an entry's six columns in `audit_log`'s order (at, kind, account_id, client_id,
/// actor, detail).
pub(super) fn bind_entry<'q>(query: AnyQuery<'q>, entry: &'q AuditEntry<'q>) -> AnyQuery<'q> {
    query
        .bind(entry.at)
        .bind(entry.kind)
        .bind(entry.account_id)
        .bind(entry.client_id)
        .bind(entry.actor)
        .bind(entry.detail.to_string())
}

#[async_trait::async_trait]
impl AuditLog for Db {
    #[tracing::instrument(level = "debug", skip_all, fields(kind = entry.kind))]
    async fn append(&self, tx: &mut Transaction, entry: &AuditEntry<'_>) -> anyhow::Result<()> {
        let connection: &mut AnyConnection = tx.connection();
        insert(connection, entry).await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(kind = entry.kind))]
    async fn append_alone(&self, entry: &AuditEntry<'_>) -> anyhow::Result<()> {
        insert(&self.pool(), entry).await
    }
}
