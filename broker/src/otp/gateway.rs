//! The SMS gateways: none (every send unavailable), dev (the log and `/dev/sms`) and HTTP (a
//! JSON POST to a provider, as Vietnamese brandname providers take it: eSMS, SpeedSMS, the
//! carriers' brandname APIs).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use reqwest::header::{HeaderName, HeaderValue};

use super::body::{BodyTemplate, Field, Values};
use super::dev::{DevGateway, DevOutbox};
use super::settings::{GatewayKind, SmsSettings};
use crate::accounts::phone::Phone;
use crate::clock::SharedClock;
use crate::config::Environment;
use crate::secret::{read_secret, Secret};

#[async_trait]
pub trait SmsGateway: Send + Sync {
    async fn send(&self, to: &Phone, text: &str) -> Result<(), SmsError>;
}

#[derive(Debug, thiserror::Error)]
pub enum SmsError {
    #[error("no SMS gateway is configured (sms.gateway = \"none\")")]
    NotConfigured,
    #[error("the SMS provider did not answer")]
    Transport(#[source] reqwest::Error),
    #[error("the SMS provider refused the message: HTTP {status}: {body}")]
    Refused { status: u16, body: String },
}

/// The gateway `settings` name, and the dev outbox when that is the dev gateway. Fails on
/// settings that cannot work (the dev gateway in production, a template that is not JSON).
pub fn build(
    settings: &SmsSettings,
    environment: Environment,
    clock: SharedClock,
) -> anyhow::Result<(Arc<dyn SmsGateway>, Option<DevOutbox>)> {
    settings.validate(environment)?;
    Ok(match settings.gateway {
        GatewayKind::None => (Arc::new(NoGateway), None),
        GatewayKind::Dev => {
            let outbox = DevOutbox::default();
            let gateway = DevGateway {
                outbox: outbox.clone(),
                clock,
            };
            (Arc::new(gateway), Some(outbox))
        }
        GatewayKind::Http => (Arc::new(HttpGateway::new(settings)?), None),
    })
}

pub struct NoGateway;

#[async_trait]
impl SmsGateway for NoGateway {
    async fn send(&self, _to: &Phone, _text: &str) -> Result<(), SmsError> {
        Err(SmsError::NotConfigured)
    }
}

pub struct HttpGateway {
    client: reqwest::Client,
    url: url::Url,
    auth: Option<(HeaderName, HeaderValue)>,
    body: BodyTemplate,
    secret: Option<Secret>,
    success_body_contains: Option<String>,
}

impl HttpGateway {
    pub fn new(settings: &SmsSettings) -> anyhow::Result<Self> {
        let url = settings
            .url
            .clone()
            .context("sms.gateway = \"http\" needs sms.url")?;
        let secret = read_secret(&settings.auth_value, &settings.auth_value_file)
            .context("sms.auth_value")?;
        let auth = match (&settings.auth_header, &secret) {
            (Some(name), Some(value)) => {
                let name = HeaderName::try_from(name.as_str())
                    .context("sms.auth_header is not a header name")?;
                let mut value = HeaderValue::try_from(value.expose())
                    .map_err(|_| anyhow::anyhow!("sms.auth_value is not a valid header value"))?;
                value.set_sensitive(true);
                Some((name, value))
            }
            (Some(_), None) => anyhow::bail!("sms.auth_header is set without sms.auth_value_file"),
            (None, _) => None,
        };
        let body = BodyTemplate::parse(&settings.body_template)?;
        anyhow::ensure!(
            !body.uses(Field::Secret) || secret.is_some(),
            "sms.body_template uses {{secret}} but no sms.auth_value_file is set"
        );
        body.check()?;
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(settings.timeout_secs.max(1)))
            .connect_timeout(Duration::from_secs(settings.timeout_secs.clamp(1, 3)))
            .build()
            .context("cannot build the SMS HTTP client")?;
        Ok(Self {
            client,
            url,
            auth,
            body,
            secret,
            success_body_contains: settings.success_body_contains.clone(),
        })
    }
}

