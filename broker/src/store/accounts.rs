//! `AccountStore` in SQL. The writes run in the caller's transaction.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{opt_text, placeholders, AnyQuery, Db};
use crate::accounts::{AccountRecord, AccountStore, Created, Loa, LoginLookup, NewAccount};
use crate::events::Event;
use crate::transaction::Transaction;

const COLUMNS: &str =
    "a.id, a.personal_id_enc, a.personal_id_lookup, a.personal_id_flag, a.full_name, a.birthdate, \
                       a.gender, a.account_type, a.loa, a.phone, a.phone_verified_at, a.standardised_at, \
                       a.isolated_to, a.created_at, a.updated_at";

fn from_row(row: &AnyRow) -> anyhow::Result<AccountRecord> {
    let loa: i64 = row.try_get("loa")?;
    Ok(AccountRecord {
        id: row.try_get("id")?,
        personal_id_enc: opt_text(row, "personal_id_enc")?,
        personal_id_lookup: opt_text(row, "personal_id_lookup")?,
        personal_id_flag: opt_text(row, "personal_id_flag")?,
        full_name: row.try_get("full_name")?,
        birthdate: opt_text(row, "birthdate")?,
        gender: opt_text(row, "gender")?,
        account_type: row.try_get("account_type")?,
        loa: Loa::try_from(loa).unwrap_or(Loa::One),
        phone: opt_text(row, "phone")?,
        phone_verified_at: row.try_get("phone_verified_at")?,
        standardised_at: row.try_get("standardised_at")?,
        isolated_to: opt_text(row, "isolated_to")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

#[async_trait::async_trait]
impl AccountStore for Db {
    #[tracing::instrument(level = "debug", skip_all)]
    async fn find(&self, id: &str) -> anyhow::Result<Option<AccountRecord>> {
        let sql = format!("SELECT {COLUMNS} FROM accounts a WHERE a.id = $1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool())
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn find_by_link(&self, iss: &str, sub: &str) -> anyhow::Result<Option<AccountRecord>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM account_links l JOIN accounts a ON a.id = l.account_id \
             WHERE l.upstream_iss = $1 AND l.upstream_sub = $2"
        );
        let row = sqlx::query(&sql)
            .bind(iss)
            .bind(sub)
            .fetch_optional(&self.pool())
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn find_for_login(
        &self,
        iss: &str,
        sub: &str,
        lookups: [Option<&str>; 2],
    ) -> anyhow::Result<LoginLookup> {
        // One round trip on every login: the link, and what decides the next reads (legacy
        // records by ID number, a shared account to join), answered by their lookup-hash
        // indexes. Always one row: the account's columns are NULL when nothing is linked.
        let sql = format!(
            "SELECT a.*, \
             CAST(CASE WHEN EXISTS (SELECT 1 FROM legacy_accounts r \
             WHERE r.personal_id_lookup IN ($3, $4) \
             AND (a.id IS NULL OR r.account_id IS NULL OR r.account_id <> a.id)) \
             THEN 1 ELSE 0 END AS BIGINT) AS records_pending, \
             CAST(CASE WHEN a.id IS NULL AND EXISTS (SELECT 1 FROM accounts s \
             WHERE s.personal_id_lookup = $3 AND s.isolated_to IS NULL) \
             THEN 1 ELSE 0 END AS BIGINT) AS shared_holder \
             FROM (SELECT 1 AS one) o LEFT JOIN (SELECT {COLUMNS} \
             FROM account_links l JOIN accounts a ON a.id = l.account_id \
             WHERE l.upstream_iss = $1 AND l.upstream_sub = $2) a ON 1 = 1"
        );
        let row = sqlx::query(&sql)
            .bind(iss)
            .bind(sub)
            .bind(lookups[0])
            .bind(lookups[1])
            .fetch_one(&self.pool())
            .await?;
        let records_pending: i64 = row.try_get("records_pending")?;
        let shared_holder: i64 = row.try_get("shared_holder")?;
        let account = match opt_text(&row, "id")? {
            Some(_) => Some(from_row(&row)?),
            None => None,
        };
        Ok(LoginLookup {
            account,
            records_pending: records_pending != 0,
            shared_holder: shared_holder != 0,
        })
    }

    async fn create_standardised(&self, new: &NewAccount<'_>) -> anyhow::Result<Created> {
        match self.backend {
            super::Backend::Postgres => {
                let created = self.create_standardised_at_once(new).await?;
                // Committed with the statement: this instance's dispatcher may take the events.
                if created != Created::LinkTaken {
                    self.outbox_signal().notify_one();
                }
                Ok(created)
            }
            // The outbox append wakes the dispatcher at the commit.
            super::Backend::Sqlite => self.create_standardised_in_steps(new).await,
        }
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn find_shared_by_personal_id(
        &self,
        lookup: &str,
        limit: i64,
    ) -> anyhow::Result<Vec<AccountRecord>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM accounts a \
             WHERE a.personal_id_lookup = $1 AND a.isolated_to IS NULL ORDER BY a.id LIMIT $2"
        );
        let rows = sqlx::query(&sql)
            .bind(lookup)
            .bind(limit)
            .fetch_all(&self.pool())
            .await?;
        rows.iter().map(from_row).collect()
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn linked_from(&self, account_id: &str, iss: &str) -> anyhow::Result<bool> {
        let row = sqlx::query(
            "SELECT 1 AS one FROM account_links WHERE account_id = $1 AND upstream_iss = $2 LIMIT 1",
        )
        .bind(account_id)
        .bind(iss)
        .fetch_optional(&self.pool())
        .await?;
        Ok(row.is_some())
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn add_link(
        &self,
        tx: &mut Transaction,
        account_id: &str,
        iss: &str,
        sub: &str,
        now: i64,
    ) -> anyhow::Result<bool> {
        // Two new identities of one upstream joining the same account at once: the account's
        // row lock (PostgreSQL; SQLite has one writer) makes the second wait, and its insert,
        // a statement of its own with a fresh snapshot, then sees the first link and adds none.
        if self.backend == super::Backend::Postgres {
            sqlx::query("SELECT id FROM accounts WHERE id = $1 FOR UPDATE")
                .bind(account_id)
                .fetch_optional(tx.connection())
                .await?;
        }
        let linked = sqlx::query(
            "INSERT INTO account_links (upstream_iss, upstream_sub, account_id, created_at) \
             SELECT $1, $2, $3, $4 WHERE NOT EXISTS (SELECT 1 FROM account_links \
             WHERE account_id = $3 AND upstream_iss = $1) \
             ON CONFLICT (upstream_iss, upstream_sub) DO NOTHING",
        )
        .bind(iss)
        .bind(sub)
        .bind(account_id)
        .bind(now)
        .execute(tx.connection())
        .await?;
        Ok(linked.rows_affected() > 0)
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn refresh_profile(&self, tx: &mut Transaction, r: &AccountRecord) -> anyhow::Result<()> {
        sqlx::query(
            "UPDATE accounts SET personal_id_enc = $1, personal_id_lookup = $2, personal_id_flag = $3, full_name = $4, \
             birthdate = $5, gender = $6, account_type = $7, loa = $8, updated_at = $9 WHERE id = $10",
        )
        .bind(&r.personal_id_enc)
        .bind(&r.personal_id_lookup)
        .bind(&r.personal_id_flag)
        .bind(&r.full_name)
        .bind(&r.birthdate)
        .bind(&r.gender)
        .bind(&r.account_type)
        .bind(i64::from(r.loa))
        .bind(r.updated_at)
        .bind(&r.id)
        .execute(tx.connection())
        .await?;
        self.account_changed_in(tx, &r.id);
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn set_standardised(
        &self,
        tx: &mut Transaction,
        id: &str,
        phone: Option<&str>,
        verified_at: Option<i64>,
        now: i64,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "UPDATE accounts SET standardised_at = $1, updated_at = $1, \
             phone = COALESCE($2, phone), phone_verified_at = CASE WHEN $2 IS NULL \
             THEN phone_verified_at ELSE $3 END WHERE id = $4",
        )
        .bind(now)
        .bind(phone)
        .bind(verified_at)
        .bind(id)
        .execute(tx.connection())
        .await?;
        self.account_changed_in(tx, id);
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn set_phone(
        &self,
        tx: &mut Transaction,
        id: &str,
        phone: &str,
        now: i64,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "UPDATE accounts SET phone = $1, phone_verified_at = $2, updated_at = $2 WHERE id = $3",
        )
        .bind(phone)
        .bind(now)
        .bind(id)
        .execute(tx.connection())
        .await?;
        self.account_changed_in(tx, id);
        Ok(())
    }
}

/// The columns an account is inserted with, in `bind_account`'s order.
const INSERT_COLUMNS: &str =
    "id, personal_id_enc, personal_id_lookup, personal_id_flag, full_name, \
     birthdate, gender, account_type, loa, phone, phone_verified_at, standardised_at, isolated_to, \
     created_at, updated_at";

fn bind_account<'q>(query: AnyQuery<'q>, r: &'q AccountRecord) -> AnyQuery<'q> {
    query
        .bind(&r.id)
        .bind(&r.personal_id_enc)
        .bind(&r.personal_id_lookup)
        .bind(&r.personal_id_flag)
        .bind(&r.full_name)
        .bind(&r.birthdate)
        .bind(&r.gender)
        .bind(&r.account_type)
        .bind(i64::from(r.loa))
        .bind(&r.phone)
        .bind(r.phone_verified_at)
        .bind(r.standardised_at)
        .bind(&r.isolated_to)
        .bind(r.created_at)
        .bind(r.updated_at)
}

/// Binds an event's type, payload and time (its subject is the account's `$1`).
fn bind_event<'q>(query: AnyQuery<'q>, event: &'q Event<'q>) -> AnyQuery<'q> {
    query
        .bind(event.event_type)
        .bind(event.payload.to_string())
        .bind(event.at)
}

impl Db {
    /// PostgreSQL: the whole new account in one statement, without BEGIN and COMMIT (a
    /// statement is atomic), instead of ten round trips. The link is inserted first and the
    /// account only from what it returns, so a link taken by a racing login writes nothing;
    /// the foreign keys are checked at the statement's end, when every row exists. The events
    /// of a new subject are numbered from 1 in the statement itself.
    async fn create_standardised_at_once(&self, new: &NewAccount<'_>) -> anyhow::Result<Created> {
        // $1–$15 the account (so $1 is its id, $14 its creation time), $16 and $17 the
        // identity, then the audit entry (6) and the event (3), then 9 per legacy link.
        let mut sql = format!(
            "WITH link AS (INSERT INTO account_links (upstream_iss, upstream_sub, account_id, \
             created_at) VALUES ($16, $17, $1, $14) ON CONFLICT (upstream_iss, upstream_sub) \
             DO NOTHING RETURNING account_id), \
             acct AS (INSERT INTO accounts ({INSERT_COLUMNS}) SELECT {} FROM link RETURNING id)",
            placeholders(1, 15)
        );
        let mut audits = format!("SELECT {} FROM acct", placeholders(18, 6));
        let mut events = format!("SELECT 0 AS ord, {} FROM acct", placeholders(24, 3));
        let mut counts = String::from("(SELECT count(*) FROM acct) AS created");
        for i in 0..new.links.len() {
            let b = 27 + 9 * i;
            sql.push_str(&format!(
                ", l{i} AS (UPDATE legacy_accounts SET account_id = $1, linked_at = ${at}, \
                 updated_at = ${at} WHERE source = ${b} AND legacy_id = ${id} \
                 AND account_id IS NULL AND EXISTS (SELECT 1 FROM acct) RETURNING 1 AS one)",
                at = b + 2,
                id = b + 1,
            ));
            audits.push_str(&format!(
                " UNION ALL SELECT ${at}, ${}, $1, NULL, ${}, ${} FROM l{i}",
                b + 3,
                b + 4,
                b + 5,
                at = b + 2,
            ));
            events.push_str(&format!(
                " UNION ALL SELECT {}, {} FROM l{i}",
                i + 1,
                placeholders(b + 6, 3)
            ));
            counts.push_str(&format!(", (SELECT count(*) FROM l{i}) AS l{i}"));
        }
        sql.push_str(&format!(
            ", audits AS (INSERT INTO audit_log (at, kind, account_id, client_id, actor, detail) \
             {audits}), \
             events (ord, event_type, payload, created_at) AS ({events}), \
             subject AS (INSERT INTO event_subjects (subject, seq) \
             SELECT $1, count(*) FROM events HAVING count(*) > 0), \
             outboxed AS (INSERT INTO outbox (subject, seq, event_type, payload, created_at) \
             SELECT $1, row_number() OVER (ORDER BY ord), event_type, payload, created_at \
             FROM events), \
             attached AS (UPDATE standardisation_failures SET account_id = $1 \
             WHERE upstream_iss = $16 AND upstream_sub = $17 AND account_id IS NULL \
             AND EXISTS (SELECT 1 FROM acct)) \
             SELECT {counts}"
        ));
        let mut query = bind_account(sqlx::query(&sql), new.record)
            .bind(new.upstream_iss)
            .bind(new.upstream_sub);
        query = bind_event(super::audit::bind_entry(query, &new.audit), &new.event);
        for link in &new.links {
            query = query
                .bind(link.source)
                .bind(link.legacy_id)
                .bind(link.audit.at)
                .bind(link.audit.kind)
                .bind(link.audit.actor)
                .bind(link.audit.detail.to_string());
            query = bind_event(query, &link.event);
        }
        let row = query.fetch_one(&self.pool()).await?;
        let created: i64 = row.try_get("created")?;
        if created == 0 {
            return Ok(Created::LinkTaken);
        }
        let linked = (0..new.links.len())
            .map(|i| Ok(row.try_get::<i64, _>(format!("l{i}").as_str())? > 0))
            .collect::<anyhow::Result<Vec<bool>>>()?;
        Ok(Created::Created { linked })
    }

    /// Inserts the account and its link in the caller's transaction (SQLite's steps). `false`
    /// when another login linked this identity first: the caller rolls back.
    #[tracing::instrument(level = "debug", skip_all)]
    async fn create_linked(
        &self,
        tx: &mut Transaction,
        r: &AccountRecord,
        iss: &str,
        sub: &str,
    ) -> anyhow::Result<bool> {
        let sql = format!(
            "INSERT INTO accounts ({INSERT_COLUMNS}) VALUES ({})",
            placeholders(1, 15)
        );
        bind_account(sqlx::query(&sql), r)
            .execute(tx.connection())
            .await?;
        let linked = sqlx::query(
            "INSERT INTO account_links (upstream_iss, upstream_sub, account_id, created_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (upstream_iss, upstream_sub) DO NOTHING",
        )
        .bind(iss)
        .bind(sub)
        .bind(&r.id)
        .bind(r.created_at)
        .execute(tx.connection())
        .await?;
        Ok(linked.rows_affected() > 0)
    }

    /// SQLite (no data-modifying WITH): the same writes, one statement each, in a transaction.
    async fn create_standardised_in_steps(&self, new: &NewAccount<'_>) -> anyhow::Result<Created> {
        use crate::audit::AuditLog;
        use crate::events::Outbox;
        use crate::transaction::Transactions;
        let mut tx = self.begin().await?;
        let (iss, sub) = (new.upstream_iss, new.upstream_sub);
        if !self.create_linked(&mut tx, new.record, iss, sub).await? {
            tx.rollback().await?;
            return Ok(Created::LinkTaken);
        }
        let account_id = new.record.id.as_str();
        AuditLog::append(self, &mut tx, &new.audit).await?;
        Outbox::append(self, &mut tx, &new.event).await?;
        let mut linked = Vec::with_capacity(new.links.len());
        for link in &new.links {
            let done = crate::accounts::legacy::LegacyStore::link(
                self,
                &mut tx,
                link.source,
                link.legacy_id,
                account_id,
                link.audit.at,
            )
            .await?;
            if done {
                AuditLog::append(self, &mut tx, &link.audit).await?;
                Outbox::append(self, &mut tx, &link.event).await?;
            }
            linked.push(done);
        }
        super::failures::attach(tx.connection(), iss, sub, account_id).await?;
        tx.commit().await?;
        Ok(Created::Created { linked })
    }
}
