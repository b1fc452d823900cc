//! Runs scenarios: a fixed set of virtual users loop on one operation until the measured window ends
//! (or the operation budget runs out), after a warm-up that is not counted.

mod backchannel_logout;
mod client_credentials;
mod device_eviction;
mod first_login;
mod login;
mod mobile_login;
mod refresh;
mod role_events;

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::cli::{Args, Scenario, WARM_UP};
use crate::cpu::{CpuProbe, CpuUse};
use crate::failure::Failure;
use crate::oidc::Broker;
use crate::stats::{Recorder, Report};

/// What one turn of a virtual user did.
pub enum Step {
    /// The scenario's operation: counted when it completes inside the measured window.
    Measured(Result<(), Failure>),
    /// The scenario's operation, whose latency runs between two instants of its own (e.g. from
    /// a call's response to the event's arrival at the receiver) rather than over the turn.
    Timed {
        started: Instant,
        finished: Instant,
        outcome: Result<(), Failure>,
    },
    /// Housekeeping the operation needed (e.g. a fresh login to restart a refresh chain): not counted.
    Unmeasured,
}

/// The time and count bounds of one scenario run.
pub struct Plan {
    measure_from: Instant,
    end: Instant,
    budget: AtomicU64,
    exhausted: watch::Sender<bool>,
}

impl Plan {
    fn new(duration: Duration, max_ops: u64) -> Self {
        let measure_from = Instant::now() + WARM_UP;
        Self {
            measure_from,
            end: measure_from + duration,
            budget: AtomicU64::new(max_ops),
            exhausted: watch::channel(false).0,
        }
    }

    /// Whether a virtual user may start another turn.
    fn go_on(&self) -> bool {
        if Instant::now() >= self.end {
            return false;
        }
        let took = self
            .budget
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        if took.is_err() {
            self.exhausted.send_replace(true);
        }
        took.is_ok()
    }
}

/// Runs the scenarios `--rounds` times in turn; returns each scenario's report over all rounds.
pub async fn run_all(
    args: &Args,
    broker: Arc<Broker>,
    probe: Arc<CpuProbe>,
) -> anyhow::Result<Vec<Report>> {
    let mut totals: Vec<Report> = Vec::new();
    // Each round's server CPU per operation against the round's first scenario's, by scenario.
    let mut ratios: Vec<(&'static str, Vec<f64>)> = Vec::new();
    for round in 1..=args.rounds {
        if args.rounds > 1 {
            eprintln!("loadgen: round {round} of {}", args.rounds);
        }
        let reports = run_round(args, &broker, &probe).await?;
        let first = reports.first().and_then(Report::server_cpu_per_op);
        for report in reports {
            if let (Some(base), Some(mine)) = (first, report.server_cpu_per_op()) {
                match ratios.iter_mut().find(|(name, _)| *name == report.scenario) {
                    Some((_, list)) => list.push(mine / base),
                    None => ratios.push((report.scenario, vec![mine / base])),
                }
            }
            match totals.iter_mut().find(|t| t.scenario == report.scenario) {
                Some(total) => total.absorb(report)?,
                None => totals.push(report),
            }
        }
    }
    if args.rounds > 1 {
        println!("\nover {} rounds:\n{}", args.rounds, Report::human_header());
        for total in &totals {
            println!("{}", total.human());
        }
        println!("\nserver CPU per operation against the first scenario's, each round:");
        for (name, list) in &ratios {
            let mut sorted = list.clone();
            sorted.sort_by(f64::total_cmp);
            let rounds: Vec<String> = list.iter().map(|r| format!("{r:.2}")).collect();
            println!(
                "{name:<20} median {:.3}  min {:.2}  max {:.2}  ({})",
                median(&sorted),
                sorted[0],
                sorted[sorted.len() - 1],
                rounds.join(" ")
            );
        }
    }
    Ok(totals)
}

/// The median of sorted, non-empty values.
fn median(sorted: &[f64]) -> f64 {
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    }
}

