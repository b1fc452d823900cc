//! The relying-party side of the login, done with the `openidconnect` crate as a real RP would:
//! discovery, authorization URL with PKCE/state/nonce, code exchange (client_secret_basic), ID
//! token verification against the broker's JWKS, and userinfo. Knows nothing of actix.

use std::sync::{Arc, PoisonError, RwLock};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreGenderClaim, CoreIdToken, CoreProviderMetadata,
};
use openidconnect::{
    AdditionalClaims, AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret,
    CsrfToken, EndpointMaybeSet, EndpointNotSet, EndpointSet, IssuerUrl, Nonce,
    OAuth2TokenResponse, PkceCodeChallenge, RedirectUrl, Scope, SubjectIdentifier, TokenResponse,
    UserInfoClaims,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::transactions::{Pending, Transactions};
use super::DemoRpConfig;
use crate::params::Params;

/// What `from_provider_metadata` yields: auth URL known, token and userinfo URLs maybe.
type Client = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// Keeps every userinfo claim, not only the standard ones, so the page shows what the broker
/// really released (roles, account claims, mapped names).
#[derive(Clone, Debug, Deserialize, Serialize)]
struct AllClaims {
    #[serde(flatten)]
    rest: Map<String, Value>,
}
impl AdditionalClaims for AllClaims {}

#[derive(Debug, thiserror::Error)]
pub(crate) enum LoginError {
    #[error("broker discovery failed: {0}")]
    Discovery(String),
    #[error("no login in progress in this browser (expired, or already finished)")]
    NoTransaction,
    #[error("state in the callback does not match this login")]
    StateMismatch,
    #[error("the broker answered `{error}`: {description}")]
    Broker { error: String, description: String },
    #[error("iss in the callback is not the broker's issuer")]
    IssuerMismatch,
    #[error("the callback carries no code")]
    NoCode,
    #[error("code exchange failed: {0}")]
    Exchange(String),
    #[error("the token response has no ID token")]
    NoIdToken,
    #[error("ID token rejected: {0}")]
    IdToken(String),
    #[error("userinfo failed: {0}")]
    UserInfo(String),
    #[error("internal error: {0:#}")]
    Internal(#[from] anyhow::Error),
}

pub(crate) struct LoginResult {
    pub(crate) id_token_claims: Value,
    pub(crate) userinfo: Value,
}

pub(crate) struct RelyingParty {
    issuer: IssuerUrl,
    client_id: ClientId,
    client_secret: ClientSecret,
    redirect_url: RedirectUrl,
    pub(crate) secure_cookies: bool,
    http: reqwest::Client,
    /// Discovery result (with the JWKS), cached after the first success.
    metadata: RwLock<Option<Arc<CoreProviderMetadata>>>,
    pub(crate) transactions: Transactions,
}

impl RelyingParty {
    pub(crate) fn new(cfg: DemoRpConfig) -> anyhow::Result<Self> {
        crate::install_rustls_provider();
        // An RP must never follow redirects from the token or userinfo endpoints (SSRF, leaks).
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        // Issuers are compared as strings; ours are published without a trailing slash.
        let issuer = cfg.broker_issuer.as_str().trim_end_matches('/').to_owned();
        let base = cfg.base_url.as_str().trim_end_matches('/');
        Ok(Self {
            issuer: IssuerUrl::new(issuer)?,
            client_id: ClientId::new(cfg.client_id),
            client_secret: ClientSecret::new(cfg.client_secret),
            redirect_url: RedirectUrl::new(format!("{base}/callback"))?,
            secure_cookies: cfg.base_url.scheme() == "https",
            http,
            metadata: RwLock::new(None),
            transactions: Transactions::default(),
        })
    }

    /// Starts a login: returns the broker URL to send the browser to and the transaction id.
    pub(crate) async fn begin(&self, now: u64) -> Result<(url::Url, String), LoginError> {
        let metadata = self.metadata(false).await?;
        let client = self.client(&metadata);
        let (challenge, pkce_verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, state, nonce) = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .add_scope(Scope::new("profile".into()))
            .set_pkce_challenge(challenge)
            .url();
        let pending = Pending {
            state,
            nonce,
            pkce_verifier,
        };
        Ok((url, self.transactions.insert(pending, now)?))
    }

    /// Finishes a login from the callback's query parameters.
    pub(crate) async fn finish(
        &self,
        pending: Pending,
        callback: &Params,
    ) -> Result<LoginResult, LoginError> {
        // State first: an error response that does not carry our state may be forged.
        if callback.get("state") != Some(pending.state.secret().as_str()) {
            return Err(LoginError::StateMismatch);
        }
        if let Some(error) = callback.owned("error") {
            let description = callback.owned("error_description").unwrap_or_default();
            return Err(LoginError::Broker { error, description });
        }
        let metadata = self.metadata(false).await?;
        // RFC 9207: when the broker says who answered, it must be the broker we asked.
        if callback
            .get("iss")
            .is_some_and(|iss| iss != metadata.issuer().as_str())
        {
            return Err(LoginError::IssuerMismatch);
        }
        let code = callback.owned("code").ok_or(LoginError::NoCode)?;
        let client = self.client(&metadata);
        let tokens = client
            .exchange_code(AuthorizationCode::new(code))
            .map_err(|e| LoginError::Exchange(e.to_string()))?
            .set_pkce_verifier(pending.pkce_verifier)
            .request_async(&self.http)
            .await
            .map_err(|e| LoginError::Exchange(error_chain(&e)))?;
        let id_token = tokens.id_token().ok_or(LoginError::NoIdToken)?;
        let subject = self.verify(&client, id_token, &pending.nonce).await?;
        let userinfo: UserInfoClaims<AllClaims, CoreGenderClaim> = client
            .user_info(tokens.access_token().clone(), Some(subject))
            .map_err(|e| LoginError::UserInfo(e.to_string()))?
            .request_async(&self.http)
            .await
            .map_err(|e| LoginError::UserInfo(error_chain(&e)))?;
        Ok(LoginResult {
            id_token_claims: jwt_payload(&id_token.to_string())?,
            userinfo: serde_json::to_value(&userinfo).map_err(anyhow::Error::from)?,
        })
    }

    async fn verify(
        &self,
        client: &Client,
        id_token: &CoreIdToken,
        nonce: &Nonce,
    ) -> Result<SubjectIdentifier, LoginError> {
        match id_token.claims(&client.id_token_verifier(), nonce) {
            Ok(claims) => Ok(claims.subject().clone()),
            // The broker may have rotated its key since we cached its JWKS: refetch once.
            Err(ClaimsVerificationError::SignatureVerification(_)) => {
                let fresh = self.metadata(true).await?;
                let client = self.client(&fresh);
                let verified = id_token.claims(&client.id_token_verifier(), nonce);
                verified
                    .map(|claims| claims.subject().clone())
                    .map_err(|e| LoginError::IdToken(error_chain(&e)))
            }
            Err(e) => Err(LoginError::IdToken(error_chain(&e))),
        }
    }

    async fn metadata(&self, refresh: bool) -> Result<Arc<CoreProviderMetadata>, LoginError> {
        if !refresh {
            let cached = self.metadata.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(metadata) = cached.as_ref() {
                return Ok(Arc::clone(metadata));
            }
        }
        let fresh = CoreProviderMetadata::discover_async(self.issuer.clone(), &self.http)
            .await
            .map_err(|e| LoginError::Discovery(error_chain(&e)))?;
        let fresh = Arc::new(fresh);
        *self
            .metadata
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(Arc::clone(&fresh));
        Ok(fresh)
    }

    fn client(&self, metadata: &CoreProviderMetadata) -> Client {
        CoreClient::from_provider_metadata(
            metadata.clone(),
            self.client_id.clone(),
            Some(self.client_secret.clone()),
        )
        .set_redirect_uri(self.redirect_url.clone())
    }
}

/// The claims of an already verified JWT, exactly as the broker wrote them, for display.
fn jwt_payload(jwt: &str) -> anyhow::Result<Value> {
    let payload = jwt
        .split('.')
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("ID token is not a compact JWS"))?;
    Ok(serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload)?)?)
}

/// openidconnect's errors keep the useful part (HTTP status, server message) in their sources.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
