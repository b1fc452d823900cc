//! Keeps this instance's copies (`crate::changes`) current. Every revoking or account-changing
//! write in `store/` tells them itself when it commits (the helpers below); on PostgreSQL the
//! triggers of migration 0014 also `NOTIFY` every instance in the writing transaction, so the
//! notification leaves only on commit, whoever wrote (another instance, the CLI, an operator's
//! SQL). The feed listens to it, and reads SQL to catch up:
//!
//! - at start (what is revoked and can still matter), before the copies are vouched for;
//! - after any reconnect of the listener: from the moment of the last good catch-up read, less a
//!   margin for clocks and slow commits; until it succeeds, the copies are not vouched for and
//!   callers read SQL (`Standing::Unknown`), and the released-claims cache starts empty;
//! - every `sweep` interval, the same read, which bounds a notification lost without the
//!   connection noticing (and, on SQLite, a revocation by another process).

use std::str::FromStr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::Row;

use super::{Backend, Db};
use crate::changes::{Changes, Revoked, ACCOUNTS_CHANNEL, REVOCATIONS_CHANNEL};
use crate::clock::SharedClock;
use crate::transaction::Transaction;

/// How far back a catch-up read looks before the last good one: a revocation's time is its
/// writer's clock when the request began, not the commit.
const CATCH_UP_MARGIN_SECS: i64 = 120;
/// The listener's connection is told apart by this name (`pg_stat_activity`).
pub const LISTENER_APPLICATION_NAME: &str = "broker-listener";

/// How the feed runs.
#[derive(Clone, Copy, Debug)]
pub struct FeedPlan {
    /// How long a revoked grant can still matter: the access-token lifetime and a margin.
    pub grant_window_secs: i64,
    /// The period of the catch-up read that bounds a silently lost notification.
    pub sweep: Duration,
}

/// The listener, the catch-up reads and the pruning of one instance.
#[derive(Clone)]
pub struct ChangeFeed {
    db: Db,
    clock: SharedClock,
    plan: FeedPlan,
    /// When the last good catch-up read began (0: never).
    caught_up_to: Arc<AtomicI64>,
}

impl ChangeFeed {
    pub fn new(db: Db, clock: SharedClock, plan: FeedPlan) -> Self {
        Self {
            db,
            clock,
            plan,
            caught_up_to: Arc::new(AtomicI64::new(0)),
        }
    }

    fn changes(&self) -> &Changes {
        &self.db.changes
    }

