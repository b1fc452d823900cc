//! The role workflow: requests, decisions, approver grants and unit policies, each checked and
//! written in one transaction with its history, audit entry and outbox event.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::claims::{self, RoleClaim};
use super::{AppRoles, ApproverGrant, HistoryEntry, Role, RoleState, RoleStore, Transition};
use crate::accounts::names::{birthdates_agree, names_agree, tidy_name};
use crate::accounts::{Account, Loa};
use crate::audit::{AuditEntry, AuditLog};
use crate::clients::{Client, ClientDirectory};
use crate::directory::import::PostSealer;
use crate::directory::{Category, DirectoryStore};
use crate::events::{types, Event, Outbox};
use crate::transaction::{Transaction, Transactions};

/// A message in Vietnamese and English.
pub type Text = (&'static str, &'static str);

/// Why a role operation was refused. The texts name the rule, never anyone's data.
#[derive(Debug, thiserror::Error)]
pub enum RoleError {
    /// The request is malformed or breaks a rule of the form (HTTP 400).
    #[error("{}", english(.0))]
    Invalid(Text),
    /// No such role, or not one this person may see (HTTP 404).
    #[error("no such role")]
    NotFound,
    /// The person may not do this (HTTP 403).
    #[error("{}", english(.0))]
    Forbidden(Text),
    /// The role is no longer in a state that allows this, or it would repeat another (HTTP 409).
    #[error("{}", english(.0))]
    Conflict(Text),
    #[error(transparent)]
    Store(#[from] anyhow::Error),
}

fn english(text: &Text) -> &'static str {
    text.1
}

impl RoleError {
    pub fn text(&self, english: bool) -> &'static str {
        let pick = |t: &Text| if english { t.1 } else { t.0 };
        match self {
            Self::Invalid(t) | Self::Forbidden(t) | Self::Conflict(t) => pick(t),
            Self::NotFound => pick(&("Không tìm thấy vai trò này.", "There is no such role.")),
            Self::Store(_) => pick(&(
                "Hệ thống đang bận, vui lòng thử lại sau.",
                "The service is busy; please try again later.",
            )),
        }
    }

    /// A short code for the JSON API's `error` member.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Invalid(_) => "invalid_request",
            Self::NotFound => "not_found",
            Self::Forbidden(_) => "forbidden",
            Self::Conflict(_) => "conflict",
            Self::Store(_) => "temporarily_unavailable",
        }
    }
}

const NEEDS_LEVEL2: Text = (
    "Phê duyệt vai trò cần phiên đăng nhập bằng tài khoản định danh điện tử mức độ 2.",
    "Deciding roles needs a session authenticated with a level-2 electronic identity.",
);
const NOT_APPROVER: Text = (
    "Bạn không có quyền phê duyệt vai trò của đơn vị này.",
    "You may not decide the roles of this agency.",
);
const OWN_ROLE: Text = (
    "Không thể tự phê duyệt vai trò của chính mình.",
    "Nobody decides their own role.",
);
const DECIDED: Text = (
    "Yêu cầu này đã được xử lý.",
    "This request has already been decided.",
);

/// Who acts.
#[derive(Clone, Copy, Debug)]
pub enum Actor<'a> {
    /// A person, with the assurance level of their session.
    Account { id: &'a str, loa: Loa },
    /// An operator of the admin API or CLI.
    Operator(&'a str),
}

impl Actor<'_> {
    fn tag(&self) -> String {
        match self {
            Actor::Account { id, .. } => format!("account:{id}"),
            Actor::Operator(name) => format!("operator:{name}"),
        }
    }
    fn audit_actor(&self) -> Option<&str> {
        match self {
            Actor::Account { .. } => None,
            Actor::Operator(name) => Some(name),
        }
    }
}

/// What a person asks for.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RoleForm {
    /// `can_bo`, `cong_chuc`, `vien_chuc` or `nguoi_lao_dong`.
    pub category: String,
    pub org_code: String,
    pub position: String,
    /// Client id → the role codes wanted there.
    #[serde(default)]
    pub app_roles: AppRoles,
    /// "Sửa": the approved role this request changes.
    #[serde(default)]
    pub replaces: Option<String>,
}

