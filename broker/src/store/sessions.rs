//! `SessionRecords` and `SlotStore` in SQL.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{opt_text, Db};
use crate::devices::{Device, SlotHolder, SlotStore};
use crate::events::types;
use crate::session_end::EndReason;
use crate::sessions::records::{SessionRecord, SessionRecords};
use crate::tokens::refresh_families::{GrantCreated, GrantRecord};
use crate::transaction::Transaction;

const SESSION_COLUMNS: &str = "sid, account_id, client_id, device_class, device_group, device_id, \
                               user_agent, address, started_at, ended_at, end_reason";

fn session_from_row(row: &AnyRow) -> anyhow::Result<SessionRecord> {
    Ok(SessionRecord {
        sid: row.try_get("sid")?,
        account_id: row.try_get("account_id")?,
        client_id: row.try_get("client_id")?,
        device_class: row.try_get("device_class")?,
        device_group: opt_text(row, "device_group")?,
        device_id: opt_text(row, "device_id")?,
        user_agent: opt_text(row, "user_agent")?,
        address: opt_text(row, "address")?,
        started_at: row.try_get("started_at")?,
        ended_at: row.try_get("ended_at")?,
        end_reason: opt_text(row, "end_reason")?,
    })
}

#[async_trait::async_trait]
impl SessionRecords for Db {
    #[tracing::instrument(level = "debug", skip_all)]
    async fn record_start(&self, s: &SessionRecord) -> anyhow::Result<()> {
        sqlx::query(&format!(
            "INSERT INTO sessions ({SESSION_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL, NULL) \
             ON CONFLICT (sid) DO UPDATE SET client_id = excluded.client_id, \
             device_class = excluded.device_class, device_group = excluded.device_group, \
             device_id = excluded.device_id, user_agent = excluded.user_agent, \
             address = excluded.address, started_at = excluded.started_at \
             WHERE sessions.ended_at IS NULL"
        ))
        .bind(&s.sid)
        .bind(&s.account_id)
        .bind(&s.client_id)
        .bind(&s.device_class)
        .bind(&s.device_group)
        .bind(&s.device_id)
        .bind(&s.user_agent)
        .bind(&s.address)
        .bind(s.started_at)
        .execute(&self.pool())
        .await?;
        Ok(())
    }

    async fn record_end(
        &self,
        tx: &mut Transaction,
        sid: &str,
        reason: &str,
        now: i64,
    ) -> anyhow::Result<bool> {
        let result = sqlx::query(
            "UPDATE sessions SET ended_at = $1, end_reason = $2 WHERE sid = $3 AND ended_at IS NULL",
        )
        .bind(now)
        .bind(reason)
        .bind(sid)
        .execute(tx.connection())
        .await?;
        Ok(result.rows_affected() > 0)
    }

    async fn session(&self, sid: &str) -> anyhow::Result<Option<SessionRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE sid = $1"
        ))
        .bind(sid)
        .fetch_optional(&self.pool())
        .await?;
        row.as_ref().map(session_from_row).transpose()
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn is_ended(&self, sid: &str) -> anyhow::Result<bool> {
        let row =
            sqlx::query("SELECT 1 AS one FROM sessions WHERE sid = $1 AND ended_at IS NOT NULL")
                .bind(sid)
                .fetch_optional(&self.pool())
                .await?;
        Ok(row.is_some())
    }

    async fn open_sessions(
        &self,
        account_id: &str,
        since: i64,
    ) -> anyhow::Result<Vec<SessionRecord>> {
        // Open: not ended, and either recent enough for its browser session to live or still
        // holding a live grant (a mobile app's refresh family outlives the browser session).
        let rows = sqlx::query(&format!(
            "SELECT {SESSION_COLUMNS} FROM sessions s WHERE s.account_id = $1 AND s.ended_at IS NULL \
             AND (s.started_at > $2 OR EXISTS (SELECT 1 FROM grants g WHERE g.sid = s.sid \
                  AND g.revoked_at IS NULL AND g.refresh_generation IS NOT NULL)) \
             ORDER BY s.started_at DESC LIMIT 100"
        ))
        .bind(account_id)
        .bind(since)
        .fetch_all(&self.pool())
        .await?;
        rows.iter().map(session_from_row).collect()
    }
}

