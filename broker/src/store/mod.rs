//! SQL storage for both backends through sqlx's `Any` driver: one SQL text serves SQLite and
//! PostgreSQL (`$n` placeholders, `RETURNING`, `ON CONFLICT`), values use portable types only
//! (TEXT, BIGINT), and the dialect differences live in `migrations/{sqlite,postgres}`.
//! Each domain declares the narrow store trait it needs; this module implements them on `Db`,
//! and `Db` begins the transactions (`crate::transaction`) that callers pass to the writes
//! that must commit together.

mod accounts;
mod audit;
mod changes;
mod clients;
mod deliveries;
mod directory;
mod events;
mod failures;
mod grants;
mod keys;
mod legacy;
mod operators;
mod roles;
mod rotations;
mod sessions;
mod subscribers;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::Migrator;
use sqlx::{AnyConnection, AnyPool, Connection, Executor};
use tokio::sync::Notify;

use crate::changes::Changes;
use crate::transaction::{Transaction, Transactions};

pub use changes::{ChangeFeed, FeedPlan};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/postgres");

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
pub struct Db {
    /// The main runtime's pool (background tasks, the CLI, tests), and on PostgreSQL what each
    /// HTTP worker's own pool is opened with (`crate::affinity`; see [`Db::pool`]).
    pool: AnyPool,
    worker_pools: Option<Arc<WorkerPools>>,
    backend: Backend,
    /// Woken after each commit that appended to the outbox (this instance's dispatcher waits on
    /// it; other instances' events are found by polling).
    outbox_signal: Arc<Notify>,
    /// PostgreSQL's refresh rotations, batched: the worker runs on the runtime that opened the
    /// pool (the process's main one, never an HTTP worker's), started at the first rotation and
    /// again should it ever have stopped.
    rotations: Arc<std::sync::Mutex<Option<Arc<rotations::Rotations>>>>,
    runtime: tokio::runtime::Handle,
    /// This instance's revocation set and released-claims cache, told of every change this
    /// `Db` commits (`store/changes.rs`).
    changes: Changes,
}

/// How an HTTP worker's own pool is opened: lazily, on the worker's first statement, so that its
/// connections are registered with the worker's runtime.
struct WorkerPools {
    id: u64,
    max_connections: u32,
}

thread_local! {
    static WORKER_POOLS: std::cell::RefCell<Vec<(u64, AnyPool)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

static PER_WORKER: crate::affinity::PerThread<AnyPool> =
    crate::affinity::PerThread::new(&WORKER_POOLS);

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("backend", &self.backend)
            .finish()
    }
}

