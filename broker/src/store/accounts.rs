//! `AccountStore` in SQL. The writes run in the caller's transaction.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{opt_text, Db};
use crate::accounts::{AccountRecord, AccountStore, Loa};
use crate::transaction::Transaction;

const COLUMNS: &str =
    "a.id, a.personal_id_enc, a.personal_id_lookup, a.personal_id_flag, a.full_name, a.birthdate, \
                       a.gender, a.account_type, a.loa, a.phone, a.phone_verified_at, a.standardised_at, \
                       a.isolated_to, a.created_at, a.updated_at";

fn from_row(row: &AnyRow) -> anyhow::Result<AccountRecord> {
    let loa: i64 = row.try_get("loa")?;
    Ok(AccountRecord {
        id: row.try_get("id")?,
        personal_id_enc: opt_text(row, "personal_id_enc")?,
        personal_id_lookup: opt_text(row, "personal_id_lookup")?,
        personal_id_flag: opt_text(row, "personal_id_flag")?,
        full_name: row.try_get("full_name")?,
        birthdate: opt_text(row, "birthdate")?,
        gender: opt_text(row, "gender")?,
        account_type: row.try_get("account_type")?,
        loa: Loa::try_from(loa).unwrap_or(Loa::One),
        phone: opt_text(row, "phone")?,
        phone_verified_at: row.try_get("phone_verified_at")?,
        standardised_at: row.try_get("standardised_at")?,
        isolated_to: opt_text(row, "isolated_to")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

#[async_trait::async_trait]
impl AccountStore for Db {
    #[tracing::instrument(level = "debug", skip_all)]
    async fn find(&self, id: &str) -> anyhow::Result<Option<AccountRecord>> {
        let sql = format!("SELECT {COLUMNS} FROM accounts a WHERE a.id = $1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn find_by_link(&self, iss: &str, sub: &str) -> anyhow::Result<Option<AccountRecord>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM account_links l JOIN accounts a ON a.id = l.account_id \
             WHERE l.upstream_iss = $1 AND l.upstream_sub = $2"
        );
        let row = sqlx::query(&sql)
            .bind(iss)
            .bind(sub)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn find_by_link_for_login(
        &self,
        iss: &str,
        sub: &str,
        lookups: [Option<&str>; 2],
    ) -> anyhow::Result<Option<(AccountRecord, bool)>> {
        // One round trip instead of two on every returning login; the index on the records'
        // lookup hash answers the EXISTS.
        let sql = format!(
            "SELECT {COLUMNS}, CAST(CASE WHEN EXISTS (SELECT 1 FROM legacy_accounts r \
             WHERE r.personal_id_lookup IN ($3, $4) \
             AND (r.account_id IS NULL OR r.account_id <> a.id)) THEN 1 ELSE 0 END AS BIGINT) \
             AS records_pending \
             FROM account_links l JOIN accounts a ON a.id = l.account_id \
             WHERE l.upstream_iss = $1 AND l.upstream_sub = $2"
        );
        let row = sqlx::query(&sql)
            .bind(iss)
            .bind(sub)
            .bind(lookups[0])
            .bind(lookups[1])
            .fetch_optional(self.pool())
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let pending: i64 = row.try_get("records_pending")?;
        Ok(Some((from_row(&row)?, pending != 0)))
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn find_shared_by_personal_id(
        &self,
        lookup: &str,
        limit: i64,
    ) -> anyhow::Result<Vec<AccountRecord>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM accounts a \
             WHERE a.personal_id_lookup = $1 AND a.isolated_to IS NULL ORDER BY a.id LIMIT $2"
        );
        let rows = sqlx::query(&sql)
            .bind(lookup)
            .bind(limit)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(from_row).collect()
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn linked_from(&self, account_id: &str, iss: &str) -> anyhow::Result<bool> {
        let row = sqlx::query(
            "SELECT 1 AS one FROM account_links WHERE account_id = $1 AND upstream_iss = $2 LIMIT 1",
        )
        .bind(account_id)
        .bind(iss)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.is_some())
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn add_link(
        &self,
        tx: &mut Transaction,
        account_id: &str,
        iss: &str,
        sub: &str,
        now: i64,
    ) -> anyhow::Result<bool> {
        // Two new identities of one upstream joining the same account at once: the account's
        // row lock (PostgreSQL; SQLite has one writer) makes the second wait, and its insert,
        // a statement of its own with a fresh snapshot, then sees the first link and adds none.
        if self.backend == super::Backend::Postgres {
            sqlx::query("SELECT id FROM accounts WHERE id = $1 FOR UPDATE")
                .bind(account_id)
                .fetch_optional(tx.connection())
                .await?;
        }
        let linked = sqlx::query(
            "INSERT INTO account_links (upstream_iss, upstream_sub, account_id, created_at) \
             SELECT $1, $2, $3, $4 WHERE NOT EXISTS (SELECT 1 FROM account_links \
             WHERE account_id = $3 AND upstream_iss = $1) \
             ON CONFLICT (upstream_iss, upstream_sub) DO NOTHING",
        )
        .bind(iss)
        .bind(sub)
        .bind(account_id)
        .bind(now)
        .execute(tx.connection())
        .await?;
        Ok(linked.rows_affected() > 0)
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn create_linked(
        &self,
        tx: &mut Transaction,
        r: &AccountRecord,
        iss: &str,
        sub: &str,
    ) -> anyhow::Result<bool> {
        sqlx::query(
            "INSERT INTO accounts (id, personal_id_enc, personal_id_lookup, personal_id_flag, full_name, birthdate, gender, \
             account_type, loa, phone, phone_verified_at, standardised_at, isolated_to, created_at, \
             updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
        )
        .bind(&r.id)
        .bind(&r.personal_id_enc)
        .bind(&r.personal_id_lookup)
        .bind(&r.personal_id_flag)
        .bind(&r.full_name)
        .bind(&r.birthdate)
        .bind(&r.gender)
        .bind(&r.account_type)
        .bind(i64::from(r.loa))
        .bind(&r.phone)
        .bind(r.phone_verified_at)
        .bind(r.standardised_at)
        .bind(&r.isolated_to)
        .bind(r.created_at)
        .bind(r.updated_at)
        .execute(tx.connection())
        .await?;
        let linked = sqlx::query(
            "INSERT INTO account_links (upstream_iss, upstream_sub, account_id, created_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (upstream_iss, upstream_sub) DO NOTHING",
        )
        .bind(iss)
        .bind(sub)
        .bind(&r.id)
        .bind(r.created_at)
        .execute(tx.connection())
        .await?;
        Ok(linked.rows_affected() > 0)
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn refresh_profile(&self, tx: &mut Transaction, r: &AccountRecord) -> anyhow::Result<()> {
        sqlx::query(
            "UPDATE accounts SET personal_id_enc = $1, personal_id_lookup = $2, personal_id_flag = $3, full_name = $4, \
             birthdate = $5, gender = $6, account_type = $7, loa = $8, updated_at = $9 WHERE id = $10",
        )
        .bind(&r.personal_id_enc)
        .bind(&r.personal_id_lookup)
        .bind(&r.personal_id_flag)
        .bind(&r.full_name)
        .bind(&r.birthdate)
        .bind(&r.gender)
        .bind(&r.account_type)
        .bind(i64::from(r.loa))
        .bind(r.updated_at)
        .bind(&r.id)
        .execute(tx.connection())
        .await?;
        self.account_changed_in(tx, &r.id);
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn set_standardised(
        &self,
        tx: &mut Transaction,
        id: &str,
        phone: Option<&str>,
        verified_at: Option<i64>,
        now: i64,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "UPDATE accounts SET standardised_at = $1, updated_at = $1, \
             phone = COALESCE($2, phone), phone_verified_at = CASE WHEN $2 IS NULL \
             THEN phone_verified_at ELSE $3 END WHERE id = $4",
        )
        .bind(now)
        .bind(phone)
        .bind(verified_at)
        .bind(id)
        .execute(tx.connection())
        .await?;
        self.account_changed_in(tx, id);
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn set_phone(
        &self,
        tx: &mut Transaction,
        id: &str,
        phone: &str,
        now: i64,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "UPDATE accounts SET phone = $1, phone_verified_at = $2, updated_at = $2 WHERE id = $3",
        )
        .bind(phone)
        .bind(now)
        .bind(id)
        .execute(tx.connection())
        .await?;
        self.account_changed_in(tx, id);
        Ok(())
    }
}