/// A post of the staff roster, offered to pre-fill a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RosterPost {
    pub category: Category,
    pub org_code: String,
    pub org_name: String,
    pub position: String,
}

/// The reason a change request gets when the role it changes is revoked.
const CHANGED_ROLE_REVOKED: &str = "Vai trò cần sửa đã bị thu hồi / the role to change was revoked";

/// At most this many requests of one person wait at once.
const MAX_PENDING: usize = 10;
/// At most this many app roles in one request.
const MAX_APP_ROLES: usize = 50;
/// Reasons are kept to this many characters.
const MAX_REASON: usize = 500;

#[derive(Clone)]
pub struct Roles {
    pub store: Arc<dyn RoleStore>,
    pub directory: Arc<dyn DirectoryStore>,
    pub outbox: Arc<dyn Outbox>,
    pub audit: Arc<dyn AuditLog>,
    pub transactions: Arc<dyn Transactions>,
    pub clients: ClientDirectory,
    pub sealer: PostSealer,
}

impl Roles {
    /// The roster's posts of this person (by the VNeID-verified ID number, and only when the
    /// roster's name and date of birth agree with VNeID's).
    pub async fn roster_posts(&self, account: &Account) -> anyhow::Result<Vec<RosterPost>> {
        let Some(personal_id) = &account.personal_id else {
            return Ok(Vec::new());
        };
        let lookup = self.sealer.lookup(personal_id);
        let mut out = Vec::new();
        for sealed in self.directory.posts_of(&lookup).await? {
            let post = self.sealer.open(&sealed)?;
            let same_person = post.personal_id == *personal_id
                && names_agree(&post.full_name, &account.full_name)
                && birthdates_agree(Some(&post.birthdate), account.birthdate.as_deref());
            if !same_person {
                continue;
            }
            let org_name = self
                .store
                .org_path(&post.org_code)
                .await?
                .last()
                .map(|(_, name)| name.clone())
                .unwrap_or_default();
            out.push(RosterPost {
                category: post.category,
                org_code: post.org_code,
                org_name,
                position: post.position,
            });
        }
        Ok(out)
    }

    /// A new request, or a change request of an approved role ("Sửa"). Approved at once when
    /// the unit's policy says so and the request matches one of the person's roster posts
    /// exactly.
    pub async fn request(
        &self,
        account: &Account,
        form: &RoleForm,
        now: i64,
    ) -> Result<Role, RoleError> {
        let category = Category::parse(form.category.trim()).ok_or(RoleError::Invalid((
            "Vui lòng chọn đối tượng.",
            "Please choose a category.",
        )))?;
        let org_code = form.org_code.trim();
        let path = if org_code.is_empty() || org_code.len() > 64 {
            Vec::new()
        } else {
            self.store.org_path(org_code).await?
        };
        let Some((_, org_name)) = path.last().cloned() else {
            return Err(RoleError::Invalid((
                "Vui lòng chọn đơn vị trong danh sách.",
                "Please choose an agency from the list.",
            )));
        };
        let position = tidy_name(&form.position);
        if !(1..=200).contains(&position.chars().count()) {
            return Err(RoleError::Invalid((
                "Vui lòng nhập chức vụ (tối đa 200 ký tự).",
                "Please enter a position (at most 200 characters).",
            )));
        }
        let app_roles = self.checked_app_roles(&form.app_roles).await?;

        let mine = self.store.of_account(&account.id).await?;
        let replaced = match form.replaces.as_deref().filter(|r| !r.is_empty()) {
            None => None,
            Some(id) => {
                let Some(old) = mine.iter().find(|r| r.id == id) else {
                    return Err(RoleError::NotFound);
                };
                if old.state != RoleState::Approved {
                    return Err(RoleError::Conflict((
                        "Chỉ sửa được vai trò đang hiệu lực.",
                        "Only an active role can be changed.",
                    )));
                }
                if old.category == category
                    && old.org_code == org_code
                    && old.position == position
                    && old.app_roles == app_roles
                {
                    return Err(RoleError::Invalid((
                        "Thông tin không có gì thay đổi.",
                        "Nothing was changed.",
                    )));
                }
                Some(old.clone())
            }
        };
        let open = |r: &&Role| matches!(r.state, RoleState::Pending | RoleState::Approved);
        let repeats = mine.iter().filter(open).any(|r| {
            replaced.as_ref().is_none_or(|old| old.id != r.id)
                && r.category == category
                && r.org_code == org_code
                && r.position == position
        });
        if repeats {
            return Err(RoleError::Conflict((
                "Bạn đã có hoặc đang đăng ký vai trò này.",
                "You already hold or have requested this role.",
            )));
        }
        if mine
            .iter()
            .filter(|r| r.state == RoleState::Pending)
            .count()
            >= MAX_PENDING
        {
            return Err(RoleError::Conflict((
                "Bạn đang có quá nhiều yêu cầu chờ phê duyệt.",
                "You have too many requests awaiting approval.",
            )));
        }

        let role = Role {
            id: uuid::Uuid::now_v7().to_string(),
            account_id: account.id.clone(),
            category,
            org_code: org_code.to_string(),
            org_name,
            position,
            app_roles,
            state: RoleState::Pending,
            replaces: replaced.as_ref().map(|r| r.id.clone()),
            reason: None,
            decided_by: None,
            decided_at: None,
            created_at: now,
            updated_at: now,
        };
        // Read before the transaction begins (SQLite transactions begin with a write).
        let automatic = self.store.auto_approves(&role.org_code).await?
            && self.roster_posts(account).await?.iter().any(|p| {
                p.category == role.category
                    && p.org_code == role.org_code
                    && p.position == role.position
            });

        let actor = format!("account:{}", account.id);
        let mut tx = self.transactions.begin().await?;
        if !self.store.insert(&mut tx, &role, &actor).await? {
            // Another request of the same post, or another change of the same role, got in
            // first (the checks above ran before it committed).
            return Err(RoleError::Conflict((
                "Đã có một yêu cầu như vậy đang chờ phê duyệt.",
                "Such a request is already awaiting approval.",
            )));
        }
        self.record(
            &mut tx,
            &role,
            types::ROLE_REQUESTED,
            "role_requested",
            None,
            now,
        )
        .await?;
        let mut role = role;
        if automatic {
            role = self
                .approve_in(&mut tx, role, "roster", None, None, now)
                .await?;
        }
        tx.commit().await?;
        Ok(role)
    }

