//! The broker's outbound HTTP for deliveries, hardened because the URLs come from client
//! registrations: https only (plain http to a loopback host only where the policy allows
//! loopback, i.e. development); every name resolved once by [`CheckedResolver`], which keeps
//! only the addresses `address.rs` permits, and the connection made to one of those (a literal
//! IP host is checked before the request, since it is never resolved); no proxy (it would
//! resolve the name itself); no redirects followed (a 3xx is a failed attempt, never a way into
//! another host); connect and total timeouts; and at most [`MAX_RESPONSE_BYTES`] of the answer
//! read, then dropped.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use super::address::AddressPolicy;
use super::OutboundRequest;

/// What is read of a receiver's answer before it is dropped (a route may read a refusal's
/// error code in it, nothing more).
pub const MAX_RESPONSE_BYTES: usize = 4 * 1024;

/// A receiver's answer: its status and at most [`MAX_RESPONSE_BYTES`] of its body.
#[derive(Debug, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    pub connect: Duration,
    /// The whole request: resolution, connection, TLS, sending, answer.
    pub total: Duration,
}

/// Why a request was not answered. Summaries are fixed strings: they are stored and shown to
/// operators, so they carry no URL, no token and no personal data.
#[derive(Debug, PartialEq, Eq)]
pub enum SendError {
    /// The policy forbids it; trying again changes nothing.
    Refused(&'static str),
    Timeout,
    Connect,
    Other,
}

impl SendError {
    pub fn summary(&self) -> &'static str {
        match self {
            SendError::Refused(why) => why,
            SendError::Timeout => "timeout",
            SendError::Connect => "connection failed",
            SendError::Other => "request failed",
        }
    }

    pub fn is_permanent(&self) -> bool {
        matches!(self, SendError::Refused(_))
    }
}

/// The resolver's error when a name has no permitted address, found again in reqwest's error
/// chain to tell a refusal from a network failure.
#[derive(Debug)]
struct AddressRefused;

impl std::fmt::Display for AddressRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("no address of this host is allowed")
    }
}

impl std::error::Error for AddressRefused {}

/// Resolves a name once and hands reqwest only the addresses the policy permits; reqwest
/// connects to those, so the address checked is the address used.
pub struct CheckedResolver {
    policy: Arc<AddressPolicy>,
}

impl CheckedResolver {
    pub fn new(policy: Arc<AddressPolicy>) -> Self {
        Self { policy }
    }
}

impl Resolve for CheckedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let resolved = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let permitted: Vec<SocketAddr> = resolved.filter(|a| policy.permits(a.ip())).collect();
            if permitted.is_empty() {
                return Err(Box::new(AddressRefused) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(permitted.into_iter()) as Addrs)
        })
    }
}

#[derive(Clone)]
pub struct Outbound {
    http: reqwest::Client,
    policy: Arc<AddressPolicy>,
}

impl Outbound {
    pub fn new(policy: AddressPolicy, timeouts: Timeouts) -> anyhow::Result<Self> {
        let policy = Arc::new(policy);
        let http = reqwest::Client::builder()
            .dns_resolver(Arc::new(CheckedResolver::new(policy.clone())))
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(timeouts.connect)
            .timeout(timeouts.total)
            .user_agent(concat!("broker/", env!("CARGO_PKG_VERSION"), " (dispatch)"))
            .build()
            .context("cannot build the outbound HTTP client")?;
        Ok(Self { http, policy })
    }

    /// Checks the URL before anything is sent: its scheme, and a literal IP host against the
    /// policy (names are checked when they are resolved).
    pub fn check_url(&self, raw: &str) -> Result<url::Url, SendError> {
        let url = url::Url::parse(raw).map_err(|_| SendError::Refused("malformed URL"))?;
        match url.scheme() {
            "https" => {}
            "http" if self.policy.allows_loopback() && is_loopback_host(&url) => {}
            _ => return Err(SendError::Refused("only https URLs are allowed")),
        }
        let literal = match url.host() {
            Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            Some(url::Host::Domain(_)) => None,
            None => return Err(SendError::Refused("malformed URL")),
        };
        if literal.is_some_and(|ip| !self.policy.permits(ip)) {
            return Err(SendError::Refused("address not allowed"));
        }
        Ok(url)
    }

