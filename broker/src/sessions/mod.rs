//! The session store: ephemeral, TTL-bound state shared by every instance (browser SSO sessions,
//! pending upstream logins, authorization codes, replay markers). In memory for the embedded
//! default, in Redis for production. Keys are opaque strings; values are bytes (JSON), or
//! counters (`incr`: OTP attempts and SMS limits).

pub mod ended;
pub mod memory;
pub mod records;
pub mod redis;
pub mod sso;

use std::time::Duration;

use async_trait::async_trait;

/// One compare-and-set of [`SessionStore::replace_all_if`]: `key` goes from `expected` to
/// `value`, which lives `ttl`. `expected: None`: the key must be absent (a first write).
#[derive(Clone, Copy, Debug)]
pub struct Swap<'a> {
    pub key: &'a str,
    pub expected: Option<&'a [u8]>,
    pub value: &'a [u8],
    pub ttl: Duration,
}

/// What [`SessionStore::get_guarded_counted`] found: the guard's value, and when the counted
/// key holds a value, that value and the counter's new count.
pub type GuardedCount = (Vec<u8>, Option<(Vec<u8>, u64)>);

#[async_trait]
pub trait SessionStore: Send + Sync {
    async fn put(&self, key: &str, value: &[u8], ttl: Duration) -> anyhow::Result<()>;
    /// Stores only if the key is absent; true when stored (replay detection, e.g. `jti`).
    async fn put_new(&self, key: &str, value: &[u8], ttl: Duration) -> anyhow::Result<bool>;
    async fn get(&self, key: &str) -> anyhow::Result<Option<Vec<u8>>>;
    /// Several keys in one round trip (not one atomic read): each one's value, in order.
    async fn get_many(&self, keys: &[&str]) -> anyhow::Result<Vec<Option<Vec<u8>>>>;
    /// Reads and deletes atomically: single-use values.
    async fn take(&self, key: &str) -> anyhow::Result<Option<Vec<u8>>>;
    /// Atomically replaces an existing value, keeping its TTL, and returns the previous value;
    /// does nothing and returns `None` when the key is absent.
    async fn swap(&self, key: &str, value: &[u8]) -> anyhow::Result<Option<Vec<u8>>>;
    /// Replaces the value only if it is still exactly `expected`, with a new TTL; true when
    /// replaced. An optimistic lock: of two writers that read the same value, one wins.
    async fn replace_if(
        &self,
        key: &str,
        expected: &[u8],
        value: &[u8],
        ttl: Duration,
    ) -> anyhow::Result<bool> {
        let swap = Swap {
            key,
            expected: Some(expected),
            value,
            ttl,
        };
        self.replace_all_if(&[swap], &[]).await
    }
    /// [`SessionStore::replace_if`] over several keys at once: when every key of `swaps` still
    /// holds exactly its `expected` value, all are replaced (each with its own TTL) and the keys
    /// of `also_delete` deleted, in one atomic step; otherwise nothing changes. True when done.
    /// (A code marked used, its attempt counter gone and the login it proves moved on, in one
    /// round trip: no crash leaves the code used and the login not told.)
    async fn replace_all_if(
        &self,
        swaps: &[Swap<'_>],
        also_delete: &[&str],
    ) -> anyhow::Result<bool>;
    async fn delete(&self, key: &str) -> anyhow::Result<()>;
    /// Adds one to a counter atomically and returns the new count (1 for a new key). `ttl` is
    /// set when the key is created and never extended, so a counter keyed by a time window
    /// ends with it. The count reads back through `get` as ASCII decimal.
    async fn incr(&self, key: &str, ttl: Duration) -> anyhow::Result<u64>;
    /// Reads `key` and, only when it holds a value, counts one more on `counter` (as
    /// [`SessionStore::incr`]), in one atomic step: an attempt at a one-time code is counted in
    /// the read that fetches the code. `None` when `key` is absent (nothing counted).
    async fn get_counted(
        &self,
        key: &str,
        counter: &str,
        ttl: Duration,
    ) -> anyhow::Result<Option<(Vec<u8>, u64)>>;
    /// [`SessionStore::get_counted`] behind a guard, in one atomic step: `None` (nothing read,
    /// nothing counted) when `guard` is absent; else its value, and `key`'s value and the new
    /// count when `key` holds one. A login's step reads the login it belongs to (whose key names
    /// the browser's binding, so only that browser counts) and the code's attempt at once.
    async fn get_guarded_counted(
        &self,
        guard: &str,
        key: &str,
        counter: &str,
        ttl: Duration,
    ) -> anyhow::Result<Option<GuardedCount>>;
    /// Liveness of the backend (readiness probe).
    async fn ping(&self) -> anyhow::Result<()>;
}

/// What every session store must do, checked on each (`memory.rs`, `redis.rs`).
#[cfg(test)]
pub(crate) mod contract {
    use std::time::Duration;

