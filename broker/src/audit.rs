//! The audit log: what happened, when, to which account and through which client; appended,
//! never changed. An entry that records a change is appended in the same transaction as the
//! change, so neither exists without the other. SQL in `store/audit.rs`.

use async_trait::async_trait;

use crate::transaction::Transaction;

#[derive(Debug)]
pub struct AuditEntry<'a> {
    pub at: i64,
    /// What happened, e.g. `login`.
    pub kind: &'static str,
    pub account_id: Option<&'a str>,
    pub client_id: Option<&'a str>,
    /// Who made the change: an operator's name, `bootstrap` (the configured admin token) or
    /// `cli`; `None` for what no operator caused (a login).
    pub actor: Option<&'a str>,
    /// Details as JSON; no personal data beyond the account id.
    pub detail: serde_json::Value,
}

#[async_trait]
pub trait AuditLog: Send + Sync {
    /// Appends within the caller's transaction: the entry commits or rolls back with it.
    async fn append(&self, tx: &mut Transaction, entry: &AuditEntry<'_>) -> anyhow::Result<()>;
    /// Appends on its own, for an event that changes nothing else.
    async fn append_alone(&self, entry: &AuditEntry<'_>) -> anyhow::Result<()>;
}
