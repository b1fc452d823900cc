//! The relying party's back-channel logout endpoint and Security Event Token receiver, served by
//! the driver on loopback: HTTP/1.1, keep-alive. A logout token (a form POST) is answered 200; a
//! scenario that waits for the logout token of a session registers its `sid` first, and the
//! token's arrival completes the wait. A SET (`application/secevent+jwt`, RFC 8935) is answered
//! 202 and its arrival time recorded under its role event's key (`role_id` and event type,
//! read from the unverified payload), once per `jti`; a wait registered for that key completes
//! with the arrival time. Tokens nobody waits for are answered and dropped.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// Request heads and bodies the receiver accepts (a logout token is about 1 KB).
const MAX_REQUEST: usize = 64 * 1024;

/// One claim of a JWT's payload, unverified (the driver only needs to match sessions).
pub fn jwt_claim(token: &str, name: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims.get(name)?.as_str().map(str::to_owned)
}

/// The key of a role event's SET: its `role_id` and event type, from the unverified payload
/// (`events` holds the one event, `{type: {role_id, …}}`); `None` for any other SET.
pub fn set_key(token: &str) -> Option<(String, String)> {
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let jti = claims.get("jti")?.as_str()?.to_owned();
    let (event_type, event) = claims.get("events")?.as_object()?.iter().next()?;
    let role_id = event.get("role_id")?.as_str()?;
    Some((jti, role_key(role_id, event_type)))
}

/// How a role event is named in the receiver's log.
pub fn role_key(role_id: &str, event_type: &str) -> String {
    format!("{role_id} {event_type}")
}

/// The SETs received so far.
#[derive(Default)]
pub struct SetLog {
    /// Arrival of every SET counted (the first of each `jti`).
    pub arrivals: Vec<Instant>,
    /// First arrival per role event key.
    pub by_key: HashMap<String, Instant>,
    jtis: HashSet<String>,
    /// SETs received again (same `jti`: an attempt whose answer was lost) or without a role key.
    pub repeats: u64,
}

/// The endpoint: its URI and, per awaited `sid` or role event key, the wait to complete.
pub struct Receiver {
    pub uri: String,
    waiting: Mutex<HashMap<String, oneshot::Sender<()>>>,
    sets: Mutex<SetLog>,
    set_waiting: Mutex<HashMap<String, oneshot::Sender<Instant>>>,
}

impl Receiver {
    pub async fn start() -> anyhow::Result<Arc<Self>> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the back-channel logout receiver")?;
        let uri = format!("http://{}/backchannel-logout", listener.local_addr()?);
        let receiver = Arc::new(Self {
            uri,
            waiting: Mutex::default(),
            sets: Mutex::default(),
            set_waiting: Mutex::default(),
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

    pub fn expect(&self, sid: &str) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        if let Ok(mut waiting) = self.waiting.lock() {
            waiting.insert(sid.to_owned(), tx);
        }
        rx
    }

    pub fn forget(&self, sid: &str) {
        if let Ok(mut waiting) = self.waiting.lock() {
            waiting.remove(sid);
        }
    }

    /// Waits for the SET of a role event (`role_key`), which may arrive before the call that
    /// caused it has been answered: register first.
    pub fn expect_set(&self, key: &str) -> oneshot::Receiver<Instant> {
        let (tx, rx) = oneshot::channel();
        if let Ok(mut waiting) = self.set_waiting.lock() {
            waiting.insert(key.to_owned(), tx);
        }
        rx
    }

    pub fn forget_set(&self, key: &str) {
        if let Ok(mut waiting) = self.set_waiting.lock() {
            waiting.remove(key);
        }
    }

    /// Reads the SET log (the arrivals so far).
    pub fn with_sets<T>(&self, read: impl FnOnce(&SetLog) -> T) -> Option<T> {
        self.sets.lock().ok().map(|log| read(&log))
    }

    fn set_arrived(&self, token: &str) {
        let at = Instant::now();
        let Some((jti, key)) = set_key(token) else {
            if let Ok(mut log) = self.sets.lock() {
                log.repeats += 1;
            }
            return;
        };
        if let Ok(mut log) = self.sets.lock() {
            if !log.jtis.insert(jti) {
                log.repeats += 1;
                return;
            }
            log.arrivals.push(at);
            log.by_key.entry(key.clone()).or_insert(at);
        }
        let waiter = self
            .set_waiting
            .lock()
            .ok()
            .and_then(|mut w| w.remove(&key));
        if let Some(tx) = waiter {
            let _ = tx.send(at);
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
            let Some((head_len, body_len, is_set)) = read_head(&mut socket, &mut buffer).await
            else {
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
            let answer: &[u8] = if is_set {
                self.set_arrived(&String::from_utf8_lossy(body));
                b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n"
            } else {
                let token = url::form_urlencoded::parse(body)
                    .find(|(k, _)| k == "logout_token")
                    .map(|(_, v)| v.into_owned());
                if let Some(sid) = token.as_deref().and_then(|t| jwt_claim(t, "sid")) {
                    self.arrived(&sid);
                }
                b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nCache-Control: no-store\r\n\r\n"
            };
            buffer.drain(..head_len + body_len);
            if socket.write_all(answer).await.is_err() {
                return;
            }
        }
    }
}

/// Reads until a whole request head is buffered; its length, the body's (Content-Length), and
/// whether it carries a SET (`Content-Type: application/secevent+jwt`).
async fn read_head(socket: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<(usize, usize, bool)> {
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buffer[..end]).ok()?;
            let header = |wanted: &str| {
                head.lines()
                    .filter_map(|line| line.split_once(':'))
                    .find(|(name, _)| name.trim().eq_ignore_ascii_case(wanted))
                    .map(|(_, value)| value.trim())
            };
            let length = header("content-length")
                .and_then(|value| value.parse::<usize>().ok())
                .unwrap_or(0);
            let is_set = header("content-type")
                .is_some_and(|value| value.eq_ignore_ascii_case("application/secevent+jwt"));
            return (length <= MAX_REQUEST).then_some((end + 4, length, is_set));
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

    #[test]
    fn keys_a_role_event_set() {
        let payload = URL_SAFE_NO_PAD.encode(
            br#"{"jti":"d-1","txn":"7","events":{"urn:x:role:approved":{"role_id":"r-1","seq":2}}}"#,
        );
        let token = format!("h.{payload}.sig");
        assert_eq!(
            set_key(&token),
            Some(("d-1".into(), role_key("r-1", "urn:x:role:approved")))
        );
        let other = URL_SAFE_NO_PAD.encode(br#"{"jti":"d-2","events":{"t":{"fields":[]}}}"#);
        assert_eq!(set_key(&format!("h.{other}.sig")), None);
    }
}