    /// POSTs the request; the answer, or why there was none.
    pub async fn post(&self, request: &OutboundRequest) -> Result<Answer, SendError> {
        let url = self.check_url(&request.url)?;
        let mut builder = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, request.content_type);
        if let Some(accept) = request.accept {
            builder = builder.header(reqwest::header::ACCEPT, accept);
        }
        let mut response = builder
            .body(request.body.clone())
            .send()
            .await
            .map_err(|e| classify(&e))?;
        let status = response.status().as_u16();
        // Read a little of the answer (so the connection can be reused), never all of it.
        let mut body = Vec::new();
        while body.len() < MAX_RESPONSE_BYTES {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    let room = MAX_RESPONSE_BYTES - body.len();
                    body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                }
                Ok(None) | Err(_) => break,
            }
        }
        Ok(Answer { status, body })
    }
}

/// Plain http is for a loopback host only (development): `localhost` or a loopback literal.
fn is_loopback_host(url: &url::Url) -> bool {
    crate::config::is_loopback(url)
}

fn classify(error: &reqwest::Error) -> SendError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if e.downcast_ref::<AddressRefused>().is_some() {
            return SendError::Refused("address not allowed");
        }
        source = e.source();
    }
    if error.is_timeout() {
        SendError::Timeout
    } else if error.is_connect() {
        SendError::Connect
    } else {
        SendError::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outbound(allow_loopback: bool) -> Outbound {
        crate::startup::install_crypto_provider();
        Outbound::new(
            AddressPolicy::new(allow_loopback, &["10.20.0.0/16".into()]).unwrap(),
            Timeouts {
                connect: Duration::from_secs(1),
                total: Duration::from_secs(2),
            },
        )
        .unwrap()
    }

    #[test]
    fn urls_are_checked_before_sending() {
        let prod = outbound(false);
        assert!(prod.check_url("https://rp.example/logout").is_ok());
        assert!(prod.check_url("https://8.8.8.8/logout").is_ok());
        assert!(
            prod.check_url("https://10.20.1.2/logout").is_ok(),
            "allowed network"
        );
        for (url, why) in [
            ("http://rp.example/logout", "only https URLs are allowed"),
            (
                "http://127.0.0.1:8080/logout",
                "only https URLs are allowed",
            ),
            ("ftp://rp.example/x", "only https URLs are allowed"),
            ("https://127.0.0.1/logout", "address not allowed"),
            ("https://[::1]/logout", "address not allowed"),
            ("https://[::ffff:a00:1]/logout", "address not allowed"),
            ("https://169.254.169.254/latest", "address not allowed"),
            ("https://0x7f.1/logout", "address not allowed"),
            ("https://2130706433/logout", "address not allowed"),
            ("https://10.21.0.1/logout", "address not allowed"),
            ("not a url", "malformed URL"),
        ] {
            assert_eq!(
                prod.check_url(url).err(),
                Some(SendError::Refused(why)),
                "{url}"
            );
        }
        let dev = outbound(true);
        assert!(dev.check_url("http://127.0.0.1:8080/logout").is_ok());
        assert!(dev.check_url("http://localhost:8080/logout").is_ok());
        assert!(dev.check_url("https://[::1]/logout").is_ok());
        assert_eq!(
            dev.check_url("http://rp.example/logout").err(),
            Some(SendError::Refused("only https URLs are allowed")),
            "plain http only to loopback, even in development"
        );
        assert_eq!(
            dev.check_url("https://192.168.1.1/logout").err(),
            Some(SendError::Refused("address not allowed"))
        );
    }

    #[tokio::test]
    async fn names_resolving_to_refused_addresses_are_never_connected() {
        // `localhost` resolves to loopback: refused in production at resolution, so nothing
        // listening there is ever reached.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = tokio::spawn(async move {
            tokio::time::timeout(Duration::from_millis(500), listener.accept())
                .await
                .is_ok()
        });
        let request = OutboundRequest {
            url: format!("https://localhost:{port}/logout"),
            content_type: "application/x-www-form-urlencoded",
            accept: None,
            body: b"logout_token=x".to_vec(),
            success: &[200],
            refused: &[],
            explain: None,
        };
        let refused = outbound(false).post(&request).await;
        assert_eq!(refused, Err(SendError::Refused("address not allowed")));
        assert!(!accepted.await.unwrap(), "no connection was made");
    }

    #[tokio::test]
    async fn the_resolver_keeps_only_permitted_addresses() {
        let resolver = CheckedResolver::new(Arc::new(AddressPolicy::new(true, &[]).unwrap()));
        let addrs: Vec<SocketAddr> = resolver
            .resolve("localhost".parse().unwrap())
            .await
            .unwrap()
            .collect();
        assert!(!addrs.is_empty());
        assert!(addrs.iter().all(|a| a.ip().is_loopback()));
        let strict = CheckedResolver::new(Arc::new(AddressPolicy::new(false, &[]).unwrap()));
        let refused = strict.resolve("localhost".parse().unwrap()).await;
        assert!(refused.is_err());
    }
}