/// A device's eviction on PostgreSQL, after the slot's lock (which must stay a statement of its
/// own: every part of one statement reads the snapshot taken when it starts, so a part in the
/// lock's statement would miss the grant of the transaction it waited for). The same as
/// `revoke_device` followed by `SessionEnds::end` for each evicted session, in two statements
/// that take their locks in the order a logout takes them (the session, then its grants):
///
/// `EVICT_SESSIONS_POSTGRES` ends the sessions: the device's open ones, those of its live grants
/// and the slot's own (`$5`), all but the new login's (`$6`). It returns them (`evicted`) and
/// those it ended now (`ended`), space-separated (base64url ids).
const EVICT_SESSIONS_POSTGRES: &str = "\
WITH targets AS (
  SELECT sid FROM grants
    WHERE account_id = $2 AND device_group = $3 AND device_id = $4 AND revoked_at IS NULL
      AND sid IS NOT NULL
  UNION SELECT sid FROM sessions
    WHERE account_id = $2 AND device_group = $3 AND device_id = $4 AND ended_at IS NULL
  UNION SELECT CAST($5 AS TEXT) WHERE CAST($5 AS TEXT) IS NOT NULL),
evicted AS (SELECT sid FROM targets WHERE sid IS DISTINCT FROM CAST($6 AS TEXT)),
ended AS (
  UPDATE sessions SET ended_at = $1, end_reason = $7
  WHERE sid IN (SELECT sid FROM evicted) AND ended_at IS NULL
  RETURNING sid)
SELECT (SELECT string_agg(sid, ' ') FROM evicted) AS evicted,
       (SELECT string_agg(sid, ' ') FROM ended) AS ended";

/// Then, with a snapshot taken after those sessions were locked (so that a grant that joined one
/// of them meanwhile is seen): the device's live grants and the evicted sessions' revoked; a
/// `session:ended` event for each session ended now (`$5`) or, for a session from before the
/// session table, each whose grants were revoked now, numbered in the subject's sequence in
/// `sid` order. Returns the revoked grant ids and the number of events.
const EVICT_GRANTS_POSTGRES: &str = "\
WITH dev AS (
  UPDATE grants SET revoked_at = $1, revoked_reason = $6
  WHERE account_id = $2 AND device_group = $3 AND device_id = $4 AND revoked_at IS NULL
  RETURNING id, sid),
rest AS (
  UPDATE grants SET revoked_at = $1, revoked_reason = $6
  WHERE sid IN (SELECT unnest(string_to_array(CAST($5 AS TEXT), ' '))) AND revoked_at IS NULL
    AND id NOT IN (SELECT id FROM dev)
  RETURNING id, sid),
told AS (
  SELECT sid, row_number() OVER (ORDER BY sid COLLATE \"C\") AS n FROM (
    SELECT unnest(string_to_array(CAST($7 AS TEXT), ' ')) AS sid
    UNION SELECT sid FROM rest WHERE NOT EXISTS (SELECT 1 FROM sessions s WHERE s.sid = rest.sid)
  ) t),
numbered AS (
  INSERT INTO event_subjects (subject, seq) SELECT $2, count(*) FROM told HAVING count(*) > 0
  ON CONFLICT (subject) DO UPDATE SET seq = event_subjects.seq + excluded.seq
  RETURNING seq),
events AS (
  INSERT INTO outbox (subject, seq, event_type, payload, created_at)
  SELECT $2, numbered.seq - (SELECT count(*) FROM told) + told.n, $8,
         json_build_object('reason', CAST($9 AS TEXT), 'sid', told.sid)::text, $1
  FROM told, numbered
  ORDER BY told.n
  RETURNING seq)
SELECT (SELECT string_agg(id, ' ') FROM (SELECT id FROM dev UNION ALL SELECT id FROM rest) r)
         AS revoked,
       (SELECT count(*) FROM events) AS events";

