//! The in-memory key ring of one instance: decrypted signing keys, verification keys and the
//! published JWKS, re-read from the store periodically (another instance may have rotated).

use std::sync::{Arc, RwLock};

use anyhow::Context;
use jsonwebtoken::DecodingKey;

use super::generate::{new_stored_key, seal_purpose};
use super::signer::PreparedKey;
use super::{Alg, KeyState, KeyStore, StoredKey};
use crate::crypto::MasterKey;

pub struct LoadedKey {
    pub meta: StoredKey,
    pub signer: PreparedKey,
    pub decoding: DecodingKey,
}

#[derive(Default)]
struct Snapshot {
    keys: Vec<Arc<LoadedKey>>,
    /// The JWKS as served, built at the first request after a reload, with the span of time
    /// it is right for: from when it was built until the next removal of a published key.
    jwks: RwLock<Option<JwksBytes>>,
}

struct JwksBytes {
    from: i64,
    until: i64,
    bytes: bytes::Bytes,
}

#[derive(Clone)]
pub struct KeyRing {
    store: Arc<dyn KeyStore>,
    master: MasterKey,
    snapshot: Arc<RwLock<Arc<Snapshot>>>,
}

impl KeyRing {
    pub fn new(store: Arc<dyn KeyStore>, master: MasterKey) -> Self {
        Self {
            store,
            master,
            snapshot: Arc::default(),
        }
    }

    pub fn store(&self) -> &Arc<dyn KeyStore> {
        &self.store
    }

    /// Makes sure every algorithm has a signing key; a first key signs at once (nobody can
    /// have cached a JWKS without it yet).
    pub async fn bootstrap(&self, now: i64) -> anyhow::Result<()> {
        let existing = self.store.list().await?;
        for alg in Alg::ALL {
            let usable = existing
                .iter()
                .any(|k| k.alg == alg && matches!(k.state(now), KeyState::Active | KeyState::Next));
            if !usable {
                let key = new_stored_key(alg, &self.master, now, now)?;
                self.store.insert(&key).await?;
                tracing::info!(kid = %key.kid, alg = alg.as_str(), "created the first signing key");
            }
        }
        self.reload().await
    }

    pub async fn reload(&self) -> anyhow::Result<()> {
        let stored = self.store.list().await?;
        let mut keys = Vec::with_capacity(stored.len());
        for meta in stored {
            let loaded = self.load(meta).context("cannot load a signing key")?;
            keys.push(Arc::new(loaded));
        }
        let snapshot = Arc::new(Snapshot {
            keys,
            jwks: RwLock::default(),
        });
        if let Ok(mut guard) = self.snapshot.write() {
            *guard = snapshot;
        }
        Ok(())
    }

    fn load(&self, meta: StoredKey) -> anyhow::Result<LoadedKey> {
        let pkcs8 = self
            .master
            .open(&seal_purpose(&meta.kid), &meta.private_enc)?;
        let signer = PreparedKey::from_pkcs8(meta.alg, &pkcs8)?;
        let jwk = &meta.public_jwk;
        let field = |name: &str| {
            jwk.get(name)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string()
        };
        let decoding = match meta.alg {
            Alg::RS256 => DecodingKey::from_rsa_components(&field("n"), &field("e"))?,
            Alg::ES256 => DecodingKey::from_ec_components(&field("x"), &field("y"))?,
            Alg::EdDSA => DecodingKey::from_ed_components(&field("x"))?,
        };
        Ok(LoadedKey {
            meta,
            signer,
            decoding,
        })
    }

    fn current(&self) -> Arc<Snapshot> {
        self.snapshot.read().map(|s| s.clone()).unwrap_or_default()
    }

    /// The key that signs for `alg` now: the most recently activated active key.
    pub fn signing_key(&self, alg: Alg, now: i64) -> Option<Arc<LoadedKey>> {
        self.current()
            .keys
            .iter()
            .filter(|k| k.meta.alg == alg && k.meta.state(now) == KeyState::Active)
            .max_by_key(|k| k.meta.activates_at)
            .cloned()
    }

    /// A key that may verify a token now (active or retired).
    pub fn verification_key(&self, kid: &str, now: i64) -> Option<Arc<LoadedKey>> {
        self.current()
            .keys
            .iter()
            .find(|k| {
                k.meta.kid == kid
                    && matches!(k.meta.state(now), KeyState::Active | KeyState::Retired)
            })
            .cloned()
    }

    /// Every published public key (next, active, retired).
    pub fn jwks(&self, now: i64) -> serde_json::Value {
        jwks_of(&self.current(), now)
    }

    /// `jwks` serialised, built once per key-ring reload (and again when a published key's
    /// removal time passes), so that serving the JWKS copies nothing.
    pub fn jwks_bytes(&self, now: i64) -> bytes::Bytes {
        let snapshot = self.current();
        if let Ok(cached) = snapshot.jwks.read() {
            if let Some(c) = cached.as_ref().filter(|c| c.from <= now && now < c.until) {
                return c.bytes.clone();
            }
        }
        let bytes =
            bytes::Bytes::from(serde_json::to_vec(&jwks_of(&snapshot, now)).unwrap_or_default());
        let until = snapshot
            .keys
            .iter()
            .filter_map(|k| k.meta.removes_at)
            .filter(|t| *t > now)
            .min()
            .unwrap_or(i64::MAX);
        if let Ok(mut cached) = snapshot.jwks.write() {
            *cached = Some(JwksBytes {
                from: now,
                until,
                bytes: bytes.clone(),
            });
        }
        bytes
    }

    pub fn all(&self) -> Vec<StoredKey> {
        self.current().keys.iter().map(|k| k.meta.clone()).collect()
    }

    pub fn master(&self) -> &MasterKey {
        &self.master
    }
}

fn jwks_of(snapshot: &Snapshot, now: i64) -> serde_json::Value {
    let keys: Vec<_> = snapshot
        .keys
        .iter()
        .filter(|k| k.meta.is_published(now))
        .map(|k| k.meta.public_jwk.clone())
        .collect();
    serde_json::json!({ "keys": keys })
}