impl Db {
    /// Prepares the database on one dedicated connection (SQLite: WAL mode; both: migrations),
    /// closes it, and only then opens the pool, so that no pooled connection can ever see the
    /// database half-prepared, and pooled connections only set their per-connection pragmas.
    pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<Self> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            anyhow::bail!("database URL must start with sqlite: or postgres:");
        };
        if backend == Backend::Sqlite {
            ensure_sqlite_dir(url)?;
        }
        let mut setup = AnyConnection::connect(url)
            .await
            .context("cannot connect to the database")?;
        if backend == Backend::Sqlite {
            setup.execute("PRAGMA journal_mode = WAL").await?;
        }
        let migrator = match backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator
            .run(&mut setup)
            .await
            .context("database migration failed")?;
        setup.close().await?;

        // No ping before each acquire (sqlx's default): sqlx already pings every connection
        // when it is released, so the one before the next use only finds a connection that
        // broke while idle, at the price of one more round trip for every statement. Such a
        // connection fails its statement (the request answers 503, `temporarily_unavailable`)
        // and is closed; idle ones are closed after 10 minutes anyway.
        let mut options = AnyPoolOptions::new()
            .max_connections(max_connections)
            .test_before_acquire(false)
            .acquire_timeout(Duration::from_secs(10));
        if backend == Backend::Sqlite {
            options = options.after_connect(|conn, _meta| {
                Box::pin(async move {
                    // busy_timeout first: every later statement may meet a lock.
                    conn.execute(
                        "PRAGMA busy_timeout = 10000; PRAGMA synchronous = NORMAL; \
                         PRAGMA foreign_keys = ON;",
                    )
                    .await?;
                    Ok(())
                })
            });
        }
        let pool = options
            .connect(url)
            .await
            .context("cannot connect to the database")?;
        Ok(Self {
            pool,
            worker_pools: None,
            backend,
            outbox_signal: Arc::new(Notify::new()),
            rotations: Arc::default(),
            runtime: tokio::runtime::Handle::current(),
            // Vouched for once loaded (`ChangeFeed::start`); until then callers read SQL.
            changes: Changes::new(false),
        })
    }

    /// Gives each HTTP worker a pool of its own of up to `max_connections` (PostgreSQL; SQLite
    /// runs every connection on a thread of its own anyway), for the server: see
    /// `crate::affinity`. The shared pool stays for everything else.
    pub fn with_worker_pools(mut self, max_connections: u32) -> Self {
        if self.backend == Backend::Postgres {
            self.worker_pools = Some(Arc::new(WorkerPools {
                id: crate::affinity::next_id(),
                max_connections: max_connections.max(1),
            }));
        }
        self
    }

    /// The pool for a statement from this thread: an HTTP worker's own (with
    /// [`Db::with_worker_pools`]), else the shared one.
    pub fn pool(&self) -> AnyPool {
        match &self.worker_pools {
            Some(worker) if crate::affinity::on_http_worker() => {
                PER_WORKER.get(worker.id).unwrap_or_else(|| {
                    let pool = AnyPoolOptions::new()
                        .max_connections(worker.max_connections)
                        .test_before_acquire(false)
                        .acquire_timeout(Duration::from_secs(10))
                        .connect_lazy_with((*self.pool.connect_options()).clone());
                    PER_WORKER.insert(worker.id, pool)
                })
            }
            _ => self.pool.clone(),
        }
    }

    /// The batched rotations (PostgreSQL); SQLite, with one writer at a time, rotates alone.
    fn rotations(&self) -> Option<Arc<rotations::Rotations>> {
        if self.backend != Backend::Postgres {
            return None;
        }
        let mut guard = self.rotations.lock().ok()?;
        match guard.as_ref() {
            Some(live) if !live.stopped() => Some(live.clone()),
            _ => {
                let started = Arc::new(rotations::Rotations::start(
                    self.pool.clone(),
                    &self.runtime,
                ));
                *guard = Some(started.clone());
                Some(started)
            }
        }
    }

    /// The row-locking clause of a queue read: PostgreSQL skips the rows another instance is
    /// claiming instead of waiting for them; SQLite has one writer at a time and no such clause.
    pub(crate) fn skip_locked(&self) -> &'static str {
        match self.backend {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        }
    }

    /// The same database through a pool of its own whose commits do not wait for the disk
    /// (PostgreSQL `synchronous_commit = off`), for the dispatcher's bookkeeping: fan-out,
    /// claims, attempts. A crash can then lose the last of those commits, never an event (the
    /// outbox row commits, durably, with the change it describes), and what such a loss can cause
    /// is a delivery made again: at-least-once either way. A Security Event Token carries the
    /// same `jti` again (its receiver drops it); a logout token is minted afresh, and a second
    /// logout of an ended session changes nothing at the RP. SQLite: the same pool.
    pub fn for_bookkeeping(&self, max_connections: u32) -> Self {
        if self.backend == Backend::Sqlite {
            return self.clone();
        }
        let options = (*self.pool.connect_options()).clone();
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections.max(1))
            .test_before_acquire(false)
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(|conn, _meta| {
                Box::pin(async move {
                    conn.execute("SET synchronous_commit = off").await?;
                    Ok(())
                })
            })
            .connect_lazy_with(options);
        Self {
            pool,
            worker_pools: None,
            backend: self.backend,
            outbox_signal: self.outbox_signal.clone(),
            rotations: Arc::default(),
            runtime: self.runtime.clone(),
            changes: self.changes.clone(),
        }
    }

    /// Runs `work` while holding a PostgreSQL session-level advisory lock named `name`, so that
    /// instances starting at the same moment do it one after the other (the first signing keys:
    /// each would otherwise create its own and refuse the others' tokens until its next key
    /// reload). SQLite has one process: `work` just runs.
    pub async fn exclusively<T>(
        &self,
        name: &str,
        work: impl std::future::Future<Output = anyhow::Result<T>>,
    ) -> anyhow::Result<T> {
        if self.backend == Backend::Sqlite {
            return work.await;
        }
        let digest = crate::crypto::sha256(name.as_bytes());
        let mut id = [0u8; 8];
        id.copy_from_slice(&digest[..8]);
        let id = i64::from_be_bytes(id);
        // A connection of its own, outside the pool `work` uses (a pool of one would wait for
        // itself), that gives up after a minute rather than wait forever for a stuck instance.
        let mut conn = AnyConnection::connect_with(&self.pool.connect_options()).await?;
        conn.execute("SET lock_timeout = '60s'").await?;
        sqlx::query("SELECT pg_advisory_lock($1)::text AS locked")
            .bind(id)
            .fetch_one(&mut conn)
            .await
            .context("cannot take the advisory lock")?;
        let result = work.await;
        // Closing the connection releases the lock, whatever happened to `work`.
        if let Err(e) = conn.close().await {
            tracing::warn!(error = %e, "closing the advisory lock's connection failed");
        }
        result
    }

    /// This instance's revocation set and released-claims cache.
    pub fn changes(&self) -> &Changes {
        &self.changes
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Notified after every commit that wrote an outbox event through this `Db` (or a clone).
    pub fn outbox_signal(&self) -> Arc<Notify> {
        self.outbox_signal.clone()
    }
}

#[async_trait::async_trait]
impl Transactions for Db {
    async fn begin(&self) -> anyhow::Result<Transaction> {
        Ok(Transaction::new(self.pool().begin().await?))
    }
}

fn ensure_sqlite_dir(url: &str) -> anyhow::Result<()> {
    let path = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let path = path.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return Ok(());
    }
    if let Some(parent) = std::path::Path::new(path).parent() {
        if !parent.as_os_str().is_empty() {
            std::fs::create_dir_all(parent).with_context(|| {
                format!("cannot create database directory {}", parent.display())
            })?;
        }
    }
    Ok(())
}

/// A query being bound (the helpers that bind one row's values take and give it back).
pub(crate) type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

/// `$first, $first+1, …` for `n` values.
pub(crate) fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Reads an optional TEXT column.
pub(crate) fn opt_text(row: &AnyRow, column: &str) -> Result<Option<String>, sqlx::Error> {
    use sqlx::Row;
    row.try_get::<Option<String>, _>(column)
}
