//! Talking to the upstream with the `openidconnect` crate: discovery, the authorization URL,
//! the server-side code exchange, and ID token verification (signature against the upstream
//! JWKS — refetched once on an unknown `kid` — plus `iss`, `aud`, `exp` and `nonce`).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use openidconnect::{
    AuthType, AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret, IssuerUrl, Nonce,
    NonceVerifier, PkceCodeVerifier, RedirectUrl, SignatureVerificationError,
};
use serde_json::{Map, Value};
use tokio::sync::RwLock;
use url::Url;

use super::breaker::Breaker;
use super::envelope::{Envelopes, Unreadable};
use super::jwk::{UpstreamClient, UpstreamJwk, UpstreamJwks};

/// The one answer to every envelope that does not open (`envelope.rs`: no padding oracle).
const UNREADABLE: &str = "the identity provider's encrypted answer could not be read";
use super::claims::{normalise, ClaimsError};
use super::profile::{UpstreamAuthMethod, UpstreamProfile};
use crate::accounts::UpstreamIdentity;
use crate::crypto::{b64url_decode, sha256_b64url};
use crate::secret::{read_secret, Secret};

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("the identity provider is unreachable or answered badly")]
    Unavailable(#[source] anyhow::Error),
    #[error("the identity provider refused the code")]
    Exchange(#[source] anyhow::Error),
    #[error("the identity provider's ID token failed verification: {0}")]
    IdToken(String),
    #[error(transparent)]
    Claims(#[from] ClaimsError),
    #[error("the authorization response failed the issuer check (RFC 9207): {0}")]
    MixUp(&'static str),
    /// The circuit breaker is open: the upstream did not answer the last calls.
    #[error("the identity provider is not answering; retry in {retry_after} s")]
    Down { retry_after: u64 },
}

/// What the RP's request asks of the upstream login.
#[derive(Default)]
pub struct UpstreamHints<'a> {
    pub login_hint: Option<&'a str>,
    pub ui_locales: Option<&'a str>,
    pub force_login: bool,
    pub max_age: Option<i64>,
    /// The level the RP requires, asked of the upstream through `upstream.acr_values`.
    pub required_loa: Option<crate::accounts::Loa>,
}

pub struct Upstream {
    pub profile: UpstreamProfile,
    secret: Option<Secret>,
    redirect_uri: Url,
    http: reqwest::Client,
    /// Discovery document and JWKS, with when they were fetched.
    metadata: RwLock<Option<(std::time::Instant, Arc<Metadata>)>>,
    /// Held by the one request that refetches the metadata.
    refresh_lock: tokio::sync::Mutex<()>,
    backoff: std::sync::Mutex<Backoff>,
    /// Opens after calls in a row got no answer (`breaker.rs`).
    breaker: Breaker,
    /// Variant C's encrypted answers (`envelope.rs`).
    envelopes: Option<Envelopes>,
}

const MAX_BACKOFF: Duration = Duration::from_secs(300);

#[derive(Default)]
struct Backoff {
    failures: u32,
    retry_at: Option<std::time::Instant>,
}

/// The discovery members the broker reads beyond OpenID Connect Discovery's own.
#[derive(Clone, Debug, Default, serde::Deserialize, serde::Serialize)]
pub struct ExtraMetadata {
    /// RFC 9207 §3.
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: bool,
}

impl openidconnect::AdditionalProviderMetadata for ExtraMetadata {}

type Metadata = openidconnect::ProviderMetadata<
    ExtraMetadata,
    openidconnect::core::CoreAuthDisplay,
    openidconnect::core::CoreClientAuthMethod,
    openidconnect::core::CoreClaimName,
    openidconnect::core::CoreClaimType,
    openidconnect::core::CoreGrantType,
    openidconnect::core::CoreJweContentEncryptionAlgorithm,
    openidconnect::core::CoreJweKeyManagementAlgorithm,
    UpstreamJwk,
    openidconnect::core::CoreResponseMode,
    openidconnect::core::CoreResponseType,
    openidconnect::core::CoreSubjectIdentifierType,
>;

impl Upstream {
    pub fn new(profile: UpstreamProfile, broker_issuer: &str) -> anyhow::Result<Self> {
        anyhow::ensure!(
            profile.use_id_token || profile.use_userinfo,
            "an upstream without an ID token (upstream.use_id_token = false) needs upstream.use_userinfo = true: the identity comes from userinfo"
        );
        if !profile.discovery {
            let missing = [
                (
                    "authorization_endpoint",
                    profile.authorization_endpoint.is_none(),
                ),
                ("token_endpoint", profile.token_endpoint.is_none()),
                (
                    "jwks_uri",
                    profile.use_id_token && profile.jwks_uri.is_none(),
                ),
                (
                    "userinfo_endpoint",
                    profile.use_userinfo && profile.userinfo_endpoint.is_none(),
                ),
            ];
            if let Some((name, _)) = missing.iter().find(|(_, absent)| *absent) {
                anyhow::bail!(
                    "upstream.discovery = false needs upstream.{name} (explicit endpoints)"
                );
            }
        }
        anyhow::ensure!(
            profile
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "upstream name may hold only letters, digits, - and _"
        );
        let secret = read_secret(&profile.client_secret, &profile.client_secret_file)?;
        let profile_breaker = (profile.breaker_failures, profile.breaker_open_secs);
        let envelopes = profile
            .encryption
            .as_ref()
            .map(Envelopes::load)
            .transpose()?;
        let redirect_uri = Url::parse(&format!("{broker_issuer}/callback/{}", profile.name))?;
        let timeout = Duration::from_secs(profile.timeout_secs.max(1));
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            // Idle connections are dropped before a server's usual keep-alive ends (actix's and
            // many gateways' 5 s): a request sent on a connection the server is closing fails
            // without an answer, and the code exchange (never retried) would lose the login.
            .pool_idle_timeout(Duration::from_secs(4))
            .build()
            .context("cannot build the upstream HTTP client")?;
        Ok(Self {
            profile,
            secret,
            redirect_uri,
            http,
            metadata: RwLock::new(None),
            refresh_lock: tokio::sync::Mutex::new(()),
            backoff: std::sync::Mutex::new(Backoff::default()),
            breaker: Breaker::new(
                profile_breaker.0,
                Duration::from_secs(profile_breaker.1.max(1)),
            ),
            envelopes,
        })
    }

    /// Whether logins may go to the upstream now: `Down` while its circuit breaker is open, so
    /// that the citizen hears at once that VNeID is interrupted.
    pub fn available(&self) -> Result<(), UpstreamError> {
        self.breaker.check().map_err(|open| UpstreamError::Down {
            retry_after: open.retry_after.as_secs().max(1),
        })
    }

    /// Records how a call went: an answer (even a refusal) closes the breaker, no answer counts
    /// towards opening it. Latency and failures go to the log.
    fn record(&self, call: &'static str, started: std::time::Instant, answered: bool) {
        let elapsed_ms = started.elapsed().as_millis() as u64;
        if answered {
            self.breaker.success();
            tracing::debug!(upstream = %self.profile.name, call, elapsed_ms, "upstream call");
        } else {
            self.breaker.failure();
            tracing::warn!(upstream = %self.profile.name, call, elapsed_ms, "upstream call got no answer");
        }
    }

    fn issuer(&self) -> String {
        self.profile
            .issuer
            .as_str()
            .trim_end_matches('/')
            .to_string()
    }

    /// The discovery document and JWKS, refetched after `upstream.metadata_max_age_secs` so
    /// that a key the upstream withdrew stops being trusted. Only one request refetches at a
    /// time; the others keep using the previous copy meanwhile. A failed refetch is logged, the
    /// previous copy keeps serving, and the next attempt waits (1 s, doubling to 5 min), so that
    /// a slow or failing VNeID does not make every login wait for its timeout.
    async fn metadata(&self) -> Result<Arc<Metadata>, UpstreamError> {
        let max_age = Duration::from_secs(self.profile.metadata_max_age_secs);
        let cached = self.metadata.read().await.clone();
        match cached {
            Some((fetched, m)) if fetched.elapsed() < max_age => Ok(m),
            Some((_, stale)) => {
                if self.backing_off() {
                    return Ok(stale);
                }
                let Ok(_refreshing) = self.refresh_lock.try_lock() else {
                    return Ok(stale);
                };
                Ok(self.refetch().await.unwrap_or(stale))
            }
            None => {
                let _refreshing = self.refresh_lock.lock().await;
                if let Some((_, m)) = self.metadata.read().await.clone() {
                    return Ok(m);
                }
                if self.backing_off() {
                    return Err(UpstreamError::Unavailable(anyhow::anyhow!(
                        "upstream discovery failed recently; waiting before the next attempt"
                    )));
                }
                self.refetch().await.ok_or_else(|| {
                    UpstreamError::Unavailable(anyhow::anyhow!("upstream discovery failed"))
                })
            }
        }
    }

    fn backing_off(&self) -> bool {
        let backoff = self.backoff.lock().unwrap_or_else(|e| e.into_inner());
        backoff
            .retry_at
            .is_some_and(|t| std::time::Instant::now() < t)
    }

    /// Fetches the metadata once; the caller holds `refresh_lock`.
    async fn refetch(&self) -> Option<Arc<Metadata>> {
        match self.load_metadata().await {
            Ok(fresh) => {
                let fresh = Arc::new(fresh);
                *self.metadata.write().await = Some((std::time::Instant::now(), fresh.clone()));
                *self.backoff.lock().unwrap_or_else(|e| e.into_inner()) = Backoff::default();
                Some(fresh)
            }
            Err(e) => {
                let mut backoff = self.backoff.lock().unwrap_or_else(|e| e.into_inner());
                backoff.failures = backoff.failures.saturating_add(1);
                let wait = Duration::from_secs(1u64 << backoff.failures.min(9)).min(MAX_BACKOFF);
                backoff.retry_at = Some(std::time::Instant::now() + wait);
                tracing::warn!(
                    error = format!("{e:#}"),
                    retry_in_secs = wait.as_secs(),
                    "upstream discovery fetch failed"
                );
                None
            }
        }
    }

    /// Discovery, tried twice (it is idempotent) before it counts as one failure.
    async fn load_metadata(&self) -> anyhow::Result<Metadata> {
        let issuer = IssuerUrl::new(self.issuer())?;
        if self.profile.discovery {
            self.available().map_err(anyhow::Error::new)?;
            let started = std::time::Instant::now();
            let mut result = Metadata::discover_async(issuer.clone(), &self.http).await;
            if result.is_err() {
                result = Metadata::discover_async(issuer, &self.http).await;
            }
            self.record("discovery", started, result.is_ok());
            return result.context("upstream discovery failed");
        }
        self.explicit_metadata().await
    }

    /// Variants B and C: the endpoints come from the profile (checked present in `new`); the
    /// JWKS is fetched when ID tokens are verified.
    async fn explicit_metadata(&self) -> anyhow::Result<Metadata> {
        use openidconnect::core::{
            CoreJwsSigningAlgorithm, CoreResponseType, CoreSubjectIdentifierType,
        };
        use openidconnect::{AuthUrl, JsonWebKeySetUrl, ResponseTypes, TokenUrl, UserInfoUrl};
        let p = &self.profile;
        let required = |url: &Option<Url>, name: &str| {
            url.clone()
                .with_context(|| format!("upstream.{name} is not set"))
        };
        // Without ID tokens no key is ever fetched: the issuer stands in for the unused URL.
        let jwks_uri = match &p.jwks_uri {
            Some(url) => url.clone(),
            None => p.issuer.clone(),
        };
        let mut metadata = Metadata::new(
            IssuerUrl::new(self.issuer())?,
            AuthUrl::from_url(required(
                &p.authorization_endpoint,
                "authorization_endpoint",
            )?),
            JsonWebKeySetUrl::from_url(jwks_uri),
            vec![ResponseTypes::new(vec![CoreResponseType::Code])],
            vec![CoreSubjectIdentifierType::Public],
            vec![CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256],
            ExtraMetadata::default(),
        )
        .set_token_endpoint(Some(TokenUrl::from_url(required(
            &p.token_endpoint,
            "token_endpoint",
        )?)))
        .set_userinfo_endpoint(p.userinfo_endpoint.clone().map(UserInfoUrl::from_url));
        if p.use_id_token {
            self.available().map_err(anyhow::Error::new)?;
            let started = std::time::Instant::now();
            let mut fetched = UpstreamJwks::fetch_async(metadata.jwks_uri(), &self.http).await;
            if fetched.is_err() {
                fetched = UpstreamJwks::fetch_async(metadata.jwks_uri(), &self.http).await;
            }
            self.record("jwks", started, fetched.is_ok());
            metadata = metadata.set_jwks(fetched.context("upstream JWKS fetch failed")?);
        }
        Ok(metadata)
    }

    /// Refetches the upstream JWKS (after an unknown `kid`: the upstream rotated its keys).
    async fn refresh_jwks(&self) -> Result<Arc<Metadata>, UpstreamError> {
        let current = self.metadata().await?;
        self.available()?;
        let started = std::time::Instant::now();
        let mut fetched = UpstreamJwks::fetch_async(current.jwks_uri(), &self.http).await;
        if fetched.is_err() {
            // Idempotent: one more try before it counts.
            fetched = UpstreamJwks::fetch_async(current.jwks_uri(), &self.http).await;
        }
        self.record("jwks", started, fetched.is_ok());
        let jwks = fetched
            .map_err(|e| UpstreamError::Unavailable(anyhow::anyhow!("JWKS fetch failed: {e}")))?;
        let updated = Arc::new((*current).clone().set_jwks(jwks));
        *self.metadata.write().await = Some((std::time::Instant::now(), updated.clone()));
        Ok(updated)
    }

    /// RFC 9207 §2.4: when the upstream says it puts `iss` in its authorization responses, the
    /// response must carry its issuer exactly; otherwise `iss`, if present, must still match.
    pub async fn check_response_issuer(&self, iss: Option<&str>) -> Result<(), UpstreamError> {
        let metadata = self.metadata().await?;
        let promised = metadata
            .additional_metadata()
            .authorization_response_iss_parameter_supported;
        match iss {
            Some(iss) if iss == self.issuer() => Ok(()),
            Some(_) => Err(UpstreamError::MixUp("the response names another issuer")),
            None if promised => Err(UpstreamError::MixUp("the response carries no issuer")),
            None => Ok(()),
        }
    }

    /// The URL that sends the browser to the upstream.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn authorization_url(
        &self,
        state: &str,
        nonce: Option<&str>,
        pkce_verifier: Option<&str>,
        hints: &UpstreamHints<'_>,
    ) -> Result<Url, UpstreamError> {
        self.available()?;
        let metadata = self.metadata().await?;
        let mut url: Url = metadata.authorization_endpoint().url().clone();
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("response_type", "code")
                .append_pair("client_id", &self.profile.client_id)
                .append_pair("redirect_uri", self.redirect_uri.as_str())
                .append_pair("scope", &self.profile.scopes.join(" "))
                .append_pair("state", state);
            if let Some(n) = nonce {
                q.append_pair("nonce", n);
            }
            if let Some(v) = pkce_verifier {
                q.append_pair("code_challenge", &sha256_b64url(v))
                    .append_pair("code_challenge_method", "S256");
            }
            if let Some(hint) = hints.login_hint.filter(|_| self.profile.forward_login_hint) {
                q.append_pair("login_hint", hint);
            }
            if let Some(locales) = hints.ui_locales {
                q.append_pair("ui_locales", locales);
            }
            // The RP asked for a fresh authentication: the upstream must not answer from its
            // own session (OIDC Core §3.1.2.1), or the auth_time we report would be a lie.
            if hints.force_login {
                q.append_pair("prompt", "login");
            }
            if let Some(max_age) = hints.max_age {
                q.append_pair("max_age", &max_age.to_string());
            }
            if let Some(acr) = self.profile.acr_values.for_level(hints.required_loa) {
                q.append_pair("acr_values", acr);
            }
        }
        Ok(url)
    }

    /// Exchanges the code server-side and returns the verified, normalised identity.
    #[tracing::instrument(level = "debug", skip_all, fields(upstream = %self.profile.name))]
    pub async fn complete(
        &self,
        code: &str,
        nonce: Option<&str>,
        pkce_verifier: Option<&str>,
        now: i64,
    ) -> Result<UpstreamIdentity, UpstreamError> {
        let metadata = self.metadata().await?;
        let client = self.client(&metadata);
        let mut request = client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .map_err(|e| UpstreamError::Unavailable(anyhow::anyhow!("no token endpoint: {e}")))?;
        if let Some(v) = pkce_verifier {
            request = request.set_pkce_verifier(PkceCodeVerifier::new(v.to_string()));
        }
        // Never retried: a code is used once.
        self.available()?;
        let started = std::time::Instant::now();
        // The answer's body passes through `envelopes` before the crate parses it (variant C);
        // an envelope that does not open is remembered, and the answer refused below.
        let unreadable = std::sync::atomic::AtomicBool::new(false);
        let http = &self.http;
        let envelopes = self.envelopes.as_ref();
        let unreadable_flag = &unreadable;
        // The answer's status, 0 when none came: what decides whether the upstream answered.
        let status = std::sync::atomic::AtomicU16::new(0);
        let status_seen = &status;
        let opening_client = move |request: openidconnect::HttpRequest| async move {
            let mut response = openidconnect::AsyncHttpClient::call(http, request).await?;
            status_seen.store(
                response.status().as_u16(),
                std::sync::atomic::Ordering::SeqCst,
            );
            if let Some(opened) = envelopes.and_then(|e| e.open(response.body())) {
                match opened {
                    Ok(json) => {
                        *response.body_mut() = json;
                        response.headers_mut().insert(
                            reqwest::header::CONTENT_TYPE,
                            reqwest::header::HeaderValue::from_static("application/json"),
                        );
                    }
                    Err(Unreadable) => {
                        unreadable_flag.store(true, std::sync::atomic::Ordering::SeqCst);
                    }
                }
            }
            Ok::<_, openidconnect::HttpClientError<reqwest::Error>>(response)
        };
        let response = request.request_async(&opening_client).await;
        if unreadable.load(std::sync::atomic::Ordering::SeqCst) {
            self.record("token", started, true);
            return Err(UpstreamError::IdToken(UNREADABLE.into()));
        }
        // Any answer below 500 is the upstream answering, whatever its body (an OAuth error, an
        // HTML 400, an empty body): a refusal charged to the caller's budget, never a reason to
        // open the breaker, or anyone could open it with made-up codes. No answer, or a 5xx (a
        // proxy's 502), is the upstream failing.
        let status = status.load(std::sync::atomic::Ordering::SeqCst);
        let answered = (1..500).contains(&status);
        self.record("token", started, answered);
        let response = response.map_err(|e| {
            if answered {
                UpstreamError::Exchange(anyhow::anyhow!("{e}"))
            } else {
                UpstreamError::Unavailable(anyhow::anyhow!("token request failed: {e}"))
            }
        })?;
        use openidconnect::OAuth2TokenResponse as _;
        let from_id_token = if self.profile.use_id_token {
            let id_token = openidconnect::TokenResponse::id_token(&response)
                .ok_or_else(|| UpstreamError::IdToken("no ID token".into()))?;
            let verified = match self.verify(&client, id_token, nonce, now) {
                Err(ClaimsVerificationError::SignatureVerification(
                    SignatureVerificationError::NoMatchingKey,
                )) => {
                    let refreshed = self.refresh_jwks().await?;
                    self.verify(&self.client(&refreshed), id_token, nonce, now)
                }
                other => other,
            };
            verified.map_err(|e| UpstreamError::IdToken(e.to_string()))?;
            // The token is verified; read all of its claims for the profile's claim mapping.
            Some(
                raw_claims(&id_token.to_string())
                    .ok_or_else(|| UpstreamError::IdToken("unreadable claims".into()))?,
            )
        } else {
            None
        };
        // The access token is used for userinfo at most once, here, and then dropped.
        let from_userinfo = if self.profile.use_userinfo {
            Some(
                self.userinfo(&metadata, response.access_token().secret())
                    .await?,
            )
        } else {
            None
        };
        let claims = merge_claims(from_id_token, from_userinfo)?;
        Ok(normalise(&self.issuer(), &claims, &self.profile)?)
    }

    /// The upstream's userinfo (OIDC Core §5.3), tried twice (it is idempotent); a JSON object
    /// of at most 64 KB.
    async fn userinfo(
        &self,
        metadata: &Metadata,
        access_token: &str,
    ) -> Result<Map<String, Value>, UpstreamError> {
        let url = metadata
            .userinfo_endpoint()
            .ok_or_else(|| {
                UpstreamError::Unavailable(anyhow::anyhow!("the upstream has no userinfo endpoint"))
            })?
            .url()
            .clone();
        self.available()?;
        let started = std::time::Instant::now();
        let mut result = self.fetch_userinfo(&url, access_token).await;
        if matches!(result, Err(Fetch::NoAnswer(_))) {
            result = self.fetch_userinfo(&url, access_token).await;
        }
        self.record(
            "userinfo",
            started,
            !matches!(result, Err(Fetch::NoAnswer(_))),
        );
        result.map_err(|e| match e {
            Fetch::NoAnswer(e) => UpstreamError::Unavailable(e.context("userinfo failed")),
            Fetch::Refused(why) => UpstreamError::IdToken(format!("userinfo refused: {why}")),
        })
    }

    async fn fetch_userinfo(
        &self,
        url: &Url,
        access_token: &str,
    ) -> Result<Map<String, Value>, Fetch> {
        const MAX_USERINFO: usize = 64 * 1024;
        let response = self
            .http
            .get(url.clone())
            .bearer_auth(access_token)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| Fetch::NoAnswer(e.into()))?;
        let status = response.status();
        if status.is_server_error() {
            return Err(Fetch::NoAnswer(anyhow::anyhow!(
                "userinfo answered {status}"
            )));
        }
        if !status.is_success() {
            return Err(Fetch::Refused(format!("status {status}")));
        }
        if response
            .content_length()
            .is_some_and(|n| n as usize > MAX_USERINFO)
        {
            return Err(Fetch::Refused("too large".into()));
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| Fetch::NoAnswer(e.into()))?;
        if body.len() > MAX_USERINFO {
            return Err(Fetch::Refused("too large".into()));
        }
        let body = match self.envelopes.as_ref().and_then(|e| e.open(&body)) {
            None => body.to_vec(),
            Some(Ok(json)) => json,
            Some(Err(Unreadable)) => return Err(Fetch::Refused(UNREADABLE.into())),
        };
        serde_json::from_slice(&body).map_err(|_| Fetch::Refused("not a JSON object".into()))
    }

    fn client(
        &self,
        metadata: &Metadata,
    ) -> UpstreamClient<
        openidconnect::EndpointSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointMaybeSet,
        openidconnect::EndpointMaybeSet,
    > {
        let client = UpstreamClient::from_provider_metadata(
            metadata.clone(),
            ClientId::new(self.profile.client_id.clone()),
            self.secret
                .as_ref()
                .map(|s| ClientSecret::new(s.expose().to_string())),
        )
        .set_redirect_uri(RedirectUrl::from_url(self.redirect_uri.clone()));
        match self.profile.auth_method {
            UpstreamAuthMethod::ClientSecretBasic => client.set_auth_type(AuthType::BasicAuth),
            UpstreamAuthMethod::ClientSecretPost => client.set_auth_type(AuthType::RequestBody),
        }
    }

    fn verify(
        &self,
        client: &UpstreamClient<
            openidconnect::EndpointSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointMaybeSet,
            openidconnect::EndpointMaybeSet,
        >,
        id_token: &openidconnect::core::CoreIdToken,
        nonce: Option<&str>,
        now: i64,
    ) -> Result<(), ClaimsVerificationError> {
        let skew = self.profile.clock_skew_secs as i64;
        let verifier = client.id_token_verifier().set_time_fn(move || {
            chrono::DateTime::from_timestamp(now - skew, 0).unwrap_or_default()
        });
        let nonce_check = ExpectedNonce(nonce.map(str::to_string));
        id_token.claims(&verifier, nonce_check).map(|_| ())
    }
}

