//! `OperatorStore` in SQL. The writes run in the caller's transaction.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::Db;
use crate::operators::{Operator, OperatorRecord, OperatorStore};
use crate::transaction::Transaction;

fn from_row(row: &AnyRow) -> anyhow::Result<OperatorRecord> {
    Ok(OperatorRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        created_at: row.try_get("created_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

#[async_trait::async_trait]
impl OperatorStore for Db {
    #[tracing::instrument(level = "debug", skip_all)]
    async fn insert(
        &self,
        tx: &mut Transaction,
        record: &OperatorRecord,
        token_hash: &str,
    ) -> anyhow::Result<bool> {
        let connection: &mut AnyConnection = tx.connection();
        let result = sqlx::query(
            "INSERT INTO operators (id, name, token_hash, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT DO NOTHING",
        )
        .bind(&record.id)
        .bind(&record.name)
        .bind(token_hash)
        .bind(record.created_at)
        .execute(connection)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn revoke(
        &self,
        tx: &mut Transaction,
        name: &str,
        now: i64,
    ) -> anyhow::Result<Option<String>> {
        let connection: &mut AnyConnection = tx.connection();
        let row = sqlx::query(
            "UPDATE operators SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL \
             RETURNING id",
        )
        .bind(now)
        .bind(name)
        .fetch_optional(connection)
        .await?;
        Ok(row.map(|r| r.try_get::<String, _>("id")).transpose()?)
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn list(&self) -> anyhow::Result<Vec<OperatorRecord>> {
        let rows = sqlx::query(
            "SELECT id, name, created_at, revoked_at FROM operators ORDER BY created_at, name",
        )
        .fetch_all(&self.pool())
        .await?;
        rows.iter().map(from_row).collect()
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn find_active(&self, token_hash: &str) -> anyhow::Result<Option<(Operator, String)>> {
        let row = sqlx::query(
            "SELECT id, name, token_hash FROM operators \
             WHERE token_hash = $1 AND revoked_at IS NULL",
        )
        .bind(token_hash)
        .fetch_optional(&self.pool())
        .await?;
        row.map(|r| -> anyhow::Result<_> {
            Ok((
                Operator {
                    id: r.try_get("id")?,
                    name: r.try_get("name")?,
                },
                r.try_get::<String, _>("token_hash")?,
            ))
        })
        .transpose()
    }
}
