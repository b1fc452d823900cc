//! Relying-party registrations: the model, its store, a short-lived cache for the hot paths,
//! registration rules (`registration`, with `uri` for URI strings and `jwks` for registered
//! keys), redirect matching (`redirect`) and client authentication at the token, introspection
//! and revocation endpoints (`auth`), and the JSON view the admin API and CLI show (`view`).

pub mod auth;
pub mod jwks;
pub mod redirect;
pub mod registration;
pub mod uri;
pub mod view;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::clock::SharedClock;
use crate::scope::Scope;
use crate::tokens::keys::Alg;
use crate::tokens::refresh_families::GrantRecord;
use crate::transaction::Transaction;

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum GrantType {
    AuthorizationCode,
    RefreshToken,
    ClientCredentials,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    ClientSecretBasic,
    ClientSecretPost,
    PrivateKeyJwt,
    None,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::ClientSecretBasic => "client_secret_basic",
            AuthMethod::ClientSecretPost => "client_secret_post",
            AuthMethod::PrivateKeyJwt => "private_key_jwt",
            AuthMethod::None => "none",
        }
    }
    pub fn uses_secret(self) -> bool {
        matches!(
            self,
            AuthMethod::ClientSecretBasic | AuthMethod::ClientSecretPost
        )
    }
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum ApplicationType {
    #[default]
    Web,
    Native,
}

/// Where a client's tokens live. A mobile app's tokens take the account's one mobile slot: a
/// newer login on another device pushes the older device out (see `devices`). Web clients
/// never take it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceClass {
    #[default]
    Web,
    Mobile,
}

/// What a client registered (RFC 7591 names where one exists).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ClientMetadata {
    pub client_name: String,
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    pub grant_types: Vec<GrantType>,
    pub token_endpoint_auth_method: AuthMethod,
    #[serde(default)]
    pub application_type: ApplicationType,
    /// The scopes the client may ask for (space-separated when serialized).
    pub scope: Scope,
    /// The API audience of its access tokens when no `resource` is asked for (RFC 9068 §2.2).
    #[serde(default)]
    pub audience: Option<String>,
    /// Resource indicators (RFC 8707) the client may ask for.
    #[serde(default)]
    pub resources: Vec<String>,
    /// Audiences of the APIs this client operates as a resource server: it may introspect
    /// tokens that name one of them (RFC 7662 §4). Distinct from `audience`, which is where the
    /// client's own tokens go.
    #[serde(default)]
    pub introspection_audiences: Vec<String>,
    #[serde(default = "default_id_token_alg")]
    pub id_token_signed_response_alg: Alg,
    /// The client's public keys for `private_key_jwt` (a JWK Set).
    #[serde(default)]
    pub jwks: Option<serde_json::Value>,
    /// A new ID token in every refresh response (OIDC Core §12.2), off by default so that
    /// refresh stays cheap.
    #[serde(default)]
    pub id_token_on_refresh: bool,
    /// Treated as unknown everywhere; its grants are revoked.
    #[serde(default)]
    pub disabled: bool,
    /// The source code of this app's legacy accounts (e.g. `hue-s`): the client may name one of
    /// them in `legacy_account` (pushed requests only), and is told which are linked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub legacy_source: Option<String>,
    /// RFC 9126 §6: authorization requests only through `/par`.
    #[serde(default)]
    pub require_pushed_authorization_requests: bool,
    /// OpenID Connect Back-Channel Logout 1.0 §2.2: where logout tokens are POSTed when a
    /// session this client had a part in ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backchannel_logout_uri: Option<String>,
    /// §2.2: the client needs `sid` in logout tokens (the broker always sends it).
    #[serde(default)]
    pub backchannel_logout_session_required: bool,
    /// RFC 8935 push delivery: where Security Event Tokens about this client's people are
    /// POSTed (`events::delivery`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_delivery_uri: Option<String>,
    /// The event types (URIs under `urn:vn:hue:broker:event:`) pushed to `event_delivery_uri`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub event_types: Vec<String>,
    /// `mobile` apps send a `device_id` and take the account's mobile slot; `web` (the
    /// default) never does.
    #[serde(default)]
    pub device_class: DeviceClass,
    /// The group whose apps share a device identifier (iOS `identifierForVendor` is shared by
    /// one vendor's apps): the same `device_id` in two apps of one group is one device. Mobile
    /// clients only; default: the client's own id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_slot: Option<String>,
    /// RFC 9449 §5.2: every token request must carry a DPoP proof, so every access token is
    /// bound to a key.
    #[serde(default)]
    pub dpop_bound_access_tokens: bool,
    /// The app roles a civil servant may ask for at this client (`roles` claim, `crate::roles`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<DeclaredRole>,
}

/// An app role a client declares: its code (what tokens carry) and its names, Vietnamese first
/// (`name`) and English (`name#en`, the RFC 7591 §2.2 language-tag form).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DeclaredRole {
    pub code: String,
    pub name: String,
    #[serde(rename = "name#en", default, skip_serializing_if = "Option::is_none")]
    pub name_en: Option<String>,
}

