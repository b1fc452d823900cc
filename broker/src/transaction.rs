//! The transaction seam: writes that must commit together (an account, its link, its audit
//! entry, and soon its outbox event) go through one `Transaction` that the caller owns. Domain
//! code begins it, hands it to each store call, and commits it; dropping it uncommitted rolls
//! everything back. Only the stores in `store/` see the SQL connection inside.
//!
//! Begin with a write: on SQLite a transaction that reads first and writes later can fail at
//! once with "database is locked" when another connection wrote in between.

use async_trait::async_trait;

/// One SQL transaction (SQLite or PostgreSQL through sqlx's `Any` driver).
pub struct Transaction(sqlx::Transaction<'static, sqlx::Any>);

impl Transaction {
    pub(crate) fn new(inner: sqlx::Transaction<'static, sqlx::Any>) -> Self {
        Self(inner)
    }

    /// The connection the stores execute on.
    pub(crate) fn connection(&mut self) -> &mut sqlx::AnyConnection {
        &mut self.0
    }

    pub async fn commit(self) -> anyhow::Result<()> {
        self.0.commit().await?;
        Ok(())
    }

    pub async fn rollback(self) -> anyhow::Result<()> {
        self.0.rollback().await?;
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
