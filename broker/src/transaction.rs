//! The transaction seam: writes that must commit together (an account, its link, its audit
//! entry, and soon its outbox event) go through one `Transaction` that the caller owns. Domain
//! code begins it, hands it to each store call, and commits it; dropping it uncommitted rolls
//! everything back. Only the stores in `store/` see the SQL connection inside.
//!
//! Begin with a write: on SQLite a transaction that reads first and writes later can fail at
//! once with "database is locked" when another connection wrote in between.
//!
//! A store may ask to be told when the transaction commits (`notify_on_commit`): the outbox
//! wakes this instance's dispatcher that way, after the commit, when the event is visible to
//! it, and not before (a dispatcher woken before the commit would find nothing and sleep).
//! Likewise `after_commit`: the revocation set and the released-claims cache of this instance
//! learn a change when it commits, before `commit` returns (`crate::changes`).

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::Notify;

/// One SQL transaction (SQLite or PostgreSQL through sqlx's `Any` driver).
pub struct Transaction {
    inner: sqlx::Transaction<'static, sqlx::Any>,
    on_commit: Option<Arc<Notify>>,
    after_commit: Vec<Box<dyn FnOnce() + Send>>,
}

impl Transaction {
    pub(crate) fn new(inner: sqlx::Transaction<'static, sqlx::Any>) -> Self {
        Self {
            inner,
            on_commit: None,
            after_commit: Vec::new(),
        }
    }

    /// The connection the stores execute on.
    pub(crate) fn connection(&mut self) -> &mut sqlx::AnyConnection {
        &mut self.inner
    }

    /// Wakes `signal` once this transaction has committed (nothing on rollback).
    pub(crate) fn notify_on_commit(&mut self, signal: Arc<Notify>) {
        self.on_commit = Some(signal);
    }

    /// Runs `hook` once this transaction has committed, before `commit` returns (nothing on
    /// rollback).
    pub(crate) fn after_commit(&mut self, hook: impl FnOnce() + Send + 'static) {
        self.after_commit.push(Box::new(hook));
    }

    pub async fn commit(self) -> anyhow::Result<()> {
        self.inner.commit().await?;
        for hook in self.after_commit {
            hook();
        }
        if let Some(signal) = self.on_commit {
            signal.notify_one();
        }
        Ok(())
    }

    pub async fn rollback(self) -> anyhow::Result<()> {
        self.inner.rollback().await?;
        Ok(())
    }
}

impl std::fmt::Debug for Transaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Transaction")
    }
}

/// Where transactions come from (the database).
#[async_trait]
pub trait Transactions: Send + Sync {
    async fn begin(&self) -> anyhow::Result<Transaction>;
}
