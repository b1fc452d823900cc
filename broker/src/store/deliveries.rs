//! `DeliveryStore` in SQL: the dispatcher's fan-out and its leased claims. A claim is one
//! conditional UPDATE that takes only pending, due rows whose lease is absent or over, and
//! re-checks that on the row it updates, so two instances cannot both hold one delivery
//! (PostgreSQL also skips rows another claim has locked instead of waiting on them).
//!
//! An ordered delivery (`subject`, `seq` set) is due only when no delivery of the same route,
//! target and subject with a lower `seq` is still pending: a claimed one stays pending until its
//! attempt is recorded, so the next of the sequence is never sent alongside it.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::events::event_from_row;
use super::{opt_text, placeholders, Db};
use crate::dispatch::{
    After, Attempt, Delivery, DeliveryStatus, DeliveryStore, DeliveryView, Planned,
};
use crate::events::StoredEvent;
use crate::transaction::Transaction;

fn delivery_from_row(row: &AnyRow, lease_token: &str) -> anyhow::Result<Delivery> {
    let payload: String = row.try_get("payload")?;
    Ok(Delivery {
        id: row.try_get("id")?,
        event_id: row.try_get("event_id")?,
        route: row.try_get("route")?,
        target: row.try_get("target")?,
        payload: serde_json::from_str(&payload)?,
        attempts: row.try_get("attempts")?,
        created_at: row.try_get("created_at")?,
        lease_token: lease_token.to_string(),
    })
}

fn view_from_row(row: &AnyRow) -> anyhow::Result<DeliveryView> {
    Ok(DeliveryView {
        id: row.try_get("id")?,
        event_id: row.try_get("event_id")?,
        route: row.try_get("route")?,
        target: row.try_get("target")?,
        replay: row.try_get("replay")?,
        status: row.try_get("status")?,
        attempts: row.try_get("attempts")?,
        created_at: row.try_get("created_at")?,
        next_attempt_at: row.try_get("next_attempt_at")?,
        last_http_status: row.try_get("last_http_status")?,
        last_error: opt_text(row, "last_error")?,
        finished_at: row.try_get("finished_at")?,
    })
}

/// What operators see of a delivery.
const VIEW_COLUMNS: &str = "id, event_id, route, target, replay, status, attempts, created_at, \
                            next_attempt_at, last_http_status, last_error, finished_at";

/// Deliveries written per INSERT: 8 parameters each, far below either backend's limit.
const DELIVERIES_PER_INSERT: usize = 100;

