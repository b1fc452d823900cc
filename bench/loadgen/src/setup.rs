//! Before any load: find the broker's endpoints by discovery and obtain the client the driver acts as
//! (registered through the admin API, or given on the command line).

use anyhow::{bail, Context};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use reqwest::header::HeaderValue;
use serde_json::{json, Value};
use url::Url;

use crate::cli::{ensure_loopback, Args};
use crate::oidc::{Broker, REDIRECT_URI};

pub async fn connect(http: reqwest::Client, args: &Args) -> anyhow::Result<Broker> {
    let discovery = discover(&http, &args.issuer).await?;
    let issuer = string_field(&discovery, "issuer")?;
    let authorization_endpoint = endpoint(&discovery, "authorization_endpoint")?;
    let token_endpoint = endpoint(&discovery, "token_endpoint")?;
    let (client_id, client_secret) = match (&args.client_id, &args.client_secret) {
        (Some(id), Some(secret)) => (id.clone(), secret.clone()),
        _ => {
            let token = args
                .admin_token
                .as_deref()
                .context("no admin token to register a client")?;
            let operator = operator_token(&http, &args.issuer, token).await?;
            let extra = json!({ "id_token_signed_response_alg": args.id_token_alg });
            register_client(&http, &args.issuer, &operator, &args.scope, &extra).await?
        }
    };
    Ok(Broker {
        http,
        issuer,
        authorization_endpoint,
        token_endpoint,
        basic_auth: basic_auth(&client_id, &client_secret)?,
        client_id,
        redirect_uri: Url::parse(REDIRECT_URI).context("redirect URI")?,
        scope: args.scope.clone(),
        login_hint: args.login_hint.clone(),
    })
}

/// `{issuer}/path`, keeping any path the issuer has.
fn issuer_url(issuer: &Url, path: &str) -> anyhow::Result<Url> {
    let joined = format!("{}/{}", issuer.as_str().trim_end_matches('/'), path);
    Url::parse(&joined).with_context(|| format!("building {joined}"))
}

async fn discover(http: &reqwest::Client, issuer: &Url) -> anyhow::Result<Value> {
    let url = issuer_url(issuer, ".well-known/openid-configuration")?;
    let response = http
        .get(url.clone())
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    let status = response.status();
    let body = response
        .text()
        .await
        .with_context(|| format!("reading {url}"))?;
    if !status.is_success() {
        bail!("GET {url}: HTTP {status}: {body}");
    }
    serde_json::from_str(&body).with_context(|| format!("{url} is not JSON"))
}

fn string_field(doc: &Value, field: &str) -> anyhow::Result<String> {
    doc.get(field)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .with_context(|| format!("discovery has no {field}"))
}

fn endpoint(doc: &Value, field: &str) -> anyhow::Result<Url> {
    let url =
        Url::parse(&string_field(doc, field)?).with_context(|| format!("discovery {field}"))?;
    ensure_loopback(&url).with_context(|| format!("discovery {field}"))?;
    Ok(url)
}

