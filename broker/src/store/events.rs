//! `Outbox` in SQL. The per-subject number comes from an upsert on `event_subjects`, whose row
//! lock orders two transactions writing events of one subject. An append wakes this instance's
//! dispatcher when its transaction commits.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::Db;
use crate::events::{Event, Outbox, StoredEvent};
use crate::transaction::Transaction;

#[async_trait::async_trait]
impl Outbox for Db {
    #[tracing::instrument(level = "debug", skip_all, fields(event_type = event.event_type))]
    async fn append(&self, tx: &mut Transaction, event: &Event<'_>) -> anyhow::Result<i64> {
        let seq = match self.backend {
            // One round trip: the subject's number and the event in one statement.
            super::Backend::Postgres => sqlx::query(
                "WITH numbered AS (INSERT INTO event_subjects (subject, seq) VALUES ($1, 1) \
                 ON CONFLICT (subject) DO UPDATE SET seq = event_subjects.seq + 1 RETURNING seq) \
                 INSERT INTO outbox (subject, seq, event_type, payload, created_at) \
                 SELECT $1, numbered.seq, $2, $3, $4 FROM numbered RETURNING seq",
            )
            .bind(event.subject)
            .bind(event.event_type)
            .bind(event.payload.to_string())
            .bind(event.at)
            .fetch_one(tx.connection())
            .await?
            .try_get("seq")?,
            // SQLite has no data-modifying WITH: two statements, in the caller's transaction.
            super::Backend::Sqlite => {
                let seq: i64 = sqlx::query(
                    "INSERT INTO event_subjects (subject, seq) VALUES ($1, 1) \
                     ON CONFLICT (subject) DO UPDATE SET seq = event_subjects.seq + 1 RETURNING seq",
                )
                .bind(event.subject)
                .fetch_one(tx.connection())
                .await?
                .try_get("seq")?;
                sqlx::query(
                    "INSERT INTO outbox (subject, seq, event_type, payload, created_at) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(event.subject)
                .bind(seq)
                .bind(event.event_type)
                .bind(event.payload.to_string())
                .bind(event.at)
                .execute(tx.connection())
                .await?;
                seq
            }
        };
        tx.notify_on_commit(self.outbox_signal());
        Ok(seq)
    }

    async fn of_subject(&self, subject: &str) -> anyhow::Result<Vec<StoredEvent>> {
        let rows = sqlx::query(
            "SELECT id, subject, seq, event_type, payload, created_at FROM outbox \
             WHERE subject = $1 ORDER BY seq",
        )
        .bind(subject)
        .fetch_all(&self.pool())
        .await?;
        rows.iter().map(event_from_row).collect()
    }
}

/// An outbox row (columns id, subject, seq, event_type, payload, created_at).
pub(super) fn event_from_row(row: &AnyRow) -> anyhow::Result<StoredEvent> {
    let payload: String = row.try_get("payload")?;
    Ok(StoredEvent {
        id: row.try_get("id")?,
        subject: row.try_get("subject")?,
        seq: row.try_get("seq")?,
        event_type: row.try_get("event_type")?,
        payload: serde_json::from_str(&payload)?,
        created_at: row.try_get("created_at")?,
    })
}
