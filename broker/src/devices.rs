//! One mobile device at a time ("mỗi thời điểm chỉ được đăng nhập trên 01 thiết bị di động").
//!
//! A mobile client (`device_class` `mobile`) sends its `device_id` with every authorization
//! request; a device is that id within the client's `device_slot` group (apps of one vendor
//! that share the identifier share a group). Each account has one mobile slot, in SQL. It is
//! taken when the token endpoint issues tokens to a mobile client, in the same transaction
//! that creates the grant: the previous device's grants are revoked, its sessions are ended
//! (with their `session:ended` events, which the dispatcher turns into back-channel logout
//! tokens), and the slot names the new device. From that commit on, the old device's refresh
//! fails with `invalid_grant` and introspection says its access tokens are inactive (both read
//! the grant in SQL). An abandoned login takes nothing; web clients never take the slot; the
//! same device logging in again keeps it; a refresh never takes it back (rotation requires the
//! grant's device to hold the slot).
//!
//! Two logins racing on two devices serialise on the slot's row (an upsert that locks it, the
//! transaction's first statement): the later transaction sees the earlier one's device and
//! evicts it, so exactly one device ends up holding the slot and the other's tokens are dead.

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;

use crate::session_end::{EndReason, SessionEnds};
use crate::sessions::ended::EndedSessions;
use crate::tokens::refresh_families::{GrantCreated, GrantRecord, GrantStore};
use crate::transaction::{Transaction, Transactions};

/// A mobile device as the broker knows it: the app's `device_id` within its client's group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Device {
    pub group: String,
    pub id: String,
}

/// Who holds an account's mobile slot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SlotHolder {
    pub device: Device,
    /// The client whose token request took the slot.
    pub client_id: String,
    /// The session the device logged in with.
    pub sid: Option<String>,
    pub taken_at: i64,
}

#[async_trait]
pub trait SlotStore: Send + Sync {
    /// Locks the account's slot for the rest of `tx` and returns its holder, if any. Must be the
    /// transaction's first statement (a write: it creates the row when there is none), so that
    /// two token requests of one account serialise here.
    async fn lock_slot(
        &self,
        tx: &mut Transaction,
        account_id: &str,
    ) -> anyhow::Result<Option<SlotHolder>>;
    async fn give_slot(
        &self,
        tx: &mut Transaction,
        account_id: &str,
        holder: &SlotHolder,
    ) -> anyhow::Result<()>;
    /// Revokes every live grant of `device` for the account; returns their sessions' `sid`s and
    /// those of the device's other open sessions (with grants or not).
    async fn revoke_device(
        &self,
        tx: &mut Transaction,
        account_id: &str,
        device: &Device,
        now: i64,
    ) -> anyhow::Result<Vec<String>>;
    /// Evicts `previous` in one statement where the backend can (PostgreSQL): what
    /// [`SlotStore::revoke_device`] and [`SessionEnds::end`] for each of its sessions do, with
    /// the same events, after [`SlotStore::lock_slot`] in `tx`. `keep_sid` (the new login's own
    /// session) stays open. The evicted sessions' `sid`s; `None` where the backend has no such
    /// statement (SQLite), and the caller goes statement by statement.
    async fn evict_at_once(
        &self,
        _tx: &mut Transaction,
        _account_id: &str,
        _previous: &SlotHolder,
        _keep_sid: Option<&str>,
        _now: i64,
    ) -> anyhow::Result<Option<Vec<String>>> {
        Ok(None)
    }
    /// The common case in one statement where the backend can (PostgreSQL): when `grant`'s
    /// device already holds the account's slot, creates the grant and notes the new login in
    /// the slot, without a transaction; `None` when it does not hold it (or the backend has no
    /// such statement), and the caller takes the slot the long way. The slot's row is locked
    /// for the check, and a transaction that is changing the slot is waited for and its outcome
    /// read, so this never creates a grant for a device that has just lost the slot.
    async fn take_if_held(
        &self,
        _grant: &GrantRecord,
        _now: i64,
    ) -> anyhow::Result<Option<GrantCreated>> {
        Ok(None)
    }
    async fn holder(&self, account_id: &str) -> anyhow::Result<Option<SlotHolder>>;
}

