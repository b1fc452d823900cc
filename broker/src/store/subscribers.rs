//! `GrantedClients` in SQL: the clients a person has, or had, a grant at (revoked grants
//! count: a client told of a logout had a part in the session).

use std::collections::HashMap;

use sqlx::Row;

use super::Db;
use crate::events::delivery::GrantedClients;

#[async_trait::async_trait]
impl GrantedClients for Db {
    #[tracing::instrument(level = "debug", skip_all, fields(people = account_ids.len()))]
    async fn clients_granted_to(
        &self,
        account_ids: &[&str],
    ) -> anyhow::Result<HashMap<String, Vec<String>>> {
        let mut out: HashMap<String, Vec<String>> = HashMap::new();
        // A fan-out batch is at most 100 events; chunks keep every statement's parameters few.
        for chunk in account_ids.chunks(100) {
            let placeholders = super::placeholders(1, chunk.len());
            let sql = format!(
                "SELECT DISTINCT account_id, client_id FROM grants \
                 WHERE account_id IN ({placeholders})"
            );
            let mut query = sqlx::query(&sql);
            for id in chunk {
                query = query.bind(*id);
            }
            for row in query.fetch_all(&self.pool()).await? {
                out.entry(row.try_get("account_id")?)
                    .or_default()
                    .push(row.try_get("client_id")?);
            }
        }
        Ok(out)
    }
}
