//! The relying-party side of the broker's protocol surface: the token endpoint for each grant, the
//! `/authorize` URL of a login, and what a token response must hold to count as a success.

use reqwest::header::{HeaderValue, AUTHORIZATION};
use serde_json::Value;
use url::Url;

use crate::failure::Failure;
use crate::pkce::Pkce;

/// The relying-party redirect URI registered for the load-test client. Port 9 (discard) on loopback:
/// the driver reads the code from the redirect and never fetches it.
pub const REDIRECT_URI: &str = "http://127.0.0.1:9/cb";

/// A broker found by discovery, with the client the driver acts as.
#[derive(Clone)]
pub struct Broker {
    pub http: reqwest::Client,
    /// The issuer as discovery states it; the `iss` of the final redirect must equal it.
    pub issuer: String,
    pub authorization_endpoint: Url,
    pub token_endpoint: Url,
    pub client_id: String,
    /// `Authorization: Basic …` for client_secret_basic, built once.
    pub basic_auth: HeaderValue,
    pub redirect_uri: Url,
    pub scope: String,
    pub login_hint: String,
}

/// What a successful code or refresh exchange yields that the driver needs later.
pub struct Tokens {
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub id_token: String,
}

/// Per-login secrets the relying party keeps until the code comes back.
pub struct LoginRequest {
    pub url: Url,
    pub state: String,
    pub pkce: Pkce,
}

impl Broker {
    pub fn authorize_url(&self) -> anyhow::Result<LoginRequest> {
        self.authorize_url_for(&self.login_hint)
    }

    /// A login request whose `login_hint` names the citizen the mock VNeID logs in.
    pub fn authorize_url_for(&self, login_hint: &str) -> anyhow::Result<LoginRequest> {
        self.authorize_url_with(login_hint, &[])
    }

    /// `authorize_url_for` with more parameters (a mobile app's `device_id`).
    pub fn authorize_url_with(
        &self,
        login_hint: &str,
        extra: &[(&str, &str)],
    ) -> anyhow::Result<LoginRequest> {
        let pkce = Pkce::generate()?;
        let state = crate::pkce::random_token()?;
        let nonce = crate::pkce::random_token()?;
        let mut url = self.authorization_endpoint.clone();
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.client_id)
            .append_pair("redirect_uri", self.redirect_uri.as_str())
            .append_pair("scope", &self.scope)
            .append_pair("state", &state)
            .append_pair("nonce", &nonce)
            .append_pair("code_challenge", &pkce.challenge)
            .append_pair("code_challenge_method", "S256")
            .append_pair("login_hint", login_hint)
            .extend_pairs(extra);
        Ok(LoginRequest { url, state, pkce })
    }

    pub async fn client_credentials(&self) -> Result<(), Failure> {
        let body = self
            .token_request(
                "token client_credentials",
                &[("grant_type", "client_credentials")],
            )
            .await?;
        require_access_token("token client_credentials", &body)
    }

    /// Redeems a refresh token and returns its successor, which rotation requires to differ.
    pub async fn refresh(&self, refresh_token: &str) -> Result<String, Failure> {
        const STEP: &str = "token refresh_token";
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ];
        let body = self.token_request(STEP, &form).await?;
        require_access_token(STEP, &body)?;
        match body.get("refresh_token").and_then(Value::as_str) {
            Some(next) if next == refresh_token => {
                Err(Failure::bad(STEP, "refresh_token not rotated", ""))
            }
            Some(next) if !next.is_empty() => Ok(next.to_owned()),
            _ => Err(Failure::bad(STEP, "no refresh_token", &body.to_string())),
        }
    }

    pub async fn redeem_code(&self, code: &str, verifier: &str) -> Result<Tokens, Failure> {
        const STEP: &str = "token authorization_code";
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", self.redirect_uri.as_str()),
            ("code_verifier", verifier),
        ];
        let body = self.token_request(STEP, &form).await?;
        require_access_token(STEP, &body)?;
        let id_token = body
            .get("id_token")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if id_token.split('.').count() != 3 {
            return Err(Failure::bad(STEP, "no id_token (JWT)", &body.to_string()));
        }
        let refresh_token = body
            .get("refresh_token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .map(str::to_owned);
        let access_token = body
            .get("access_token")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        Ok(Tokens {
            access_token,
            refresh_token,
            id_token: id_token.to_owned(),
        })
    }

    async fn token_request(&self, step: &str, form: &[(&str, &str)]) -> Result<Value, Failure> {
        let response = self
            .http
            .post(self.token_endpoint.clone())
            .header(AUTHORIZATION, self.basic_auth.clone())
            .form(form)
            .send()
            .await
            .map_err(|e| Failure::transport(step, &e))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| Failure::transport(step, &e))?;
        if !status.is_success() {
            return Err(Failure::status(
                step,
                status.as_u16(),
                &String::from_utf8_lossy(&bytes),
            ));
        }
        serde_json::from_slice(&bytes)
            .map_err(|_| Failure::bad(step, "body is not JSON", &String::from_utf8_lossy(&bytes)))
    }
}

fn require_access_token(step: &str, body: &Value) -> Result<(), Failure> {
    let has = |field: &str| {
        body.get(field)
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty())
    };
    if !has("access_token") {
        return Err(Failure::bad(step, "no access_token", &body.to_string()));
    }
    if !has("token_type") {
        return Err(Failure::bad(step, "no token_type", &body.to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn token_response_fields() {
        let ok = json!({"access_token": "a", "token_type": "Bearer", "expires_in": 300});
        assert!(require_access_token("t", &ok).is_ok());
        let f = require_access_token("t", &json!({"access_token": "", "token_type": "Bearer"}))
            .unwrap_err();
        assert_eq!(f.to_string(), "t: no access_token");
        assert!(require_access_token("t", &json!({"access_token": "a"})).is_err());
    }
}
