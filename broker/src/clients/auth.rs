//! Client authentication (RFC 6749 §2.3, OIDC Core §9): client_secret_basic,
//! client_secret_post, private_key_jwt and none. Every failure is the same
//! [`ClientAuthError::Failed`] (`invalid_client`, mapped in `oidc::error`), and an unknown client
//! costs the same hash work as a wrong secret.

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};
use serde::Deserialize;

use super::{AuthMethod, Client, ClientDirectory};
use crate::crypto::{ct_eq, sha256_b64url, MasterKey};
use crate::sessions::SessionStore;

pub const JWT_BEARER_ASSERTION: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// What the request offered, gathered by the HTTP layer.
#[derive(Debug, Default)]
pub struct Presented {
    pub basic: Option<(String, String)>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub assertion_type: Option<String>,
    pub assertion: Option<String>,
}

impl Presented {
    /// Parses an `Authorization: Basic` header value (RFC 6749 §2.3.1: form-urlencoded parts).
    pub fn parse_basic(header: &str) -> Option<(String, String)> {
        let encoded = header
            .strip_prefix("Basic ")
            .or_else(|| header.strip_prefix("basic "))?;
        let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
        let (id, secret) = decoded.split_once(':')?;
        let unescape = |s: &str| -> Option<String> {
            let pairs: Vec<(String, String)> = serde_urlencoded::from_str(&format!(
                "v={}",
                s.replace('&', "%26").replace('=', "%3D")
            ))
            .ok()?;
            pairs.into_iter().next().map(|(_, v)| v)
        };
        Some((unescape(id)?, unescape(secret)?))
    }
}