/// Each scenario once, in order.
async fn run_round(
    args: &Args,
    broker: &Arc<Broker>,
    probe: &Arc<CpuProbe>,
) -> anyhow::Result<Vec<Report>> {
    let mut reports = Vec::new();
    for scenario in args.scenario.expand() {
        eprintln!(
            "loadgen: {} x{} for {} s (+{} s warm-up)",
            scenario.name(),
            args.concurrency,
            args.duration,
            WARM_UP.as_secs()
        );
        let one = match scenario {
            Scenario::RoleEventRate | Scenario::RoleEventLatency | Scenario::RoleEventDrain => {
                let rows = role_events::run(scenario, args, broker, probe)
                    .await
                    .with_context(|| format!("scenario {}", scenario.name()))?;
                for report in rows {
                    println!("{}", report.human());
                    reports.push(report);
                }
                continue;
            }
            Scenario::ClientCredentials => client_credentials::run(args, broker, probe).await,
            Scenario::Login => login::run(args, broker, probe).await,
            Scenario::Refresh => refresh::run(args, broker, probe).await,
            Scenario::LoginLinkId | Scenario::LoginNewCitizen | Scenario::LoginPhoneLink => {
                first_login::run(scenario, args, broker, probe).await
            }
            Scenario::BackchannelLogout => backchannel_logout::run(args, broker, probe).await,
            Scenario::MobileLogin => mobile_login::run(args, broker, probe).await,
            Scenario::DeviceEviction => device_eviction::run(args, broker, probe).await,
            Scenario::Linking | Scenario::All | Scenario::RoleEvents => continue,
        };
        let report = one.with_context(|| format!("scenario {}", scenario.name()))?;
        println!("{}", report.human());
        reports.push(report);
    }
    Ok(reports)
}

/// Drives `users` (one task each) through `op` under the bounds of `args`, sampling CPU at both ends of
/// the measured window. Each turn hands the user's state to `op` and gets it back.
async fn drive<U, F, Fut>(
    scenario: Scenario,
    args: &Args,
    probe: &Arc<CpuProbe>,
    users: Vec<U>,
    op: F,
) -> anyhow::Result<Report>
where
    U: Send + 'static,
    F: Fn(U) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = (U, Step)> + Send + 'static,
{
    let concurrency = users.len();
    let plan = Arc::new(Plan::new(Duration::from_secs(args.duration), args.max_ops));
    let sampler = tokio::spawn(sample_window(Arc::clone(probe), Arc::clone(&plan)));

    let mut tasks = JoinSet::new();
    for user in users {
        let (plan, op, mut recorder) = (Arc::clone(&plan), op.clone(), Recorder::new()?);
        tasks.spawn(async move {
            let mut user = user;
            while plan.go_on() {
                let started = Instant::now();
                let (next, step) = op(user).await;
                user = next;
                let finished = Instant::now();
                if !(plan.measure_from..=plan.end).contains(&finished) {
                    continue;
                }
                match step {
                    Step::Unmeasured => recorder.unmeasured += 1,
                    Step::Measured(outcome) => {
                        recorder.record(started.into_std(), finished.into_std(), outcome)
                    }
                    Step::Timed {
                        started,
                        finished,
                        outcome,
                    } => recorder.record(started.into_std(), finished.into_std(), outcome),
                }
            }
            recorder
        });
    }

    // Every request has a timeout, so the stragglers finish shortly after the window; the bound is a
    // backstop (dropping the JoinSet aborts whatever is left).
    let hard_stop =
        plan.end + Duration::from_secs(args.request_timeout) * 3 + Duration::from_secs(5);
    let mut total = Recorder::new()?;
    while let Some(joined) = tokio::time::timeout_at(hard_stop, tasks.join_next())
        .await
        .context("virtual users did not stop in time")?
    {
        total.merge(joined.context("virtual user task failed")?)?;
    }

    let cpu = sampler
        .await
        .context("CPU sampler failed")?
        .unwrap_or_else(|e| {
            eprintln!("loadgen: no CPU figures: {e:#}");
            CpuUse::default()
        });
    let stopped_by_max_ops = *plan.exhausted.borrow();
    let window_end = match (stopped_by_max_ops, total.last_completion) {
        (true, Some(last)) => Instant::from_std(last).min(plan.end),
        _ => plan.end,
    };
    Ok(Report {
        scenario: scenario.name(),
        concurrency,
        window: window_end.saturating_duration_since(plan.measure_from),
        recorder: total,
        server_cpu_ms: cpu.server_ms,
        db_cpu_ms: cpu.db_ms,
        stopped_by_max_ops,
    })
}

/// CPU used between the start of the measured window and its end (or the moment the budget ran out).
async fn sample_window(probe: Arc<CpuProbe>, plan: Arc<Plan>) -> anyhow::Result<CpuUse> {
    let mut exhausted = plan.exhausted.subscribe();
    tokio::time::sleep_until(plan.measure_from).await;
    let from = probe.sample()?;
    tokio::select! {
        _ = tokio::time::sleep_until(plan.end) => {}
        _ = exhausted.wait_for(|done| *done) => {}
    }
    let to = probe.sample()?;
    Ok(probe.used(from, to))
}