/// How a userinfo call went wrong: no answer (counts towards the breaker, retried once) or an
/// answer that refuses.
enum Fetch {
    NoAnswer(anyhow::Error),
    Refused(String),
}

/// The identity's claims: the ID token's, completed by userinfo's (OIDC Core §5.3.2: both must
/// name the same `sub`, or the userinfo answer is someone else's and the login is refused).
fn merge_claims(
    id_token: Option<Map<String, Value>>,
    userinfo: Option<Map<String, Value>>,
) -> Result<Map<String, Value>, UpstreamError> {
    match (id_token, userinfo) {
        (Some(mut id), Some(info)) => {
            if info.get("sub").is_none() || info.get("sub") != id.get("sub") {
                return Err(UpstreamError::IdToken(
                    "userinfo names another subject than the ID token".into(),
                ));
            }
            for (name, value) in info {
                id.entry(name).or_insert(value);
            }
            Ok(id)
        }
        (Some(claims), None) | (None, Some(claims)) => Ok(claims),
        (None, None) => Err(UpstreamError::IdToken("no identity in the answer".into())),
    }
}

struct ExpectedNonce(Option<String>);

impl NonceVerifier for ExpectedNonce {
    fn verify(self, nonce: Option<&Nonce>) -> Result<(), String> {
        match (self.0, nonce) {
            (Some(expected), Some(got))
                if crate::crypto::ct_eq(expected.as_bytes(), got.secret().as_bytes()) =>
            {
                Ok(())
            }
            (Some(_), _) => Err("nonce does not match".into()),
            (None, _) => Ok(()),
        }
    }
}

fn raw_claims(jwt: &str) -> Option<Map<String, Value>> {
    let payload = jwt.split('.').nth(1)?;
    serde_json::from_slice(&b64url_decode(payload)?).ok()
}
