//! Standardisation failures: a login whose VNeID identity could not be matched to its legacy
//! records with certainty. The citizen sees which of *their own* fields disagree (never the
//! other record's data); support staff see what was compared, masked, and resolve the case
//! through the admin API. SQL in `store/failures.rs`.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// A field the comparison names, in the words of the guide (section VI).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    FullName,
    PersonalId,
    Birthdate,
    Phone,
}

impl Field {
    /// (Vietnamese, English) label.
    pub fn label(self) -> (&'static str, &'static str) {
        match self {
            Field::FullName => ("Họ và tên", "Full name"),
            Field::PersonalId => ("Số định danh cá nhân (CCCD)", "Personal ID number"),
            Field::Birthdate => ("Ngày sinh", "Date of birth"),
            Field::Phone => ("Số điện thoại", "Phone number"),
        }
    }
}

/// Why standardisation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// A legacy record holds this person's ID number, but its name or birth date differ.
    IdMismatch,
    /// The legacy records behind the proven phone disagree with VNeID's data.
    PhoneMismatch,
    /// Several records agree equally well: the broker does not guess.
    Ambiguous,
    /// The record the app asked to link does not agree, or belongs to someone else.
    AppLinkRefused,
    /// Five wrong one-time codes.
    OtpExhausted,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::IdMismatch => "id_mismatch",
            Reason::PhoneMismatch => "phone_mismatch",
            Reason::Ambiguous => "ambiguous",
            Reason::AppLinkRefused => "app_link_refused",
            Reason::OtpExhausted => "otp_exhausted",
        }
    }
}

/// One failure as recorded for support.
#[derive(Clone, Debug, Serialize)]
pub struct Failure {
    pub id: String,
    pub created_at: i64,
    pub upstream_iss: String,
    pub upstream_sub: String,
    pub account_id: Option<String>,
    pub reason: String,
    pub fields: Vec<Field>,
    /// What was compared, masked: the legacy records' references, which fields agreed.
    pub compared: serde_json::Value,
    pub resolved_at: Option<i64>,
    pub resolved_by: Option<String>,
    pub resolution: Option<String>,
}

#[async_trait]
pub trait FailureStore: Send + Sync {
    async fn record_failure(&self, failure: &Failure) -> anyhow::Result<()>;
    /// This identity's latest open failure for this reason, if any (a later login does not
    /// record the same doubt again).
    async fn open_failure(
        &self,
        iss: &str,
        sub: &str,
        reason: Reason,
    ) -> anyhow::Result<Option<Failure>>;
    /// The account a failure's citizen went on with, once it exists.
    async fn attach_failures(&self, iss: &str, sub: &str, account_id: &str) -> anyhow::Result<()>;
    async fn failures(&self, open_only: bool, limit: i64) -> anyhow::Result<Vec<Failure>>;
    async fn failure(&self, id: &str) -> anyhow::Result<Option<Failure>>;
    /// The failures whose id ends in `reference` (8 lowercase hex digits: what the failure page
    /// shows), open or not, newest first.
    async fn failures_by_reference(&self, reference: &str) -> anyhow::Result<Vec<Failure>>;
    /// An operator's unlink: the automatic matching never links this record to this account
    /// again (in the caller's transaction).
    async fn block_link(
        &self,
        tx: &mut crate::transaction::Transaction,
        source: &str,
        legacy_id: &str,
        account_id: &str,
        now: i64,
    ) -> anyhow::Result<()>;
    /// An operator's link lifts the block.
    async fn unblock_link(
        &self,
        tx: &mut crate::transaction::Transaction,
        source: &str,
        legacy_id: &str,
        account_id: &str,
    ) -> anyhow::Result<()>;
    /// The (source, legacy id) pairs blocked for an account.
    async fn blocked_links(&self, account_id: &str) -> anyhow::Result<Vec<(String, String)>>;
    /// `false` when it was already resolved or does not exist.
    async fn resolve_failure(
        &self,
        id: &str,
        by: &str,
        resolution: &str,
        now: i64,
    ) -> anyhow::Result<bool>;
}
