//! Ending a broker session in SQL, with its event. Every way a session ends (RP-initiated
//! logout, an administrator, a device pushed out of the mobile slot) goes through
//! [`SessionEnds::end`], in the caller's transaction: the grants issued under the session are
//! revoked and a `session:ended` event is appended to the outbox, so that either both commit or
//! neither does. The dispatcher turns the event into back-channel logout tokens for every RP
//! that had a part in the session (`oidc::backchannel_logout`).
//!
//! What lives outside SQL (the browser's SSO session, the ended-session marker that spoils the
//! session's unredeemed codes) is the caller's to end, after the commit.

use std::sync::Arc;

use crate::events::{types, Event, Outbox};
use crate::sessions::records::SessionRecords;
use crate::tokens::refresh_families::GrantStore;
use crate::transaction::Transaction;

/// Why a session ended: recorded as the grants' `revoked_reason` and in the event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndReason {
    /// The person logged out (RP-initiated logout, or a new login replacing the session).
    LoggedOut,
    /// An operator ended it through the admin API.
    Administrator,
    /// A newer login on another mobile device took the account's mobile slot.
    DeviceEvicted,
    /// The citizen ended it from the account page (a lost phone, a shared computer).
    ByCitizen,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::LoggedOut => "logged_out",
            EndReason::Administrator => "administrator",
            EndReason::DeviceEvicted => "device_evicted",
            EndReason::ByCitizen => "ended_by_citizen",
        }
    }

    /// The grants' `revoked_reason` (kept as it was before events existed).
    pub(crate) fn revocation(self) -> &'static str {
        match self {
            EndReason::LoggedOut => "logged out",
            EndReason::Administrator => "session ended by an administrator",
            EndReason::DeviceEvicted => "device evicted",
            EndReason::ByCitizen => "session ended by its owner",
        }
    }
}

#[derive(Clone)]
pub struct SessionEnds {
    grants: Arc<dyn GrantStore>,
    outbox: Arc<dyn Outbox>,
    records: Arc<dyn SessionRecords>,
}

impl SessionEnds {
    pub fn new(
        grants: Arc<dyn GrantStore>,
        outbox: Arc<dyn Outbox>,
        records: Arc<dyn SessionRecords>,
    ) -> Self {
        Self {
            grants,
            outbox,
            records,
        }
    }

    /// Revokes every live grant of session `sid` of `account_id` and appends its
    /// `session:ended` event, both in `tx`. Returns how many grants were live. The event is
    /// written even when none were (the session may have had no code exchange yet): what the
    /// receivers learn is that the session is over. The payload carries no personal data.
    pub async fn end(
        &self,
        tx: &mut Transaction,
        account_id: &str,
        sid: &str,
        reason: EndReason,
        now: i64,
    ) -> anyhow::Result<u64> {
        // A write first (see `transaction`): the session's row, before its grants, so that a
        // grant being inserted into it meanwhile either waits and sees it ended, or was
        // committed first and is revoked below (`store::grants`).
        let recorded_end = self
            .records
            .record_end(tx, sid, reason.as_str(), now)
            .await?;
        let revoked = self
            .grants
            .revoke_session_in(tx, sid, reason.revocation(), now)
            .await?;
        // Ended already (a second logout, an operator ending an evicted session): its receivers
        // were told then. A session from before the session table is live while it has grants.
        if !recorded_end && (revoked == 0 || self.records.session(sid).await?.is_some()) {
            return Ok(revoked);
        }
        let event = Event {
            subject: account_id,
            event_type: types::SESSION_ENDED,
            payload: serde_json::json!({"sid": sid, "reason": reason.as_str()}),
            at: now,
        };
        self.outbox.append(tx, &event).await?;
        Ok(revoked)
    }
}