/// Why a client was not authenticated. The protocol layer turns it into its RFC error.
#[derive(Debug, thiserror::Error)]
pub enum ClientAuthError {
    /// The request is malformed (`invalid_request`); the text is safe to show.
    #[error("{0}")]
    Malformed(&'static str),
    /// Authentication failed (`invalid_client`). Deliberately one variant for every cause.
    #[error("client authentication failed")]
    Failed,
    /// A backend (client store, replay store) failed.
    #[error(transparent)]
    Backend(#[from] anyhow::Error),
}

#[derive(Clone)]
pub struct ClientAuthenticator {
    pub directory: ClientDirectory,
    pub master: MasterKey,
    pub replay: Arc<dyn SessionStore>,
    /// The only audience a client assertion may name: the issuer, as a single string. Neither
    /// an endpoint URL nor an array is accepted, so an assertion made for another server cannot
    /// be replayed here (the OpenID Foundation's audience-injection advisory, February 2025).
    pub audience: String,
}

#[derive(Deserialize)]
struct AssertionClaims {
    iss: String,
    sub: String,
    aud: serde_json::Value,
    exp: i64,
    #[serde(default)]
    nbf: Option<i64>,
    jti: String,
}

impl ClientAuthenticator {
    pub async fn authenticate(
        &self,
        presented: &Presented,
        now: i64,
    ) -> Result<Arc<Client>, ClientAuthError> {
        let via_basic = presented.basic.is_some();
        let via_post = presented.client_secret.is_some();
        let via_jwt = presented.assertion.is_some() || presented.assertion_type.is_some();
        if [via_basic, via_post, via_jwt]
            .iter()
            .filter(|b| **b)
            .count()
            > 1
        {
            return Err(ClientAuthError::Malformed(
                "use exactly one client authentication method",
            ));
        }
        if let Some((id, secret)) = &presented.basic {
            if presented
                .client_id
                .as_deref()
                .is_some_and(|body_id| body_id != id)
            {
                return Err(ClientAuthError::Malformed(
                    "client_id does not match the Authorization header",
                ));
            }
            return self
                .by_secret(id, secret, AuthMethod::ClientSecretBasic)
                .await;
        }
        if via_post {
            let id = presented.client_id.as_deref().unwrap_or_default();
            return self
                .by_secret(
                    id,
                    presented.client_secret.as_deref().unwrap_or_default(),
                    AuthMethod::ClientSecretPost,
                )
                .await;
        }
        if via_jwt {
            return self.by_assertion(presented, now).await;
        }
        let id = presented
            .client_id
            .as_deref()
            .ok_or(ClientAuthError::Failed)?;
        match self.directory.get(id).await? {
            Some(client) if client.metadata.token_endpoint_auth_method == AuthMethod::None => {
                Ok(client)
            }
            _ => Err(ClientAuthError::Failed),
        }
    }

    async fn by_secret(
        &self,
        id: &str,
        secret: &str,
        method: AuthMethod,
    ) -> Result<Arc<Client>, ClientAuthError> {
        let offered = self.master.secret_hash(secret);
        let client = self.directory.get(id).await?;
        let Some(client) = client else {
            // Same work as a real comparison, so timing does not reveal which client ids exist.
            let _ = ct_eq(offered.as_bytes(), sha256_b64url(id).as_bytes());
            return Err(ClientAuthError::Failed);
        };
        let stored = client.secret_hash.as_deref().unwrap_or_default();
        let secret_ok = ct_eq(offered.as_bytes(), stored.as_bytes());
        if secret_ok && client.metadata.token_endpoint_auth_method == method {
            Ok(client)
        } else {
            Err(ClientAuthError::Failed)
        }
    }

    async fn by_assertion(
        &self,
        presented: &Presented,
        now: i64,
    ) -> Result<Arc<Client>, ClientAuthError> {
        if presented.assertion_type.as_deref() != Some(JWT_BEARER_ASSERTION) {
            return Err(ClientAuthError::Failed);
        }
        let assertion = presented
            .assertion
            .as_deref()
            .filter(|a| a.len() < 8192)
            .ok_or(ClientAuthError::Failed)?;
        let unverified: AssertionClaims =
            jsonwebtoken::dangerous::insecure_decode_claims(assertion)
                .map_err(|_| ClientAuthError::Failed)?;
        if presented
            .client_id
            .as_deref()
            .is_some_and(|id| id != unverified.sub)
        {
            return Err(ClientAuthError::Failed);
        }
        let client = self
            .directory
            .get(&unverified.sub)
            .await?
            .ok_or(ClientAuthError::Failed)?;
        if client.metadata.token_endpoint_auth_method != AuthMethod::PrivateKeyJwt {
            return Err(ClientAuthError::Failed);
        }
        let header = jsonwebtoken::decode_header(assertion).map_err(|_| ClientAuthError::Failed)?;
        use jsonwebtoken::Algorithm::*;
        if !matches!(header.alg, RS256 | PS256 | ES256 | EdDSA) {
            return Err(ClientAuthError::Failed);
        }
        let jwks: JwkSet = client
            .metadata
            .jwks
            .clone()
            .and_then(|j| serde_json::from_value(j).ok())
            .ok_or(ClientAuthError::Failed)?;
        let jwk = match &header.kid {
            Some(kid) => jwks.find(kid),
            None if jwks.keys.len() == 1 => jwks.keys.first(),
            None => None,
        }
        .ok_or(ClientAuthError::Failed)?;
        let key = DecodingKey::from_jwk(jwk).map_err(|_| ClientAuthError::Failed)?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&client.client_id]);
        validation.set_required_spec_claims(&["iss", "sub", "aud", "exp"]);
        // `aud`, `exp` and `nbf` are checked below, against the injected clock.
        validation.validate_aud = false;
        validation.validate_exp = false;
        validation.validate_nbf = false;
        let claims: AssertionClaims = jsonwebtoken::decode(assertion, &key, &validation)
            .map_err(|_| ClientAuthError::Failed)?
            .claims;
        // Short-lived, single-use assertions for this issuer only. `nbf` gets the same
        // tolerance as `exp`: none.
        if claims.sub != client.client_id
            || claims.iss != client.client_id
            || claims.aud.as_str() != Some(self.audience.as_str())
            || claims.exp <= now
            || claims.exp > now + 600
            || claims.nbf.is_some_and(|nbf| nbf > now)
            || claims.jti.is_empty()
        {
            return Err(ClientAuthError::Failed);
        }
        let ttl = Duration::from_secs((claims.exp - now + 60) as u64);
        let jti_key = format!(
            "jti:{}:{}",
            sha256_b64url(&client.client_id),
            sha256_b64url(&claims.jti)
        );
        if !self.replay.put_new(&jti_key, b"1", ttl).await? {
            return Err(ClientAuthError::Failed);
        }
        Ok(client)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_header_is_form_decoded() {
        let header = format!("Basic {}", STANDARD.encode("my%3Aclient:s%2Bcret"));
        assert_eq!(
            Presented::parse_basic(&header),
            Some(("my:client".into(), "s+cret".into()))
        );
        assert_eq!(Presented::parse_basic("Basic !!!"), None);
        assert_eq!(Presented::parse_basic("Bearer x"), None);
    }
}
