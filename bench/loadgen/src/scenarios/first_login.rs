//! First logins, each of an identity the broker has never seen: the mock VNeID makes synthetic
//! citizen `gen:<n>` on demand, and each login takes the next `n`. Which linking branch a login
//! takes depends on the legacy records imported for its `n` (bench.sh imports them with
//! `broker mock-vneid --emit-legacy`): the ranges below must agree with that import.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use broker_devkit::mock_vneid::synthetic;

use crate::cli::{Args, Scenario};
use crate::cpu::CpuProbe;
use crate::failure::Failure;
use crate::http::walk_login;
use crate::oidc::Broker;
use crate::page::parse_callback;
use crate::stats::Report;
use crate::steps::{Answers, Codes, SmsLog};

use super::{drive, Step};

/// Synthetic citizens whose legacy record holds their ID number (`--emit-legacy id:0-50000`: enough for `--rounds`).
pub const LINK_ID: Range<u64> = 0..50_000;
/// Synthetic citizens whose legacy record has only their phone
/// (`--emit-legacy phone:200000-250000`).
pub const PHONE_LINK: Range<u64> = 200_000..250_000;
/// Synthetic citizens without a legacy record.
pub const NEW_CITIZEN: Range<u64> = 400_000..600_000;

/// The next fresh number of each range: kept across `--rounds`, so that every round's logins
/// are first logins too.
static NEXT_LINK_ID: AtomicU64 = AtomicU64::new(LINK_ID.start);
static NEXT_PHONE_LINK: AtomicU64 = AtomicU64::new(PHONE_LINK.start);
static NEXT_NEW_CITIZEN: AtomicU64 = AtomicU64::new(NEW_CITIZEN.start);

/// The numbers a scenario draws from, its counter, and the standardisation pages each of its
/// logins must pass (a phone form and a code form, or none).
fn plan(scenario: Scenario) -> (Range<u64>, &'static AtomicU64, usize) {
    match scenario {
        Scenario::LoginLinkId => (LINK_ID, &NEXT_LINK_ID, 0),
        Scenario::LoginPhoneLink => (PHONE_LINK, &NEXT_PHONE_LINK, 2),
        _ => (NEW_CITIZEN, &NEXT_NEW_CITIZEN, 2),
    }
}

struct Citizens {
    broker: Arc<Broker>,
    codes: Codes,
    numbers: Range<u64>,
    next: &'static AtomicU64,
    pages: usize,
}

pub async fn run(
    scenario: Scenario,
    args: &Args,
    broker: &Arc<Broker>,
    probe: &Arc<CpuProbe>,
) -> anyhow::Result<Report> {
    let (numbers, next, pages) = plan(scenario);
    let citizens = Arc::new(Citizens {
        broker: Arc::clone(broker),
        codes: match &args.sms_log {
            Some(log) => Codes::Log(SmsLog::new(log.clone())),
            None => Codes::Page(url::Url::parse(&broker.issuer)?.join("/dev/sms")?),
        },
        next,
        numbers,
        pages,
    });
    let users = vec![citizens; args.concurrency];
    drive(
        scenario,
        args,
        probe,
        users,
        |citizens: Arc<Citizens>| async move {
            let outcome = first_login(&citizens).await;
            (citizens, Step::Measured(outcome))
        },
    )
    .await
}

/// One first login of the next fresh identity, from /authorize to tokens.
async fn first_login(citizens: &Citizens) -> Result<(), Failure> {
    let n = citizens.next.fetch_add(1, Ordering::Relaxed);
    if !citizens.numbers.contains(&n) {
        return Err(Failure::bad("login", "no synthetic citizens left", ""));
    }
    let broker = &citizens.broker;
    let request = broker
        .authorize_url_for(&format!("gen:{n}"))
        .map_err(|e| Failure::bad("login", "cannot make PKCE/state", &format!("{e:#}")))?;
    // The phone the devkit gave citizen n (and, for the phone-link range, their legacy record):
    // one of their own, its mask in the SMS log too.
    let phone = synthetic::phone(n);
    let answers = Answers {
        phone: &phone,
        codes: &citizens.codes,
    };
    let walked = walk_login(
        &broker.http,
        request.url,
        &broker.redirect_uri,
        Some(&answers),
    )
    .await?;
    if walked.step_pages != citizens.pages {
        return Err(Failure::bad(
            "login",
            "took another linking branch (step pages)",
            &format!("gen:{n}: {} pages", walked.step_pages),
        ));
    }
    let code = parse_callback(&walked.back, &request.state, &broker.issuer)
        .map_err(|why| Failure::bad("redirect to client", why, walked.back.as_str()))?;
    broker
        .redeem_code(&code, &request.pkce.verifier)
        .await
        .map(|_| ())
}
