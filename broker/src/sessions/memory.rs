//! In-process session store for the embedded default (one instance only).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::SessionStore;

#[derive(Default)]
pub struct MemoryStore {
    entries: Mutex<HashMap<String, (Instant, Vec<u8>)>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn with<R>(
        &self,
        f: impl FnOnce(&mut HashMap<String, (Instant, Vec<u8>)>, Instant) -> R,
    ) -> anyhow::Result<R> {
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

fn live(entry: Option<&(Instant, Vec<u8>)>, now: Instant) -> bool {
    entry.is_some_and(|(expires, _)| *expires > now)
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
        self.with(|map, now| {
            map.get(key)
                .filter(|(e, _)| *e > now)
                .map(|(_, v)| v.clone())
        })
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

    async fn delete(&self, key: &str) -> anyhow::Result<()> {
        self.with(|map, _| {
            map.remove(key);
        })
    }

    async fn ping(&self) -> anyhow::Result<()> {
        Ok(())
    }
}
