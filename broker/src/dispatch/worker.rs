//! The dispatcher's loops: one fans out new events (a batch per transaction); the other claims
//! due deliveries (as many as there are free slots, in one query), sends them (several at once,
//! so one slow receiver delays no other) and records each attempt. They wake on this instance's
//! outbox commits, on a finished send, and every `poll` for other instances' events and for
//! retries falling due.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio::task::JoinSet;

use super::backoff::Backoff;
use super::outbound::Outbound;
use super::{After, Attempt, Delivery, DeliveryStatus, DeliveryStore, Planned, Prepared, Route};
use crate::clock::SharedClock;
use crate::crypto::{random_bytes, random_token};

/// Events read per fan-out transaction.
const FAN_OUT_BATCH: i64 = 100;
/// How long the fan-out waits after a wake before it reads the new events: `FAN_OUT_LINGER`
/// while passes find one event each (a quiet broker, where an event's latency matters more than
/// a pass's three statements), `FAN_OUT_LINGER_BUSY` once a pass found several (under load, where
/// a pass per few logins' events costs more CPU than the wait costs latency).
const FAN_OUT_LINGER: Duration = Duration::from_millis(10);
const FAN_OUT_LINGER_BUSY: Duration = Duration::from_millis(50);
/// How often finished deliveries are purged, and how long they are kept: a week for delivered
/// and cancelled ones, a month for failed ones (operators look at those).
const PURGE_EVERY: Duration = Duration::from_secs(3600);
const KEEP_DONE_SECS: i64 = 7 * 86_400;
const KEEP_FAILED_SECS: i64 = 30 * 86_400;

/// How the dispatcher paces itself.
#[derive(Clone, Copy, Debug)]
pub struct DispatchPlan {
    /// How often to look for other instances' events and due retries.
    pub poll: Duration,
    /// Deliveries in flight at once on this instance.
    pub concurrency: usize,
    /// How long a claim holds a delivery (longer than a request may take).
    pub lease_secs: i64,
    pub backoff: Backoff,
}

impl Default for DispatchPlan {
    fn default() -> Self {
        Self {
            poll: Duration::from_secs(1),
            concurrency: 32,
            lease_secs: 60,
            backoff: Backoff::default(),
        }
    }
}

/// What one fan-out batch did.
#[derive(Default)]
struct FannedOut {
    events: usize,
    planned: usize,
}

pub struct Dispatcher {
    store: Arc<dyn DeliveryStore>,
    routes: Vec<Arc<dyn Route>>,
    outbound: Outbound,
    clock: SharedClock,
    plan: DispatchPlan,
    wake: Arc<Notify>,
}

impl Dispatcher {
    /// `wake`: notified when this instance commits an outbox event (`Db::outbox_signal`).
    pub fn new(
        store: Arc<dyn DeliveryStore>,
        outbound: Outbound,
        clock: SharedClock,
        plan: DispatchPlan,
        wake: Arc<Notify>,
    ) -> Self {
        Self {
            store,
            routes: Vec::new(),
            outbound,
            clock,
            plan,
            wake,
        }
    }

    /// Adds a route; every event is offered to every route.
    pub fn with_route(mut self, route: Arc<dyn Route>) -> Self {
        self.routes.push(route);
        self
    }

    /// Runs the loop on the runtime until the process ends.
    pub fn spawn(self) -> tokio::task::JoinHandle<()> {
        let me = Arc::new(self);
        tokio::spawn(async move { me.run().await })
    }

    /// Two loops in one task: fan-out, and claiming and sending. Apart, so that neither holds
    /// the other back: fanning out a steady stream of new events (a query per event and
    /// route) left the claims waiting, and deliveries fell behind the events.
    async fn run(self: Arc<Self>) {
        let fanned = Notify::new();
        tokio::join!(self.fan_out_loop(&fanned), self.delivery_loop(&fanned));
    }