    /// Loads the set and starts the background work. On PostgreSQL, waits (a few seconds at
    /// most) for the listener to vouch for the copies; until it does, callers read SQL.
    pub async fn start(self) -> anyhow::Result<()> {
        match self.db.backend {
            Backend::Sqlite => {
                self.catch_up().await?;
                self.changes().set_vouched(true);
            }
            Backend::Postgres => {
                tokio::spawn(self.clone().listen());
                let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
                while !self.changes().revocations.vouched()
                    && tokio::time::Instant::now() < deadline
                {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        tokio::spawn(self.sweep());
        Ok(())
    }

    /// Reads what was revoked since the last good read (less the margin), or everything that
    /// can still matter the first time.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn catch_up(&self) -> anyhow::Result<()> {
        let now = self.clock.now();
        let last = self.caught_up_to.load(Ordering::Acquire);
        let floor = now - self.plan.grant_window_secs;
        let (grants_since, tokens_since) = if last == 0 {
            (floor, i64::MIN)
        } else {
            let since = last - CATCH_UP_MARGIN_SECS;
            (since.max(floor), since)
        };
        let revoked = self
            .db
            .revoked_since(grants_since, tokens_since, now)
            .await?;
        self.changes().revocations.apply_all(revoked);
        self.caught_up_to.fetch_max(now, Ordering::AcqRel);
        Ok(())
    }

    async fn sweep(self) {
        let mut ticker = tokio::time::interval(self.plan.sweep);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            if let Err(e) = self.catch_up().await {
                tracing::warn!(error = format!("{e:#}"), "revocation catch-up read failed");
            }
            self.changes()
                .revocations
                .prune(self.clock.now(), self.plan.grant_window_secs);
        }
    }

    /// Listens for as long as the process runs, reconnecting after any loss.
    async fn listen(self) {
        let mut backoff = Duration::from_millis(100);
        loop {
            self.changes().set_vouched(false);
            match self.listen_once().await {
                Ok(()) => backoff = Duration::from_millis(100),
                Err(e) => {
                    tracing::warn!(
                        error = format!("{e:#}"),
                        "change listener lost; reading SQL until it is back"
                    );
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
            self.changes().set_vouched(false);
            tokio::time::sleep(backoff).await;
        }
    }

    /// One connection: LISTEN, catch up, vouch, apply notifications until the connection goes.
    async fn listen_once(&self) -> anyhow::Result<()> {
        let url = self.db.pool.connect_options().database_url.clone();
        let options =
            PgConnectOptions::from_str(url.as_str())?.application_name(LISTENER_APPLICATION_NAME);
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .context("cannot connect the change listener")?;
        let mut listener = PgListener::connect_with(&pool).await?;
        listener.eager_reconnect(false);
        listener
            .listen_all([REVOCATIONS_CHANNEL, ACCOUNTS_CHANNEL])
            .await?;
        // Listening before reading: whatever commits after the read is notified.
        self.catch_up().await?;
        self.changes().set_vouched(true);
        tracing::debug!("change listener caught up");
        loop {
            match listener.try_recv().await? {
                Some(n) => self.changes().apply_notification(n.channel(), n.payload()),
                // Lost: reconnect with a fresh listener, and catch up again.
                None => anyhow::bail!("the change listener's connection was lost"),
            }
        }
    }
}

impl Db {
    /// Grants revoked at or after `grants_since`, and denied tokens recorded at or after
    /// `tokens_since` that have not expired at `now`. Both read through an index.
    async fn revoked_since(
        &self,
        grants_since: i64,
        tokens_since: i64,
        now: i64,
    ) -> anyhow::Result<Vec<Revoked>> {
        let grants = sqlx::query("SELECT id, revoked_at FROM grants WHERE revoked_at >= $1")
            .bind(grants_since)
            .fetch_all(&self.pool())
            .await?;
        let tokens = sqlx::query(
            "SELECT jti_hash, expires_at FROM revoked_access_tokens \
             WHERE revoked_at >= $1 AND expires_at > $2",
        )
        .bind(tokens_since)
        .bind(now)
        .fetch_all(&self.pool())
        .await?;
        let mut out = Vec::with_capacity(grants.len() + tokens.len());
        for row in &grants {
            out.push(Revoked::Grant {
                id: row.try_get("id")?,
                revoked_at: row.try_get("revoked_at")?,
            });
        }
        for row in &tokens {
            out.push(Revoked::Token {
                jti_hash: row.try_get("jti_hash")?,
                expires_at: row.try_get("expires_at")?,
            });
        }
        Ok(out)
    }

    /// This instance refuses the grants at once (a write outside a transaction, committed).
    pub(super) fn grants_revoked(&self, ids: impl IntoIterator<Item = String>, at: i64) {
        self.changes.revocations.apply_all(
            ids.into_iter()
                .map(|id| Revoked::Grant { id, revoked_at: at }),
        );
    }

    /// This instance refuses the grants when `tx` commits.
    pub(super) fn grants_revoked_in(&self, tx: &mut Transaction, ids: Vec<String>, at: i64) {
        if ids.is_empty() {
            return;
        }
        let db = self.clone();
        tx.after_commit(move || db.grants_revoked(ids, at));
    }

    pub(super) fn token_denied(&self, jti_hash: &str, expires_at: i64) {
        self.changes.revocations.apply(Revoked::Token {
            jti_hash: jti_hash.to_string(),
            expires_at,
        });
    }

    /// This instance forgets what it cached of the account when `tx` commits.
    pub(super) fn account_changed_in(&self, tx: &mut Transaction, account_id: &str) {
        let released = self.changes.released.clone();
        let account_id = account_id.to_string();
        tx.after_commit(move || released.invalidate(&account_id));
    }

    /// Every account's cached claims go (an org unit's name is in role claims).
    pub(super) fn all_accounts_changed(&self) {
        self.changes.released.invalidate_all();
    }
}
