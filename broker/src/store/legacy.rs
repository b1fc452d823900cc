//! `LegacyStore` in SQL. An import batch is one or two statements whatever its size: a
//! multi-row INSERT of the new records, then a multi-row upsert of the others that writes only
//! the changed ones.
//! Links are written in the caller's transaction.

use std::collections::HashSet;

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{opt_text, Db};
use crate::accounts::legacy::{BatchOutcome, IdKind, LegacyStore, SealedLegacyRecord};
use crate::transaction::Transaction;

const COLUMNS: &str = "source, legacy_id, full_name, birthdate, phone, id_kind, personal_id_enc, \
                       personal_id_lookup, email, row_digest, account_id, linked_at, imported_at, \
                       updated_at";

/// The columns an import writes (never `account_id` or `linked_at`).
const IMPORTED: [&str; 12] = [
    "source",
    "legacy_id",
    "full_name",
    "birthdate",
    "phone",
    "id_kind",
    "personal_id_enc",
    "personal_id_lookup",
    "email",
    "row_digest",
    "imported_at",
    "updated_at",
];

/// What a re-import may change; `source` and `legacy_id` are the key and `imported_at` stays.
const UPDATED: [&str; 9] = [
    "full_name",
    "birthdate",
    "phone",
    "id_kind",
    "personal_id_enc",
    "personal_id_lookup",
    "email",
    "row_digest",
    "updated_at",
];

