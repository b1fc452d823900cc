//! The post-login step pipeline, run after the upstream identity is verified and before the
//! broker issues its code. Each step may finish the login, continue, or stop at an
//! interstitial page; later issues add legacy-account linking, phone OTP and consent as steps.

use std::sync::Arc;

use super::personal_id::{self, IdCheck};
use super::{Account, AccountRecord, AccountStore, UpstreamIdentity};
use crate::audit::{AuditEntry, AuditLog};
use crate::crypto::MasterKey;
use crate::transaction::Transactions;

#[derive(Debug)]
pub enum LoginOutcome {
    /// The person is logged in to this account.
    Authenticated { account: Account, created: bool },
}

/// Resolves the upstream identity to an account: the linked one (profile refreshed) or a new one.
#[derive(Clone)]
pub struct AccountResolver {
    store: Arc<dyn AccountStore>,
    audit: Arc<dyn AuditLog>,
    transactions: Arc<dyn Transactions>,
    master: MasterKey,
}

impl AccountResolver {
    pub fn new(
        store: Arc<dyn AccountStore>,
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

    /// A new account, its link and the login's audit entry commit together; so do a changed
    /// profile and its audit entry. An unchanged profile only appends the audit entry.
    #[tracing::instrument(skip_all, fields(upstream_sub = %identity.upstream_sub))]
    pub async fn complete_login(
        &self,
        identity: &UpstreamIdentity,
        now: i64,
    ) -> anyhow::Result<LoginOutcome> {
        let existing = self
            .store
            .find_by_link(&identity.upstream_iss, &identity.upstream_sub)
            .await?;
        let (record, created) = match existing {
            Some(old) => {
                let record = self.profile_record(old.id.clone(), identity, old.created_at, now);
                // VNeID is the source of truth, but it rarely changes: write only what changed.
                if self.same_profile(&old, &record, identity)? {
                    let entry = login_entry(now, &old.id, identity, false);
                    self.audit.append_alone(&entry).await?;
                    (old, false)
                } else {
                    let mut tx = self.transactions.begin().await?;
                    self.store.refresh_profile(&mut tx, &record).await?;
                    let entry = login_entry(now, &record.id, identity, false);
                    self.audit.append(&mut tx, &entry).await?;
                    tx.commit().await?;
                    (record, false)
                }
            }
            None => self.create(identity, now).await?,
        };
        if let Some(flag) = &record.personal_id_flag {
            tracing::warn!(account = %record.id, flag = %flag, "personal ID failed the structure check; kept and flagged");
        }
        Ok(LoginOutcome::Authenticated {
            account: self.open(record)?,
            created,
        })
    }

    /// A first login: the account, its link and the audit entry in one transaction. When
    /// another login linked the same identity first, ours is rolled back and theirs is used.
    async fn create(
        &self,
        identity: &UpstreamIdentity,
        now: i64,
    ) -> anyhow::Result<(AccountRecord, bool)> {
        let (iss, sub) = (&identity.upstream_iss, &identity.upstream_sub);
        let record = self.profile_record(uuid::Uuid::now_v7().to_string(), identity, now, now);
        let mut tx = self.transactions.begin().await?;
        if !self.store.create_linked(&mut tx, &record, iss, sub).await? {
            tx.rollback().await?;
            let theirs = self.store.find_by_link(iss, sub).await?.ok_or_else(|| {
                anyhow::anyhow!("link vanished while resolving a concurrent first login")
            })?;
            let entry = login_entry(now, &theirs.id, identity, false);
            self.audit.append_alone(&entry).await?;
            return Ok((theirs, false));
        }
        let entry = login_entry(now, &record.id, identity, true);
        self.audit.append(&mut tx, &entry).await?;
        tx.commit().await?;
        tracing::info!(account = %record.id, personal_id = %identity.personal_id.as_deref().map(personal_id::mask).unwrap_or_default(), "account created");
        Ok((record, true))
    }

    fn profile_record(
        &self,
        id: String,
        identity: &UpstreamIdentity,
        created_at: i64,
        now: i64,
    ) -> AccountRecord {
        let pid = identity.personal_id.as_deref();
        let flag = pid.and_then(|p| {
            match personal_id::check(p, identity.birthdate.as_deref(), identity.gender.as_deref()) {
                IdCheck::Valid => None,
                IdCheck::Flagged(why) => Some(why.to_string()),
            }
        });
        AccountRecord {
            personal_id_enc: pid.map(|p| self.master.seal(&seal_purpose(&id), p.as_bytes())),
            personal_id_lookup: pid.map(|p| self.master.lookup_hash(p)),
            id,
            personal_id_flag: flag,
            full_name: identity.full_name.clone(),
            birthdate: identity.birthdate.clone(),
            gender: identity.gender.clone(),
            account_type: identity.account_type.clone(),
            loa: identity.loa,
            created_at,
            updated_at: now,
        }
    }

    fn same_profile(
        &self,
        old: &AccountRecord,
        new: &AccountRecord,
        identity: &UpstreamIdentity,
    ) -> anyhow::Result<bool> {
        let old_pid = match &old.personal_id_enc {
            Some(sealed) => Some(String::from_utf8(
                self.master.open(&seal_purpose(&old.id), sealed)?,
            )?),
            None => None,
        };
        Ok(old_pid == identity.personal_id
            && old.personal_id_flag == new.personal_id_flag
            && old.full_name == new.full_name
            && old.birthdate == new.birthdate
            && old.gender == new.gender
            && old.account_type == new.account_type
            && old.loa == new.loa)
    }

    /// Decrypts a stored record.
    pub fn open(&self, record: AccountRecord) -> anyhow::Result<Account> {
        let personal_id = match &record.personal_id_enc {
            Some(sealed) => Some(String::from_utf8(
                self.master.open(&seal_purpose(&record.id), sealed)?,
            )?),
            None => None,
        };
        Ok(Account {
            id: record.id,
            personal_id,
            personal_id_flag: record.personal_id_flag,
            full_name: record.full_name,
            birthdate: record.birthdate,
            gender: record.gender,
            account_type: record.account_type,
            loa: record.loa,
            created_at: record.created_at,
            updated_at: record.updated_at,
        })
    }

    pub async fn find(&self, id: &str) -> anyhow::Result<Option<Account>> {
        match self.store.find(id).await? {
            Some(record) => Ok(Some(self.open(record)?)),
            None => Ok(None),
        }
    }
}

fn login_entry<'a>(
    now: i64,
    account_id: &'a str,
    identity: &UpstreamIdentity,
    created: bool,
) -> AuditEntry<'a> {
    AuditEntry {
        at: now,
        kind: "login",
        account_id: Some(account_id),
        client_id: None,
        actor: None,
        detail: serde_json::json!({"upstream": identity.upstream_iss, "loa": identity.loa, "created": created}),
    }
}

