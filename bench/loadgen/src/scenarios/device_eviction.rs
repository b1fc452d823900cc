//! Eviction latency (issue 7: p99 under 1 s). Each virtual user is one citizen with two
//! devices: a login on one device, then a login on the other, whose code exchange evicts the
//! first. The measured turn starts once the driver has read that token response and ends when
//! the logout token of the evicted device's session reaches the driver's receiver. The logins
//! themselves are not measured. The rule must be on (a logout token never comes otherwise),
//! and the broker must allow loopback receivers, as `environment = "development"` does.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::cli::{Args, Scenario};
use crate::cpu::CpuProbe;
use crate::failure::Failure;
use crate::oidc::Tokens;
use crate::receiver::{jwt_claim, Receiver};
use crate::stats::Report;

use super::mobile_login::{citizen, mobile_client, mobile_login, Phones, DEVICES};
use super::{drive, Step};

pub async fn run(
    args: &Args,
    broker: &Arc<crate::oidc::Broker>,
    probe: &Arc<CpuProbe>,
) -> anyhow::Result<Report> {
    let receiver = Receiver::start().await?;
    let client = mobile_client(args, broker, &receiver).await?;
    let wait = Duration::from_secs(args.request_timeout);
    let users = (0..args.concurrency)
        .map(|i| User {
            phones: Phones {
                broker: Arc::clone(&client),
                citizen: citizen(i),
                devices: DEVICES.len(),
                logins_per_device: 1,
                next: 0,
            },
            receiver: Arc::clone(&receiver),
            wait,
            state: State::Out,
        })
        .collect();
    drive(
        Scenario::DeviceEviction,
        args,
        probe,
        users,
        |mut user: User| async move {
            let step = user.turn().await;
            (user, step)
        },
    )
    .await
}

struct User {
    phones: Phones,
    receiver: Arc<Receiver>,
    wait: Duration,
    state: State,
}

enum State {
    /// No device of this user is known to hold the slot.
    Out,
    /// A device holds the slot with this session.
    Holding { sid: String },
    /// The other device just took the slot: the evicted session's logout token is awaited.
    Evicting {
        evicted: String,
        arrived: oneshot::Receiver<()>,
        sid: String,
    },
}

impl User {
    async fn turn(&mut self) -> Step {
        match std::mem::replace(&mut self.state, State::Out) {
            State::Out => match self.login().await {
                Ok(sid) => {
                    self.state = State::Holding { sid };
                    Step::Unmeasured
                }
                Err(failure) => Step::Measured(Err(failure)),
            },
            State::Holding { sid: evicted } => {
                // Awaited before the token request: the token may arrive before its response.
                let arrived = self.receiver.expect(&evicted);
                match self.login().await {
                    Ok(sid) => {
                        self.state = State::Evicting {
                            evicted,
                            arrived,
                            sid,
                        };
                        Step::Unmeasured
                    }
                    Err(failure) => {
                        self.receiver.forget(&evicted);
                        Step::Measured(Err(failure))
                    }
                }
            }
            State::Evicting {
                evicted,
                arrived,
                sid,
            } => {
                self.state = State::Holding { sid };
                match tokio::time::timeout(self.wait, arrived).await {
                    Ok(Ok(())) => Step::Measured(Ok(())),
                    _ => {
                        self.receiver.forget(&evicted);
                        Step::Measured(Err(Failure::bad(
                            "logout token",
                            "did not arrive in time",
                            "",
                        )))
                    }
                }
            }
        }
    }

    /// A login on the device whose turn it is; the session id of its tokens.
    async fn login(&mut self) -> Result<String, Failure> {
        let device = self.phones.take_turn();
        let tokens: Tokens =
            mobile_login(&self.phones.broker, &self.phones.citizen, device).await?;
        jwt_claim(&tokens.id_token, "sid")
            .ok_or_else(|| Failure::bad("token authorization_code", "ID token without sid", ""))
    }
}
