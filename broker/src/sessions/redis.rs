//! Redis session store for production: every instance shares it. Single-use and
//! compare-and-swap semantics come from Redis itself (GETDEL, SET NX, SET XX KEEPTTL GET), and
//! counters from INCR with a TTL set in the same script.

use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use redis::aio::ConnectionManager;
use redis::AsyncCommands;

use super::{GuardedCount, SessionStore, Swap};

#[derive(Clone)]
pub struct RedisStore {
    /// The connection of the main runtime (background tasks, the CLI, tests).
    conn: ConnectionManager,
    client: redis::Client,
    /// Tells this store's per-worker connections apart from another store's.
    id: u64,
    prefix: String,
}

thread_local! {
    static WORKER_CONNECTIONS: std::cell::RefCell<Vec<(u64, ConnectionManager)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Each HTTP worker's own connection, driven by its own runtime (`crate::affinity`).
static PER_WORKER: crate::affinity::PerThread<ConnectionManager> =
    crate::affinity::PerThread::new(&WORKER_CONNECTIONS);

/// How long an HTTP worker waits for its own connection before it uses the shared one.
const WORKER_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

impl RedisStore {
    pub async fn connect(url: &str, prefix: &str) -> anyhow::Result<Self> {
        let client = redis::Client::open(url).context("invalid Redis URL")?;
        let conn = tokio::time::timeout(
            Duration::from_secs(10),
            ConnectionManager::new(client.clone()),
        )
        .await
        .context("Redis did not answer within 10 s")?
        .context("cannot connect to Redis")?;
        Ok(Self {
            conn,
            client,
            id: crate::affinity::next_id(),
            prefix: prefix.to_string(),
        })
    }

    /// The connection for a command from this thread: an HTTP worker's own (opened at its
    /// first command; should that fail, the shared one serves and the next command tries
    /// again), else the shared one.
    async fn connection(&self) -> ConnectionManager {
        if !crate::affinity::on_http_worker() {
            return self.conn.clone();
        }
        if let Some(conn) = PER_WORKER.get(self.id) {
            return conn;
        }
        match tokio::time::timeout(
            WORKER_CONNECT_TIMEOUT,
            ConnectionManager::new(self.client.clone()),
        )
        .await
        {
            Ok(Ok(conn)) => PER_WORKER.insert(self.id, conn),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "an HTTP worker's own Redis connection failed; using the shared one");
                self.conn.clone()
            }
            Err(_) => {
                tracing::warn!(
                    "an HTTP worker's own Redis connection timed out; using the shared one"
                );
                self.conn.clone()
            }
        }
    }

    fn key(&self, key: &str) -> String {
        format!("{}{}", self.prefix, key)
    }
}

/// INCR, then a TTL only where none is set: the key was just created (or, should anything have
/// written it without one, it gets one now). One script, so no counter is ever left without a
/// TTL. `EXPIRE NX` would do the same but needs Redis 7; this needs 6.2 like the rest.
static INCR_WITH_TTL: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"
local n = redis.call('INCR', KEYS[1])
if redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return n
",
    )
});

/// Compare-and-set on several keys at once: the first #ARGV / 4 keys each go from ARGV[4i-2]
/// (or from absent, when ARGV[4i-3] is "-") to ARGV[4i-1] (TTL ARGV[4i] ms) if every one of
/// them still holds its expected value; when they do, the remaining keys go.
static REPLACE_ALL_IF: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"
local n = #ARGV / 4
for i = 1, n do
  local v = redis.call('GET', KEYS[i])
  if ARGV[4 * i - 3] == '-' then
    if v then
      return 0
    end
  elseif v ~= ARGV[4 * i - 2] then
    return 0
  end
end
for i = 1, n do
  redis.call('SET', KEYS[i], ARGV[4 * i - 1], 'PX', ARGV[4 * i])
end
for i = n + 1, #KEYS do
  redis.call('DEL', KEYS[i])
end
return 1
",
    )
});

/// GET KEYS[1]; when present, INCR KEYS[2] with its TTL as `INCR_WITH_TTL`.
static GET_COUNTED: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"
local v = redis.call('GET', KEYS[1])
if not v then
  return false
end
local n = redis.call('INCR', KEYS[2])
if redis.call('PTTL', KEYS[2]) < 0 then
  redis.call('PEXPIRE', KEYS[2], ARGV[1])
end
return {v, n}
",
    )
});