/// `take_if_held` on PostgreSQL: the grant's columns as `INSERT_GRANT_POSTGRES` binds them
/// ($1 to $15: $3 the account, $4 the session, $13 and $14 the device), and $16 the time. The
/// slot's row is selected `FOR UPDATE` only if the grant's device holds it: a transaction
/// changing the row is waited for, and the row's new version checked again (READ COMMITTED), so
/// a device that has just been evicted finds nothing here. Then the grant, unless its session
/// ended (as `INSERT_GRANT_POSTGRES`), and the slot names the new login.
const TAKE_IF_HELD_POSTGRES: &str = "\
WITH held AS (
  SELECT account_id FROM mobile_slots
  WHERE account_id = $3 AND device_group = $13 AND device_id = $14
  FOR UPDATE),
created AS (
  INSERT INTO grants (id, client_id, account_id, sid, scope, resource, acr, auth_time,
    created_at, refresh_generation, refresh_expires_at, amr, device_group, device_id, dpop_jkt)
  SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15 FROM held
  WHERE (SELECT ended_at FROM sessions WHERE sid = $4 FOR SHARE) IS NULL
  ON CONFLICT (id) DO NOTHING
  RETURNING id),
noted AS (
  UPDATE mobile_slots SET client_id = $2, sid = $4, taken_at = $16
  WHERE account_id = $3 AND EXISTS (SELECT 1 FROM created))
SELECT (SELECT count(*) FROM held) AS held, (SELECT count(*) FROM created) AS created";

fn holder_from_row(row: &AnyRow) -> anyhow::Result<Option<SlotHolder>> {
    let id: String = row.try_get("device_id")?;
    if id.is_empty() {
        return Ok(None);
    }
    Ok(Some(SlotHolder {
        device: Device {
            group: row.try_get("device_group")?,
            id,
        },
        client_id: opt_text(row, "client_id")?.unwrap_or_default(),
        sid: opt_text(row, "sid")?,
        taken_at: row.try_get("taken_at")?,
    }))
}

#[async_trait::async_trait]
impl SlotStore for Db {
    #[tracing::instrument(level = "debug", skip_all)]
    async fn lock_slot(
        &self,
        tx: &mut Transaction,
        account_id: &str,
    ) -> anyhow::Result<Option<SlotHolder>> {
        // An upsert that changes nothing but locks the row (PostgreSQL) or the database
        // (SQLite, whose first write takes the lock) until the transaction ends, and returns the
        // holder as the latest committed transaction left it. A new row is an empty slot.
        let row = sqlx::query(
            "INSERT INTO mobile_slots (account_id, device_group, device_id, client_id, sid, taken_at) \
             VALUES ($1, '', '', NULL, NULL, 0) \
             ON CONFLICT (account_id) DO UPDATE SET account_id = excluded.account_id \
             RETURNING device_group, device_id, client_id, sid, taken_at",
        )
        .bind(account_id)
        .fetch_one(tx.connection())
        .await?;
        holder_from_row(&row)
    }