    /// Only client roles the clients declare, each once, empty lists dropped.
    async fn checked_app_roles(&self, wanted: &AppRoles) -> Result<AppRoles, RoleError> {
        let bad = RoleError::Invalid((
            "Vai trò ứng dụng không hợp lệ.",
            "An application role is not one the application offers.",
        ));
        let mut out = AppRoles::new();
        let mut count = 0;
        for (client_id, codes) in wanted {
            if codes.is_empty() {
                continue;
            }
            let Some(client) = self.clients.get(client_id).await? else {
                return Err(bad);
            };
            let mut seen = BTreeSet::new();
            for code in codes {
                if client.metadata.declared_role(code).is_none() || !seen.insert(code.clone()) {
                    return Err(bad);
                }
            }
            count += seen.len();
            out.insert(client_id.clone(), seen.into_iter().collect());
        }
        if count > MAX_APP_ROLES {
            return Err(RoleError::Invalid((
                "Quá nhiều vai trò ứng dụng trong một yêu cầu.",
                "Too many application roles in one request.",
            )));
        }
        Ok(out)
    }

    /// The person takes back a request nobody has decided.
    pub async fn withdraw(
        &self,
        account_id: &str,
        role_id: &str,
        now: i64,
    ) -> Result<Role, RoleError> {
        let role = self.find(role_id).await?;
        if role.account_id != account_id {
            return Err(RoleError::NotFound);
        }
        if role.state != RoleState::Pending {
            return Err(RoleError::Conflict(DECIDED));
        }
        let actor = format!("account:{account_id}");
        let mut tx = self.transactions.begin().await?;
        let role = self
            .move_and_record(
                &mut tx,
                role,
                Transition {
                    role_id,
                    from: RoleState::Pending,
                    to: RoleState::Withdrawn,
                    actor: &actor,
                    action: "withdrawn",
                    reason: None,
                    at: now,
                },
                None,
            )
            .await?;
        tx.commit().await?;
        Ok(role)
    }

