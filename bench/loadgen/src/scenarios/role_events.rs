//! Role events (issue 8) delivered as Security Event Tokens (RFC 8417/8935) to a subscriber: the
//! driver's loopback receiver (`receiver.rs`, 202 for every SET, the arrival time recorded per
//! role event), registered as a client that declares app roles and subscribes to the role
//! events. Setup (not measured): that client, the virtual users' citizens logged in to it with
//! scope `openid roles role_request` (synthetic `gen:<n>` with an ID-number legacy record, so no page), and
//! test citizen C01 (a level-2 login) made an approver of the province's root agency by an
//! operator and logged in with scope `openid role_approval`. The agency tree must be imported
//! (bench.sh does it for these scenarios).
//!
//! - **role-event-rate**: each virtual user requests a role (`POST /api/roles`, a new position
//!   each time; one `role:requested` event) and the approver approves it
//!   (`POST /api/approvals/{id}/approve`; one `role:approved` event), as fast as they can. Two
//!   rows: `role-event-api`, those calls (each writes one event), and `role-event-rate`, the
//!   SETs that reached the receiver inside the measured window per second, with the latency
//!   from the response of the call that wrote each event to its SET's arrival (under
//!   saturation: it grows with the backlog). CPU per row is the window's CPU over that row's
//!   count. Afterwards the driver waits for the backlog to drain and prints it.
//! - **role-event-latency**: at `--rate` approvals per second over all users (each after its
//!   request, whose own event goes first: a person's events reach a subscriber in order), the
//!   time from the approve call's response to the `role:approved` SET's arrival.
//! - **role-event-drain**: the dispatcher's own rate. The users write as in role-event-rate
//!   while no instance delivers (the serving broker runs with its dispatcher disabled); then
//!   `--drain-command` starts a broker whose dispatcher is enabled, over the same database, and
//!   the receiver counts the SETs from the first to the last of the backlog.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};
use tokio::task::JoinSet;

use crate::cli::{Args, Scenario, WARM_UP};
use crate::cpu::CpuProbe;
use crate::failure::Failure;
use crate::http::walk_login;
use crate::oidc::{Broker, Tokens};
use crate::page::parse_callback;
use crate::receiver::{jwt_claim, role_key, Receiver};
use crate::setup;
use crate::stats::{Recorder, Report};

use super::first_login::LINK_ID;
use super::{drive, Step};

/// The root of the agency tree (fixtures/org-units.csv): the approver's grant.
const ROOT: &str = "000.00.00.H57";
/// Where the requests are made: Phòng Nghiệp vụ Y of Sở Y tế, two levels below the root, so
/// that the approver's subtree is walked.
const ORG: &str = "000.02.07.H57";
const EVENT: &str = "urn:vn:hue:broker:event:role:";
const REQUESTED: &str = "urn:vn:hue:broker:event:role:requested";
const APPROVED: &str = "urn:vn:hue:broker:event:role:approved";
/// A level-2 test citizen of the mock VNeID (devkit/data/citizens-vneid.json).
const APPROVER: &str = "C01";
/// The synthetic citizens of each scenario (inside `LINK_ID`, below mobile-login's, which count
/// down from its end); distinct, so that one scenario's citizens have no grant at the other's
/// subscriber.
const RATE_CITIZENS: Range<u64> = 10_000..11_024;
const LATENCY_CITIZENS: Range<u64> = 12_000..13_024;
const _: () =
    assert!(RATE_CITIZENS.end <= LATENCY_CITIZENS.start && LATENCY_CITIZENS.end <= LINK_ID.end);
/// Logins made at once during setup.
const SETUP_PARALLELISM: usize = 8;
/// How long the rate scenario waits after its window for the backlog to drain.
const DRAIN: Duration = Duration::from_secs(60);

