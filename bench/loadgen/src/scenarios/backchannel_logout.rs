//! Back-channel logout latency. Each virtual user logs in as a fresh browser (one turn), then
//! logs out at the broker with its ID token and SSO cookie (the next turn); that turn is complete
//! when the logout token of its session reaches the back-channel logout endpoint the driver
//! serves on loopback. The figure is the time from the logout request to the token's arrival
//! (issue 7's target for an eviction: p99 under 1 s). The broker must allow loopback receivers,
//! as `environment = "development"` does (bench.sh).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use reqwest::header::{HeaderValue, COOKIE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use url::Url;

use crate::cli::{Args, Scenario};
use crate::cpu::CpuProbe;
use crate::failure::Failure;
use crate::http::walk_login;
use crate::oidc::Broker;
use crate::page::parse_callback;
use crate::setup;
use crate::stats::Report;

use super::{drive, Step};

/// Request heads and bodies the receiver accepts (a logout token is about 1 KB).
const MAX_REQUEST: usize = 64 * 1024;

pub async fn run(
    args: &Args,
    broker: &Arc<Broker>,
    probe: &Arc<CpuProbe>,
) -> anyhow::Result<Report> {
    let receiver = Receiver::start().await?;
    let admin = args
        .admin_token
        .as_deref()
        .context("backchannel-logout registers its own client: --admin-token is needed")?;
    let operator = setup::operator_token(&broker.http, &args.issuer, admin).await?;
    let (client_id, secret) = setup::register_client(
        &broker.http,
        &args.issuer,
        &operator,
        &args.scope,
        Some(&receiver.uri),
    )
    .await?;
    let client = Arc::new(Broker {
        http: broker.http.clone(),
        issuer: broker.issuer.clone(),
        authorization_endpoint: broker.authorization_endpoint.clone(),
        token_endpoint: broker.token_endpoint.clone(),
        basic_auth: setup::basic_auth(&client_id, &secret)?,
        client_id,
        redirect_uri: broker.redirect_uri.clone(),
        scope: broker.scope.clone(),
        login_hint: broker.login_hint.clone(),
    });
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

/// One claim of a JWT's payload, unverified (the driver only needs to match sessions).
fn jwt_claim(token: &str, name: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims.get(name)?.as_str().map(str::to_owned)
}

/// The RP's back-channel logout endpoint: HTTP/1.1 on loopback, keep-alive, 200 for every POST;
/// each logout token's `sid` completes the operation waiting for it.
struct Receiver {
    uri: String,
    waiting: Mutex<HashMap<String, oneshot::Sender<()>>>,
}

impl Receiver {
    async fn start() -> anyhow::Result<Arc<Self>> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the back-channel logout receiver")?;
        let uri = format!("http://{}/backchannel-logout", listener.local_addr()?);
        let receiver = Arc::new(Self {
            uri,
            waiting: Mutex::default(),
        });
        let serving = Arc::clone(&receiver);
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let connection = Arc::clone(&serving);
                tokio::spawn(async move { connection.serve(socket).await });
            }
        });
        Ok(receiver)
    }

    fn expect(&self, sid: &str) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        if let Ok(mut waiting) = self.waiting.lock() {
            waiting.insert(sid.to_owned(), tx);
        }
        rx
    }

    fn forget(&self, sid: &str) {
        if let Ok(mut waiting) = self.waiting.lock() {
            waiting.remove(sid);
        }
    }

    fn arrived(&self, sid: &str) {
        let waiter = self.waiting.lock().ok().and_then(|mut w| w.remove(sid));
        if let Some(tx) = waiter {
            let _ = tx.send(());
        }
    }

    async fn serve(&self, mut socket: TcpStream) {
        let mut buffer = Vec::new();
        loop {
            let Some((head_len, body_len)) = read_head(&mut socket, &mut buffer).await else {
                return;
            };
            while buffer.len() < head_len + body_len {
                let mut chunk = [0u8; 4096];
                match socket.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                }
            }
            let body = &buffer[head_len..head_len + body_len];
            let token = url::form_urlencoded::parse(body)
                .find(|(k, _)| k == "logout_token")
                .map(|(_, v)| v.into_owned());
            if let Some(sid) = token.as_deref().and_then(|t| jwt_claim(t, "sid")) {
                self.arrived(&sid);
            }
            buffer.drain(..head_len + body_len);
            let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nCache-Control: no-store\r\n\r\n";
            if socket.write_all(answer).await.is_err() {
                return;
            }
        }
    }
}

/// Reads until a whole request head is buffered; its length and the body's (Content-Length).
async fn read_head(socket: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<(usize, usize)> {
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buffer[..end]).ok()?;
            let length = head
                .lines()
                .filter_map(|line| line.split_once(':'))
                .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
                .and_then(|(_, value)| value.trim().parse::<usize>().ok())
                .unwrap_or(0);
            return (length <= MAX_REQUEST).then_some((end + 4, length));
        }
        if buffer.len() > MAX_REQUEST {
            return None;
        }
        let mut chunk = [0u8; 4096];
        match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_claim_without_verifying() {
        let payload = URL_SAFE_NO_PAD.encode(br#"{"sid":"s-1","sub":"a"}"#);
        let token = format!("h.{payload}.sig");
        assert_eq!(jwt_claim(&token, "sid").as_deref(), Some("s-1"));
        assert_eq!(jwt_claim(&token, "nonce"), None);
        assert_eq!(jwt_claim("garbage", "sid"), None);
    }
}