    /// Approves a pending request; a change request supersedes the role it changes in the
    /// same transaction.
    pub async fn approve(
        &self,
        actor: &Actor<'_>,
        role_id: &str,
        reason: Option<&str>,
        now: i64,
    ) -> Result<Role, RoleError> {
        let role = self.decidable(actor, role_id).await?;
        let reason = reason.map(clean_reason).filter(|r| !r.is_empty());
        let mut tx = self.transactions.begin().await?;
        let role = self
            .approve_in(
                &mut tx,
                role,
                &actor.tag(),
                actor.audit_actor(),
                reason.as_deref(),
                now,
            )
            .await?;
        tx.commit().await?;
        Ok(role)
    }

    async fn approve_in(
        &self,
        tx: &mut Transaction,
        role: Role,
        actor: &str,
        audit_actor: Option<&str>,
        reason: Option<&str>,
        now: i64,
    ) -> Result<Role, RoleError> {
        let role_id = role.id.clone();
        let action = if actor == "roster" {
            "auto_approved"
        } else {
            "approved"
        };
        let role = self
            .move_role(
                tx,
                role,
                Transition {
                    role_id: &role_id,
                    from: RoleState::Pending,
                    to: RoleState::Approved,
                    actor,
                    action,
                    reason,
                    at: now,
                },
            )
            .await?;
        let mut event_type = types::ROLE_APPROVED;
        let mut payload = event_payload(&role);
        if let Some(old) = &role.replaces {
            // What the old role granted, so that an app it gave roles to hears of the change
            // even when the new role gives it none.
            if let Some(old_role) = self.store.find(old).await? {
                payload["replaced_app_roles"] =
                    serde_json::to_value(&old_role.app_roles).unwrap_or_default();
            }
            // A role revoked meanwhile stays revoked; the change is then a role of its own.
            let superseded = self
                .store
                .transition(
                    tx,
                    &Transition {
                        role_id: old,
                        from: RoleState::Approved,
                        to: RoleState::Superseded,
                        actor,
                        action: "superseded",
                        reason: None,
                        at: now,
                    },
                )
                .await?;
            if superseded {
                event_type = types::ROLE_CHANGED;
            }
        }
        let entry = AuditEntry {
            at: now,
            kind: "role_approved",
            account_id: Some(&role.account_id),
            client_id: None,
            actor: audit_actor,
            detail: serde_json::json!({
                "role_id": role.id,
                "org_code": role.org_code,
                "by": actor,
                "replaces": role.replaces,
            }),
        };
        self.audit.append(tx, &entry).await?;
        self.outbox
            .append(
                tx,
                &Event {
                    subject: &role.account_id,
                    event_type,
                    payload,
                    at: now,
                },
            )
            .await?;
        Ok(role)
    }

    /// Rejects a pending request; the reason is required (the person reads it).
    pub async fn reject(
        &self,
        actor: &Actor<'_>,
        role_id: &str,
        reason: &str,
        now: i64,
    ) -> Result<Role, RoleError> {
        let reason = required_reason(reason)?;
        let role = self.decidable(actor, role_id).await?;
        let tag = actor.tag();
        let mut tx = self.transactions.begin().await?;
        let role = self
            .move_and_record(
                &mut tx,
                role,
                Transition {
                    role_id,
                    from: RoleState::Pending,
                    to: RoleState::Rejected,
                    actor: &tag,
                    action: "rejected",
                    reason: Some(&reason),
                    at: now,
                },
                actor.audit_actor(),
            )
            .await?;
        tx.commit().await?;
        Ok(role)
    }

