//! `RoleStore` in SQL. Subtrees are walked with `WITH RECURSIVE` (both backends), so an
//! approver's queue is one statement however deep the agency tree is.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{opt_text, Db};
use crate::directory::Category;
use crate::roles::{ApproverGrant, HistoryEntry, Role, RoleState, RoleStore, Transition};
use crate::transaction::Transaction;

const ROLE_COLUMNS: &str = "r.id, r.account_id, r.category, r.org_code, o.name AS org_name, \
     r.position, r.app_roles, r.state, r.replaces, r.reason, r.decided_by, r.decided_at, \
     r.created_at, r.updated_at";

fn role_from_row(row: &AnyRow) -> anyhow::Result<Role> {
    let category: String = row.try_get("category")?;
    let state: String = row.try_get("state")?;
    let app_roles: String = row.try_get("app_roles")?;
    Ok(Role {
        id: row.try_get("id")?,
        account_id: row.try_get("account_id")?,
        category: Category::parse(&category)
            .ok_or_else(|| anyhow::anyhow!("unknown role category in the database"))?,
        org_code: row.try_get("org_code")?,
        org_name: row.try_get("org_name")?,
        position: row.try_get("position")?,
        app_roles: serde_json::from_str(&app_roles)?,
        state: RoleState::parse(&state)
            .ok_or_else(|| anyhow::anyhow!("unknown role state in the database"))?,
        replaces: opt_text(row, "replaces")?,
        reason: opt_text(row, "reason")?,
        decided_by: opt_text(row, "decided_by")?,
        decided_at: row.try_get("decided_at")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn grant_from_row(row: &AnyRow) -> anyhow::Result<ApproverGrant> {
    Ok(ApproverGrant {
        account_id: row.try_get("account_id")?,
        org_code: row.try_get("org_code")?,
        granted_by: row.try_get("granted_by")?,
        granted_at: row.try_get("granted_at")?,
    })
}

/// Whether an error is a unique-constraint violation (both backends).
fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|d| d.kind() == sqlx::error::ErrorKind::UniqueViolation)
}

#[async_trait::async_trait]
impl RoleStore for Db {
    async fn insert(&self, tx: &mut Transaction, role: &Role, actor: &str) -> anyhow::Result<bool> {
        let inserted = sqlx::query(
            "INSERT INTO roles (id, account_id, category, org_code, position, app_roles, state, \
             replaces, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)",
        )
        .bind(&role.id)
        .bind(&role.account_id)
        .bind(role.category.as_str())
        .bind(&role.org_code)
        .bind(&role.position)
        .bind(serde_json::to_string(&role.app_roles)?)
        .bind(role.state.as_str())
        .bind(&role.replaces)
        .bind(role.created_at)
        .execute(tx.connection())
        .await;
        match inserted {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => return Ok(false),
            Err(e) => return Err(e.into()),
        }
        self.account_changed_in(tx, &role.account_id);
        history(
            tx,
            &role.id,
            role.created_at,
            actor,
            "requested",
            role.state,
            None,
        )
        .await?;
        Ok(true)
    }

    async fn transition(&self, tx: &mut Transaction, t: &Transition<'_>) -> anyhow::Result<bool> {
        let moved: Option<String> = sqlx::query_scalar(
            "UPDATE roles SET state = $1, reason = $2, decided_by = $3, decided_at = $4, \
             updated_at = $4 WHERE id = $5 AND state = $6 RETURNING account_id",
        )
        .bind(t.to.as_str())
        .bind(t.reason)
        .bind(t.actor)
        .bind(t.at)
        .bind(t.role_id)
        .bind(t.from.as_str())
        .fetch_optional(tx.connection())
        .await?;
        if let Some(account_id) = &moved {
            self.account_changed_in(tx, account_id);
        }
        let moved = moved.is_some();
        if moved {
            history(tx, t.role_id, t.at, t.actor, t.action, t.to, t.reason).await?;
        }
        Ok(moved)
    }

    async fn find(&self, id: &str) -> anyhow::Result<Option<Role>> {
        let row = sqlx::query(&format!(
            "SELECT {ROLE_COLUMNS} FROM roles r JOIN org_units o ON o.code = r.org_code \
             WHERE r.id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool())
        .await?;
        row.as_ref().map(role_from_row).transpose()
    }

    async fn of_account(&self, account_id: &str) -> anyhow::Result<Vec<Role>> {
        let rows = sqlx::query(&format!(
            "SELECT {ROLE_COLUMNS} FROM roles r JOIN org_units o ON o.code = r.org_code \
             WHERE r.account_id = $1 ORDER BY r.created_at DESC, r.id DESC"
        ))
        .bind(account_id)
        .fetch_all(&self.pool())
        .await?;
        rows.iter().map(role_from_row).collect()
    }

    async fn approved_of(&self, account_id: &str) -> anyhow::Result<Vec<Role>> {
        let rows = sqlx::query(&format!(
            "SELECT {ROLE_COLUMNS} FROM roles r JOIN org_units o ON o.code = r.org_code \
             WHERE r.account_id = $1 AND r.state = 'approved' ORDER BY r.created_at, r.id"
        ))
        .bind(account_id)
        .fetch_all(&self.pool())
        .await?;
        rows.iter().map(role_from_row).collect()
    }

    async fn history(&self, role_id: &str) -> anyhow::Result<Vec<HistoryEntry>> {
        let rows = sqlx::query(
            "SELECT at, actor, action, state, reason FROM role_history WHERE role_id = $1 \
             ORDER BY id",
        )
        .bind(role_id)
        .fetch_all(&self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                let state: String = row.try_get("state")?;
                Ok(HistoryEntry {
                    at: row.try_get("at")?,
                    actor: row.try_get("actor")?,
                    action: row.try_get("action")?,
                    state: RoleState::parse(&state)
                        .ok_or_else(|| anyhow::anyhow!("unknown role state in the database"))?,
                    reason: opt_text(row, "reason")?,
                })
            })
            .collect()
    }

    async fn under_approver(
        &self,
        approver: &str,
        states: &[RoleState],
        limit: i64,
    ) -> anyhow::Result<Vec<Role>> {
        // The states are the enum's fixed words, never input: safe to write into the SQL.
        let states = states
            .iter()
            .map(|s| format!("'{}'", s.as_str()))
            .collect::<Vec<_>>()
            .join(", ");
        let pending_only = states == "'pending'";
        let order = if pending_only {
            "r.created_at, r.id"
        } else {
            "r.updated_at DESC, r.id DESC"
        };
        let rows = sqlx::query(&format!(
            "WITH RECURSIVE sub(code) AS ( \
               SELECT org_code FROM approvers WHERE account_id = $1 \
               UNION SELECT o.code FROM org_units o JOIN sub ON o.parent_code = sub.code) \
             SELECT {ROLE_COLUMNS} FROM roles r JOIN org_units o ON o.code = r.org_code \
             WHERE r.state IN ({states}) AND r.org_code IN (SELECT code FROM sub) \
             ORDER BY {order} LIMIT $2"
        ))
        .bind(approver)
        .bind(limit)
        .fetch_all(&self.pool())
        .await?;
        rows.iter().map(role_from_row).collect()
    }

    async fn approves(
        &self,
        account_id: &str,
        org_code: &str,
        strictly_above: bool,
    ) -> anyhow::Result<bool> {
        let start = if strictly_above {
            "SELECT parent_code FROM org_units WHERE code = $2"
        } else {
            "SELECT code FROM org_units WHERE code = $2"
        };
        let row = sqlx::query(&format!(
            "WITH RECURSIVE up(code) AS ( \
               {start} \
               UNION SELECT o.parent_code FROM org_units o JOIN up ON o.code = up.code \
               WHERE o.parent_code IS NOT NULL) \
             SELECT COUNT(*) AS n FROM approvers \
             WHERE account_id = $1 AND org_code IN (SELECT code FROM up)"
        ))
        .bind(account_id)
        .bind(org_code)
        .fetch_one(&self.pool())
        .await?;
        Ok(row.try_get::<i64, _>("n")? > 0)
    }

    async fn grant_approver(
        &self,
        tx: &mut Transaction,
        grant: &ApproverGrant,
    ) -> anyhow::Result<bool> {
        let added = sqlx::query(
            "INSERT INTO approvers (account_id, org_code, granted_by, granted_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (account_id, org_code) DO NOTHING",
        )
        .bind(&grant.account_id)
        .bind(&grant.org_code)
        .bind(&grant.granted_by)
        .bind(grant.granted_at)
        .execute(tx.connection())
        .await?
        .rows_affected();
        Ok(added == 1)
    }

    async fn revoke_approver(
        &self,
        tx: &mut Transaction,
        account_id: &str,
        org_code: &str,
    ) -> anyhow::Result<bool> {
        let removed = sqlx::query("DELETE FROM approvers WHERE account_id = $1 AND org_code = $2")
            .bind(account_id)
            .bind(org_code)
            .execute(tx.connection())
            .await?
            .rows_affected();
        Ok(removed == 1)
    }

    async fn approvers(&self, account_id: Option<&str>) -> anyhow::Result<Vec<ApproverGrant>> {
        let rows = match account_id {
            Some(id) => {
                sqlx::query(
                    "SELECT account_id, org_code, granted_by, granted_at FROM approvers \
                     WHERE account_id = $1 ORDER BY org_code",
                )
                .bind(id)
                .fetch_all(&self.pool())
                .await?
            }
            None => {
                sqlx::query(
                    "SELECT account_id, org_code, granted_by, granted_at FROM approvers \
                     ORDER BY org_code, account_id",
                )
                .fetch_all(&self.pool())
                .await?
            }
        };
        rows.iter().map(grant_from_row).collect()
    }

    async fn auto_approves(&self, org_code: &str) -> anyhow::Result<bool> {
        let row = sqlx::query(
            "WITH RECURSIVE up(code, depth) AS ( \
               SELECT code, 0 FROM org_units WHERE code = $1 \
               UNION ALL SELECT o.parent_code, up.depth + 1 FROM org_units o \
               JOIN up ON o.code = up.code WHERE o.parent_code IS NOT NULL AND up.depth < 64) \
             SELECT p.auto_approve FROM org_policies p JOIN up ON p.org_code = up.code \
             ORDER BY up.depth LIMIT 1",
        )
        .bind(org_code)
        .fetch_optional(&self.pool())
        .await?;
        Ok(match row {
            Some(row) => row.try_get::<i64, _>("auto_approve")? == 1,
            None => false,
        })
    }

    async fn set_policy(
        &self,
        tx: &mut Transaction,
        org_code: &str,
        auto_approve: bool,
        by: &str,
        at: i64,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO org_policies (org_code, auto_approve, updated_by, updated_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (org_code) DO UPDATE SET \
             auto_approve = excluded.auto_approve, updated_by = excluded.updated_by, \
             updated_at = excluded.updated_at",
        )
        .bind(org_code)
        .bind(i64::from(auto_approve))
        .bind(by)
        .bind(at)
        .execute(tx.connection())
        .await?;
        Ok(())
    }

    async fn org_path(&self, org_code: &str) -> anyhow::Result<Vec<(String, String)>> {
        let rows = sqlx::query(
            "WITH RECURSIVE up(code, name, parent, depth) AS ( \
               SELECT code, name, parent_code, 0 FROM org_units WHERE code = $1 \
               UNION ALL SELECT o.code, o.name, o.parent_code, up.depth + 1 FROM org_units o \
               JOIN up ON o.code = up.parent WHERE up.depth < 64) \
             SELECT code, name FROM up ORDER BY depth DESC",
        )
        .bind(org_code)
        .fetch_all(&self.pool())
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("code")?, row.try_get("name")?)))
            .collect()
    }
}

async fn history(
    tx: &mut Transaction,
    role_id: &str,
    at: i64,
    actor: &str,
    action: &str,
    state: RoleState,
    reason: Option<&str>,
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO role_history (role_id, at, actor, action, state, reason) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(role_id)
    .bind(at)
    .bind(actor)
    .bind(action)
    .bind(state.as_str())
    .bind(reason)
    .execute(tx.connection())
    .await?;
    Ok(())
}
