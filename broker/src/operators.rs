//! Operators of the admin API: each has a name and their own bearer token (256-bit random,
//! shown once, stored as a keyed hash), revocable at once: the token is looked up on every
//! admin request, so a revocation needs no cache to reach other instances. Creations and
//! revocations are audited with the actor who made them. SQL in `store/operators.rs`.

use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;

use crate::audit::{AuditEntry, AuditLog};
use crate::crypto::{ct_eq, random_token, MasterKey, TOKEN_LEN};
use crate::transaction::{Transaction, Transactions};

/// The audit actor of the configured bootstrap admin token.
pub const BOOTSTRAP_ACTOR: &str = "bootstrap";
/// The audit actor of `broker` commands run on the server.
pub const CLI_ACTOR: &str = "cli";

/// An authenticated operator: who an admin request acts as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operator {
    pub id: String,
    pub name: String,
}

/// An operator as listed: never the token or its hash.
#[derive(Clone, Debug, Serialize)]
pub struct OperatorRecord {
    pub id: String,
    pub name: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    #[error("operator names are 1 to 64 characters of a-z, 0-9, '.', '_' and '-', starting with a letter or digit, and not `bootstrap` or `cli`")]
    InvalidName,
    #[error("an operator with this name exists (names are never reused)")]
    Conflict,
    #[error("no such active operator")]
    NotFound,
    #[error(transparent)]
    Store(#[from] anyhow::Error),
}

#[async_trait]
pub trait OperatorStore: Send + Sync {
    /// Inserts; false when the name (or the token hash) is taken.
    async fn insert(
        &self,
        tx: &mut Transaction,
        record: &OperatorRecord,
        token_hash: &str,
    ) -> anyhow::Result<bool>;
    /// Marks the active operator of this name revoked; its id, or `None` when there is none.
    async fn revoke(
        &self,
        tx: &mut Transaction,
        name: &str,
        now: i64,
    ) -> anyhow::Result<Option<String>>;
    async fn list(&self) -> anyhow::Result<Vec<OperatorRecord>>;
    /// The active operator whose token hash this is, with the stored hash.
    async fn find_active(&self, token_hash: &str) -> anyhow::Result<Option<(Operator, String)>>;
}

/// Operator names appear in audit rows and in `/admin/operators/{name}`.
fn valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    first_ok
        && name.len() <= 64
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        && name != BOOTSTRAP_ACTOR
        && name != CLI_ACTOR
}

#[derive(Clone)]
pub struct Operators {
    store: Arc<dyn OperatorStore>,
    audit: Arc<dyn AuditLog>,
    transactions: Arc<dyn Transactions>,
    master: MasterKey,
}

impl Operators {
    pub fn new(
        store: Arc<dyn OperatorStore>,
        audit: Arc<dyn AuditLog>,
        transactions: Arc<dyn Transactions>,
        master: MasterKey,
    ) -> Self {
        Self {
            store,
            audit,
            transactions,
            master,
        }
    }

    /// A new operator and their token, which is returned this once and stored only hashed.
    pub async fn create(
        &self,
        name: &str,
        actor: &str,
        now: i64,
    ) -> Result<(OperatorRecord, String), OperatorError> {
        if !valid_name(name) {
            return Err(OperatorError::InvalidName);
        }
        let token = random_token();
        let record = OperatorRecord {
            id: uuid::Uuid::now_v7().to_string(),
            name: name.to_string(),
            created_at: now,
            revoked_at: None,
        };
        let mut tx = self.transactions.begin().await?;
        if !self
            .store
            .insert(&mut tx, &record, &self.master.operator_token_hash(&token))
            .await?
        {
            return Err(OperatorError::Conflict);
        }
        self.audit
            .append(&mut tx, &entry("operator.created", name, actor, now))
            .await?;
        tx.commit().await?;
        Ok((record, token))
    }

    pub async fn list(&self) -> anyhow::Result<Vec<OperatorRecord>> {
        self.store.list().await
    }

    /// Revokes the operator's token; the next request with it is refused, on every instance.
    pub async fn revoke(&self, name: &str, actor: &str, now: i64) -> Result<(), OperatorError> {
        let mut tx = self.transactions.begin().await?;
        if self.store.revoke(&mut tx, name, now).await?.is_none() {
            return Err(OperatorError::NotFound);
        }
        self.audit
            .append(&mut tx, &entry("operator.revoked", name, actor, now))
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The active operator holding this token, if any.
    pub async fn authenticate(&self, token: &str) -> anyhow::Result<Option<Operator>> {
        if token.len() != TOKEN_LEN {
            return Ok(None);
        }
        let offered = self.master.operator_token_hash(token);
        let found = self.store.find_active(&offered).await?;
        // The lookup matched the hash already; comparing again in constant time keeps a store
        // with a lax comparison (case, padding) from widening what matches.
        Ok(found
            .filter(|(_, stored)| ct_eq(stored.as_bytes(), offered.as_bytes()))
            .map(|(operator, _)| operator))
    }
}

fn entry<'a>(kind: &'static str, name: &str, actor: &'a str, now: i64) -> AuditEntry<'a> {
    AuditEntry {
        at: now,
        kind,
        account_id: None,
        client_id: None,
        actor: Some(actor),
        detail: serde_json::json!({ "operator": name }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["an", "nguyen.van.an", "op-1", "1st_shift"] {
            assert!(valid_name(ok), "{ok}");
        }
        let long = "a".repeat(65);
        for bad in [
            "",
            "An",
            "-x",
            ".x",
            "a b",
            "bootstrap",
            "cli",
            long.as_str(),
            "a/b",
        ] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