fn default_id_token_alg() -> Alg {
    Alg::RS256
}

impl ClientMetadata {
    pub fn allows_grant(&self, grant: GrantType) -> bool {
        self.grant_types.contains(&grant)
    }
    pub fn is_public(&self) -> bool {
        self.token_endpoint_auth_method == AuthMethod::None
    }
    /// RFC 8707: a resource the client registered, or its API audience.
    pub fn allows_resource(&self, resource: &str) -> bool {
        self.resources
            .iter()
            .chain(self.audience.iter())
            .any(|a| a == resource)
    }
    /// The declared app role with this code.
    pub fn declared_role(&self, code: &str) -> Option<&DeclaredRole> {
        self.roles.iter().find(|r| r.code == code)
    }
    pub fn allows_scope(&self, scope: &str) -> bool {
        self.scope.contains(scope)
    }
    /// The device group of a mobile client (`device_slot`, else its id); `None` for web clients.
    pub fn device_group<'a>(&'a self, client_id: &'a str) -> Option<&'a str> {
        (self.device_class == DeviceClass::Mobile)
            .then(|| self.device_slot.as_deref().unwrap_or(client_id))
    }
    /// The source of the legacy accounts this client may name (`legacy_account`).
    pub fn legacy_source(&self) -> Option<&str> {
        self.legacy_source.as_deref()
    }
    /// Whether a grant made earlier still fits this registration: the client is enabled, the
    /// grant's scopes and resource are still registered, and a grant with a refresh family still
    /// has the refresh_token grant type.
    pub fn admits_grant(&self, grant: &GrantRecord) -> bool {
        !self.disabled
            && grant.scope.is_within(&self.scope)
            && grant
                .resource
                .as_deref()
                .is_none_or(|r| self.allows_resource(r))
            && (grant.refresh_generation.is_none() || self.allows_grant(GrantType::RefreshToken))
    }
}

#[derive(Clone, Debug)]
pub struct Client {
    pub client_id: String,
    pub secret_hash: Option<String>,
    pub metadata: ClientMetadata,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientStoreError {
    #[error("client already exists")]
    Conflict,
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// The writes run in the caller's transaction, so that a change and its audit entry commit
/// together.
#[async_trait]
pub trait ClientStore: Send + Sync {
    async fn insert(&self, tx: &mut Transaction, client: &Client) -> Result<(), ClientStoreError>;
    async fn find(&self, client_id: &str) -> anyhow::Result<Option<Client>>;
    async fn list(&self) -> anyhow::Result<Vec<Client>>;
    /// Replaces metadata and, when given, the secret hash. Returns false when there is no such client.
    async fn update(&self, tx: &mut Transaction, client: &Client) -> anyhow::Result<bool>;
    async fn delete(&self, tx: &mut Transaction, client_id: &str) -> anyhow::Result<bool>;
}

/// When a lookup was made, and what it found (a miss is cached too).
type CachedClient = (i64, Option<Arc<Client>>);

/// Client lookups for the hot paths, served from memory for at most `ttl` seconds so that the
/// token endpoint does not read the database on every request. Changes made through this
/// instance take effect at once; other instances see them within `ttl`.
#[derive(Clone)]
pub struct ClientDirectory {
    store: Arc<dyn ClientStore>,
    cache: Arc<RwLock<HashMap<String, CachedClient>>>,
    ttl: i64,
    clock: SharedClock,
}

impl ClientDirectory {
    pub fn new(store: Arc<dyn ClientStore>, ttl_secs: u64, clock: SharedClock) -> Self {
        Self {
            store,
            cache: Arc::default(),
            ttl: ttl_secs as i64,
            clock,
        }
    }

    pub fn store(&self) -> &Arc<dyn ClientStore> {
        &self.store
    }

    pub async fn get(&self, client_id: &str) -> anyhow::Result<Option<Arc<Client>>> {
        if client_id.is_empty() || client_id.len() > 255 {
            return Ok(None);
        }
        let now = self.clock.now();
        if let Ok(cache) = self.cache.read() {
            if let Some((at, client)) = cache.get(client_id) {
                if now - at < self.ttl {
                    return Ok(client.clone());
                }
            }
        }
        // A disabled client is served as no client at all.
        let client = self
            .store
            .find(client_id)
            .await?
            .filter(|c| !c.metadata.disabled)
            .map(Arc::new);
        if let Ok(mut cache) = self.cache.write() {
            if cache.len() > 100_000 {
                cache.clear();
            }
            cache.insert(client_id.to_string(), (now, client.clone()));
        }
        Ok(client)
    }

    pub fn forget(&self, client_id: &str) {
        if let Ok(mut cache) = self.cache.write() {
            cache.remove(client_id);
        }
    }
}
