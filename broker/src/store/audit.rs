//! `AuditLog` in SQL.

use sqlx::{AnyConnection, Executor};

use super::Db;
use crate::audit::{AuditEntry, AuditLog};
use crate::transaction::Transaction;

async fn insert<'c, E>(executor: E, entry: &AuditEntry<'_>) -> anyhow::Result<()>
where
    E: Executor<'c, Database = sqlx::Any>,
{
    sqlx::query(
        "INSERT INTO audit_log (at, kind, account_id, client_id, actor, detail) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(entry.at)
    .bind(entry.kind)
    .bind(entry.account_id)
    .bind(entry.client_id)
    .bind(entry.actor)
    .bind(entry.detail.to_string())
    .execute(executor)
    .await?;
    Ok(())
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
        insert(self.pool(), entry).await
    }
}
