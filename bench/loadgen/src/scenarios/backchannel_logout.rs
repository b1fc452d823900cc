//! Back-channel logout latency. Each virtual user logs in as a fresh browser (one turn), then
//! logs out at the broker with its ID token and SSO cookie (the next turn); that turn is complete
//! when the logout token of its session reaches the back-channel logout endpoint the driver
//! serves on loopback. The figure is the time from the logout request to the token's arrival
//! (issue 7's target for an eviction: p99 under 1 s). The broker must allow loopback receivers,
//! as `environment = "development"` does (bench.sh).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use reqwest::header::{HeaderValue, COOKIE};
use serde_json::json;
use url::Url;

use crate::cli::{Args, Scenario};
use crate::cpu::CpuProbe;
use crate::failure::Failure;
use crate::http::walk_login;
use crate::oidc::Broker;
use crate::page::parse_callback;
use crate::receiver::{jwt_claim, Receiver};
use crate::setup;
use crate::stats::Report;

use super::{drive, Step};

pub async fn run(
    args: &Args,
    broker: &Arc<Broker>,
    probe: &Arc<CpuProbe>,
) -> anyhow::Result<Report> {
    let receiver = Receiver::start().await?;
    let client = Arc::new(
        setup::own_client(
            args,
            broker,
            json!({ "backchannel_logout_uri": receiver.uri }),
        )
        .await
        .context("backchannel-logout registers its own client")?,
    );
    let end_session = Url::parse(&format!(
        "{}/end_session",
        broker.issuer.trim_end_matches('/')
    ))
    .context("end_session URL")?;
    let wait = Duration::from_secs(args.request_timeout);
    let users = (0..args.concurrency)
        .map(|_| User {
            broker: Arc::clone(&client),
            receiver: Arc::clone(&receiver),
            end_session: end_session.clone(),
            wait,
            session: None,
        })
        .collect();
    drive(
        Scenario::BackchannelLogout,
        args,
        probe,
        users,
        |mut user: User| async move {
            match user.session.take() {
                None => match login(&user.broker).await {
                    Ok(session) => {
                        user.session = Some(session);
                        (user, Step::Unmeasured)
                    }
                    Err(failure) => (user, Step::Measured(Err(failure))),
                },
                Some(session) => {
                    let outcome = logout(&user, session).await;
                    (user, Step::Measured(outcome))
                }
            }
        },
    )
    .await
}

struct User {
    broker: Arc<Broker>,
    receiver: Arc<Receiver>,
    end_session: Url,
    wait: Duration,
    session: Option<Session>,
}

struct Session {
    id_token: String,
    sid: String,
    cookie: HeaderValue,
}

async fn login(broker: &Broker) -> Result<Session, Failure> {
    let request = broker
        .authorize_url()
        .map_err(|e| Failure::bad("login", "cannot make PKCE/state", &format!("{e:#}")))?;
    let walked = walk_login(&broker.http, request.url, &broker.redirect_uri, None).await?;
    let code = parse_callback(&walked.back, &request.state, &broker.issuer)
        .map_err(|why| Failure::bad("redirect to client", why, walked.back.as_str()))?;
    let tokens = broker.redeem_code(&code, &request.pkce.verifier).await?;
    let sid = jwt_claim(&tokens.id_token, "sid")
        .ok_or_else(|| Failure::bad("token authorization_code", "ID token without sid", ""))?;
    let cookie = walked
        .cookie
        .ok_or_else(|| Failure::bad("login", "no broker session cookie", ""))?;
    Ok(Session {
        id_token: tokens.id_token,
        sid,
        cookie,
    })
}

/// RP-initiated logout of the session, then the wait for its logout token.
async fn logout(user: &User, session: Session) -> Result<(), Failure> {
    const STEP: &str = "GET /end_session";
    let arrived = user.receiver.expect(&session.sid);
    let mut url = user.end_session.clone();
    url.query_pairs_mut()
        .append_pair("id_token_hint", &session.id_token);
    let response = user
        .broker
        .http
        .get(url)
        .header(COOKIE, session.cookie)
        .send()
        .await
        .map_err(|e| Failure::transport(STEP, &e))?;
    let status = response.status().as_u16();
    let body = response
        .text()
        .await
        .map_err(|e| Failure::transport(STEP, &e))?;
    if status != 200 {
        return Err(Failure::status(STEP, status, &body));
    }
    match tokio::time::timeout(user.wait, arrived).await {
        Ok(Ok(())) => Ok(()),
        _ => {
            user.receiver.forget(&session.sid);
            Err(Failure::bad("logout token", "did not arrive in time", ""))
        }
    }
}