fn seal_purpose(account_id: &str) -> String {
    format!("personal-id:{account_id}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounts::Loa;
    use crate::secret::Secret;
    use crate::store::Db;
    use crate::transaction::Transaction;

    /// An audit log that always fails: what it should have recorded must not exist either.
    struct BrokenAudit;

    #[async_trait::async_trait]
    impl AuditLog for BrokenAudit {
        async fn append(&self, _: &mut Transaction, _: &AuditEntry<'_>) -> anyhow::Result<()> {
            anyhow::bail!("audit log unavailable")
        }
        async fn append_alone(&self, _: &AuditEntry<'_>) -> anyhow::Result<()> {
            anyhow::bail!("audit log unavailable")
        }
    }

    fn identity() -> UpstreamIdentity {
        UpstreamIdentity {
            upstream_iss: "https://vneid.example".into(),
            upstream_sub: "sub-1".into(),
            personal_id: Some("046085690467".into()),
            legacy_cmnd: None,
            full_name: "Võ Hữu Tài".into(),
            birthdate: Some("1985-03-12".into()),
            gender: None,
            loa: Loa::One,
            account_type: "1".into(),
            phone: None,
            auth_time: None,
        }
    }

    #[tokio::test]
    async fn account_link_and_audit_entry_commit_together() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/t.db?mode=rwc", dir.path().display());
        let db = Arc::new(Db::connect(&url, 2).await.unwrap());
        let master = MasterKey::from_secret(&Secret::new(MasterKey::generate_encoded())).unwrap();
        let broken = AccountResolver::new(
            db.clone(),
            Arc::new(BrokenAudit),
            db.clone(),
            master.clone(),
        );
        let mut identity = identity();
        assert!(broken.complete_login(&identity, 1_000).await.is_err());
        assert!(
            db.find_by_link(&identity.upstream_iss, &identity.upstream_sub)
                .await
                .unwrap()
                .is_none(),
            "no account without its audit entry"
        );

        let working = AccountResolver::new(db.clone(), db.clone(), db.clone(), master);
        assert!(working.complete_login(&identity, 1_000).await.is_ok());
        identity.full_name = "Võ Hữu Tài Em".into();
        assert!(broken.complete_login(&identity, 2_000).await.is_err());
        let stored = db
            .find_by_link(&identity.upstream_iss, &identity.upstream_sub)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (stored.full_name.as_str(), stored.updated_at),
            ("Võ Hữu Tài", 1_000),
            "no profile change without its audit entry"
        );
    }
}
