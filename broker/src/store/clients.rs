//! `ClientStore` in SQL: metadata kept as one JSON document per client.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::Db;
use crate::clients::{Client, ClientStore, ClientStoreError};
use crate::transaction::Transaction;

fn from_row(row: &AnyRow) -> anyhow::Result<Client> {
    let metadata: String = row.try_get("metadata")?;
    Ok(Client {
        client_id: row.try_get("client_id")?,
        secret_hash: super::opt_text(row, "secret_hash")?,
        metadata: serde_json::from_str(&metadata)?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

#[async_trait::async_trait]
impl ClientStore for Db {
    #[tracing::instrument(level = "debug", skip_all)]
    async fn insert(&self, tx: &mut Transaction, client: &Client) -> Result<(), ClientStoreError> {
        let metadata = serde_json::to_string(&client.metadata).map_err(anyhow::Error::from)?;
        let result = sqlx::query(
            "INSERT INTO clients (client_id, secret_hash, metadata, created_at, updated_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (client_id) DO NOTHING",
        )
        .bind(&client.client_id)
        .bind(&client.secret_hash)
        .bind(metadata)
        .bind(client.created_at)
        .bind(client.updated_at)
        .execute(tx.connection())
        .await
        .map_err(anyhow::Error::from)?;
        if result.rows_affected() == 0 {
            return Err(ClientStoreError::Conflict);
        }
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn find(&self, client_id: &str) -> anyhow::Result<Option<Client>> {
        if !storable(client_id) {
            return Ok(None);
        }
        let row = sqlx::query("SELECT client_id, secret_hash, metadata, created_at, updated_at FROM clients WHERE client_id = $1")
            .bind(client_id)
            .fetch_optional(&self.pool())
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn list(&self) -> anyhow::Result<Vec<Client>> {
        let rows = sqlx::query("SELECT client_id, secret_hash, metadata, created_at, updated_at FROM clients ORDER BY created_at, client_id")
            .fetch_all(&self.pool())
            .await?;
        rows.iter().map(from_row).collect()
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn update(&self, tx: &mut Transaction, client: &Client) -> anyhow::Result<bool> {
        let result = sqlx::query("UPDATE clients SET secret_hash = $1, metadata = $2, updated_at = $3 WHERE client_id = $4")
            .bind(&client.secret_hash)
            .bind(serde_json::to_string(&client.metadata)?)
            .bind(client.updated_at)
            .bind(&client.client_id)
            .execute(tx.connection())
            .await?;
        Ok(result.rows_affected() > 0)
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn delete(&self, tx: &mut Transaction, client_id: &str) -> anyhow::Result<bool> {
        if !storable(client_id) {
            return Ok(false);
        }
        let result = sqlx::query("DELETE FROM clients WHERE client_id = $1")
            .bind(client_id)
            .execute(tx.connection())
            .await?;
        Ok(result.rows_affected() > 0)
    }
}

/// PostgreSQL text cannot hold NUL: such an id cannot name a stored client.
fn storable(id: &str) -> bool {
    !id.contains('\0')
}
