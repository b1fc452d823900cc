//! An operator's replay of a finished delivery (the admin API and `broker deliveries replay`
//! share this): a **new** delivery of the same event to the same receiver, so it gets a new
//! identifier (a SET's `jti`) while what identifies the event stays (a SET's `txn`, its `seq`).
//! It takes its place in its subject's sequence like any delivery. The replay and its audit
//! record commit together.

use crate::audit::{AuditEntry, AuditLog};
use crate::transaction::Transactions;

use super::{DeliveryStatus, DeliveryStore};

/// What a replay did.
#[derive(Debug, PartialEq, Eq)]
pub enum ReplayOutcome {
    /// The new delivery's id.
    Replayed(String),
    NotFound,
    /// Still pending: it will be sent anyway.
    StillPending,
}

pub struct Replayer<'a> {
    pub store: &'a dyn DeliveryStore,
    pub transactions: &'a dyn Transactions,
    pub audit: &'a dyn AuditLog,
}

impl Replayer<'_> {
    /// Replays delivery `id` on behalf of `actor` (an operator's name or `cli`).
    pub async fn replay(&self, id: &str, actor: &str, now: i64) -> anyhow::Result<ReplayOutcome> {
        let Some(original) = self.store.find(id).await? else {
            return Ok(ReplayOutcome::NotFound);
        };
        if original.status == DeliveryStatus::Pending.as_str() {
            return Ok(ReplayOutcome::StillPending);
        }
        let mut tx = self.transactions.begin().await?;
        let Some(new_id) = self.store.replay(&mut tx, id, now).await? else {
            tx.rollback().await?;
            return Ok(ReplayOutcome::StillPending);
        };
        let entry = AuditEntry {
            at: now,
            kind: "delivery.replayed",
            account_id: None,
            client_id: Some(&original.target),
            actor: Some(actor),
            detail: serde_json::json!({
                "delivery": id,
                "replay": new_id,
                "event_id": original.event_id,
                "route": original.route,
            }),
        };
        self.audit.append(&mut tx, &entry).await?;
        tx.commit().await?;
        Ok(ReplayOutcome::Replayed(new_id))
    }
}
