//! The file key store of the embedded default: one JSON file per key under `keys/`, private
//! key sealed under the master key. Production keeps keys in SQL (`store::keys`).

use std::path::PathBuf;

use anyhow::Context;

use super::{KeyStore, StoredKey};

pub struct FileKeyStore {
    dir: PathBuf,
    lock: tokio::sync::Mutex<()>,
}

impl FileKeyStore {
    pub fn new(dir: PathBuf) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create key directory {}", dir.display()))?;
        Ok(Self {
            dir,
            lock: tokio::sync::Mutex::new(()),
        })
    }

    fn path(&self, kid: &str) -> PathBuf {
        self.dir.join(format!("{kid}.json"))
    }

    fn write(&self, key: &StoredKey) -> anyhow::Result<()> {
        let path = self.path(&key.kid);
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(key)?)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        restrict_permissions(&tmp);
        std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(())
    }
}

#[cfg(unix)]
fn restrict_permissions(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
}

#[cfg(not(unix))]
fn restrict_permissions(_path: &std::path::Path) {}

#[async_trait::async_trait]
impl KeyStore for FileKeyStore {
    #[tracing::instrument(level = "debug", skip_all)]
    async fn list(&self) -> anyhow::Result<Vec<StoredKey>> {
        let _guard = self.lock.lock().await;
        let mut keys = Vec::new();
        for entry in std::fs::read_dir(&self.dir)
            .with_context(|| format!("cannot read {}", self.dir.display()))?
        {
            let path = entry?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let bytes = std::fs::read(&path)?;
            let key: StoredKey = serde_json::from_slice(&bytes)
                .with_context(|| format!("corrupt key file {}", path.display()))?;
            keys.push(key);
        }
        keys.sort_by_key(|k| k.created_at);
        Ok(keys)
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn insert(&self, key: &StoredKey) -> anyhow::Result<()> {
        let _guard = self.lock.lock().await;
        anyhow::ensure!(
            !self.path(&key.kid).exists(),
            "key {} already exists",
            key.kid
        );
        self.write(key)
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn set_schedule(
        &self,
        kid: &str,
        retires_at: Option<i64>,
        removes_at: Option<i64>,
    ) -> anyhow::Result<()> {
        let _guard = self.lock.lock().await;
        let bytes = std::fs::read(self.path(kid)).with_context(|| format!("no key {kid}"))?;
        let mut key: StoredKey = serde_json::from_slice(&bytes)?;
        key.retires_at = retires_at;
        key.removes_at = removes_at;
        self.write(&key)
    }
}
