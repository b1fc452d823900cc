//! A small relying party for back-channel logout: an actix server on 127.0.0.1 that receives
//! logout tokens at `/bcl/{name}` (one path per registered client), answers with the statuses a
//! test queues (200 once the queue is empty), and verifies tokens against the broker's JWKS
//! with `jsonwebtoken`, as an RP would.

use std::collections::{HashMap, VecDeque};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use serde_json::Value;

use super::TestApp;

#[derive(Clone, Debug)]
pub struct Received {
    /// The `{name}` of the path it came to.
    pub name: String,
    pub content_type: String,
    /// Every form field, so a test can see nothing else was sent.
    pub fields: Vec<(String, String)>,
    pub at: Instant,
}

impl Received {
    pub fn logout_token(&self) -> &str {
        self.fields
            .iter()
            .find(|(k, _)| k == "logout_token")
            .map(|(_, v)| v.as_str())
            .expect("a logout_token field")
    }
}

#[derive(Default)]
struct State {
    received: Mutex<Vec<Received>>,
    /// Statuses to answer per name, in order.
    statuses: Mutex<HashMap<String, VecDeque<u16>>>,
}

pub struct LogoutRp {
    pub base: String,
    state: Arc<State>,
}

async fn receive(
    state: web::Data<Arc<State>>,
    req: HttpRequest,
    name: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let status = state
        .statuses
        .lock()
        .unwrap()
        .get_mut(name.as_str())
        .and_then(VecDeque::pop_front)
        .unwrap_or(200);
    state.received.lock().unwrap().push(Received {
        name: name.into_inner(),
        content_type,
        fields,
        at: Instant::now(),
    });
    let mut response = HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap());
    if (300..400).contains(&status) {
        // A redirect to another receiver of this RP, which must never be followed.
        response.insert_header(("Location", "/bcl/redirected"));
    }
    response
        .insert_header(("Cache-Control", "no-store"))
        .finish()
}

impl LogoutRp {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind RP");
        let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let state = Arc::new(State::default());
        let data = web::Data::new(state.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .route("/bcl/{name}", web::post().to(receive))
        })
        .workers(1)
        .listen(listener)
        .expect("listen")
        .run();
        tokio::spawn(server);
        Self { base, state }
    }

    /// The back-channel logout URI of the client called `name`.
    pub fn uri(&self, name: &str) -> String {
        format!("{}/bcl/{name}", self.base)
    }

    /// The next answers at `name`'s URI (then 200).
    pub fn answer(&self, name: &str, statuses: &[u16]) {
        self.state
            .statuses
            .lock()
            .unwrap()
            .entry(name.to_string())
            .or_default()
            .extend(statuses);
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    pub fn received_by(&self, name: &str) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.name == name)
            .collect()
    }

    /// Waits until `n` logout tokens have arrived in all (panics after `within`).
    pub async fn wait_for(&self, n: usize, within: Duration) -> Vec<Received> {
        let deadline = Instant::now() + within;
        loop {
            let received = self.received();
            if received.len() >= n {
                return received;
            }
            assert!(
                Instant::now() < deadline,
                "expected {n} logout tokens, got {}: {:?}",
                received.len(),
                received.iter().map(|r| &r.name).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Verifies a logout token as an RP must (Back-Channel Logout 1.0 §2.6): signature by a key of
/// the broker's JWKS with the key's algorithm, `typ: logout+jwt`, `iss`, `aud` = the client,
/// `iat`, `exp` in the future, `jti`, `sub` or `sid`, the back-channel logout event with an
/// object value, and no `nonce`. Returns the claims.
pub async fn verify_logout_token(app: &TestApp, token: &str, client_id: &str) -> Value {
    verify_logout_token_of(&app.http, &app.url, token, client_id).await
}

/// `verify_logout_token` for a broker known only by its issuer (and JWKS at `{issuer}/jwks`).
pub async fn verify_logout_token_of(
    http: &reqwest::Client,
    issuer: &str,
    token: &str,
    client_id: &str,
) -> Value {
    use jsonwebtoken::jwk::JwkSet;
    use jsonwebtoken::{decode, decode_header, DecodingKey, Validation};

    let header = decode_header(token).expect("a JWS header");
    assert_eq!(header.typ.as_deref(), Some("logout+jwt"), "§2.4 typ");
    let jwks: JwkSet = http
        .get(format!("{issuer}/jwks"))
        .send()
        .await
        .expect("jwks")
        .json()
        .await
        .expect("jwks json");
    let kid = header.kid.clone().expect("a kid");
    let jwk = jwks.find(&kid).expect("the signing key is published");
    let key = DecodingKey::from_jwk(jwk).expect("decoding key");
    let mut validation = Validation::new(header.alg);
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[client_id]);
    validation.set_required_spec_claims(&["iss", "aud", "exp", "iat", "jti"]);
    let claims = decode::<Value>(token, &key, &validation)
        .expect("a valid logout token")
        .claims;
    assert!(claims["jti"].as_str().is_some_and(|j| j.len() >= 16));
    assert!(claims["iat"].is_i64());
    let lifetime = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    assert!((1..=300).contains(&lifetime), "short-lived: {lifetime}");
    assert!(claims.get("sub").is_some() || claims.get("sid").is_some());
    let event = &claims["events"]["http://schemas.openid.net/event/backchannel-logout"];
    assert_eq!(event, &serde_json::json!({}), "§2.4 events claim");
    assert!(claims.get("nonce").is_none(), "§2.4: never a nonce");
    claims
}

/// A receiver that misbehaves at the TCP level: it accepts and then either never answers
/// (`Hang`) or answers 200 with a body that never ends (`Endless`). Returns its base URL.
pub enum Misbehaviour {
    Hang,
    Endless,
}

pub async fn misbehaving_rp(how: Misbehaviour) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let endless = matches!(how, Misbehaviour::Endless);
            tokio::spawn(async move {
                let mut buffer = [0u8; 4096];
                let _ = socket.read(&mut buffer).await;
                if !endless {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    return;
                }
                let head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
                if socket.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = format!("{:x}\r\n{}\r\n", 1024, "x".repeat(1024));
                while socket.write_all(chunk.as_bytes()).await.is_ok() {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            });
        }
    });
    base
}