/// A fresh operator's token: the broker's bootstrap token may only create operators, and an
/// operator's token may too, so either kind of admin token works here.
pub async fn operator_token(
    http: &reqwest::Client,
    issuer: &Url,
    admin_token: &str,
) -> anyhow::Result<String> {
    let url = issuer_url(issuer, "admin/operators")?;
    let name = format!(
        "loadgen-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    );
    let response = http
        .post(url.clone())
        .bearer_auth(admin_token)
        .json(&json!({ "name": name }))
        .send()
        .await
        .with_context(|| format!("POST {url}"))?;
    let status = response.status();
    let body = response
        .text()
        .await
        .with_context(|| format!("reading {url}"))?;
    if !status.is_success() {
        bail!("POST {url}: HTTP {status}: {body}");
    }
    let doc: Value =
        serde_json::from_str(&body).with_context(|| format!("{url} answered no JSON"))?;
    doc.get("token")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .with_context(|| format!("POST {url}: response lacks the token"))
}

/// Registers the load-test client; `extra` (a JSON object) adds or replaces metadata.
pub async fn register_client(
    http: &reqwest::Client,
    issuer: &Url,
    admin_token: &str,
    scope: &str,
    extra: &Value,
) -> anyhow::Result<(String, String)> {
    let url = issuer_url(issuer, "admin/clients")?;
    let mut metadata = json!({
        "client_name": "loadgen",
        "redirect_uris": [REDIRECT_URI],
        "grant_types": ["authorization_code", "refresh_token", "client_credentials"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "client_secret_basic",
        "scope": scope,
    });
    if let (Some(metadata), Some(extra)) = (metadata.as_object_mut(), extra.as_object()) {
        metadata.extend(extra.clone());
    }
    let response = http
        .post(url.clone())
        .bearer_auth(admin_token)
        .json(&metadata)
        .send()
        .await
        .with_context(|| format!("POST {url}"))?;
    let status = response.status();
    let body = response
        .text()
        .await
        .with_context(|| format!("reading {url}"))?;
    if !status.is_success() {
        bail!("POST {url}: HTTP {status}: {body}");
    }
    let doc: Value =
        serde_json::from_str(&body).with_context(|| format!("{url} answered no JSON"))?;
    let id = doc.get("client_id").and_then(Value::as_str);
    let secret = doc.get("client_secret").and_then(Value::as_str);
    match (id, secret) {
        (Some(id), Some(secret)) => Ok((id.to_owned(), secret.to_owned())),
        _ => bail!("POST {url}: response lacks client_id or client_secret"),
    }
}

/// A client of the scenario's own (`extra` metadata, e.g. a back-channel logout URI or
/// `device_class`), registered through a fresh operator, on the same broker as `broker`.
pub async fn own_client(args: &Args, broker: &Broker, extra: Value) -> anyhow::Result<Broker> {
    let admin = args
        .admin_token
        .as_deref()
        .context("--admin-token is needed to register the scenario's client")?;
    let operator = operator_token(&broker.http, &args.issuer, admin).await?;
    let (client_id, secret) =
        register_client(&broker.http, &args.issuer, &operator, &args.scope, &extra).await?;
    Ok(Broker {
        http: broker.http.clone(),
        issuer: broker.issuer.clone(),
        authorization_endpoint: broker.authorization_endpoint.clone(),
        token_endpoint: broker.token_endpoint.clone(),
        basic_auth: basic_auth(&client_id, &secret)?,
        client_id,
        redirect_uri: broker.redirect_uri.clone(),
        scope: broker.scope.clone(),
        login_hint: broker.login_hint.clone(),
    })
}

/// RFC 6749 §2.3.1: id and secret are form-urlencoded before they are joined and base64-encoded.
pub fn basic_auth(id: &str, secret: &str) -> anyhow::Result<HeaderValue> {
    let encode = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let credentials = STANDARD.encode(format!("{}:{}", encode(id), encode(secret)));
    let mut value = HeaderValue::from_str(&format!("Basic {credentials}"))
        .context("client credentials header")?;
    value.set_sensitive(true);
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issuer_paths_are_appended() {
        let plain = Url::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(
            issuer_url(&plain, "admin/clients").unwrap().as_str(),
            "http://127.0.0.1:8080/admin/clients"
        );
        let pathed = Url::parse("http://127.0.0.1:8080/realm/").unwrap();
        assert_eq!(
            issuer_url(&pathed, ".well-known/openid-configuration")
                .unwrap()
                .as_str(),
            "http://127.0.0.1:8080/realm/.well-known/openid-configuration"
        );
    }

    #[test]
    fn basic_auth_encodes_per_rfc6749() {
        // "a b:c+d" -> "a+b:c%2Bd"
        let v = basic_auth("a b", "c+d").unwrap();
        assert_eq!(
            v.to_str().unwrap(),
            format!("Basic {}", STANDARD.encode("a+b:c%2Bd"))
        );
    }
}
