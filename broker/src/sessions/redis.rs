//! Redis session store for production: every instance shares it. Single-use and
//! compare-and-swap semantics come from Redis itself (GETDEL, SET NX, SET XX KEEPTTL GET).

use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use redis::aio::ConnectionManager;
use redis::AsyncCommands;

use super::SessionStore;

#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    prefix: String,
}

impl RedisStore {
    pub async fn connect(url: &str, prefix: &str) -> anyhow::Result<Self> {
        let client = redis::Client::open(url).context("invalid Redis URL")?;
        let conn = tokio::time::timeout(Duration::from_secs(10), ConnectionManager::new(client))
            .await
            .context("Redis did not answer within 10 s")?
            .context("cannot connect to Redis")?;
        Ok(Self {
            conn,
            prefix: prefix.to_string(),
        })
    }

    fn key(&self, key: &str) -> String {
        format!("{}{}", self.prefix, key)
    }
}

fn millis(ttl: Duration) -> u64 {
    ttl.as_millis().clamp(1, u64::MAX as u128) as u64
}

#[async_trait]
impl SessionStore for RedisStore {
    #[tracing::instrument(level = "debug", skip_all)]
    async fn put(&self, key: &str, value: &[u8], ttl: Duration) -> anyhow::Result<()> {
        let mut conn = self.conn.clone();
        let _: () = redis::cmd("SET")
            .arg(self.key(key))
            .arg(value)
            .arg("PX")
            .arg(millis(ttl))
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn put_new(&self, key: &str, value: &[u8], ttl: Duration) -> anyhow::Result<bool> {
        let mut conn = self.conn.clone();
        let set: Option<String> = redis::cmd("SET")
            .arg(self.key(key))
            .arg(value)
            .arg("NX")
            .arg("PX")
            .arg(millis(ttl))
            .query_async(&mut conn)
            .await?;
        Ok(set.is_some())
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn get(&self, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let mut conn = self.conn.clone();
        Ok(conn.get(self.key(key)).await?)
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn take(&self, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let mut conn = self.conn.clone();
        Ok(redis::cmd("GETDEL")
            .arg(self.key(key))
            .query_async(&mut conn)
            .await?)
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn swap(&self, key: &str, value: &[u8]) -> anyhow::Result<Option<Vec<u8>>> {
        let mut conn = self.conn.clone();
        Ok(redis::cmd("SET")
            .arg(self.key(key))
            .arg(value)
            .arg("XX")
            .arg("KEEPTTL")
            .arg("GET")
            .query_async(&mut conn)
            .await?)
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn delete(&self, key: &str) -> anyhow::Result<()> {
        let mut conn = self.conn.clone();
        let _: () = conn.del(self.key(key)).await?;
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn ping(&self) -> anyhow::Result<()> {
        let mut conn = self.conn.clone();
        let _: String = redis::cmd("PING").query_async(&mut conn).await?;
        Ok(())
    }
}
