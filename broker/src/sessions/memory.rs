//! In-process session store for the embedded default (one instance only).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;
use async_trait::async_trait;

use super::{GuardedCount, SessionStore, Swap};

#[derive(Default)]
pub struct MemoryStore {
    entries: Mutex<HashMap<String, (Instant, Vec<u8>)>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn with<R>(&self, f: impl FnOnce(&mut Entries, Instant) -> R) -> anyhow::Result<R> {
        let mut map = self
            .entries
            .lock()
            .map_err(|_| anyhow::anyhow!("session store lock poisoned"))?;
        let now = Instant::now();
        // Sweep now and then so that abandoned entries do not pile up.
        if map.len() > 10_000 && map.len() % 1024 == 0 {
            map.retain(|_, (expires, _)| *expires > now);
        }
        Ok(f(&mut map, now))
    }
}

type Entries = HashMap<String, (Instant, Vec<u8>)>;

fn live(entry: Option<&(Instant, Vec<u8>)>, now: Instant) -> bool {
    entry.is_some_and(|(expires, _)| *expires > now)
}

/// The value under `key`, unless it has expired.
fn value(map: &Entries, key: &str, now: Instant) -> Option<Vec<u8>> {
    map.get(key)
        .filter(|(expires, _)| *expires > now)
        .map(|(_, v)| v.clone())
}

/// One more on the counter under `key` (created at 1 with `ttl`, which is never extended).
fn count(map: &mut Entries, key: &str, ttl: Duration, now: Instant) -> anyhow::Result<u64> {
    match map.get_mut(key) {
        Some((expires, value)) if *expires > now => {
            let count = std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.parse::<u64>().ok())
                .context("the value under this key is not a counter")?
                .saturating_add(1);
            *value = count.to_string().into_bytes();
            Ok(count)
        }
        _ => {
            map.insert(key.to_string(), (now + ttl, b"1".to_vec()));
            Ok(1)
        }
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn put(&self, key: &str, value: &[u8], ttl: Duration) -> anyhow::Result<()> {
        self.with(|map, now| {
            map.insert(key.to_string(), (now + ttl, value.to_vec()));
        })
    }

    async fn put_new(&self, key: &str, value: &[u8], ttl: Duration) -> anyhow::Result<bool> {
        self.with(|map, now| {
            if live(map.get(key), now) {
                return false;
            }
            map.insert(key.to_string(), (now + ttl, value.to_vec()));
            true
        })
    }

    async fn get(&self, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
        self.with(|map, now| value(map, key, now))
    }

    async fn get_many(&self, keys: &[&str]) -> anyhow::Result<Vec<Option<Vec<u8>>>> {
        self.with(|map, now| keys.iter().map(|key| value(map, key, now)).collect())
    }

    async fn take(&self, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
        self.with(|map, now| map.remove(key).filter(|(e, _)| *e > now).map(|(_, v)| v))
    }

    async fn swap(&self, key: &str, value: &[u8]) -> anyhow::Result<Option<Vec<u8>>> {
        self.with(|map, now| match map.get_mut(key) {
            Some((expires, old)) if *expires > now => Some(std::mem::replace(old, value.to_vec())),
            _ => None,
        })
    }

    async fn replace_all_if(
        &self,
        swaps: &[Swap<'_>],
        also_delete: &[&str],
    ) -> anyhow::Result<bool> {
        self.with(|map, now| {
            let holds = |swap: &Swap<'_>| {
                let live = map.get(swap.key).filter(|(expires, _)| *expires > now);
                match swap.expected {
                    Some(expected) => live.is_some_and(|(_, value)| value == expected),
                    None => live.is_none(),
                }
            };
            if !swaps.iter().all(holds) {
                return false;
            }
            for swap in swaps {
                map.insert(swap.key.to_string(), (now + swap.ttl, swap.value.to_vec()));
            }
            for other in also_delete {
                map.remove(*other);
            }
            true
        })
    }

    async fn delete(&self, key: &str) -> anyhow::Result<()> {
        self.with(|map, _| {
            map.remove(key);
        })
    }

    async fn incr(&self, key: &str, ttl: Duration) -> anyhow::Result<u64> {
        self.with(|map, now| count(map, key, ttl, now))?
    }

    async fn get_counted(
        &self,
        key: &str,
        counter: &str,
        ttl: Duration,
    ) -> anyhow::Result<Option<(Vec<u8>, u64)>> {
        self.with(|map, now| match value(map, key, now) {
            Some(value) => Ok(Some((value, count(map, counter, ttl, now)?))),
            None => Ok(None),
        })?
    }

    async fn get_guarded_counted(
        &self,
        guard: &str,
        key: &str,
        counter: &str,
        ttl: Duration,
    ) -> anyhow::Result<Option<GuardedCount>> {
        self.with(|map, now| {
            let Some(guarded) = value(map, guard, now) else {
                return Ok(None);
            };
            let counted = match value(map, key, now) {
                Some(value) => Some((value, count(map, counter, ttl, now)?)),
                None => None,
            };
            Ok(Some((guarded, counted)))
        })?
    }

    async fn ping(&self) -> anyhow::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn incr_counts_from_one_and_never_extends_the_ttl() {
        let store = MemoryStore::new();
        let ttl = Duration::from_millis(150);
        assert_eq!(store.incr("n", ttl).await.unwrap(), 1);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(store.incr("n", ttl).await.unwrap(), 2);
        assert_eq!(store.get("n").await.unwrap().as_deref(), Some(&b"2"[..]));
        // 150 ms after the first increment: the second one did not push the end further.
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert_eq!(store.incr("n", ttl).await.unwrap(), 1);
    }

    #[tokio::test]
    async fn incr_refuses_a_value_that_is_not_a_counter() {
        let store = MemoryStore::new();
        store
            .put("k", b"{}", Duration::from_secs(60))
            .await
            .unwrap();
        assert!(store.incr("k", Duration::from_secs(60)).await.is_err());
    }

    #[tokio::test]
    async fn replace_all_if_changes_all_or_nothing() {
        crate::sessions::contract::replace_all_if_changes_all_or_nothing(&MemoryStore::new()).await;
    }

    #[tokio::test]
    async fn get_counted_counts_only_when_the_value_exists() {
        crate::sessions::contract::get_counted_counts_only_when_the_value_exists(
            &MemoryStore::new(),
        )
        .await;
    }

    #[tokio::test]
    async fn get_guarded_counted_counts_only_behind_its_guard() {
        crate::sessions::contract::get_guarded_counted_counts_only_behind_its_guard(
            &MemoryStore::new(),
        )
        .await;
    }
}
