//! The OpenID Connect provider: protocol logic, free of HTTP types. `http/` turns requests into
//! calls on `Provider` and its outcomes into responses.

pub mod access;
pub mod acr;
pub mod authorize;
pub mod backchannel_logout;
pub mod codes;
pub mod discovery;
pub mod dpop;
pub mod error;
pub mod grant_types;
pub mod introspect;
pub mod par;
pub mod params;
pub mod pkce;
pub mod revoke;
pub mod userinfo;

use std::sync::Arc;

use serde::Serialize;

use crate::accounts::login::AccountResolver;
use crate::clients::auth::ClientAuthenticator;
use crate::clients::ClientDirectory;
use crate::clock::SharedClock;
use crate::scope::Scope;
use crate::session_end::SessionEnds;
use crate::sessions::ended::EndedSessions;
use crate::sessions::sso::{SsoSession, SsoSessions};
use crate::tokens::refresh_families::{GrantStore, RefreshTokens};
use crate::tokens::TokenSigner;
use crate::transaction::Transactions;
use acr::AcrPolicy;
use codes::Codes;

/// Everything the protocol endpoints need, built once at startup.
#[derive(Clone)]
pub struct Provider {
    pub issuer: Arc<str>,
    pub clients: ClientDirectory,
    pub client_auth: ClientAuthenticator,
    pub signer: TokenSigner,
    pub grants: Arc<dyn GrantStore>,
    pub refresh: RefreshTokens,
    pub codes: Codes,
    pub ended: EndedSessions,
    pub sso: SsoSessions,
    pub accounts: AccountResolver,
    pub acr: AcrPolicy,
    pub tokens: TokenLifetimes,
    pub jwks_max_age: u64,
    pub clock: SharedClock,
    /// Pushed authorization requests waiting for `/authorize` (RFC 9126).
    pub pushed: par::PushedRequests,
    /// Authorization requests only through `/par`, for every client.
    pub require_pushed_requests: bool,
    /// Ends sessions in SQL with their `session:ended` event (`crate::session_end`).
    pub session_ends: SessionEnds,
    pub transactions: Arc<dyn Transactions>,
    /// Every session in SQL: the truth behind `sso` and `ended` (`sessions::records`).
    pub session_records: Arc<dyn crate::sessions::records::SessionRecords>,
    /// One mobile device per account (`crate::devices`).
    pub devices: crate::devices::MobileSlots,
    /// Checks DPoP proofs (RFC 9449) and remembers their `jti`s.
    pub dpop: dpop::DpopVerifier,
    /// Civil servants' roles: the `roles` claim, requests and decisions (`crate::roles`).
    pub roles: crate::roles::Roles,
    /// Access tokens verified already (`tokens::verified`).
    pub verified: crate::tokens::verified::VerifiedTokens,
    /// This instance's revocation set (`crate::changes`), kept current by the store.
    pub revocations: crate::changes::Revocations,
    /// What userinfo releases, per account (`crate::changes::released`).
    pub released: crate::changes::ReleasedCache,
    /// The discovery document as served: built at the first request (nothing in it changes
    /// while the process runs).
    pub discovery: std::sync::OnceLock<bytes::Bytes>,
    /// The names of the enabled upstreams, which an `idp_hint` may name.
    pub upstream_names: Vec<String>,
}

/// How long what the provider issues stays valid, in seconds.
#[derive(Clone, Debug)]
pub struct TokenLifetimes {
    pub access_token_ttl_secs: i64,
    pub id_token_ttl_secs: i64,
    pub refresh_token_ttl_secs: i64,
    pub code_ttl_secs: u64,
}

impl Provider {
    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    pub fn endpoint(&self, path: &str) -> String {
        format!("{}{}", self.issuer, path)
    }

    /// The browser's SSO session, unless SQL says it has ended (an eviction, the citizen or an
    /// operator ended it, perhaps on another instance). Every end commits in SQL; the session
    /// store's ended-session marker is there to spoil unredeemed codes, and reading it here too
    /// would add a round trip and decide nothing. An ended session's entry is dropped.
    pub async fn live_sso(&self, cookie_secret: &str) -> anyhow::Result<Option<SsoSession>> {
        let Some(session) = self.sso.find(cookie_secret).await? else {
            return Ok(None);
        };
        if self.session_records.is_ended(&session.sid).await? {
            self.sso.end(cookie_secret).await?;
            return Ok(None);
        }
        Ok(Some(session))
    }
}

/// RFC 6749 §5.1 token response.
#[derive(Debug, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    #[serde(skip_serializing_if = "Scope::is_empty")]
    pub scope: Scope,
}
