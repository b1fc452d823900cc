//! The post-login step pipeline, run after the upstream identity is verified and before the
//! broker issues its code. Each step may finish the login, continue, or stop at an
//! interstitial page; later issues add legacy-account linking, phone OTP and consent as steps.

use std::sync::Arc;

use super::personal_id::{self, IdCheck};
use super::{Account, AccountRecord, AccountStore, UpstreamIdentity};
use crate::crypto::MasterKey;

#[derive(Debug)]
pub enum LoginOutcome {
    /// The person is logged in to this account.
    Authenticated { account: Account, created: bool },
}

/// Resolves the upstream identity to an account: the linked one (profile refreshed) or a new one.
#[derive(Clone)]
pub struct AccountResolver {
    store: Arc<dyn AccountStore>,
    master: MasterKey,
}

impl AccountResolver {
    pub fn new(store: Arc<dyn AccountStore>, master: MasterKey) -> Self {
        Self { store, master }
    }

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
                    (old, false)
                } else {
                    self.store.refresh_profile(&record).await?;
                    (record, false)
                }
            }
            None => {
                let record =
                    self.profile_record(uuid::Uuid::now_v7().to_string(), identity, now, now);
                let stored = self
                    .store
                    .create_linked(&record, &identity.upstream_iss, &identity.upstream_sub)
                    .await?;
                let created = stored.id == record.id;
                if created {
                    tracing::info!(account = %record.id, personal_id = %identity.personal_id.as_deref().map(personal_id::mask).unwrap_or_default(), "account created");
                }
                (stored, created)
            }
        };
        if let Some(flag) = &record.personal_id_flag {
            tracing::warn!(account = %record.id, flag = %flag, "personal ID failed the structure check; kept and flagged");
        }
        let detail = serde_json::json!({"upstream": identity.upstream_iss, "loa": identity.loa, "created": created});
        self.store
            .audit(now, "login", Some(&record.id), None, &detail)
            .await?;
        Ok(LoginOutcome::Authenticated {
            account: self.open(record)?,
            created,
        })
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

fn seal_purpose(account_id: &str) -> String {
    format!("personal-id:{account_id}")
}
