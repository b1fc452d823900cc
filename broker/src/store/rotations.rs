//! Refresh-token rotations on PostgreSQL, several per statement and per commit.
//!
//! Each rotation stays the conditional update it is alone (the family's current generation,
//! not revoked, not expired, its device holding the slot, its DPoP key): the batch is one
//! `UPDATE … FROM` over the requests, and a request whose row it did not update learns
//! `NotCurrent`. Two requests for one family in a batch update its row once (PostgreSQL joins a
//! target row to one source row): exactly one of them wins, as when they come one after the
//! other, and the loser goes to the reuse check.
//!
//! No request waits for a timer: a rotation starts at once when fewer than `IN_FLIGHT` batches
//! are running, and the requests that arrive meanwhile (within the millisecond or so that a
//! statement and its commit take) are run together as the next batch. Under load that shares one
//! round trip and one commit (one WAL flush) among many rotations; alone, a rotation costs what
//! it did.

use std::sync::Arc;

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::grants::{grant_from_row, GRANT_COLUMNS};
use crate::tokens::refresh_families::RotateOutcome;

/// Batches running at once (each holds one pooled connection while it runs).
const IN_FLIGHT: usize = 4;
/// Rotations per statement at most.
const MAX_BATCH: usize = 128;

/// One rotation asked for.
#[derive(Serialize)]
pub(super) struct Rotation {
    pub grant_id: String,
    pub client_id: String,
    pub generation: i64,
    pub jkt: Option<String>,
    pub now: i64,
}

struct Job {
    rotation: Rotation,
    reply: oneshot::Sender<anyhow::Result<RotateOutcome>>,
}

/// The queue of one pool's rotations; its worker runs on the runtime that first used it.
pub(super) struct Rotations {
    queue: mpsc::UnboundedSender<Job>,
}

impl Rotations {
    pub fn start(pool: AnyPool, runtime: &tokio::runtime::Handle) -> Self {
        let (queue, jobs) = mpsc::unbounded_channel();
        runtime.spawn(work(pool, jobs));
        Self { queue }
    }

    /// The worker is gone (its runtime shut down): the next rotation starts another.
    pub fn stopped(&self) -> bool {
        self.queue.is_closed()
    }

    pub async fn rotate(&self, rotation: Rotation) -> anyhow::Result<RotateOutcome> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Job { rotation, reply })
            .map_err(|_| anyhow::anyhow!("the rotation worker has stopped"))?;
        answer
            .await
            .map_err(|_| anyhow::anyhow!("the rotation worker dropped a request"))?
    }
}

async fn work(pool: AnyPool, mut jobs: mpsc::UnboundedReceiver<Job>) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    while let Some(first) = jobs.recv().await {
        // While every slot is busy, the requests that arrive wait in the queue: they are the
        // next batch.
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let pool = pool.clone();
        tokio::spawn(async move {
            run(&pool, batch).await;
            drop(slot);
        });
    }
}

async fn run(pool: &AnyPool, batch: Vec<Job>) {
    let rotations: Vec<&Rotation> = batch.iter().map(|j| &j.rotation).collect();
    match execute(pool, &rotations).await {
        Ok(mut outcomes) => {
            for (job, outcome) in batch.into_iter().zip(outcomes.drain(..)) {
                let _ = job.reply.send(Ok(outcome));
            }
        }
        Err(e) => {
            // A batch can lose a deadlock to another writer of the same rows: each rotation
            // is then tried alone, as it would have been without the batch.
            tracing::warn!(
                rotations = batch.len(),
                error = format!("{e:#}"),
                "a batch of refresh rotations failed; trying each alone"
            );
            for job in batch {
                let outcome = rotate_one(pool, &job.rotation).await;
                let _ = job.reply.send(outcome);
            }
        }
    }
}

/// One statement for the batch; the outcome of each request, in order.
async fn execute(pool: &AnyPool, rotations: &[&Rotation]) -> anyhow::Result<Vec<RotateOutcome>> {
    // `r.n` is each request's place in the batch; `jkt = NULL` is never true, so a bound
    // family does not rotate without a proof of its key.
    let returning = GRANT_COLUMNS
        .split(',')
        .map(|c| format!("g.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "UPDATE grants AS g SET refresh_generation = g.refresh_generation + 1, rotated_at = r.now \
         FROM json_to_recordset($1::json) \
              AS r(n int, grant_id text, client_id text, generation bigint, jkt text, now bigint) \
         WHERE g.id = r.grant_id AND g.client_id = r.client_id \
         AND g.refresh_generation = r.generation AND g.revoked_at IS NULL \
         AND g.refresh_expires_at > r.now \
         AND (g.device_id IS NULL OR EXISTS (SELECT 1 FROM mobile_slots s \
              WHERE s.account_id = g.account_id AND s.device_group = g.device_group \
              AND s.device_id = g.device_id)) \
         AND (g.dpop_jkt IS NULL OR g.dpop_jkt = r.jkt) \
         RETURNING r.n AS n, {returning}"
    );
    #[derive(Serialize)]
    struct Numbered<'a> {
        n: i32,
        #[serde(flatten)]
        rotation: &'a Rotation,
    }
    let input: Vec<Numbered> = rotations
        .iter()
        .enumerate()
        .map(|(n, rotation)| Numbered {
            n: n as i32,
            rotation,
        })
        .collect();
    let rows: Vec<AnyRow> = sqlx::query(&sql)
        .bind(serde_json::to_string(&input)?)
        .fetch_all(pool)
        .await?;
    let mut outcomes: Vec<RotateOutcome> = rotations
        .iter()
        .map(|_| RotateOutcome::NotCurrent)
        .collect();
    for row in &rows {
        let n: i32 = row.try_get("n")?;
        let slot = outcomes
            .get_mut(n as usize)
            .ok_or_else(|| anyhow::anyhow!("a rotation outside the batch"))?;
        *slot = RotateOutcome::Rotated(Box::new(grant_from_row(row)?));
    }
    Ok(outcomes)
}

/// One rotation in its own statement: SQLite's path, and a failed batch's.
pub(super) async fn rotate_one(
    pool: &AnyPool,
    rotation: &Rotation,
) -> anyhow::Result<RotateOutcome> {
    // `dpop_jkt = NULL` is never true: a bound family does not rotate without a proof.
    let sql = format!(
        "UPDATE grants SET refresh_generation = refresh_generation + 1, rotated_at = $1 \
         WHERE id = $2 AND client_id = $3 AND refresh_generation = $4 AND revoked_at IS NULL \
         AND refresh_expires_at > $1 \
         AND (device_id IS NULL OR EXISTS (SELECT 1 FROM mobile_slots s \
              WHERE s.account_id = grants.account_id AND s.device_group = grants.device_group \
              AND s.device_id = grants.device_id)) \
         AND (dpop_jkt IS NULL OR dpop_jkt = $5) \
         RETURNING {GRANT_COLUMNS}"
    );
    let row = sqlx::query(&sql)
        .bind(rotation.now)
        .bind(&rotation.grant_id)
        .bind(&rotation.client_id)
        .bind(rotation.generation)
        .bind(rotation.jkt.as_deref())
        .fetch_optional(pool)
        .await?;
    Ok(match row {
        Some(row) => RotateOutcome::Rotated(Box::new(grant_from_row(&row)?)),
        None => RotateOutcome::NotCurrent,
    })
}