/// What taking the slot with a new grant did.
#[derive(Debug, PartialEq, Eq)]
pub enum Taken {
    /// The grant exists and its device holds the slot; these sessions of the previous device
    /// were ended.
    Yes { evicted: Vec<String> },
    /// Nothing changed: a grant with this id exists (the code is being redeemed twice), or
    /// the session ended meanwhile.
    No(GrantCreated),
}

/// The mobile slots of every account.
#[derive(Clone)]
pub struct MobileSlots {
    slots: Arc<dyn SlotStore>,
    grants: Arc<dyn GrantStore>,
    session_ends: SessionEnds,
    transactions: Arc<dyn Transactions>,
    ended: EndedSessions,
    /// Off only to measure what the rule costs (`[devices] one_mobile_device = false`).
    enabled: bool,
}

impl MobileSlots {
    pub fn new(
        slots: Arc<dyn SlotStore>,
        grants: Arc<dyn GrantStore>,
        session_ends: SessionEnds,
        transactions: Arc<dyn Transactions>,
        ended: EndedSessions,
        enabled: bool,
    ) -> Self {
        Self {
            slots,
            grants,
            session_ends,
            transactions,
            ended,
            enabled,
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Creates `grant` (a mobile client's, with its device) and gives its device the account's
    /// slot, evicting the previous device, all in one transaction.
    pub async fn take(&self, grant: &GrantRecord, now: i64) -> anyhow::Result<Taken> {
        let (Some(account_id), Some(device)) = (&grant.account_id, &grant.device) else {
            anyhow::bail!("a mobile grant without an account or a device");
        };
        // The same device logging in again: nothing to evict.
        if let Some(created) = self.slots.take_if_held(grant, now).await? {
            return Ok(match created {
                GrantCreated::Created => Taken::Yes {
                    evicted: Vec::new(),
                },
                other => Taken::No(other),
            });
        }
        let mut tx = self.transactions.begin().await?;
        let previous = self.slots.lock_slot(&mut tx, account_id).await?;
        let mut evicted = BTreeSet::new();
        if let Some(previous) = previous.filter(|p| p.device != *device) {
            let sid = grant.sid.as_deref();
            match self
                .slots
                .evict_at_once(&mut tx, account_id, &previous, sid, now)
                .await?
            {
                Some(sids) => evicted.extend(sids),
                // Statement by statement where the backend has no single step.
                None => {
                    let sids = self
                        .slots
                        .revoke_device(&mut tx, account_id, &previous.device, now)
                        .await?;
                    evicted.extend(sids);
                    evicted.extend(previous.sid);
                    // The new login's own session stays: the previous device's grants in it
                    // are revoked above (the same browser served two groups' apps), the
                    // session goes on.
                    if let Some(sid) = sid {
                        evicted.remove(sid);
                    }
                    for sid in &evicted {
                        self.session_ends
                            .end(&mut tx, account_id, sid, EndReason::DeviceEvicted, now)
                            .await?;
                    }
                }
            }
        }
        let created = self.grants.create_grant_in(&mut tx, grant).await?;
        if created != GrantCreated::Created {
            tx.rollback().await?;
            return Ok(Taken::No(created));
        }
        let holder = SlotHolder {
            device: device.clone(),
            client_id: grant.client_id.clone(),
            sid: grant.sid.clone(),
            taken_at: now,
        };
        self.slots.give_slot(&mut tx, account_id, &holder).await?;
        crate::faults::reach("slot:before-commit", account_id).await;
        tx.commit().await?;
        // The fast path learns it too: the evicted sessions' unredeemed codes die at once. SQL
        // already says so, and the checks that matter read SQL, so a failure here only logs.
        for sid in &evicted {
            if let Err(e) = self.ended.mark(sid).await {
                tracing::warn!(error = format!("{e:#}"), "ended-session marker not written");
            }
        }
        if !evicted.is_empty() {
            tracing::info!(
                account = %account_id,
                sessions = evicted.len(),
                "mobile slot taken by another device; the previous device was signed out"
            );
        }
        Ok(Taken::Yes {
            evicted: evicted.into_iter().collect(),
        })
    }

    pub async fn holder(&self, account_id: &str) -> anyhow::Result<Option<SlotHolder>> {
        self.slots.holder(account_id).await
    }
}