pub async fn run(
    scenario: Scenario,
    args: &Args,
    broker: &Arc<Broker>,
    probe: &Arc<CpuProbe>,
) -> anyhow::Result<Vec<Report>> {
    let citizens = match scenario {
        Scenario::RoleEventRate | Scenario::RoleEventDrain => RATE_CITIZENS,
        _ => LATENCY_CITIZENS,
    };
    if args.concurrency > (citizens.end - citizens.start) as usize {
        bail!("at most {} virtual users", citizens.end - citizens.start);
    }
    let ctx = Arc::new(Shared::set_up(args, broker, citizens.start).await?);
    let users: Vec<User> = ctx
        .people
        .iter()
        .enumerate()
        .map(|(index, token)| User {
            ctx: Arc::clone(&ctx),
            token: token.clone(),
            index,
            made: 0,
            pending: None,
            next: None,
        })
        .collect();
    match scenario {
        Scenario::RoleEventRate => rate(args, probe, ctx, users).await,
        Scenario::RoleEventDrain => drain(args, probe, ctx, users).await,
        _ => latency(args, probe, users).await.map(|r| vec![r]),
    }
}

/// What every virtual user shares.
struct Shared {
    http: reqwest::Client,
    issuer: String,
    client_id: String,
    receiver: Arc<Receiver>,
    approver: String,
    /// Each virtual user's access token (scopes `roles role_request`).
    people: Vec<String>,
    /// When the call that wrote each event was answered, per role event key.
    sent: Mutex<HashMap<String, Instant>>,
    /// Seconds between two turns of one user (role-event-latency), zero: no pacing.
    interval: Duration,
}

impl Shared {
    async fn set_up(args: &Args, broker: &Arc<Broker>, first: u64) -> anyhow::Result<Self> {
        let receiver = Receiver::start().await?;
        let types: Vec<String> = [
            "requested",
            "approved",
            "rejected",
            "changed",
            "revoked",
            "withdrawn",
        ]
        .iter()
        .map(|t| format!("{EVENT}{t}"))
        .collect();
        let mut client = setup::own_client(
            args,
            broker,
            json!({
                "client_name": "loadgen role subscriber",
                "scope": "openid roles role_request role_approval",
                "roles": [{"code": "editor", "name": "Biên tập viên", "name#en": "Editor"}],
                "event_delivery_uri": receiver.uri,
                "event_types": types,
                "id_token_signed_response_alg": args.set_alg,
            }),
        )
        .await
        .context("registering the subscriber")?;
        client.scope = "openid role_approval".into();
        let approver = login(&client, APPROVER)
            .await
            .map_err(|f| anyhow::anyhow!("the approver's login: {f} ({})", f.detail))?;
        let account = jwt_claim(&approver.id_token, "sub").context("the approver's sub")?;
        grant_approver(args, broker, &account).await?;
        client.scope = "openid roles role_request".into();
        eprintln!(
            "loadgen: role events: logging in {} citizen(s)",
            args.concurrency
        );
        let people = log_in_people(&client, first, args.concurrency).await?;
        let interval = Duration::from_secs_f64(args.concurrency as f64 / f64::from(args.rate));
        Ok(Self {
            http: client.http.clone(),
            issuer: client.issuer.trim_end_matches('/').to_owned(),
            client_id: client.client_id.clone(),
            receiver,
            approver: approver.access_token,
            people,
            sent: Mutex::default(),
            interval,
        })
    }

    fn sent(&self, key: String, at: Instant) {
        if let Ok(mut sent) = self.sent.lock() {
            sent.insert(key, at);
        }
    }
}

/// An operator makes `account` an approver of the root agency (201; 200 or 409 if it already is).
async fn grant_approver(args: &Args, broker: &Broker, account: &str) -> anyhow::Result<()> {
    let admin = args
        .admin_token
        .as_deref()
        .context("--admin-token is needed to grant the approver")?;
    let operator = setup::operator_token(&broker.http, &args.issuer, admin).await?;
    let url = format!(
        "{}/admin/approvers",
        args.issuer.as_str().trim_end_matches('/')
    );
    let response = broker
        .http
        .post(&url)
        .bearer_auth(operator)
        .json(&json!({ "account_id": account, "org_code": ROOT }))
        .send()
        .await
        .with_context(|| format!("POST {url}"))?;
    let status = response.status().as_u16();
    let body = response.text().await.unwrap_or_default();
    if !matches!(status, 200 | 201 | 409) {
        bail!("POST {url}: HTTP {status}: {body} (is the agency tree imported?)");
    }
    Ok(())
}

