//! `KeyStore` in SQL: the production key ring, shared by every instance.

use sqlx::Row;

use super::Db;
use crate::tokens::keys::{Alg, KeyStore, StoredKey};

#[async_trait::async_trait]
impl KeyStore for Db {
    #[tracing::instrument(level = "debug", skip_all)]
    async fn list(&self) -> anyhow::Result<Vec<StoredKey>> {
        let rows = sqlx::query(
            "SELECT kid, alg, private_enc, public_jwk, created_at, activates_at, retires_at, removes_at \
             FROM signing_keys ORDER BY created_at",
        )
        .fetch_all(&self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                let alg: String = row.try_get("alg")?;
                let jwk: String = row.try_get("public_jwk")?;
                Ok(StoredKey {
                    kid: row.try_get("kid")?,
                    alg: Alg::parse(&alg)
                        .ok_or_else(|| anyhow::anyhow!("unknown key algorithm {alg}"))?,
                    private_enc: row.try_get("private_enc")?,
                    public_jwk: serde_json::from_str(&jwk)?,
                    created_at: row.try_get("created_at")?,
                    activates_at: row.try_get("activates_at")?,
                    retires_at: row.try_get("retires_at")?,
                    removes_at: row.try_get("removes_at")?,
                })
            })
            .collect()
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn insert(&self, key: &StoredKey) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO signing_keys (kid, alg, private_enc, public_jwk, created_at, activates_at, retires_at, removes_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&key.kid)
        .bind(key.alg.as_str())
        .bind(&key.private_enc)
        .bind(key.public_jwk.to_string())
        .bind(key.created_at)
        .bind(key.activates_at)
        .bind(key.retires_at)
        .bind(key.removes_at)
        .execute(&self.pool())
        .await?;
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn set_schedule(
        &self,
        kid: &str,
        retires_at: Option<i64>,
        removes_at: Option<i64>,
    ) -> anyhow::Result<()> {
        sqlx::query("UPDATE signing_keys SET retires_at = $1, removes_at = $2 WHERE kid = $3")
            .bind(retires_at)
            .bind(removes_at)
            .bind(kid)
            .execute(&self.pool())
            .await?;
        Ok(())
    }
}