    /// Fans out new events a batch at a time, woken by this instance's outbox commits and
    /// every `poll`. A wake waits `FAN_OUT_LINGER` before its pass, so that under load a pass
    /// takes what many commits wrote, at the price of that delay for an event's deliveries.
    async fn fan_out_loop(&self, fanned: &Notify) {
        let mut purged_at = Instant::now();
        // Whether this pass follows a wake (an outbox commit or a replay), not the poll.
        let mut woken = false;
        loop {
            if purged_at.elapsed() >= PURGE_EVERY {
                purged_at = Instant::now();
                self.purge().await;
            }
            let events = match self.fan_out_batch().await {
                Ok(batch) => {
                    // The delivery loop is told when the pass made deliveries, or when a wake
                    // found no event (a replay's new delivery needs no fan-out); not for events
                    // nobody receives, the common case of a login's events.
                    if batch.planned > 0 || (batch.events == 0 && woken) {
                        fanned.notify_one();
                    }
                    batch.events
                }
                Err(e) => {
                    tracing::error!(error = format!("{e:#}"), "dispatch: fan-out failed");
                    0
                }
            };
            if events as i64 >= FAN_OUT_BATCH {
                woken = false;
                continue;
            }
            woken = tokio::select! {
                _ = self.wake.notified() => true,
                _ = tokio::time::sleep(self.plan.poll) => false,
            };
            if woken {
                // The commits of the next few milliseconds go out in the same pass, rather
                // than one pass (three statements) per login's event.
                let linger = if events > 1 {
                    FAN_OUT_LINGER_BUSY
                } else {
                    FAN_OUT_LINGER
                };
                tokio::time::sleep(linger).await;
            }
        }
    }

    /// Claims due deliveries while there are free slots and sends them; woken by the fan-out
    /// loop, by a finished send, and every `poll` (retries falling due, other instances'
    /// deliveries).
    async fn delivery_loop(self: &Arc<Self>, fanned: &Notify) {
        let mut in_flight: JoinSet<()> = JoinSet::new();
        let mut send_finished = false;
        // Whether the last claim filled every free slot, so that more may be due.
        let mut backlog = false;
        // When the next claim is due whatever happens (retries falling due, other instances'
        // deliveries): a poll after the last claim, not after the last wake, so that a stream
        // of finished sends never puts it off.
        let mut next_poll = tokio::time::Instant::now() + self.plan.poll;
        loop {
            let free = self.plan.concurrency.saturating_sub(in_flight.len());
            // A claim is one query over the pending deliveries however many it takes. When
            // only a finished send woke the loop, claim only if the last claim left some due
            // deliveries behind (it filled every slot), and then once half the slots are
            // free, so that one query fills many (a drained backlog otherwise costs a claim
            // per delivery, and no backlog a useless claim per send). New events and the poll
            // claim at once, so a slow subscriber holding slots delays nobody else.
            let worth = !send_finished
                || tokio::time::Instant::now() >= next_poll
                || (backlog && (in_flight.is_empty() || free * 2 >= self.plan.concurrency));
            if free > 0 && worth {
                next_poll = tokio::time::Instant::now() + self.plan.poll;
                match self.claim(free as i64).await {
                    Ok(claimed) => {
                        backlog = claimed.len() >= free;
                        for delivery in claimed {
                            let me = self.clone();
                            in_flight.spawn(async move { me.deliver(delivery).await });
                        }
                    }
                    Err(e) => tracing::error!(error = format!("{e:#}"), "dispatch: claim failed"),
                }
            } else if tokio::time::Instant::now() >= next_poll {
                // Every slot is busy: this poll is skipped (the wait below would otherwise end
                // at once, again and again, until a send finishes).
                next_poll = tokio::time::Instant::now() + self.plan.poll;
            }
            send_finished = tokio::select! {
                _ = fanned.notified() => false,
                _ = tokio::time::sleep_until(next_poll) => false,
                Some(_) = in_flight.join_next(), if !in_flight.is_empty() => true,
            };
            // Every send that has finished frees its slot now, so that the next claim fills
            // them all in one query rather than one query per finished send.
            while in_flight.try_join_next().is_some() {}
        }
    }