async fn login(broker: &Broker, hint: &str) -> Result<Tokens, Failure> {
    let request = broker
        .authorize_url_for(hint)
        .map_err(|e| Failure::bad("login", "cannot make PKCE/state", &format!("{e:#}")))?;
    let walked = walk_login(&broker.http, request.url, &broker.redirect_uri, None).await?;
    let code = parse_callback(&walked.back, &request.state, &broker.issuer)
        .map_err(|why| Failure::bad("redirect to client", why, walked.back.as_str()))?;
    broker.redeem_code(&code, &request.pkce.verifier).await
}

/// The access tokens of citizens `gen:first` onwards, one per virtual user.
async fn log_in_people(broker: &Broker, first: u64, count: usize) -> anyhow::Result<Vec<String>> {
    let broker = Arc::new(broker.clone());
    let mut tokens = Vec::with_capacity(count);
    let mut n = first;
    while tokens.len() < count {
        let batch = (count - tokens.len()).min(SETUP_PARALLELISM);
        let mut logins = JoinSet::new();
        for _ in 0..batch {
            let (broker, hint) = (Arc::clone(&broker), format!("gen:{n}"));
            n += 1;
            logins.spawn(async move { login(&broker, &hint).await });
        }
        while let Some(joined) = logins.join_next().await {
            match joined? {
                Ok(t) => tokens.push(t.access_token),
                Err(f) => bail!("a citizen's login: {f} ({})", f.detail),
            }
        }
    }
    Ok(tokens)
}

struct User {
    ctx: Arc<Shared>,
    token: String,
    index: usize,
    /// Requests made so far (each a new position, so none repeats a post).
    made: u64,
    /// A request waiting for its approval.
    pending: Option<String>,
    /// When the next paced turn starts (role-event-latency).
    next: Option<tokio::time::Instant>,
}

impl User {
    /// `POST /api/roles`: the new role's id.
    async fn request(&mut self) -> Result<String, Failure> {
        const STEP: &str = "POST /api/roles";
        self.made += 1;
        let url = format!("{}/api/roles", self.ctx.issuer);
        let body = json!({
            "category": "cong_chuc",
            "org_code": ORG,
            "position": format!("Chuyên viên {}-{}", self.index, self.made),
            "app_roles": { &self.ctx.client_id: ["editor"] },
        });
        let response = self
            .ctx
            .http
            .post(url)
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .map_err(|e| Failure::transport(STEP, &e))?;
        let status = response.status().as_u16();
        let text = response
            .text()
            .await
            .map_err(|e| Failure::transport(STEP, &e))?;
        if status != 201 {
            return Err(Failure::status(STEP, status, &text));
        }
        let role: Value =
            serde_json::from_str(&text).map_err(|_| Failure::bad(STEP, "not JSON", &text))?;
        role.get("id")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| Failure::bad(STEP, "no role id", &text))
    }

    /// `POST /api/approvals/{id}/approve` with the approver's token.
    async fn approve(&self, id: &str) -> Result<(), Failure> {
        const STEP: &str = "POST /api/approvals/{id}/approve";
        let url = format!("{}/api/approvals/{id}/approve", self.ctx.issuer);
        let response = self
            .ctx
            .http
            .post(url)
            .bearer_auth(&self.ctx.approver)
            .json(&json!({}))
            .send()
            .await
            .map_err(|e| Failure::transport(STEP, &e))?;
        let status = response.status().as_u16();
        let text = response
            .text()
            .await
            .map_err(|e| Failure::transport(STEP, &e))?;
        if status != 200 {
            return Err(Failure::status(STEP, status, &text));
        }
        Ok(())
    }
}