#[async_trait]
impl SmsGateway for HttpGateway {
    #[tracing::instrument(level = "debug", skip_all, fields(to = %to.masked()))]
    async fn send(&self, to: &Phone, text: &str) -> Result<(), SmsError> {
        let body = self.body.render(&Values {
            phone: to.e164(),
            phone_national: &to.national(),
            message: text,
            secret: self.secret.as_ref().map(Secret::expose).unwrap_or_default(),
        });
        let mut request = self
            .client
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        if let Some((name, value)) = &self.auth {
            request = request.header(name.clone(), value.clone());
        }
        // Without the URL: some providers take their key in the query.
        let response = request
            .send()
            .await
            .map_err(|e| SmsError::Transport(e.without_url()))?;
        let status = response.status();
        let answer = response
            .bytes()
            .await
            .map_err(|e| SmsError::Transport(e.without_url()))?;
        let answer = String::from_utf8_lossy(&answer);
        let accepted = status.is_success()
            && self
                .success_body_contains
                .as_deref()
                .is_none_or(|needle| answer.contains(needle));
        if accepted {
            return Ok(());
        }
        Err(SmsError::Refused {
            status: status.as_u16(),
            body: loggable(&answer),
        })
    }
}

/// A provider's answer fit for the log: short, and with long digit runs (phone numbers it may
/// echo) masked.
fn loggable(answer: &str) -> String {
    let short: String = answer.chars().take(200).collect();
    let mut out = String::with_capacity(short.len());
    let mut digits = String::new();
    for c in short.chars().chain(std::iter::once('\0')) {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        if digits.len() >= 7 {
            out.push('…');
        } else {
            out.push_str(&digits);
        }
        digits.clear();
        if c != '\0' {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio::sync::oneshot;

    use super::*;
    use crate::accounts::phone::normalise;

    /// A one-request HTTP server: answers `status` (with any header lines after it) and `body`,
    /// and hands over what it received.
    async fn provider(status: &str, body: &str) -> (url::Url, oneshot::Receiver<String>) {
        let response = format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/send", listener.local_addr().unwrap());
        let (tx, rx) = oneshot::channel();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut received = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = socket.read(&mut buf).await.unwrap();
                received.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&received).to_string();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let length = head
                        .lines()
                        .find_map(|l| {
                            let (name, value) = l.split_once(':')?;
                            name.eq_ignore_ascii_case("content-length")
                                .then(|| value.trim().parse::<usize>().ok())?
                        })
                        .unwrap_or(0);
                    if body.len() >= length {
                        break;
                    }
                }
                if n == 0 {
                    break;
                }
            }
            socket.write_all(response.as_bytes()).await.unwrap();
            socket.shutdown().await.ok();
            tx.send(String::from_utf8_lossy(&received).to_string()).ok();
        });
        (url.parse().unwrap(), rx)
    }

    fn settings(url: url::Url) -> SmsSettings {
        // As startup does: the build's one TLS provider.
        crate::startup::install_crypto_provider();
        SmsSettings {
            gateway: GatewayKind::Http,
            url: Some(url),
            auth_header: Some("X-Api-Key".into()),
            auth_value: Some(Secret::new("s3cret")),
            body_template:
                r#"{"Phone": "{phone_national}", "Content": "{message}", "Brandname": "HUE-S"}"#
                    .into(),
            ..Default::default()
        }
    }

    const OK: (&str, &str) = ("200 OK", r#"{"CodeResult":"100"}"#);

    #[tokio::test]
    async fn http_gateway_posts_the_json_body_with_the_auth_header() {
        let (url, received) = provider(OK.0, OK.1).await;
        let gateway = HttpGateway::new(&settings(url)).unwrap();
        let to = normalise("0905123456").unwrap();
        gateway
            .send(&to, "Mã xác thực là \"123456\"")
            .await
            .unwrap();
        let request = received.await.unwrap();
        let (head, body) = request.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("POST /send HTTP/1.1"), "{head}");
        let head = head.to_ascii_lowercase();
        assert!(head.contains("\r\nx-api-key: s3cret"), "{head}");
        assert!(
            head.contains("\r\ncontent-type: application/json"),
            "{head}"
        );
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "Phone": "0905123456",
                "Content": "Mã xác thực là \"123456\"",
                "Brandname": "HUE-S",
            })
        );
    }

    #[tokio::test]
    async fn non_2xx_redirects_and_unexpected_bodies_are_failures() {
        let to = normalise("0905123456").unwrap();
        let (url, _) = provider("401 Unauthorized", "bad key for 84905123456 sorry").await;
        let e = HttpGateway::new(&settings(url))
            .unwrap()
            .send(&to, "x")
            .await
            .unwrap_err();
        match e {
            SmsError::Refused { status, body } => {
                assert_eq!(status, 401);
                assert!(!body.contains("905123456"), "{body}");
            }
            other => panic!("{other:?}"),
        }

        let (url, _) = provider("302 Found\r\nLocation: http://127.0.0.1:9/", "").await;
        let e = HttpGateway::new(&settings(url))
            .unwrap()
            .send(&to, "x")
            .await
            .unwrap_err();
        assert!(matches!(e, SmsError::Refused { status: 302, .. }), "{e:?}");

        let (url, _) = provider("200 OK", r#"{"CodeResult":"101"}"#).await;
        let mut s = settings(url);
        s.success_body_contains = Some(r#""CodeResult":"100""#.into());
        let e = HttpGateway::new(&s)
            .unwrap()
            .send(&to, "x")
            .await
            .unwrap_err();
        assert!(matches!(e, SmsError::Refused { status: 200, .. }), "{e:?}");

        let (url, _) = provider(OK.0, OK.1).await;
        let mut s = settings(url);
        s.success_body_contains = Some(r#""CodeResult":"100""#.into());
        HttpGateway::new(&s).unwrap().send(&to, "x").await.unwrap();
    }

    #[tokio::test]
    async fn a_provider_that_does_not_answer_is_a_transport_failure() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/send", listener.local_addr().unwrap());
        let mut s = settings(url.parse().unwrap());
        s.timeout_secs = 1;
        let to = normalise("0905123456").unwrap();
        let e = HttpGateway::new(&s)
            .unwrap()
            .send(&to, "x")
            .await
            .unwrap_err();
        assert!(matches!(e, SmsError::Transport(_)), "{e:?}");
        drop(listener);
    }

    #[test]
    fn settings_that_cannot_work_stop_the_start() {
        let clock: SharedClock = Arc::new(crate::clock::ManualClock::new(0));
        let url: url::Url = "https://sms.example/send".parse().unwrap();
        let dev = SmsSettings {
            gateway: GatewayKind::Dev,
            ..Default::default()
        };
        let e = build(&dev, Environment::Production, clock.clone())
            .err()
            .unwrap();
        assert!(format!("{e:#}").contains("refused in production"), "{e:#}");
        assert!(build(&dev, Environment::Development, clock.clone())
            .unwrap()
            .1
            .is_some());

        let mut bad_json = settings(url.clone());
        bad_json.body_template = r#"{"to": {phone}, "text": "{message}"}"#.into();
        let e = build(&bad_json, Environment::Production, clock.clone())
            .err()
            .unwrap();
        assert!(format!("{e:#}").contains("not JSON"), "{e:#}");

        let mut no_secret = settings(url.clone());
        no_secret.auth_value = None;
        assert!(build(&no_secret, Environment::Production, clock.clone()).is_err());

        let plain_http = settings("http://sms.example/send".parse().unwrap());
        assert!(build(&plain_http, Environment::Production, clock.clone()).is_err());
        assert!(build(&settings(url), Environment::Production, clock).is_ok());
    }

    #[test]
    fn provider_answers_are_logged_without_phone_numbers() {
        assert_eq!(loggable("error 99 for 0905123456"), "error 99 for …");
        assert_eq!(loggable(&"x".repeat(500)).len(), 200);
    }

    #[test]
    fn the_auth_value_never_shows_in_debug() {
        let s = settings("https://sms.example/send?key=abc".parse().unwrap());
        let debug = format!("{s:?}");
        assert!(
            !debug.contains("s3cret") && !debug.contains("HUE-S") && !debug.contains("key=abc"),
            "{debug}"
        );
    }
}