    /// Ends an approved role: an approver of its unit (not their own) or an operator.
    pub async fn revoke(
        &self,
        actor: &Actor<'_>,
        role_id: &str,
        reason: &str,
        now: i64,
    ) -> Result<Role, RoleError> {
        let reason = required_reason(reason)?;
        let role = self.find(role_id).await?;
        self.check_authority(actor, &role).await?;
        if role.state != RoleState::Approved {
            return Err(RoleError::Conflict((
                "Vai trò này không còn hiệu lực.",
                "This role is no longer active.",
            )));
        }
        // A change still waiting for this role would bring it back once approved: it goes
        // with the role, in the same transaction.
        let pending_changes: Vec<Role> = self
            .store
            .of_account(&role.account_id)
            .await?
            .into_iter()
            .filter(|r| r.state == RoleState::Pending && r.replaces.as_deref() == Some(role_id))
            .collect();
        let tag = actor.tag();
        let mut tx = self.transactions.begin().await?;
        let role = self
            .move_and_record(
                &mut tx,
                role,
                Transition {
                    role_id,
                    from: RoleState::Approved,
                    to: RoleState::Revoked,
                    actor: &tag,
                    action: "revoked",
                    reason: Some(&reason),
                    at: now,
                },
                actor.audit_actor(),
            )
            .await?;
        for change in pending_changes {
            let change_id = change.id.clone();
            self.move_and_record(
                &mut tx,
                change,
                Transition {
                    role_id: &change_id,
                    from: RoleState::Pending,
                    to: RoleState::Rejected,
                    actor: &tag,
                    action: "rejected",
                    reason: Some(CHANGED_ROLE_REVOKED),
                    at: now,
                },
                actor.audit_actor(),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(role)
    }

    /// The role, if `viewer` may see it: its owner, an approver of its unit, an operator.
    pub async fn detail(
        &self,
        viewer: &Actor<'_>,
        role_id: &str,
    ) -> Result<(Role, Vec<HistoryEntry>), RoleError> {
        let role = self.find(role_id).await?;
        let visible = match viewer {
            Actor::Operator(_) => true,
            Actor::Account { id, .. } => {
                role.account_id == *id || self.store.approves(id, &role.org_code, false).await?
            }
        };
        if !visible {
            return Err(RoleError::NotFound);
        }
        let history = self.store.history(&role.id).await?;
        Ok((role, history))
    }

    /// The pending requests an approver may decide, oldest first (their own included, shown
    /// but not decidable).
    pub async fn queue(&self, approver: &str) -> anyhow::Result<Vec<Role>> {
        self.store
            .under_approver(approver, &[RoleState::Pending], 500)
            .await
    }

    /// The latest decided roles of an approver's units, newest first.
    pub async fn decided(&self, approver: &str, limit: i64) -> anyhow::Result<Vec<Role>> {
        self.store
            .under_approver(
                approver,
                &[
                    RoleState::Approved,
                    RoleState::Rejected,
                    RoleState::Revoked,
                    RoleState::Superseded,
                    RoleState::Withdrawn,
                ],
                limit,
            )
            .await
    }

    pub async fn of_account(&self, account_id: &str) -> anyhow::Result<Vec<Role>> {
        self.store.of_account(account_id).await
    }

    /// A person's approved roles (what the `roles` claim is made of, `claims::for_client`).
    pub async fn approved_of(&self, account_id: &str) -> anyhow::Result<Vec<Role>> {
        self.store.approved_of(account_id).await
    }

    /// The `roles` claim of a person for a client.
    pub async fn claims_for(
        &self,
        account_id: &str,
        client: &Client,
    ) -> anyhow::Result<Vec<RoleClaim>> {
        let approved = self.store.approved_of(account_id).await?;
        Ok(claims::for_client(client, &approved))
    }

    /// Whether the account holds any approver grant.
    pub async fn is_approver(&self, account_id: &str) -> anyhow::Result<bool> {
        Ok(!self.store.approvers(Some(account_id)).await?.is_empty())
    }

    /// Makes `account_id` an approver of `org_code`'s subtree. Operators grant anywhere; an
    /// approver (level-2 session) grants only strictly below a unit they hold, never to
    /// themselves. `Ok(false)`: the grant existed already.
    pub async fn grant_approver(
        &self,
        granter: &Actor<'_>,
        account_id: &str,
        org_code: &str,
        account_exists: bool,
        now: i64,
    ) -> Result<bool, RoleError> {
        self.check_granter(granter, account_id, org_code).await?;
        if !account_exists {
            return Err(RoleError::Invalid((
                "Không có tài khoản này.",
                "There is no such account.",
            )));
        }
        let grant = ApproverGrant {
            account_id: account_id.to_string(),
            org_code: org_code.to_string(),
            granted_by: granter.tag(),
            granted_at: now,
        };
        let mut tx = self.transactions.begin().await?;
        let added = self.store.grant_approver(&mut tx, &grant).await?;
        if added {
            self.audit_approver(
                &mut tx,
                granter,
                "approver_granted",
                account_id,
                org_code,
                now,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(added)
    }

    /// Takes an approver grant back, under the rules of granting it.
    pub async fn revoke_approver(
        &self,
        granter: &Actor<'_>,
        account_id: &str,
        org_code: &str,
        now: i64,
    ) -> Result<bool, RoleError> {
        self.check_granter(granter, account_id, org_code).await?;
        let mut tx = self.transactions.begin().await?;
        let removed = self
            .store
            .revoke_approver(&mut tx, account_id, org_code)
            .await?;
        if removed {
            self.audit_approver(
                &mut tx,
                granter,
                "approver_revoked",
                account_id,
                org_code,
                now,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(removed)
    }

    pub async fn approvers(&self, account_id: Option<&str>) -> anyhow::Result<Vec<ApproverGrant>> {
        self.store.approvers(account_id).await
    }

    /// Sets a unit's policy (operators only): `auto_approve` approves at once the requests
    /// that match the roster exactly, in this unit and the units below it without their own.
    pub async fn set_policy(
        &self,
        operator: &str,
        org_code: &str,
        auto_approve: bool,
        now: i64,
    ) -> Result<(), RoleError> {
        self.known_unit(org_code).await?;
        let mut tx = self.transactions.begin().await?;
        self.store
            .set_policy(&mut tx, org_code, auto_approve, operator, now)
            .await?;
        let entry = AuditEntry {
            at: now,
            kind: "org_policy_set",
            account_id: None,
            client_id: None,
            actor: Some(operator),
            detail: serde_json::json!({"org_code": org_code, "auto_approve": auto_approve}),
        };
        self.audit.append(&mut tx, &entry).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn find(&self, role_id: &str) -> Result<Role, RoleError> {
        if role_id.is_empty() || role_id.len() > 64 {
            return Err(RoleError::NotFound);
        }
        self.store.find(role_id).await?.ok_or(RoleError::NotFound)
    }

    /// A pending role the actor may decide.
    async fn decidable(&self, actor: &Actor<'_>, role_id: &str) -> Result<Role, RoleError> {
        let role = self.find(role_id).await?;
        if matches!(actor, Actor::Operator(_)) {
            // Operators grant approvers and revoke roles; deciding is the agencies' own work.
            return Err(RoleError::Forbidden(NOT_APPROVER));
        }
        self.check_authority(actor, &role).await?;
        if role.state != RoleState::Pending {
            return Err(RoleError::Conflict(DECIDED));
        }
        Ok(role)
    }

    /// An approver of the role's unit with a level-2 session, not its owner; or an operator.
    async fn check_authority(&self, actor: &Actor<'_>, role: &Role) -> Result<(), RoleError> {
        let Actor::Account { id, loa } = *actor else {
            return Ok(());
        };
        if !self.store.approves(id, &role.org_code, false).await? {
            // Not an approver here: the role is not theirs to see either.
            return Err(if role.account_id == id {
                RoleError::Forbidden(OWN_ROLE)
            } else {
                RoleError::NotFound
            });
        }
        if role.account_id == id {
            return Err(RoleError::Forbidden(OWN_ROLE));
        }
        if loa < Loa::Two {
            return Err(RoleError::Forbidden(NEEDS_LEVEL2));
        }
        Ok(())
    }

    async fn check_granter(
        &self,
        granter: &Actor<'_>,
        account_id: &str,
        org_code: &str,
    ) -> Result<(), RoleError> {
        self.known_unit(org_code).await?;
        if let Actor::Account { id, loa } = *granter {
            if id == account_id {
                return Err(RoleError::Forbidden((
                    "Không thể tự cấp quyền phê duyệt cho chính mình.",
                    "Nobody grants approval rights to themselves.",
                )));
            }
            if !self.store.approves(id, org_code, true).await? {
                return Err(RoleError::Forbidden((
                    "Chỉ người phê duyệt của đơn vị cấp trên mới cấp được quyền này.",
                    "Only an approver of a unit above this one may grant this.",
                )));
            }
            if loa < Loa::Two {
                return Err(RoleError::Forbidden(NEEDS_LEVEL2));
            }
        }
        Ok(())
    }

    async fn known_unit(&self, org_code: &str) -> Result<(), RoleError> {
        if org_code.is_empty()
            || org_code.len() > 64
            || self.store.org_path(org_code).await?.is_empty()
        {
            return Err(RoleError::Invalid((
                "Không có đơn vị này.",
                "There is no such agency.",
            )));
        }
        Ok(())
    }

    /// Applies a transition; someone who decided first makes it a conflict.
    async fn move_role(
        &self,
        tx: &mut Transaction,
        mut role: Role,
        t: Transition<'_>,
    ) -> Result<Role, RoleError> {
        if !self.store.transition(tx, &t).await? {
            return Err(RoleError::Conflict(DECIDED));
        }
        role.state = t.to;
        role.updated_at = t.at;
        if t.to != RoleState::Pending {
            role.reason = t.reason.map(str::to_string);
            role.decided_by = Some(t.actor.to_string());
            role.decided_at = Some(t.at);
        }
        Ok(role)
    }

    /// Applies a transition to a decided state (withdrawn, rejected, revoked) with its audit
    /// entry and its event, named after the state.
    async fn move_and_record(
        &self,
        tx: &mut Transaction,
        role: Role,
        t: Transition<'_>,
        audit_actor: Option<&str>,
    ) -> Result<Role, RoleError> {
        let (event_type, kind) = match t.to {
            RoleState::Withdrawn => (types::ROLE_WITHDRAWN, "role_withdrawn"),
            RoleState::Rejected => (types::ROLE_REJECTED, "role_rejected"),
            RoleState::Revoked => (types::ROLE_REVOKED, "role_revoked"),
            other => {
                return Err(RoleError::Store(anyhow::anyhow!(
                    "no event for a move to {}",
                    other.as_str()
                )))
            }
        };
        let at = t.at;
        let role = self.move_role(tx, role, t).await?;
        self.record(tx, &role, event_type, kind, audit_actor, at)
            .await?;
        Ok(role)
    }

    /// The audit entry and the outbox event of a transition.
    async fn record(
        &self,
        tx: &mut Transaction,
        role: &Role,
        event_type: &'static str,
        kind: &'static str,
        audit_actor: Option<&str>,
        now: i64,
    ) -> anyhow::Result<()> {
        let entry = AuditEntry {
            at: now,
            kind,
            account_id: Some(&role.account_id),
            client_id: None,
            actor: audit_actor,
            detail: serde_json::json!({
                "role_id": role.id,
                "org_code": role.org_code,
                "by": role.decided_by,
            }),
        };
        self.audit.append(tx, &entry).await?;
        self.outbox
            .append(
                tx,
                &Event {
                    subject: &role.account_id,
                    event_type,
                    payload: event_payload(role),
                    at: now,
                },
            )
            .await?;
        Ok(())
    }

    async fn audit_approver(
        &self,
        tx: &mut Transaction,
        granter: &Actor<'_>,
        kind: &'static str,
        account_id: &str,
        org_code: &str,
        now: i64,
    ) -> anyhow::Result<()> {
        let entry = AuditEntry {
            at: now,
            kind,
            account_id: Some(account_id),
            client_id: None,
            actor: granter.audit_actor(),
            detail: serde_json::json!({"org_code": org_code, "by": granter.tag()}),
        };
        self.audit.append(tx, &entry).await
    }
}

/// What an event says of a role: no personal data beyond the post. `app_roles` is narrowed to
/// each subscriber's own codes when its SET is built (`events::delivery`).
pub fn event_payload(role: &Role) -> serde_json::Value {
    let mut value = serde_json::json!({
        "role_id": role.id,
        "state": role.state.as_str(),
        "org_unit": {"code": role.org_code, "name": role.org_name},
        "category": role.category.as_str(),
        "position": role.position,
        "app_roles": role.app_roles,
    });
    if let Some(old) = &role.replaces {
        value["replaces"] = old.clone().into();
    }
    value
}

fn clean_reason(reason: &str) -> String {
    tidy_name(reason).chars().take(MAX_REASON).collect()
}

fn required_reason(reason: &str) -> Result<String, RoleError> {
    let reason = clean_reason(reason);
    if reason.is_empty() {
        return Err(RoleError::Invalid((
            "Vui lòng nêu lý do.",
            "Please give a reason.",
        )));
    }
    Ok(reason)
}