    async fn give_slot(
        &self,
        tx: &mut Transaction,
        account_id: &str,
        holder: &SlotHolder,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "UPDATE mobile_slots SET device_group = $1, device_id = $2, client_id = $3, sid = $4, \
             taken_at = $5 WHERE account_id = $6",
        )
        .bind(&holder.device.group)
        .bind(&holder.device.id)
        .bind(&holder.client_id)
        .bind(&holder.sid)
        .bind(holder.taken_at)
        .bind(account_id)
        .execute(tx.connection())
        .await?;
        Ok(())
    }

    async fn revoke_device(
        &self,
        tx: &mut Transaction,
        account_id: &str,
        device: &Device,
        now: i64,
    ) -> anyhow::Result<Vec<String>> {
        let rows = sqlx::query(
            "UPDATE grants SET revoked_at = $1, revoked_reason = 'device evicted' \
             WHERE account_id = $2 AND device_group = $3 AND device_id = $4 AND revoked_at IS NULL \
             RETURNING id, sid",
        )
        .bind(now)
        .bind(account_id)
        .bind(&device.group)
        .bind(&device.id)
        .fetch_all(tx.connection())
        .await?;
        let mut ids = Vec::with_capacity(rows.len());
        let mut sids = Vec::new();
        for row in &rows {
            ids.push(row.try_get::<String, _>("id")?);
            if let Some(sid) = opt_text(row, "sid")? {
                sids.push(sid);
            }
        }
        // And every session the device logged in with that is still open, with grants or not.
        let open = sqlx::query(
            "SELECT sid FROM sessions WHERE account_id = $1 AND device_group = $2 \
             AND device_id = $3 AND ended_at IS NULL",
        )
        .bind(account_id)
        .bind(&device.group)
        .bind(&device.id)
        .fetch_all(tx.connection())
        .await?;
        for row in &open {
            sids.push(row.try_get("sid")?);
        }
        self.grants_revoked_in(tx, ids, now);
        Ok(sids)
    }

    async fn evict_at_once(
        &self,
        tx: &mut Transaction,
        account_id: &str,
        previous: &SlotHolder,
        keep_sid: Option<&str>,
        now: i64,
    ) -> anyhow::Result<Option<Vec<String>>> {
        if self.backend != super::Backend::Postgres {
            return Ok(None);
        }
        let reason = EndReason::DeviceEvicted;
        let sessions = sqlx::query(EVICT_SESSIONS_POSTGRES)
            .bind(now)
            .bind(account_id)
            .bind(&previous.device.group)
            .bind(&previous.device.id)
            .bind(&previous.sid)
            .bind(keep_sid)
            .bind(reason.as_str())
            .fetch_one(tx.connection())
            .await?;
        let evicted = opt_text(&sessions, "evicted")?;
        let ended = opt_text(&sessions, "ended")?;
        let grants = sqlx::query(EVICT_GRANTS_POSTGRES)
            .bind(now)
            .bind(account_id)
            .bind(&previous.device.group)
            .bind(&previous.device.id)
            .bind(evicted.as_deref().unwrap_or(""))
            .bind(reason.revocation())
            .bind(ended.as_deref().unwrap_or(""))
            .bind(types::SESSION_ENDED)
            .bind(reason.as_str())
            .fetch_one(tx.connection())
            .await?;
        let split = |list: Option<String>| -> Vec<String> {
            list.map(|l| l.split(' ').map(str::to_string).collect())
                .unwrap_or_default()
        };
        self.grants_revoked_in(tx, split(opt_text(&grants, "revoked")?), now);
        if grants.try_get::<i64, _>("events")? > 0 {
            tx.notify_on_commit(self.outbox_signal());
        }
        Ok(Some(split(evicted)))
    }

    async fn take_if_held(
        &self,
        grant: &GrantRecord,
        now: i64,
    ) -> anyhow::Result<Option<GrantCreated>> {
        if self.backend != super::Backend::Postgres || grant.device.is_none() {
            return Ok(None);
        }
        let amr = serde_json::to_string(&grant.amr)?;
        let row = super::grants::grant_query(TAKE_IF_HELD_POSTGRES, grant, amr)
            .bind(now)
            .fetch_one(&self.pool())
            .await?;
        if row.try_get::<i64, _>("held")? == 0 {
            return Ok(None);
        }
        if row.try_get::<i64, _>("created")? == 1 {
            return Ok(Some(GrantCreated::Created));
        }
        // Nothing inserted: a second redemption (perhaps committed while this statement
        // waited), or the session ended.
        Ok(Some(
            super::grants::not_created(&self.pool(), &grant.id).await?,
        ))
    }

    async fn holder(&self, account_id: &str) -> anyhow::Result<Option<SlotHolder>> {
        let row = sqlx::query(
            "SELECT device_group, device_id, client_id, sid, taken_at FROM mobile_slots \
             WHERE account_id = $1",
        )
        .bind(account_id)
        .fetch_optional(&self.pool())
        .await?;
        match row {
            Some(row) => holder_from_row(&row),
            None => Ok(None),
        }
    }
}
