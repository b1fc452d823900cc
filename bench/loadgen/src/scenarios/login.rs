//! Full federated logins, each as a fresh browser: /authorize → mock VNeID → /callback/vneid → the
//! relying party's redirect → code exchange with PKCE. One operation is one complete login.

use std::sync::Arc;

use crate::cli::{Args, Scenario};
use crate::cpu::CpuProbe;
use crate::failure::Failure;
use crate::http::walk_login;
use crate::oidc::{Broker, Tokens};
use crate::page::parse_callback;
use crate::stats::Report;

use super::{drive, Step};

pub async fn run(
    args: &Args,
    broker: &Arc<Broker>,
    probe: &Arc<CpuProbe>,
) -> anyhow::Result<Report> {
    let users = vec![Arc::clone(broker); args.concurrency];
    drive(
        Scenario::Login,
        args,
        probe,
        users,
        |broker: Arc<Broker>| async move {
            let outcome = login_once(&broker).await.map(|_| ());
            (broker, Step::Measured(outcome))
        },
    )
    .await
}

/// One login from start to tokens; it is complete only once the code exchange succeeds.
pub async fn login_once(broker: &Broker) -> Result<Tokens, Failure> {
    let request = broker
        .authorize_url()
        .map_err(|e| Failure::bad("login", "cannot make PKCE/state", &format!("{e:#}")))?;
    let walked = walk_login(&broker.http, request.url, &broker.redirect_uri, None).await?;
    let back = walked.back;
    let code = parse_callback(&back, &request.state, &broker.issuer)
        .map_err(|why| Failure::bad("redirect to client", why, back.as_str()))?;
    broker.redeem_code(&code, &request.pkce.verifier).await
}
