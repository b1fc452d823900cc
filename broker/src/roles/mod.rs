//! Civil servants' roles (the province's guide, sections IV and V). A role is a person's post —
//! đối tượng (`Category`), đơn vị (an org unit of the imported tree) and chức vụ (position) —
//! with the app roles it carries at each client that declares roles in its registration. The
//! person requests it from the account page or the digital-workplace platform; an approver of
//! the unit's subtree approves or rejects it; a change request ("Sửa") supersedes the approved
//! role when it is approved; an approver or an operator revokes a role.
//!
//! States: `pending → approved | rejected | withdrawn`, `approved → superseded | revoked`. Every
//! transition is one transaction that writes the role, its history row, an audit entry and the
//! outbox event (`urn:vn:hue:broker:event:role:*`), so no subscriber hears of a change that
//! rolled back and no change goes unheard. A transition is a conditional update on the state
//! it leaves, so two approvers deciding at once cannot both win.
//!
//! Rules (`service.rs`): approvers hold an approver grant on an org unit and decide the
//! requests of that unit and every unit below it; they never decide their own; deciding needs a
//! level-2 session. Operators grant the first approvers; an approver grants approvers only
//! strictly below a unit they hold, never to themselves. A unit's policy may approve at once a
//! request that matches the staff roster exactly. SQL in `store/roles.rs`.

pub mod claims;
pub mod service;

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::directory::Category;
use crate::transaction::Transaction;

pub use service::{Actor, RoleError, RoleForm, Roles};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoleState {
    Pending,
    Approved,
    Rejected,
    /// The person took back a request nobody had decided.
    Withdrawn,
    /// Replaced by an approved change request.
    Superseded,
    Revoked,
}

impl RoleState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Rejected => "rejected",
            Self::Withdrawn => "withdrawn",
            Self::Superseded => "superseded",
            Self::Revoked => "revoked",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "pending" => Self::Pending,
            "approved" => Self::Approved,
            "rejected" => Self::Rejected,
            "withdrawn" => Self::Withdrawn,
            "superseded" => Self::Superseded,
            "revoked" => Self::Revoked,
            _ => return None,
        })
    }

    /// The Vietnamese and English names, as the pages show them.
    pub fn label(self) -> (&'static str, &'static str) {
        match self {
            Self::Pending => ("Chờ phê duyệt", "Awaiting approval"),
            Self::Approved => ("Đã phê duyệt", "Approved"),
            Self::Rejected => ("Bị từ chối", "Rejected"),
            Self::Withdrawn => ("Đã rút", "Withdrawn"),
            Self::Superseded => ("Đã thay thế", "Superseded"),
            Self::Revoked => ("Đã thu hồi", "Revoked"),
        }
    }
}

/// App roles per client: client id → the role codes at that client.
pub type AppRoles = BTreeMap<String, Vec<String>>;

/// A role or a request for one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Role {
    pub id: String,
    pub account_id: String,
    pub category: Category,
    pub org_code: String,
    /// The unit's name (read with the role; not stored in it).
    pub org_name: String,
    pub position: String,
    pub app_roles: AppRoles,
    pub state: RoleState,
    /// A change request: the approved role it replaces once approved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replaces: Option<String>,
    /// The last decision's reason and who made it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// One transition of a role.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HistoryEntry {
    pub at: i64,
    /// `account:<id>`, `operator:<name>` or `roster`.
    pub actor: String,
    /// `requested`, `approved`, `rejected`, `withdrawn`, `superseded`, `revoked`.
    pub action: String,
    pub state: RoleState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// An approver grant: `account_id` decides the requests of `org_code` and the units below it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ApproverGrant {
    pub account_id: String,
    pub org_code: String,
    pub granted_by: String,
    pub granted_at: i64,
}

/// A state change, applied only if the role is still in `from`.
#[derive(Debug)]
pub struct Transition<'a> {
    pub role_id: &'a str,
    pub from: RoleState,
    pub to: RoleState,
    pub actor: &'a str,
    pub action: &'static str,
    pub reason: Option<&'a str>,
    pub at: i64,
}

#[async_trait]
pub trait RoleStore: Send + Sync {
    /// Inserts a new request with its `requested` history row. `Ok(false)`: the role it
    /// changes already has an open change request, or the same post is already pending.
    async fn insert(&self, tx: &mut Transaction, role: &Role, actor: &str) -> anyhow::Result<bool>;
    /// Moves the role from `from` to `to` and records it; `Ok(false)` when it was no longer in
    /// `from` (someone else decided first).
    async fn transition(&self, tx: &mut Transaction, t: &Transition<'_>) -> anyhow::Result<bool>;
    async fn find(&self, id: &str) -> anyhow::Result<Option<Role>>;
    /// Every role and request of a person, newest first.
    async fn of_account(&self, account_id: &str) -> anyhow::Result<Vec<Role>>;
    /// A person's approved roles (what tokens carry).
    async fn approved_of(&self, account_id: &str) -> anyhow::Result<Vec<Role>>;
    async fn history(&self, role_id: &str) -> anyhow::Result<Vec<HistoryEntry>>;
    /// The roles in `states` of the units under the approver's grants, oldest first (pending)
    /// or newest first (decided), at most `limit`.
    async fn under_approver(
        &self,
        approver: &str,
        states: &[RoleState],
        limit: i64,
    ) -> anyhow::Result<Vec<Role>>;
    /// Whether `account_id` holds an approver grant on `org_code` or a unit above it; with
    /// `strictly_above`, only on a unit above it.
    async fn approves(
        &self,
        account_id: &str,
        org_code: &str,
        strictly_above: bool,
    ) -> anyhow::Result<bool>;
    /// `Ok(false)` when the grant existed already.
    async fn grant_approver(
        &self,
        tx: &mut Transaction,
        grant: &ApproverGrant,
    ) -> anyhow::Result<bool>;
    async fn revoke_approver(
        &self,
        tx: &mut Transaction,
        account_id: &str,
        org_code: &str,
    ) -> anyhow::Result<bool>;
    /// Every approver grant, or those of one account.
    async fn approvers(&self, account_id: Option<&str>) -> anyhow::Result<Vec<ApproverGrant>>;
    /// The policy of the unit, or of the nearest unit above it that has one.
    async fn auto_approves(&self, org_code: &str) -> anyhow::Result<bool>;
    async fn set_policy(
        &self,
        tx: &mut Transaction,
        org_code: &str,
        auto_approve: bool,
        by: &str,
        at: i64,
    ) -> anyhow::Result<()>;
    /// The unit, if loaded, with the names of the units above it (root first).
    async fn org_path(&self, org_code: &str) -> anyhow::Result<Vec<(String, String)>>;
}
