//! The relying party's back-channel logout endpoint, served by the driver on loopback: HTTP/1.1,
//! keep-alive, 200 for every POST. A scenario that waits for the logout token of a session
//! registers its `sid` first; the token's arrival completes the wait. Tokens nobody waits for
//! are answered and dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

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

/// The endpoint: its URI and, per awaited `sid`, the wait to complete.
pub struct Receiver {
    pub uri: String,
    waiting: Mutex<HashMap<String, oneshot::Sender<()>>>,
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
