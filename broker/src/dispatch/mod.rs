//! The dispatcher: delivers what the outbox records to the systems outside (the RPs'
//! back-channel logout endpoints, and Security Event Tokens for subscribers). It is
//! built once and knows nothing of any event: **routes** decide what an event delivers and build
//! each request when it is sent.
//!
//! Two steps, both safe with any number of instances:
//! - **Fan-out** (`worker.rs`): events not yet fanned out are read, each route plans its
//!   deliveries, and the deliveries are inserted and the events marked done in one transaction.
//!   A delivery is unique per (event, route, target), so two instances fanning out one event at
//!   once make one delivery.
//! - **Delivery**: due deliveries are claimed with a lease (a conditional UPDATE that only takes
//!   rows no live lease holds), so two instances never send one at the same time and a crashed
//!   instance's claim runs out. Every attempt is recorded; failures are retried with exponential
//!   backoff and full jitter (`backoff.rs`) until the attempts or the age run out, then the
//!   delivery is marked failed, logged, and listed by the admin API.
//!
//! Delivery is **at least once**: an instance that sent but crashed before recording sends
//! again after its lease. Receivers deduplicate by the message's own identifier (a logout
//! token's `sid`/`sub`, which make a repeat harmless; a SET's `jti`, fixed per delivery).
//!
//! A delivery may be **ordered** ([`Ordering`]): it is claimed only when no earlier delivery of
//! the same route, target and subject is pending, so a later event waits while an earlier one
//! is retried, until that one is delivered or has failed for good. An operator may **replay** a
//! finished delivery (`replay.rs`): a new delivery of the same event.
//!
//! Outbound requests go through `outbound.rs` (https only, the address resolved once and checked
//! against `address.rs`'s policy, no redirects, timeouts, a capped response read).
//!
//! This instance's outbox writes wake the dispatcher at commit (`Db::outbox_signal`), so a
//! delivery starts within milliseconds; events of other instances are found by polling.

pub mod address;
pub mod backoff;
pub mod outbound;
pub mod replay;
mod worker;

use async_trait::async_trait;
use serde::Serialize;

use crate::events::StoredEvent;

pub use worker::{DispatchPlan, Dispatcher};

/// A delivery a route plans for an event: to whom (`target`, e.g. a client id), and what the
/// route needs later to build the request (no personal data: it is stored in clear).
#[derive(Clone, Debug, PartialEq)]
pub struct Planned {
    pub target: String,
    pub payload: serde_json::Value,
    /// Deliveries of one route, target and subject go out in `seq` order; `None`: any order.
    pub ordering: Option<Ordering>,
}

/// Where a delivery stands in its subject's sequence (the outbox's per-subject `seq`).
#[derive(Clone, Debug, PartialEq)]
pub struct Ordering {
    pub subject: String,
    pub seq: i64,
}

/// A claimed delivery, as the route gets it back at send time.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub id: String,
    pub event_id: i64,
    pub route: String,
    pub target: String,
    pub payload: serde_json::Value,
    /// Attempts made before this one.
    pub attempts: i64,
    pub created_at: i64,
    /// Proves this instance's claim when the attempt is recorded.
    pub lease_token: String,
}

/// An HTTP POST to make.
#[derive(Clone, Debug)]
pub struct OutboundRequest {
    pub url: String,
    pub content_type: &'static str,
    /// The `Accept` header, if the receiver's answer matters.
    pub accept: Option<&'static str>,
    pub body: Vec<u8>,
    /// The statuses that mean "received" (anything else is retried).
    pub success: &'static [u16],
    /// The statuses that mean "refused for good": sending it again would change nothing, so
    /// the delivery fails at once.
    pub refused: &'static [u16],
    /// Turns a refusal's answer into the fixed summary operators see (never the receiver's
    /// free text, which may hold anything).
    pub explain: Option<fn(&[u8]) -> String>,
}