fn from_row(row: &AnyRow) -> anyhow::Result<SealedLegacyRecord> {
    let id_kind = match opt_text(row, "id_kind")? {
        Some(kind) => Some(IdKind::parse(&kind).ok_or_else(|| anyhow::anyhow!("bad id_kind"))?),
        None => None,
    };
    Ok(SealedLegacyRecord {
        source: row.try_get("source")?,
        legacy_id: row.try_get("legacy_id")?,
        full_name: row.try_get("full_name")?,
        birthdate: opt_text(row, "birthdate")?,
        phone: opt_text(row, "phone")?,
        id_kind,
        personal_id_enc: opt_text(row, "personal_id_enc")?,
        personal_id_lookup: opt_text(row, "personal_id_lookup")?,
        email: opt_text(row, "email")?,
        row_digest: row.try_get("row_digest")?,
        account_id: opt_text(row, "account_id")?,
        linked_at: row.try_get::<Option<i64>, _>("linked_at")?,
        imported_at: row.try_get("imported_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// `($1, $2, ...), ($n, ...)`: `rows` groups of `width` placeholders.
fn placeholders(rows: usize, width: usize) -> String {
    let mut out = String::with_capacity(rows * width * 5);
    for r in 0..rows {
        if r > 0 {
            out.push_str(", ");
        }
        out.push('(');
        for c in 0..width {
            if c > 0 {
                out.push_str(", ");
            }
            out.push_str(&format!("${}", r * width + c + 1));
        }
        out.push(')');
    }
    out
}

/// A multi-row INSERT of `rows` records; `conflict` says what a record already there gets.
/// Conflicts are found through the primary key whatever the planner's statistics say (a
/// SELECT of the stored digests went to a sequential scan while the table grew, and a million
/// rows took minutes).
fn insert_sql(rows: usize, conflict: &str) -> String {
    format!(
        "INSERT INTO legacy_accounts ({}) VALUES {} ON CONFLICT (source, legacy_id) {conflict} \
         RETURNING source, legacy_id",
        IMPORTED.join(", "),
        placeholders(rows, IMPORTED.len()),
    )
}

fn update_clause() -> String {
    let set: Vec<String> = UPDATED
        .iter()
        .map(|c| format!("{c} = excluded.{c}"))
        .collect();
    format!(
        "DO UPDATE SET {} WHERE legacy_accounts.row_digest <> excluded.row_digest",
        set.join(", ")
    )
}

impl Db {
    async fn select_many(
        &self,
        condition: &str,
        value: &str,
    ) -> anyhow::Result<Vec<SealedLegacyRecord>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM legacy_accounts WHERE {condition} ORDER BY source, legacy_id"
        );
        let rows = sqlx::query(&sql)
            .bind(value)
            .fetch_all(&self.pool())
            .await?;
        rows.iter().map(from_row).collect()
    }

    /// Runs one multi-row INSERT; the keys it wrote.
    async fn insert_rows(
        &self,
        rows: &[&SealedLegacyRecord],
        conflict: &str,
    ) -> anyhow::Result<HashSet<(String, String)>> {
        let sql = insert_sql(rows.len(), conflict);
        let mut query = sqlx::query(&sql);
        for r in rows {
            query = query
                .bind(&r.source)
                .bind(&r.legacy_id)
                .bind(&r.full_name)
                .bind(&r.birthdate)
                .bind(&r.phone)
                .bind(r.id_kind.map(IdKind::as_str))
                .bind(&r.personal_id_enc)
                .bind(&r.personal_id_lookup)
                .bind(&r.email)
                .bind(&r.row_digest)
                .bind(r.imported_at)
                .bind(r.updated_at);
        }
        let written = query.fetch_all(&self.pool()).await?;
        written
            .iter()
            .map(|row| Ok((row.try_get("source")?, row.try_get("legacy_id")?)))
            .collect()
    }
}

#[async_trait::async_trait]
impl LegacyStore for Db {
    #[tracing::instrument(level = "debug", skip_all)]
    async fn find(
        &self,
        source: &str,
        legacy_id: &str,
    ) -> anyhow::Result<Option<SealedLegacyRecord>> {
        let sql =
            format!("SELECT {COLUMNS} FROM legacy_accounts WHERE source = $1 AND legacy_id = $2");
        let row = sqlx::query(&sql)
            .bind(source)
            .bind(legacy_id)
            .fetch_optional(&self.pool())
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn find_by_personal_id_lookup(
        &self,
        lookup: &str,
    ) -> anyhow::Result<Vec<SealedLegacyRecord>> {
        self.select_many("personal_id_lookup = $1", lookup).await
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn find_by_phone(&self, e164: &str) -> anyhow::Result<Vec<SealedLegacyRecord>> {
        self.select_many("phone = $1", e164).await
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn linked_to(&self, account_id: &str) -> anyhow::Result<Vec<SealedLegacyRecord>> {
        self.select_many("account_id = $1", account_id).await
    }

    #[tracing::instrument(level = "debug", skip(self, tx, account_id))]
    async fn link(
        &self,
        tx: &mut Transaction,
        source: &str,
        legacy_id: &str,
        account_id: &str,
        now: i64,
    ) -> anyhow::Result<bool> {
        let done = sqlx::query(
            "UPDATE legacy_accounts SET account_id = $1, linked_at = $2, updated_at = $2 \
             WHERE source = $3 AND legacy_id = $4 AND account_id IS NULL",
        )
        .bind(account_id)
        .bind(now)
        .bind(source)
        .bind(legacy_id)
        .execute(tx.connection())
        .await?;
        self.account_changed_in(tx, account_id);
        Ok(done.rows_affected() > 0)
    }

    #[tracing::instrument(level = "debug", skip(self, tx))]
    async fn unlink(
        &self,
        tx: &mut Transaction,
        source: &str,
        legacy_id: &str,
        now: i64,
    ) -> anyhow::Result<Option<String>> {
        // Write first, reading the link through RETURNING: the row is then locked (PostgreSQL)
        // or the database is (SQLite), so the link read is the link removed.
        let linked: Option<String> = sqlx::query_scalar(
            "UPDATE legacy_accounts SET updated_at = $1 \
             WHERE source = $2 AND legacy_id = $3 AND account_id IS NOT NULL RETURNING account_id",
        )
        .bind(now)
        .bind(source)
        .bind(legacy_id)
        .fetch_optional(tx.connection())
        .await?;
        if linked.is_some() {
            sqlx::query(
                "UPDATE legacy_accounts SET account_id = NULL, linked_at = NULL \
                 WHERE source = $1 AND legacy_id = $2",
            )
            .bind(source)
            .bind(legacy_id)
            .execute(tx.connection())
            .await?;
        }
        if let Some(account_id) = &linked {
            self.account_changed_in(tx, account_id);
        }
        Ok(linked)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(rows = batch.len()))]
    async fn import_batch(&self, batch: &[SealedLegacyRecord]) -> anyhow::Result<BatchOutcome> {
        if batch.is_empty() {
            return Ok(BatchOutcome::default());
        }
        // New records in one statement; the others then get one conditional upsert, which
        // writes only those whose digest changed. Each statement is atomic on its own, and a
        // first import costs one statement a batch.
        let all: Vec<&SealedLegacyRecord> = batch.iter().collect();
        let inserted = self.insert_rows(&all, "DO NOTHING").await?;
        let rest: Vec<&SealedLegacyRecord> = batch
            .iter()
            .filter(|r| !inserted.contains(&(r.source.clone(), r.legacy_id.clone())))
            .collect();
        let updated = if rest.is_empty() {
            0
        } else {
            self.insert_rows(&rest, &update_clause()).await?.len()
        };
        let outcome = BatchOutcome {
            inserted: inserted.len() as u64,
            updated: updated as u64,
            unchanged: (rest.len() - updated) as u64,
        };
        Ok(outcome)
    }
}