    use super::SessionStore;

    pub async fn replace_all_if_changes_all_or_nothing(store: &dyn SessionStore) {
        let ttl = Duration::from_secs(60);
        let swap = |key, expected, value| super::Swap {
            key,
            expected: Some(expected),
            value,
            ttl,
        };
        store.put("v", b"a", ttl).await.unwrap();
        store.put("w", b"p", ttl).await.unwrap();
        store.put("d", b"1", ttl).await.unwrap();
        // One key holds something else: nothing changes, not even the keys that matched.
        for (v, w) in [(&b"x"[..], &b"p"[..]), (b"a", b"x")] {
            let swaps = [swap("v", v, b"b"), swap("w", w, b"q")];
            assert!(!store.replace_all_if(&swaps, &["d"]).await.unwrap());
            assert_eq!(store.get("v").await.unwrap().as_deref(), Some(&b"a"[..]));
            assert_eq!(store.get("w").await.unwrap().as_deref(), Some(&b"p"[..]));
            assert!(
                store.get("d").await.unwrap().is_some(),
                "kept when not replaced"
            );
        }
        // An absent key never matches.
        let swaps = [swap("v", b"a", b"b"), swap("absent", b"", b"q")];
        assert!(!store.replace_all_if(&swaps, &["d"]).await.unwrap());
        assert!(store.get("absent").await.unwrap().is_none());
        let swaps = [swap("v", b"a", b"b"), swap("w", b"p", b"q")];
        assert!(store.replace_all_if(&swaps, &["d"]).await.unwrap());
        assert!(store.get("d").await.unwrap().is_none());
        assert_eq!(store.get("v").await.unwrap().as_deref(), Some(&b"b"[..]));
        assert_eq!(store.get("w").await.unwrap().as_deref(), Some(&b"q"[..]));
        // Done once: the same swaps again find the new values.
        assert!(!store.replace_all_if(&swaps, &[]).await.unwrap());
        // `expected: None` holds only while the key is absent.
        let first = |key| super::Swap {
            key,
            expected: None,
            value: b"first",
            ttl,
        };
        let swaps = [first("v"), first("new")];
        assert!(!store.replace_all_if(&swaps, &[]).await.unwrap());
        assert!(store.get("new").await.unwrap().is_none(), "nothing written");
        let swaps = [swap("v", b"b", b"c"), first("new")];
        assert!(store.replace_all_if(&swaps, &[]).await.unwrap());
        assert_eq!(
            store.get_many(&["new", "v", "gone"]).await.unwrap(),
            vec![Some(b"first".to_vec()), Some(b"c".to_vec()), None]
        );
        assert!(!store.replace_all_if(&[first("new")], &[]).await.unwrap());
    }

    pub async fn get_guarded_counted_counts_only_behind_its_guard(store: &dyn SessionStore) {
        let ttl = Duration::from_secs(60);
        store.put("v", b"code", ttl).await.unwrap();
        // No guard: nothing read, nothing counted.
        assert_eq!(
            store.get_guarded_counted("g", "v", "n", ttl).await.unwrap(),
            None
        );
        assert!(store.get("n").await.unwrap().is_none(), "nothing counted");
        store.put("g", b"login", ttl).await.unwrap();
        assert_eq!(
            store.get_guarded_counted("g", "v", "n", ttl).await.unwrap(),
            Some((b"login".to_vec(), Some((b"code".to_vec(), 1))))
        );
        assert_eq!(
            store.get_guarded_counted("g", "v", "n", ttl).await.unwrap(),
            Some((b"login".to_vec(), Some((b"code".to_vec(), 2))))
        );
        // The guard without the counted value: the guard's value, nothing counted.
        store.delete("v").await.unwrap();
        assert_eq!(
            store.get_guarded_counted("g", "v", "n", ttl).await.unwrap(),
            Some((b"login".to_vec(), None))
        );
        assert_eq!(store.get("n").await.unwrap().as_deref(), Some(&b"2"[..]));
    }

    pub async fn get_counted_counts_only_when_the_value_exists(store: &dyn SessionStore) {
        let ttl = Duration::from_secs(60);
        assert_eq!(store.get_counted("v", "n", ttl).await.unwrap(), None);
        assert!(store.get("n").await.unwrap().is_none(), "nothing counted");
        store.put("v", b"code", ttl).await.unwrap();
        assert_eq!(
            store.get_counted("v", "n", ttl).await.unwrap(),
            Some((b"code".to_vec(), 1))
        );
        assert_eq!(
            store.get_counted("v", "n", ttl).await.unwrap(),
            Some((b"code".to_vec(), 2))
        );
    }
}
