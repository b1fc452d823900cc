//! Refresh-token rotation: each virtual user logs in once (not measured), then refreshes in a chain,
//! always with the newest token, since reusing an old one would revoke the whole family.

use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use tokio::task::JoinSet;

use crate::cli::{Args, Scenario};
use crate::cpu::CpuProbe;
use crate::oidc::Broker;
use crate::stats::Report;

use super::login::login_once;
use super::{drive, Step};

/// Logins made at once while the virtual users get their first refresh token.
const SETUP_PARALLELISM: usize = 8;
/// Pause after a failed re-login, so a broken broker is not hammered by a tight loop.
const RELOGIN_BACKOFF: Duration = Duration::from_millis(200);

/// A virtual user: the broker and the newest refresh token of its chain (none after a failed refresh,
/// when the chain's state is unknown and only a new login restarts it).
type User = (Arc<Broker>, Option<String>);

pub async fn run(
    args: &Args,
    broker: &Arc<Broker>,
    probe: &Arc<CpuProbe>,
) -> anyhow::Result<Report> {
    let tokens = first_tokens(broker, args.concurrency).await?;
    let users: Vec<User> = tokens
        .into_iter()
        .map(|t| (Arc::clone(broker), Some(t)))
        .collect();
    drive(
        Scenario::Refresh,
        args,
        probe,
        users,
        |(broker, token): User| async move {
            match token {
                Some(token) => match broker.refresh(&token).await {
                    Ok(next) => ((broker, Some(next)), Step::Measured(Ok(()))),
                    Err(failure) => ((broker, None), Step::Measured(Err(failure))),
                },
                None => {
                    let token = login_once(&broker).await.ok().and_then(|t| t.refresh_token);
                    if token.is_none() {
                        tokio::time::sleep(RELOGIN_BACKOFF).await;
                    }
                    ((broker, token), Step::Unmeasured)
                }
            }
        },
    )
    .await
}

/// One login per virtual user, a few at a time; users whose login fails are dropped.
async fn first_tokens(broker: &Arc<Broker>, users: usize) -> anyhow::Result<Vec<String>> {
    eprintln!("loadgen: refresh: logging in {users} virtual user(s)");
    let mut tokens = Vec::with_capacity(users);
    let mut first_error = None;
    let mut remaining = users;
    while remaining > 0 {
        let batch = remaining.min(SETUP_PARALLELISM);
        remaining -= batch;
        let mut logins = JoinSet::new();
        for _ in 0..batch {
            let broker = Arc::clone(broker);
            logins.spawn(async move { login_once(&broker).await });
        }
        while let Some(joined) = logins.join_next().await {
            match joined? {
                Ok(t) => match t.refresh_token {
                    Some(token) => tokens.push(token),
                    None => {
                        first_error.get_or_insert_with(|| "login gave no refresh_token".to_owned());
                    }
                },
                Err(failure) => {
                    first_error.get_or_insert_with(|| format!("{failure} ({})", failure.detail));
                }
            }
        }
    }
    if tokens.is_empty() {
        bail!(
            "no virtual user could log in: {}",
            first_error.unwrap_or_default()
        );
    }
    if let Some(error) = first_error {
        eprintln!(
            "loadgen: refresh: {} of {users} login(s) failed, going on with {} user(s); first: {error}",
            users - tokens.len(),
            tokens.len()
        );
    }
    Ok(tokens)
}
