//! Logins of a mobile app (`device_class` `mobile`) that sends its `device_id`, each as a fresh
//! browser, like `login`. Each virtual user is one citizen with two devices used in turn, so
//! under the one-mobile-device rule every login after a user's first evicts the other device:
//! its grant revoked and its session ended in the token request's transaction, and a logout
//! token sent to the app's back-channel logout endpoint (the driver's receiver). Run with the
//! rule on and off (bench.sh: `ONE_MOBILE_DEVICE=false`) to see what the rule costs.
//!
//! The citizens are the mock VNeID's synthetic `gen:<n>` whose legacy record holds their ID
//! number (bench.sh imports them), so a user's first login links without a page; they are
//! taken from the top of that range, which `login-link-id` reaches last.

use std::sync::Arc;

use serde_json::json;

use crate::cli::{Args, Scenario};
use crate::cpu::CpuProbe;
use crate::failure::Failure;
use crate::http::walk_login;
use crate::oidc::{Broker, Tokens};
use crate::page::parse_callback;
use crate::receiver::Receiver;
use crate::setup;
use crate::stats::Report;

use super::first_login::LINK_ID;
use super::{drive, Step};

/// The two devices of every citizen.
pub const DEVICES: [&str; 2] = ["device-a", "device-b"];

/// One citizen's phones: the app's client, who logs in, how many devices take turns (one:
/// the same device logs in again and keeps the slot), how many logins each device makes before
/// the next one's turn, and how many logins were made.
pub struct Phones {
    pub broker: Arc<Broker>,
    pub citizen: String,
    pub devices: usize,
    pub logins_per_device: usize,
    pub next: usize,
}

impl Phones {
    /// The device whose turn it is, then the next one's.
    pub fn take_turn(&mut self) -> &'static str {
        let turn = self.next / self.logins_per_device.max(1);
        let device = DEVICES[turn % self.devices.clamp(1, DEVICES.len())];
        self.next += 1;
        device
    }
}

/// A mobile client (client_secret_basic, as the driver's other clients: client authentication
/// costs the same on and off) whose back-channel logout endpoint is `receiver`.
pub async fn mobile_client(
    args: &Args,
    broker: &Broker,
    receiver: &Receiver,
) -> anyhow::Result<Arc<Broker>> {
    let extra = json!({
        "device_class": "mobile",
        "backchannel_logout_uri": receiver.uri,
    });
    Ok(Arc::new(setup::own_client(args, broker, extra).await?))
}

/// Virtual user `i`'s citizen: the top of the ID-linking range, counting down.
pub fn citizen(i: usize) -> String {
    format!("gen:{}", LINK_ID.end - 1 - i as u64)
}

pub async fn run(
    args: &Args,
    broker: &Arc<Broker>,
    probe: &Arc<CpuProbe>,
) -> anyhow::Result<Report> {
    let receiver = Receiver::start().await?;
    let client = mobile_client(args, broker, &receiver).await?;
    let users = (0..args.concurrency)
        .map(|i| Phones {
            broker: Arc::clone(&client),
            citizen: citizen(i),
            devices: usize::from(args.mobile_devices),
            logins_per_device: args.logins_per_device as usize,
            // Where in its cycle each citizen starts, spread so that the evicting logins are
            // spread over the run rather than all in its first second.
            next: i,
        })
        .collect();
    drive(
        Scenario::MobileLogin,
        args,
        probe,
        users,
        |mut phones: Phones| async move {
            let device = phones.take_turn();
            let outcome = mobile_login(&phones.broker, &phones.citizen, device)
                .await
                .map(|_| ());
            (phones, Step::Measured(outcome))
        },
    )
    .await
}

/// One login of `citizen` on `device`, from `/authorize` to tokens.
pub async fn mobile_login(broker: &Broker, citizen: &str, device: &str) -> Result<Tokens, Failure> {
    let request = broker
        .authorize_url_with(citizen, &[("device_id", device)])
        .map_err(|e| Failure::bad("login", "cannot make PKCE/state", &format!("{e:#}")))?;
    let walked = walk_login(&broker.http, request.url, &broker.redirect_uri, None).await?;
    let code = parse_callback(&walked.back, &request.state, &broker.issuer)
        .map_err(|why| Failure::bad("redirect to client", why, walked.back.as_str()))?;
    broker.redeem_code(&code, &request.pkce.verifier).await
}