/// Requests and approvals as fast as the users go; the SETs counted at the receiver.
async fn rate(
    args: &Args,
    probe: &Arc<CpuProbe>,
    ctx: Arc<Shared>,
    users: Vec<User>,
) -> anyhow::Result<Vec<Report>> {
    // The window `drive` measures (its plan starts the warm-up now).
    let from = Instant::now() + WARM_UP;
    let end = from + Duration::from_secs(args.duration);
    let mut api = drive(Scenario::RoleEventRate, args, probe, users, write_turn).await?;
    api.scenario = "role-event-api";

    // Every event written (calls answered 2xx, the warm-up's and the stragglers' too) should
    // reach the receiver: wait for the backlog to drain.
    let written = ctx.sent.lock().map(|s| s.len()).unwrap_or_default();
    let waited_from = Instant::now();
    while ctx
        .receiver
        .with_sets(|log| log.arrivals.len())
        .unwrap_or_default()
        < written
        && waited_from.elapsed() < DRAIN
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let sent = ctx.sent.lock().map(|s| s.clone()).unwrap_or_default();
    let in_window = |t: &Instant| (from..=end).contains(t);
    let (delivered, summary) = ctx
        .receiver
        .with_sets(|log| {
            let mut recorder = Recorder::new()?;
            for (key, arrived) in &log.by_key {
                if in_window(arrived) {
                    let answered = sent.get(key).copied().unwrap_or(*arrived).min(*arrived);
                    recorder.record(answered, *arrived, Ok(()));
                }
            }
            let written_by_end = sent.values().filter(|t| **t <= end).count();
            let arrived_by_end = log.arrivals.iter().filter(|t| **t <= end).count();
            let last = log.arrivals.iter().max().copied();
            let summary = format!(
                "    {} events written (API calls answered), {} SETs received ({} in the window, \
                 {} repeated or unkeyed); backlog at the window's end: {} events; the last SET \
                 arrived {:.2} s after the window{}",
                sent.len(),
                log.arrivals.len(),
                recorder.successes(),
                log.repeats,
                written_by_end.saturating_sub(arrived_by_end),
                last.map_or(0.0, |t| t.saturating_duration_since(end).as_secs_f64()),
                if log.arrivals.len() < sent.len() {
                    format!(
                        "; {} never arrived within {} s",
                        sent.len() - log.arrivals.len(),
                        DRAIN.as_secs()
                    )
                } else {
                    String::new()
                }
            );
            anyhow::Ok((recorder, summary))
        })
        .context("the receiver's log")??;
    println!("{summary}");
    let delivered = Report {
        scenario: "role-event-rate",
        concurrency: api.concurrency,
        window: api.window,
        recorder: delivered,
        server_cpu_ms: api.server_cpu_ms,
        db_cpu_ms: api.db_cpu_ms,
        stopped_by_max_ops: api.stopped_by_max_ops,
    };
    Ok(vec![api, delivered])
}

/// One user's turn of the writing scenarios: a request, or the approval of its last request;
/// each writes one event.
async fn write_turn(mut user: User) -> (User, Step) {
    let outcome = match user.pending.take() {
        Some(id) => user.approve(&id).await.map(|()| role_key(&id, APPROVED)),
        None => user.request().await.map(|id| {
            let key = role_key(&id, REQUESTED);
            user.pending = Some(id);
            key
        }),
    };
    let outcome = outcome.map(|key| user.ctx.sent(key, Instant::now()));
    (user, Step::Measured(outcome))
}

/// How long role-event-drain waits for the backlog once the delivering instance is started.
const DRAIN_LIMIT: Duration = Duration::from_secs(180);

