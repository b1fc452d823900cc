//! `GrantedClients` in SQL: the clients a person has, or had, a grant at (revoked grants
//! count: a client told of a logout had a part in the session).

use sqlx::Row;

use super::Db;
use crate::events::delivery::GrantedClients;

#[async_trait::async_trait]
impl GrantedClients for Db {
    #[tracing::instrument(level = "debug", skip_all)]
    async fn clients_granted(&self, account_id: &str) -> anyhow::Result<Vec<String>> {
        let rows = sqlx::query("SELECT DISTINCT client_id FROM grants WHERE account_id = $1")
            .bind(account_id)
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|row| Ok(row.try_get("client_id")?))
            .collect()
    }
}
