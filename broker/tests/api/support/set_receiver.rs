//! A small RFC 8935 push receiver: an actix server on 127.0.0.1 that takes Security Event
//! Tokens at `/set/{name}` (one path per subscribed client), answers what a test queues (202
//! once the queue is empty; a 400 carries an RFC 8935 §2.4 error body), optionally after a
//! delay, and verifies SETs against the broker's JWKS with `jsonwebtoken`, as a subscriber would.

use std::collections::{HashMap, VecDeque};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use serde_json::Value;

use super::TestApp;

#[derive(Clone, Debug)]
pub struct ReceivedSet {
    pub name: String,
    pub content_type: String,
    pub accept: String,
    pub token: String,
    /// What the receiver answered.
    pub status: u16,
}

impl ReceivedSet {
    /// The claims, unverified (for ordering checks; `verify_set` verifies).
    pub fn claims(&self) -> Value {
        super::jwt_parts(&self.token).1
    }
}

#[derive(Default)]
struct State {
    received: Mutex<Vec<ReceivedSet>>,
    statuses: Mutex<HashMap<String, VecDeque<u16>>>,
    delays: Mutex<HashMap<String, Duration>>,
    /// Requests taken but not answered yet.
    in_flight: AtomicUsize,
}

/// Counts a request as in flight until its answer is sent or the sender goes away (actix then
/// drops the handler).
struct InFlight<'a>(&'a AtomicUsize);

impl<'a> InFlight<'a> {
    fn enter(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Self(count)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

pub struct SetReceiver {
    pub base: String,
    state: Arc<State>,
}

fn header(req: &HttpRequest, name: &str) -> String {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

async fn receive(
    state: web::Data<Arc<State>>,
    req: HttpRequest,
    name: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let _in_flight = InFlight::enter(&state.in_flight);
    let status = state
        .statuses
        .lock()
        .unwrap()
        .get_mut(name.as_str())
        .and_then(VecDeque::pop_front)
        .unwrap_or(202);
    state.received.lock().unwrap().push(ReceivedSet {
        name: name.as_str().to_string(),
        content_type: header(&req, "content-type"),
        accept: header(&req, "accept"),
        token: String::from_utf8_lossy(&body).into_owned(),
        status,
    });
    // Recorded as received with its answer before the wait: a sender killed meanwhile never
    // hears the answer, and must send the same SET again.
    let delay = state.delays.lock().unwrap().get(name.as_str()).copied();
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    let mut response = HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap());
    if status == 400 {
        return response.json(serde_json::json!({
            "err": "invalid_key",
            "description": "the key used to sign the SET is not trusted"
        }));
    }
    response.finish()
}

impl SetReceiver {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind receiver");
        let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let state = Arc::new(State::default());
        let data = web::Data::new(state.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .route("/set/{name}", web::post().to(receive))
        })
        .workers(1)
        .listen(listener)
        .expect("listen")
        .run();
        tokio::spawn(server);
        Self { base, state }
    }

    /// The `event_delivery_uri` of the client called `name`.
    pub fn uri(&self, name: &str) -> String {
        format!("{}/set/{name}", self.base)
    }

    /// The next answers at `name`'s URI (then 202).
    pub fn answer(&self, name: &str, statuses: &[u16]) {
        self.state
            .statuses
            .lock()
            .unwrap()
            .entry(name.to_string())
            .or_default()
            .extend(statuses);
    }

    /// Drops the answers still queued for `name`'s URI (it answers 202 again).
    pub fn forget_answers(&self, name: &str) {
        self.state.statuses.lock().unwrap().remove(name);
    }

    /// Every later answer at `name`'s URI comes after `delay`.
    pub fn slow(&self, name: &str, delay: Duration) {
        self.state
            .delays
            .lock()
            .unwrap()
            .insert(name.to_string(), delay);
    }

    /// Requests taken and not answered yet.
    pub fn in_flight(&self) -> usize {
        self.state.in_flight.load(Ordering::SeqCst)
    }

    pub fn received_by(&self, name: &str) -> Vec<ReceivedSet> {
        self.state
            .received
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.name == name)
            .cloned()
            .collect()
    }

    /// Waits until `name` has received `n` SETs (panics after `within`).
    pub async fn wait_for(&self, name: &str, n: usize, within: Duration) -> Vec<ReceivedSet> {
        let deadline = Instant::now() + within;
        loop {
            let received = self.received_by(name);
            if received.len() >= n {
                return received;
            }
            assert!(
                Instant::now() < deadline,
                "expected {n} SETs at {name}, got {}",
                received.len()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Verifies a SET as a subscriber must (RFC 8417 §2, RFC 8935 §2): signature by a key of the
/// broker's JWKS with the key's algorithm, `typ: secevent+jwt`, `iss`, `aud` = the client,
/// `iat`, `jti`, `txn`, `toe`, an opaque `sub_id`, exactly one event whose value is an object
/// with `seq`; no `exp`-less rejection (SETs do not expire). Returns the claims.
pub async fn verify_set(app: &TestApp, token: &str, client_id: &str) -> Value {
    use jsonwebtoken::jwk::JwkSet;
    use jsonwebtoken::{decode, decode_header, DecodingKey, Validation};

    let header = decode_header(token).expect("a JWS header");
    assert_eq!(header.typ.as_deref(), Some("secevent+jwt"), "RFC 8417 §2.3");
    let jwks: JwkSet = app
        .http
        .get(app.endpoint("/jwks"))
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
    validation.set_issuer(&[&app.url]);
    validation.set_audience(&[client_id]);
    validation.validate_exp = false;
    validation.set_required_spec_claims(&["iss", "aud", "iat"]);
    let claims = decode::<Value>(token, &key, &validation)
        .expect("a valid SET")
        .claims;
    assert!(claims["jti"].as_str().is_some_and(|j| j.len() >= 16));
    assert!(claims["txn"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(claims["toe"].is_i64());
    assert_eq!(claims["sub_id"]["format"], "opaque");
    assert!(claims["sub_id"]["id"].as_str().is_some());
    let events = claims["events"].as_object().expect("events");
    assert_eq!(events.len(), 1, "one event per SET");
    let (_, event) = events.iter().next().unwrap();
    assert!(event["seq"].is_i64(), "the subject's sequence number");
    assert!(claims.get("nonce").is_none() && claims.get("exp").is_none());
    claims
}

/// The SET's one event: its type and value.
pub fn event_of(claims: &Value) -> (String, Value) {
    let (kind, value) = claims["events"]
        .as_object()
        .and_then(|e| e.iter().next())
        .expect("an event");
    (kind.clone(), value.clone())
}