/// GET KEYS[1] (the guard); when present, `GET_COUNTED` on KEYS[2] and KEYS[3].
static GET_GUARDED_COUNTED: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"
local g = redis.call('GET', KEYS[1])
if not g then
  return false
end
local v = redis.call('GET', KEYS[2])
if not v then
  return {g}
end
local n = redis.call('INCR', KEYS[3])
if redis.call('PTTL', KEYS[3]) < 0 then
  redis.call('PEXPIRE', KEYS[3], ARGV[1])
end
return {g, v, n}
",
    )
});

fn millis(ttl: Duration) -> u64 {
    ttl.as_millis().clamp(1, u64::MAX as u128) as u64
}

#[async_trait]
impl SessionStore for RedisStore {
    #[tracing::instrument(level = "debug", skip_all)]
    async fn put(&self, key: &str, value: &[u8], ttl: Duration) -> anyhow::Result<()> {
        let mut conn = self.connection().await;
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
        let mut conn = self.connection().await;
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
        let mut conn = self.connection().await;
        Ok(conn.get(self.key(key)).await?)
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn get_many(&self, keys: &[&str]) -> anyhow::Result<Vec<Option<Vec<u8>>>> {
        let mut conn = self.connection().await;
        let mut mget = redis::cmd("MGET");
        for key in keys {
            mget.arg(self.key(key));
        }
        Ok(mget.query_async(&mut conn).await?)
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn take(&self, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let mut conn = self.connection().await;
        Ok(redis::cmd("GETDEL")
            .arg(self.key(key))
            .query_async(&mut conn)
            .await?)
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn swap(&self, key: &str, value: &[u8]) -> anyhow::Result<Option<Vec<u8>>> {
        let mut conn = self.connection().await;
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
    async fn replace_all_if(
        &self,
        swaps: &[Swap<'_>],
        also_delete: &[&str],
    ) -> anyhow::Result<bool> {
        let mut conn = self.connection().await;
        let mut script = REPLACE_ALL_IF.prepare_invoke();
        for swap in swaps {
            let (mode, expected) = match swap.expected {
                Some(expected) => ("=", expected),
                None => ("-", &b""[..]),
            };
            script
                .key(self.key(swap.key))
                .arg(mode)
                .arg(expected)
                .arg(swap.value)
                .arg(millis(swap.ttl));
        }
        for other in also_delete {
            script.key(self.key(other));
        }
        let replaced: i64 = script.invoke_async(&mut conn).await?;
        Ok(replaced == 1)
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn delete(&self, key: &str) -> anyhow::Result<()> {
        let mut conn = self.connection().await;
        let _: () = conn.del(self.key(key)).await?;
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn incr(&self, key: &str, ttl: Duration) -> anyhow::Result<u64> {
        let mut conn = self.connection().await;
        Ok(INCR_WITH_TTL
            .key(self.key(key))
            .arg(millis(ttl))
            .invoke_async(&mut conn)
            .await?)
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn get_counted(
        &self,
        key: &str,
        counter: &str,
        ttl: Duration,
    ) -> anyhow::Result<Option<(Vec<u8>, u64)>> {
        let mut conn = self.connection().await;
        Ok(GET_COUNTED
            .key(self.key(key))
            .key(self.key(counter))
            .arg(millis(ttl))
            .invoke_async(&mut conn)
            .await?)
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn get_guarded_counted(
        &self,
        guard: &str,
        key: &str,
        counter: &str,
        ttl: Duration,
    ) -> anyhow::Result<Option<GuardedCount>> {
        let mut conn = self.connection().await;
        // false, {guard} or {guard, value, count}.
        let read: Option<Vec<redis::Value>> = GET_GUARDED_COUNTED
            .key(self.key(guard))
            .key(self.key(key))
            .key(self.key(counter))
            .arg(millis(ttl))
            .invoke_async(&mut conn)
            .await?;
        let Some(read) = read else {
            return Ok(None);
        };
        let mut parts = read.into_iter();
        let guarded: Vec<u8> = match parts.next() {
            Some(guarded) => redis::from_redis_value(guarded)?,
            None => anyhow::bail!("the guarded read answered an empty array"),
        };
        match (parts.next(), parts.next(), parts.next()) {
            (None, None, None) => Ok(Some((guarded, None))),
            (Some(value), Some(count), None) => Ok(Some((
                guarded,
                Some((
                    redis::from_redis_value(value)?,
                    redis::from_redis_value(count)?,
                )),
            ))),
            _ => anyhow::bail!("unexpected answer from the guarded read"),
        }
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn ping(&self) -> anyhow::Result<()> {
        let mut conn = self.connection().await;
        let _: String = redis::cmd("PING").query_async(&mut conn).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store under a fresh prefix on the test Redis, or `None` (and a note) without one.
    async fn test_store() -> Option<RedisStore> {
        let Ok(url) = std::env::var("BROKER_TEST_REDIS_URL") else {
            assert!(
                std::env::var("CI").is_err(),
                "CI must test Redis: set BROKER_TEST_REDIS_URL"
            );
            eprintln!("NOT RUN: Redis (set BROKER_TEST_REDIS_URL)");
            return None;
        };
        let prefix = format!("test:{}:", uuid::Uuid::new_v4());
        Some(RedisStore::connect(&url, &prefix).await.unwrap())
    }

    #[tokio::test]
    async fn incr_counts_from_one_and_never_extends_the_ttl() {
        let Some(store) = test_store().await else {
            return;
        };
        let ttl = Duration::from_millis(300);
        assert_eq!(store.incr("n", ttl).await.unwrap(), 1);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(store.incr("n", ttl).await.unwrap(), 2);
        assert_eq!(store.get("n").await.unwrap().as_deref(), Some(&b"2"[..]));
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(store.incr("n", ttl).await.unwrap(), 1);
    }

    #[tokio::test]
    async fn parallel_increments_each_get_their_own_count() {
        let Some(store) = test_store().await else {
            return;
        };
        let tasks: Vec<_> = (0..40)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move { store.incr("p", Duration::from_secs(60)).await })
            })
            .collect();
        let mut counts = Vec::new();
        for task in tasks {
            counts.push(task.await.unwrap().unwrap());
        }
        counts.sort_unstable();
        assert_eq!(counts, (1..=40).collect::<Vec<u64>>());
    }

    #[tokio::test]
    async fn replace_if_replaces_only_the_value_it_was_given_and_never_an_absent_key() {
        let Some(store) = test_store().await else {
            return;
        };
        let ttl = Duration::from_secs(60);
        assert!(!store.replace_if("v", b"a", b"b", ttl).await.unwrap());
        assert!(store.get("v").await.unwrap().is_none(), "no key appears");
        store.put("v", b"a", Duration::from_secs(1)).await.unwrap();
        assert!(!store.replace_if("v", b"x", b"b", ttl).await.unwrap());
        assert!(store.replace_if("v", b"a", b"b", ttl).await.unwrap());
        assert!(!store.replace_if("v", b"a", b"c", ttl).await.unwrap());
        assert_eq!(store.get("v").await.unwrap().as_deref(), Some(&b"b"[..]));
        let mut conn = store.conn.clone();
        let left: i64 = conn.pttl(store.key("v")).await.unwrap();
        assert!(left > 1_000, "the new TTL applies: {left}");
    }

    #[tokio::test]
    async fn replace_all_if_changes_all_or_nothing() {
        let Some(store) = test_store().await else {
            return;
        };
        crate::sessions::contract::replace_all_if_changes_all_or_nothing(&store).await;
    }

    #[tokio::test]
    async fn get_counted_counts_only_when_the_value_exists() {
        let Some(store) = test_store().await else {
            return;
        };
        crate::sessions::contract::get_counted_counts_only_when_the_value_exists(&store).await;
        let mut conn = store.conn.clone();
        let left: i64 = conn.pttl(store.key("n")).await.unwrap();
        assert!(
            left > 0 && left <= 60_000,
            "the counter has its TTL: {left}"
        );
    }

    #[tokio::test]
    async fn get_guarded_counted_counts_only_behind_its_guard() {
        let Some(store) = test_store().await else {
            return;
        };
        crate::sessions::contract::get_guarded_counted_counts_only_behind_its_guard(&store).await;
    }

    #[tokio::test]
    async fn incr_gives_a_key_without_ttl_one() {
        let Some(store) = test_store().await else {
            return;
        };
        let mut conn = store.conn.clone();
        let _: () = conn.set(store.key("bare"), 5).await.unwrap();
        assert_eq!(
            store.incr("bare", Duration::from_secs(60)).await.unwrap(),
            6
        );
        let ttl: i64 = conn.pttl(store.key("bare")).await.unwrap();
        assert!(ttl > 0 && ttl <= 60_000, "{ttl}");
    }
}