    async fn purge(&self) {
        let now = self.clock.now();
        match self
            .store
            .purge_finished(now - KEEP_DONE_SECS, now - KEEP_FAILED_SECS)
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(deliveries = n, "dispatch: purged finished deliveries"),
            Err(e) => tracing::error!(error = format!("{e:#}"), "dispatch: purge failed"),
        }
    }

    /// Fans out every event not fanned out yet; returns how many events.
    pub async fn fan_out(&self) -> anyhow::Result<usize> {
        let mut total = 0;
        loop {
            let n = self.fan_out_batch().await?.events;
            total += n;
            if (n as i64) < FAN_OUT_BATCH {
                return Ok(total);
            }
        }
    }

    /// Fans out up to `FAN_OUT_BATCH` events not fanned out yet, in one transaction; returns
    /// how many, and how many deliveries they planned.
    async fn fan_out_batch(&self) -> anyhow::Result<FannedOut> {
        let events = self.store.undispatched(FAN_OUT_BATCH).await?;
        if events.is_empty() {
            return Ok(FannedOut::default());
        }
        let mut deliveries: Vec<(i64, &'static str, Planned)> = Vec::new();
        for route in &self.routes {
            let plans = route.plan_many(&events).await?;
            for (event, plans) in events.iter().zip(plans) {
                for planned in plans {
                    deliveries.push((event.id, route.name(), planned));
                }
            }
        }
        let ids: Vec<i64> = events.iter().map(|e| e.id).collect();
        self.store
            .fan_out(&ids, &deliveries, self.clock.now())
            .await?;
        Ok(FannedOut {
            events: events.len(),
            planned: deliveries.len(),
        })
    }

    /// Claims up to `limit` due deliveries for this instance.
    pub async fn claim(&self, limit: i64) -> anyhow::Result<Vec<Delivery>> {
        let now = self.clock.now();
        self.store
            .claim_due(now, now + self.plan.lease_secs, &random_token(), limit)
            .await
    }

    /// Makes one attempt at a claimed delivery and records it. Failures are logged: the lease
    /// runs out and the delivery is tried again.
    pub async fn deliver(&self, delivery: Delivery) {
        let started = Instant::now();
        let (attempt, after) = self.attempt(&delivery, started).await;
        if after == After::Finished(DeliveryStatus::Failed) {
            tracing::warn!(
                delivery = %delivery.id, route = %delivery.route, target = %delivery.target,
                attempts = delivery.attempts + 1, error = attempt.error.as_deref().unwrap_or(""),
                http_status = attempt.http_status, "dispatch: delivery failed for good"
            );
        }
        match self.store.record_attempt(&delivery, &attempt, after).await {
            Ok(true) => {}
            Ok(false) => tracing::warn!(
                delivery = %delivery.id,
                "dispatch: the lease ran out before the attempt was recorded"
            ),
            Err(e) => tracing::error!(
                delivery = %delivery.id, error = format!("{e:#}"),
                "dispatch: recording an attempt failed"
            ),
        }
    }

    async fn attempt(&self, delivery: &Delivery, started: Instant) -> (Attempt, After) {
        let now = self.clock.now();
        let record = |outcome: &str, status: Option<u16>, error: Option<&str>| Attempt {
            at: now,
            outcome: outcome.to_string(),
            http_status: status,
            error: error.map(str::to_string),
            duration_ms: started.elapsed().as_millis().min(i64::MAX as u128) as i64,
        };
        let Some(route) = self.routes.iter().find(|r| r.name() == delivery.route) else {
            return (
                record("cancelled", None, Some("no such route")),
                After::Finished(DeliveryStatus::Cancelled),
            );
        };
        let request = match route.prepare(delivery, now).await {
            Ok(Prepared::Send(request)) => request,
            Ok(Prepared::Cancel(why)) => {
                return (
                    record("cancelled", None, Some(why)),
                    After::Finished(DeliveryStatus::Cancelled),
                )
            }
            Err(e) => {
                tracing::error!(delivery = %delivery.id, error = format!("{e:#}"), "dispatch: preparing a delivery failed");
                return self.failed(delivery, record("retry", None, Some("not prepared")), now);
            }
        };
        match self.outbound.post(&request).await {
            Ok(answer) if request.success.contains(&answer.status) => (
                record("delivered", Some(answer.status), None),
                After::Finished(DeliveryStatus::Delivered),
            ),
            Ok(answer) if request.refused.contains(&answer.status) => {
                let why = request
                    .explain
                    .map_or_else(|| "refused".to_string(), |explain| explain(&answer.body));
                (
                    record("failed", Some(answer.status), Some(&why)),
                    After::Finished(DeliveryStatus::Failed),
                )
            }
            Ok(answer) => self.failed(
                delivery,
                record("retry", Some(answer.status), Some("unexpected status")),
                now,
            ),
            Err(e) if e.is_permanent() => (
                record("failed", None, Some(e.summary())),
                After::Finished(DeliveryStatus::Failed),
            ),
            Err(e) => self.failed(delivery, record("retry", None, Some(e.summary())), now),
        }
    }

    /// A failed attempt: retried later, or failed for good once the attempts or age run out.
    fn failed(&self, delivery: &Delivery, mut attempt: Attempt, now: i64) -> (Attempt, After) {
        let failures = delivery.attempts + 1;
        let backoff = &self.plan.backoff;
        if backoff.exhausted(failures, delivery.created_at, now) {
            attempt.outcome = "failed".into();
            return (attempt, After::Finished(DeliveryStatus::Failed));
        }
        let random = u64::from_le_bytes(random_bytes::<8>());
        let at = now + backoff.delay(failures, random);
        (attempt, After::Retry { at })
    }
}