/// What a route makes of a delivery when its time comes.
#[derive(Debug)]
pub enum Prepared {
    Send(OutboundRequest),
    /// Nothing to send any more (the receiver was deleted or unregistered its endpoint).
    Cancel(&'static str),
}

/// A kind of delivery: which events it serves and how its requests are built.
#[async_trait]
pub trait Route: Send + Sync {
    /// Stored with each delivery, so that the route finds its own again.
    fn name(&self) -> &'static str;
    /// The deliveries each event of a batch makes through this route, in the events' order
    /// (none for events it does not serve). A route reads what it needs once for the batch,
    /// not once per event.
    async fn plan_many(&self, events: &[StoredEvent]) -> anyhow::Result<Vec<Vec<Planned>>>;
    /// The request of one delivery, built at send time (fresh tokens for every attempt).
    async fn prepare(&self, delivery: &Delivery, now: i64) -> anyhow::Result<Prepared>;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    Pending,
    Delivered,
    Failed,
    Cancelled,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            DeliveryStatus::Pending,
            DeliveryStatus::Delivered,
            DeliveryStatus::Failed,
            DeliveryStatus::Cancelled,
        ]
        .into_iter()
        .find(|status| status.as_str() == s)
    }
}

/// One attempt as recorded: what happened, never what was sent (tokens) or personal data.
#[derive(Clone, Debug, Serialize)]
pub struct Attempt {
    pub at: i64,
    /// `delivered`, `retry`, `failed` or `cancelled`.
    pub outcome: String,
    pub http_status: Option<u16>,
    /// A fixed summary such as `timeout` or `address not allowed`.
    pub error: Option<String>,
    pub duration_ms: i64,
}

/// Where a delivery goes after an attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum After {
    Retry { at: i64 },
    Finished(DeliveryStatus),
}

/// A delivery as operators see it (the admin API): no payload.
#[derive(Clone, Debug, Serialize)]
pub struct DeliveryView {
    pub id: String,
    pub event_id: i64,
    pub route: String,
    pub target: String,
    /// 0 for the original delivery of an event, n for its n-th replay.
    pub replay: i64,
    pub status: String,
    pub attempts: i64,
    pub created_at: i64,
    pub next_attempt_at: i64,
    pub last_http_status: Option<i64>,
    pub last_error: Option<String>,
    pub finished_at: Option<i64>,
}

/// The dispatcher's SQL (`store/deliveries.rs`).
#[async_trait]
pub trait DeliveryStore: Send + Sync {
    /// Up to `limit` events not fanned out yet, oldest first.
    async fn undispatched(&self, limit: i64) -> anyhow::Result<Vec<StoredEvent>>;
    /// Inserts the deliveries (keeping one that exists already) and marks the events fanned out,
    /// in one transaction.
    async fn fan_out(
        &self,
        event_ids: &[i64],
        deliveries: &[(i64, &'static str, Planned)],
        now: i64,
    ) -> anyhow::Result<()>;
    /// Claims up to `limit` due deliveries that no live lease holds, until `lease_until`.
    async fn claim_due(
        &self,
        now: i64,
        lease_until: i64,
        lease_token: &str,
        limit: i64,
    ) -> anyhow::Result<Vec<Delivery>>;
    /// Records an attempt and moves the delivery on, releasing the lease; false (and nothing
    /// recorded) when the lease is no longer this claim's.
    async fn record_attempt(
        &self,
        delivery: &Delivery,
        attempt: &Attempt,
        after: After,
    ) -> anyhow::Result<bool>;
    /// Deliveries for operators, newest first, optionally of one status.
    async fn list(
        &self,
        status: Option<DeliveryStatus>,
        limit: i64,
    ) -> anyhow::Result<Vec<DeliveryView>>;
    /// One delivery for operators.
    async fn find(&self, id: &str) -> anyhow::Result<Option<DeliveryView>>;
    /// Makes a new pending delivery of a finished one (same event, route, target, payload and
    /// place in its sequence), within the caller's transaction; its id, or `None` when there
    /// is no such delivery or it is still pending.
    async fn replay(
        &self,
        tx: &mut crate::transaction::Transaction,
        id: &str,
        now: i64,
    ) -> anyhow::Result<Option<String>>;
    /// The attempts of one delivery, in order.
    async fn attempts(&self, delivery_id: &str) -> anyhow::Result<Vec<Attempt>>;
    /// Deletes delivered and cancelled deliveries finished before `done_before`, failed ones
    /// finished before `failed_before`, with their attempts. Returns how many deliveries.
    async fn purge_finished(&self, done_before: i64, failed_before: i64) -> anyhow::Result<u64>;
}