/// The events written while no instance delivers; then `--drain-command` starts one and the
/// receiver counts the SETs until the backlog is gone. Two rows: `role-event-api` (the writing,
/// as role-event-rate's) and `role-event-drain`: SETs per second from the first arrival to the
/// last, the latency of each being from the delivering instance's start to its arrival, the CPU
/// that instance's (and, with `--postgres`, the database's) over the drain.
async fn drain(
    args: &Args,
    probe: &Arc<CpuProbe>,
    ctx: Arc<Shared>,
    users: Vec<User>,
) -> anyhow::Result<Vec<Report>> {
    let command = args
        .drain_command
        .as_deref()
        .context("role-event-drain needs --drain-command (bench.sh sets it)")?;
    let mut api = drive(Scenario::RoleEventDrain, args, probe, users, write_turn).await?;
    api.scenario = "role-event-api";
    let written = ctx.sent.lock().map(|s| s.len()).unwrap_or_default();
    let early = ctx
        .receiver
        .with_sets(|log| log.arrivals.len())
        .unwrap_or_default();
    if early > 0 {
        bail!(
            "{early} SETs arrived while the events were written: the serving broker's \
             dispatcher must be disabled (BROKER_DISPATCH__ENABLED=false)"
        );
    }
    eprintln!("loadgen: {written} events written; starting the delivering instance");
    let started = Instant::now();
    let output = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .output()
        .await
        .context("running --drain-command")?;
    if !output.status.success() {
        bail!(
            "--drain-command failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let pid: u32 = stdout
        .lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .with_context(|| format!("--drain-command printed no pid first: {stdout:?}"))?;
    let drainer = CpuProbe::new(vec![pid], args.postgres)?;
    let before = drainer.sample()?;
    loop {
        let arrived = ctx
            .receiver
            .with_sets(|log| log.arrivals.len())
            .unwrap_or_default();
        if arrived >= written || started.elapsed() > DRAIN_LIMIT {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let used = drainer.used(before, drainer.sample()?);
    let (recorder, first, last, repeats, arrived) = ctx
        .receiver
        .with_sets(|log| {
            let mut recorder = Recorder::new()?;
            for arrived in log.by_key.values() {
                recorder.record(started, *arrived, Ok(()));
            }
            let first = log.arrivals.iter().min().copied();
            let last = log.arrivals.iter().max().copied();
            anyhow::Ok((recorder, first, last, log.repeats, log.arrivals.len()))
        })
        .context("the receiver's log")??;
    let window = match (first, last) {
        (Some(first), Some(last)) => last.saturating_duration_since(first),
        _ => Duration::ZERO,
    };
    println!(
        "    {written} events written while nobody delivered; {arrived} SETs received ({repeats} \
         repeated or unkeyed); the first {:.2} s after the delivering instance was started, \
         the last {:.2} s after the first{}",
        first.map_or(0.0, |t| t.saturating_duration_since(started).as_secs_f64()),
        window.as_secs_f64(),
        if arrived < written {
            format!(
                "; {} never arrived within {} s",
                written - arrived,
                DRAIN_LIMIT.as_secs()
            )
        } else {
            String::new()
        }
    );
    let delivered = Report {
        scenario: "role-event-drain",
        concurrency: api.concurrency,
        window,
        recorder,
        server_cpu_ms: used.server_ms,
        db_cpu_ms: used.db_ms,
        stopped_by_max_ops: false,
    };
    Ok(vec![api, delivered])
}

/// Paced request + approval turns; the latency of each approval's SET.
async fn latency(
    args: &Args,
    probe: &Arc<CpuProbe>,
    mut users: Vec<User>,
) -> anyhow::Result<Report> {
    let count = users.len().max(1) as u32;
    let start = tokio::time::Instant::now();
    for (i, user) in users.iter_mut().enumerate() {
        // Spread the users' turns evenly over one interval.
        user.next = Some(start + user.ctx.interval * i as u32 / count);
    }
    let wait = Duration::from_secs(args.request_timeout);
    drive(
        Scenario::RoleEventLatency,
        args,
        probe,
        users,
        move |mut user: User| async move {
            let now = tokio::time::Instant::now();
            let due = user.next.unwrap_or(now);
            tokio::time::sleep_until(due).await;
            user.next = Some(due.max(now) + user.ctx.interval);
            let id = match user.request().await {
                Ok(id) => id,
                Err(failure) => return (user, Step::Measured(Err(failure))),
            };
            let key = role_key(&id, APPROVED);
            let arrival = user.ctx.receiver.expect_set(&key);
            if let Err(failure) = user.approve(&id).await {
                user.ctx.receiver.forget_set(&key);
                return (user, Step::Measured(Err(failure)));
            }
            let answered = Instant::now();
            let (finished, outcome) = match tokio::time::timeout(wait, arrival).await {
                Ok(Ok(at)) => (at.max(answered), Ok(())),
                _ => {
                    user.ctx.receiver.forget_set(&key);
                    (
                        Instant::now(),
                        Err(Failure::bad(
                            "role:approved SET",
                            "did not arrive in time",
                            "",
                        )),
                    )
                }
            };
            (
                user,
                Step::Timed {
                    started: tokio::time::Instant::from_std(answered),
                    finished: tokio::time::Instant::from_std(finished),
                    outcome,
                },
            )
        },
    )
    .await
}
