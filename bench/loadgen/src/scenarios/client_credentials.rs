//! Machine-to-machine tokens: every virtual user asks the token endpoint for a client_credentials token.

use std::sync::Arc;

use crate::cli::{Args, Scenario};
use crate::cpu::CpuProbe;
use crate::oidc::Broker;
use crate::stats::Report;

use super::{drive, Step};

pub async fn run(
    args: &Args,
    broker: &Arc<Broker>,
    probe: &Arc<CpuProbe>,
) -> anyhow::Result<Report> {
    let users = vec![Arc::clone(broker); args.concurrency];
    drive(
        Scenario::ClientCredentials,
        args,
        probe,
        users,
        |broker: Arc<Broker>| async move {
            let outcome = broker.client_credentials().await;
            (broker, Step::Measured(outcome))
        },
    )
    .await
}