#[async_trait::async_trait]
impl DeliveryStore for Db {
    #[tracing::instrument(level = "debug", skip_all)]
    async fn undispatched(&self, limit: i64) -> anyhow::Result<Vec<StoredEvent>> {
        let rows = sqlx::query(
            "SELECT id, subject, seq, event_type, payload, created_at FROM outbox \
             WHERE dispatched_at IS NULL ORDER BY id LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool())
        .await?;
        rows.iter().map(event_from_row).collect()
    }

    #[tracing::instrument(level = "debug", skip_all, fields(events = event_ids.len(), deliveries = deliveries.len()))]
    async fn fan_out(
        &self,
        event_ids: &[i64],
        deliveries: &[(i64, &'static str, Planned)],
        now: i64,
    ) -> anyhow::Result<()> {
        if event_ids.is_empty() {
            return Ok(());
        }
        let sql = format!(
            "UPDATE outbox SET dispatched_at = $1 WHERE dispatched_at IS NULL AND id IN ({})",
            placeholders(2, event_ids.len())
        );
        let mut update = sqlx::query(&sql).bind(now);
        for id in event_ids {
            update = update.bind(id);
        }
        // Events that deliver nothing (no route planned any delivery: nobody subscribes) are
        // marked in one statement, without a transaction around it.
        if deliveries.is_empty() {
            update.execute(&self.pool()).await?;
            return Ok(());
        }
        // Writes only, from the first statement on (see `transaction`). The deliveries go in
        // multi-row INSERTs, not a statement each.
        let mut tx = self.pool().begin().await?;
        for chunk in deliveries.chunks(DELIVERIES_PER_INSERT) {
            let sql = format!(
                "INSERT INTO deliveries (id, event_id, route, target, payload, status, attempts, \
                 created_at, next_attempt_at, subject, seq, replay) VALUES {} \
                 ON CONFLICT (event_id, route, target, replay) DO NOTHING",
                (0..chunk.len())
                    .map(|row| {
                        // id, event_id, route, target, payload, now (created and first due),
                        // subject, seq: eight parameters a row.
                        let p: Vec<String> = (1..=8).map(|k| format!("${}", row * 8 + k)).collect();
                        format!(
                            "({}, {}, {}, {}, {}, 'pending', 0, {}, {}, {}, {}, 0)",
                            p[0], p[1], p[2], p[3], p[4], p[5], p[5], p[6], p[7]
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let mut insert = sqlx::query(&sql);
            for (event_id, route, planned) in chunk {
                let (subject, seq) = match &planned.ordering {
                    Some(o) => (Some(o.subject.as_str()), Some(o.seq)),
                    None => (None, None),
                };
                insert = insert
                    .bind(uuid::Uuid::now_v7().to_string())
                    .bind(*event_id)
                    .bind(*route)
                    .bind(planned.target.as_str())
                    .bind(planned.payload.to_string())
                    .bind(now)
                    .bind(subject)
                    .bind(seq);
            }
            insert.execute(&mut *tx).await?;
        }
        update.execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn claim_due(
        &self,
        now: i64,
        lease_until: i64,
        lease_token: &str,
        limit: i64,
    ) -> anyhow::Result<Vec<Delivery>> {
        // An ordered delivery is due only at the head of its (route, target, subject): its
        // `seq` the lowest pending there. The heads are computed once per claim (a hashed
        // subquery over the `deliveries_ordering` index) rather than probed row by row with
        // NOT EXISTS, which cost one index probe per pending row: with a backlog of a few
        // thousand, 50-100 ms per claim.
        let sql = format!(
            "UPDATE deliveries SET lease_token = $1, lease_until = $2 \
             WHERE id IN (SELECT id FROM deliveries d WHERE status = 'pending' \
                 AND next_attempt_at <= $3 AND (lease_until IS NULL OR lease_until <= $3) \
                 AND (d.subject IS NULL OR (d.route, d.target, d.subject, d.seq) IN \
                     (SELECT route, target, subject, MIN(seq) FROM deliveries \
                      WHERE status = 'pending' AND subject IS NOT NULL \
                      GROUP BY route, target, subject)) \
                 ORDER BY next_attempt_at, id LIMIT $4{}) \
             AND status = 'pending' AND (lease_until IS NULL OR lease_until <= $3) \
             RETURNING id, event_id, route, target, payload, attempts, created_at",
            self.skip_locked()
        );
        let rows = sqlx::query(&sql)
            .bind(lease_token)
            .bind(lease_until)
            .bind(now)
            .bind(limit)
            .fetch_all(&self.pool())
            .await?;
        rows.iter()
            .map(|row| delivery_from_row(row, lease_token))
            .collect()
    }

    #[tracing::instrument(level = "debug", skip_all, fields(delivery = %delivery.id))]
    async fn record_attempt(
        &self,
        delivery: &Delivery,
        attempt: &Attempt,
        after: After,
    ) -> anyhow::Result<bool> {
        let (status, next_at, finished_at) = match after {
            After::Retry { at } => (DeliveryStatus::Pending, Some(at), None),
            After::Finished(status) => (status, None, Some(attempt.at)),
        };
        let http_status = attempt.http_status.map(i64::from);
        if self.backend == super::Backend::Postgres {
            // One statement, one round trip: the update and the attempt's row (SQLite has no
            // UPDATE inside WITH, and takes the transaction below).
            let recorded = sqlx::query(
                "WITH u AS (UPDATE deliveries SET attempts = attempts + 1, status = $1, \
                 next_attempt_at = COALESCE($2, next_attempt_at), lease_token = NULL, \
                 lease_until = NULL, last_http_status = $3, last_error = $4, finished_at = $5 \
                 WHERE id = $6 AND lease_token = $7 RETURNING attempts) \
                 INSERT INTO delivery_attempts (delivery_id, attempt, at, outcome, http_status, \
                 error, duration_ms) SELECT $6, attempts, $8, $9, $3, $4, $10 FROM u",
            )
            .bind(status.as_str())
            .bind(next_at)
            .bind(http_status)
            .bind(attempt.error.as_deref())
            .bind(finished_at)
            .bind(&delivery.id)
            .bind(&delivery.lease_token)
            .bind(attempt.at)
            .bind(&attempt.outcome)
            .bind(attempt.duration_ms)
            .execute(&self.pool())
            .await?;
            return Ok(recorded.rows_affected() == 1);
        }
        let mut tx = self.pool().begin().await?;
        let row = sqlx::query(
            "UPDATE deliveries SET attempts = attempts + 1, status = $1, \
             next_attempt_at = COALESCE($2, next_attempt_at), lease_token = NULL, \
             lease_until = NULL, last_http_status = $3, last_error = $4, finished_at = $5 \
             WHERE id = $6 AND lease_token = $7 RETURNING attempts",
        )
        .bind(status.as_str())
        .bind(next_at)
        .bind(http_status)
        .bind(attempt.error.as_deref())
        .bind(finished_at)
        .bind(&delivery.id)
        .bind(&delivery.lease_token)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            tx.rollback().await?;
            return Ok(false);
        };
        let number: i64 = row.try_get("attempts")?;
        sqlx::query(
            "INSERT INTO delivery_attempts (delivery_id, attempt, at, outcome, http_status, \
             error, duration_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&delivery.id)
        .bind(number)
        .bind(attempt.at)
        .bind(&attempt.outcome)
        .bind(http_status)
        .bind(attempt.error.as_deref())
        .bind(attempt.duration_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn list(
        &self,
        status: Option<DeliveryStatus>,
        limit: i64,
    ) -> anyhow::Result<Vec<DeliveryView>> {
        let rows = match status {
            Some(status) => {
                sqlx::query(&format!(
                    "SELECT {VIEW_COLUMNS} FROM deliveries WHERE status = $1 \
                     ORDER BY created_at DESC, id DESC LIMIT $2"
                ))
                .bind(status.as_str())
                .bind(limit)
                .fetch_all(&self.pool())
                .await?
            }
            None => {
                sqlx::query(&format!(
                "SELECT {VIEW_COLUMNS} FROM deliveries ORDER BY created_at DESC, id DESC LIMIT $1"
            ))
                .bind(limit)
                .fetch_all(&self.pool())
                .await?
            }
        };
        rows.iter().map(view_from_row).collect()
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn find(&self, id: &str) -> anyhow::Result<Option<DeliveryView>> {
        let row = sqlx::query(&format!(
            "SELECT {VIEW_COLUMNS} FROM deliveries WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool())
        .await?;
        row.as_ref().map(view_from_row).transpose()
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn replay(
        &self,
        tx: &mut Transaction,
        id: &str,
        now: i64,
    ) -> anyhow::Result<Option<String>> {
        // The next replay number of this (event, route, target); two replays at once collide
        // on the unique key and one of them fails, which the operator simply tries again.
        let new_id = uuid::Uuid::now_v7().to_string();
        let inserted = sqlx::query(
            "INSERT INTO deliveries (id, event_id, route, target, payload, status, attempts, \
             created_at, next_attempt_at, subject, seq, replay) \
             SELECT $1, o.event_id, o.route, o.target, o.payload, 'pending', 0, $2, $2, \
                 o.subject, o.seq, (SELECT MAX(r.replay) + 1 FROM deliveries r \
                     WHERE r.event_id = o.event_id AND r.route = o.route AND r.target = o.target) \
             FROM deliveries o WHERE o.id = $3 AND o.status <> 'pending'",
        )
        .bind(&new_id)
        .bind(now)
        .bind(id)
        .execute(tx.connection())
        .await?;
        if inserted.rows_affected() == 0 {
            return Ok(None);
        }
        tx.notify_on_commit(self.outbox_signal());
        Ok(Some(new_id))
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn purge_finished(&self, done_before: i64, failed_before: i64) -> anyhow::Result<u64> {
        const FINISHED: &str = "(status IN ('delivered', 'cancelled') AND finished_at < $1) \
                                OR (status = 'failed' AND finished_at < $2)";
        let mut tx = self.pool().begin().await?;
        sqlx::query(&format!(
            "DELETE FROM delivery_attempts WHERE delivery_id IN \
             (SELECT id FROM deliveries WHERE {FINISHED})"
        ))
        .bind(done_before)
        .bind(failed_before)
        .execute(&mut *tx)
        .await?;
        let deleted = sqlx::query(&format!("DELETE FROM deliveries WHERE {FINISHED}"))
            .bind(done_before)
            .bind(failed_before)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(deleted.rows_affected())
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn attempts(&self, delivery_id: &str) -> anyhow::Result<Vec<Attempt>> {
        let rows = sqlx::query(
            "SELECT at, outcome, http_status, error, duration_ms FROM delivery_attempts \
             WHERE delivery_id = $1 ORDER BY attempt",
        )
        .bind(delivery_id)
        .fetch_all(&self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                let status: Option<i64> = row.try_get("http_status")?;
                Ok(Attempt {
                    at: row.try_get("at")?,
                    outcome: row.try_get("outcome")?,
                    http_status: status.and_then(|s| u16::try_from(s).ok()),
                    error: opt_text(row, "error")?,
                    duration_ms: row.try_get("duration_ms")?,
                })
            })
            .collect()
    }
}
