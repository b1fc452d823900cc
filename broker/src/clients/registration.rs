//! Creating, updating and deleting clients (admin API and CLI share this): validation of the
//! requested metadata, generation of identifiers and secrets (256 bits, shown once). Grants
//! follow their client: deleting a client revokes all of its grants, and narrowing or disabling
//! it revokes those that no longer fit, so a client re-created under the same id inherits nothing.

use std::sync::Arc;

use serde::Deserialize;

use super::jwks::check_public_jwks;
use super::redirect::validate_for_registration;
use super::uri::check_uri;
use super::{
    ApplicationType, AuthMethod, Client, ClientDirectory, ClientMetadata, ClientStoreError,
    DeclaredRole, DeviceClass, GrantType,
};
use crate::audit::{AuditEntry, AuditLog};
use crate::crypto::{random_token, MasterKey};
use crate::scope::Scope;
use crate::tokens::keys::Alg;
use crate::tokens::refresh_families::GrantStore;
use crate::transaction::Transactions;

/// What an operator asks for; absent fields take safe defaults.
#[derive(Clone, Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ClientRequest {
    pub client_id: Option<String>,
    pub client_name: Option<String>,
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    pub grant_types: Option<Vec<GrantType>>,
    /// RFC 7591 `response_types`: only `code` is supported.
    pub response_types: Option<Vec<String>>,
    pub token_endpoint_auth_method: Option<AuthMethod>,
    pub application_type: Option<ApplicationType>,
    pub scope: Option<String>,
    pub audience: Option<String>,
    #[serde(default)]
    pub resources: Vec<String>,
    #[serde(default)]
    pub introspection_audiences: Vec<String>,
    pub id_token_signed_response_alg: Option<Alg>,
    pub jwks: Option<serde_json::Value>,
    /// A new ID token in every refresh response (OIDC Core §12.2); off by default.
    #[serde(default)]
    pub id_token_on_refresh: bool,
    /// A disabled client is treated as unknown everywhere, and its grants are revoked.
    #[serde(default)]
    pub disabled: bool,
    /// The source code of the app's legacy accounts (`[a-z0-9-]{1,40}`, e.g. `hue-s`).
    pub legacy_source: Option<String>,
    /// RFC 9126 §6: the client's authorization requests must come through `/par`.
    #[serde(default)]
    pub require_pushed_authorization_requests: bool,
    /// Back-Channel Logout 1.0 §2.2: https (plain http to a loopback host in development
    /// only), no fragment.
    pub backchannel_logout_uri: Option<String>,
    /// §2.2: `sid` must be in the logout token (it always is); needs a `backchannel_logout_uri`.
    #[serde(default)]
    pub backchannel_logout_session_required: bool,
    /// RFC 8935: where Security Event Tokens are pushed; the rules of `backchannel_logout_uri`.
    pub event_delivery_uri: Option<String>,
    /// The event types pushed there (known URIs under `urn:vn:hue:broker:event:`); required
    /// with the URI, and the URI with them.
    #[serde(default)]
    pub event_types: Vec<String>,
    /// `mobile` or `web` (the default): a mobile app takes the account's one mobile slot.
    pub device_class: Option<DeviceClass>,
    /// Mobile clients only: the group of apps sharing a device identifier (default: the
    /// client's own id); `[a-z0-9._-]{1,64}`.
    pub device_slot: Option<String>,
    /// RFC 9449 §5.2: token requests without a DPoP proof are refused.
    #[serde(default)]
    pub dpop_bound_access_tokens: bool,
    /// The app roles civil servants may ask for at this client: codes
    /// (`[a-z0-9._:-]{1,64}`, none twice) with a Vietnamese `name` and an English `name#en`.
    #[serde(default)]
    pub roles: Vec<DeclaredRole>,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistrationError {
    #[error("invalid_redirect_uri: {0}")]
    RedirectUri(String),
    #[error("invalid_client_metadata: {0}")]
    Metadata(String),
    #[error("a client with this client_id already exists")]
    Conflict,
    #[error("no such client")]
    NotFound,
    #[error(transparent)]
    Store(#[from] anyhow::Error),
}

impl RegistrationError {
    /// The RFC 7591 §3.2.2 error code.
    pub fn code(&self) -> &'static str {
        match self {
            RegistrationError::RedirectUri(_) => "invalid_redirect_uri",
            RegistrationError::Metadata(_) => "invalid_client_metadata",
            RegistrationError::Conflict => "invalid_client_metadata",
            RegistrationError::NotFound => "not_found",
            RegistrationError::Store(_) => "server_error",
        }
    }
}

fn meta_err(msg: &str) -> RegistrationError {
    RegistrationError::Metadata(msg.to_string())
}

/// Checks what an operator asked for; `issuer` is the broker's own identifier, which no client
/// may claim as an API audience.
/// `production`: plain-http (loopback) redirect URIs are refused for web clients, which only
/// development needs; native apps keep their loopback redirects (RFC 8252 §7.3).
pub fn validate(
    req: &ClientRequest,
    issuer: &str,
    production: bool,
) -> Result<ClientMetadata, RegistrationError> {
    let application_type = req.application_type.unwrap_or_default();
    let grant_types = req
        .grant_types
        .clone()
        .unwrap_or_else(|| vec![GrantType::AuthorizationCode, GrantType::RefreshToken]);
    if req
        .response_types
        .as_ref()
        .is_some_and(|r| r.iter().any(|t| t != "code"))
    {
        return Err(meta_err("only the response type code is supported"));
    }
    if grant_types.is_empty() {
        return Err(meta_err("grant_types must not be empty"));
    }
    let method = req
        .token_endpoint_auth_method
        .unwrap_or(match application_type {
            ApplicationType::Native => AuthMethod::None,
            ApplicationType::Web => AuthMethod::ClientSecretBasic,
        });
    if method == AuthMethod::None && grant_types.contains(&GrantType::ClientCredentials) {
        return Err(meta_err("a public client cannot use client_credentials"));
    }
    if method == AuthMethod::PrivateKeyJwt {
        let keys = req
            .jwks
            .as_ref()
            .and_then(|j| j.get("keys"))
            .and_then(|k| k.as_array());
        if keys.is_none_or(|k| k.is_empty()) {
            return Err(meta_err("private_key_jwt needs jwks with at least one key"));
        }
    }
    if let Some(jwks) = &req.jwks {
        check_public_jwks(jwks).map_err(|e| RegistrationError::Metadata(e.to_string()))?;
    }
    if grant_types.contains(&GrantType::AuthorizationCode) && req.redirect_uris.is_empty() {
        return Err(RegistrationError::RedirectUri(
            "authorization_code needs at least one redirect_uri".into(),
        ));
    }
    for uri in req
        .redirect_uris
        .iter()
        .chain(&req.post_logout_redirect_uris)
    {
        validate_for_registration(uri, application_type)
            .map_err(|e| RegistrationError::RedirectUri(e.to_string()))?;
        let plain_http = url::Url::parse(uri).is_ok_and(|u| u.scheme() == "http");
        if production && application_type == ApplicationType::Web && plain_http {
            return Err(RegistrationError::RedirectUri(
                "web clients need https redirect URIs in production (http://localhost is for development)"
                    .into(),
            ));
        }
    }
    let name = req.client_name.clone().unwrap_or_default();
    if name.chars().count() > 200 {
        return Err(meta_err("client_name is too long"));
    }
    let scope = req.scope.clone().unwrap_or_else(|| "openid profile".into());
    if scope.len() > 1000
        || scope
            .split(' ')
            .any(|s| s.is_empty() || !s.bytes().all(is_scope_char))
    {
        return Err(meta_err("scope must be space-separated scope tokens"));
    }
    for resource in req
        .resources
        .iter()
        .chain(req.audience.iter())
        .chain(req.introspection_audiences.iter())
    {
        let ok = check_uri(resource).is_ok()
            && url::Url::parse(resource).is_ok_and(|u| u.fragment().is_none());
        if !ok {
            return Err(meta_err(
                "audience and resources must be absolute URIs without fragment",
            ));
        }
        if names_issuer(resource, issuer) {
            return Err(meta_err(
                "audience, resources and introspection_audiences must not name the broker itself",
            ));
        }
    }
    if let Some(uri) = &req.backchannel_logout_uri {
        check_backchannel_logout_uri(uri, production)?;
    } else if req.backchannel_logout_session_required {
        return Err(meta_err(
            "backchannel_logout_session_required needs a backchannel_logout_uri",
        ));
    }
    check_event_subscription(req, production)?;
    check_declared_roles(&req.roles)?;
    let device_class = req.device_class.unwrap_or_default();
    if let Some(group) = &req.device_slot {
        if device_class != DeviceClass::Mobile {
            return Err(meta_err("device_slot needs device_class mobile"));
        }
        let valid = (1..=64).contains(&group.len())
            && group.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
            });
        if !valid {
            return Err(meta_err(
                "device_slot must be 1 to 64 characters of a-z, 0-9, '.', '_' and '-'",
            ));
        }
    }
    if let Some(source) = &req.legacy_source {
        if !valid_legacy_source(source) {
            return Err(meta_err(
                "legacy_source must be 1 to 40 characters of a-z, 0-9 and -",
            ));
        }
        // legacy_account links a person's old account on the client's word: only a client
        // that authenticates may give it (a mobile app's backend, not the app).
        if method == AuthMethod::None {
            return Err(meta_err(
                "legacy_source needs a client that authenticates (client_secret_basic, client_secret_post or private_key_jwt)",
            ));
        }
    }
    Ok(ClientMetadata {
        client_name: name,
        redirect_uris: req.redirect_uris.clone(),
        post_logout_redirect_uris: req.post_logout_redirect_uris.clone(),
        grant_types,
        token_endpoint_auth_method: method,
        application_type,
        scope: Scope::parse(&scope),
        audience: req.audience.clone(),
        resources: req.resources.clone(),
        introspection_audiences: req.introspection_audiences.clone(),
        id_token_signed_response_alg: req.id_token_signed_response_alg.unwrap_or(Alg::RS256),
        jwks: req.jwks.clone(),
        id_token_on_refresh: req.id_token_on_refresh,
        disabled: req.disabled,
        legacy_source: req.legacy_source.clone(),
        require_pushed_authorization_requests: req.require_pushed_authorization_requests,
        backchannel_logout_uri: req.backchannel_logout_uri.clone(),
        backchannel_logout_session_required: req.backchannel_logout_session_required,
        event_delivery_uri: req.event_delivery_uri.clone(),
        event_types: req.event_types.clone(),
        device_class,
        device_slot: req.device_slot.clone(),
        dpop_bound_access_tokens: req.dpop_bound_access_tokens,
        roles: req
            .roles
            .iter()
            .map(|r| DeclaredRole {
                code: r.code.clone(),
                name: crate::accounts::names::tidy_name(&r.name),
                name_en: r.name_en.as_deref().map(crate::accounts::names::tidy_name),
            })
            .collect(),
    })
}

/// At most 200 roles, each a code of `[a-z0-9._:-]{1,64}` listed once, with names of 1 to 200
/// characters.
fn check_declared_roles(roles: &[DeclaredRole]) -> Result<(), RegistrationError> {
    if roles.len() > 200 {
        return Err(meta_err("roles: at most 200 roles"));
    }
    for (i, role) in roles.iter().enumerate() {
        let code_ok = (1..=64).contains(&role.code.len())
            && role.code.bytes().all(|b| {
                b.is_ascii_lowercase()
                    || b.is_ascii_digit()
                    || matches!(b, b'.' | b'_' | b':' | b'-')
            });
        if !code_ok {
            return Err(meta_err(
                "roles: a code must be 1 to 64 characters of a-z, 0-9, '.', '_', ':' and '-'",
            ));
        }
        if roles[..i].iter().any(|r| r.code == role.code) {
            return Err(meta_err("roles: a code is listed twice"));
        }
        let name_ok = |n: &str| {
            let n = crate::accounts::names::tidy_name(n);
            (1..=200).contains(&n.chars().count())
        };
        if !name_ok(&role.name) || role.name_en.as_deref().is_some_and(|n| !name_ok(n)) {
            return Err(meta_err("roles: names must be 1 to 200 characters"));
        }
    }
    Ok(())
}

/// Back-Channel Logout 1.0 §2.2: an absolute https URI without fragment (a query is allowed).
/// Plain http only to a loopback host outside production. Where it may point is checked again
/// at every delivery (`dispatch::address`), when the name is resolved.
fn check_backchannel_logout_uri(uri: &str, production: bool) -> Result<(), RegistrationError> {
    check_push_uri("backchannel_logout_uri", uri, production)
}

/// An RFC 8935 subscription: `event_delivery_uri` under the rules of a back-channel logout URI,
/// and at least one event type, each a known type of the broker's namespace, none twice.
fn check_event_subscription(
    req: &ClientRequest,
    production: bool,
) -> Result<(), RegistrationError> {
    use crate::events::types;
    match (&req.event_delivery_uri, req.event_types.is_empty()) {
        (None, true) => return Ok(()),
        (None, false) => return Err(meta_err("event_types needs an event_delivery_uri")),
        (Some(_), true) => return Err(meta_err("event_delivery_uri needs event_types")),
        (Some(uri), false) => check_push_uri("event_delivery_uri", uri, production)?,
    }
    for (i, event_type) in req.event_types.iter().enumerate() {
        if !types::is_known(event_type) {
            return Err(meta_err(&format!(
                "event_types: unknown event type (known: {})",
                types::ALL.join(", ")
            )));
        }
        if req.event_types[..i].contains(event_type) {
            return Err(meta_err("event_types: an event type is listed twice"));
        }
    }
    Ok(())
}

/// A URI the broker pushes to: absolute https without fragment or credentials (a query is
/// allowed); plain http only to a loopback host outside production.
fn check_push_uri(field: &str, uri: &str, production: bool) -> Result<(), RegistrationError> {
    let refuse = |why: &str| Err(meta_err(&format!("{field} {why}")));
    if check_uri(uri).is_err() {
        return refuse("must be an absolute URI of RFC 3986 characters");
    }
    let Ok(url) = url::Url::parse(uri) else {
        return refuse("must be an absolute URI");
    };
    if url.fragment().is_some() || uri.contains('#') {
        return refuse("must not have a fragment");
    }
    if !url.username().is_empty() || url.password().is_some() {
        return refuse("must not carry credentials");
    }
    match url.scheme() {
        "https" => Ok(()),
        "http" if !production && crate::config::is_loopback(&url) => Ok(()),
        "http" if !production => refuse("must be https (plain http only to a loopback host)"),
        _ => refuse("must be https"),
    }
}

/// A legacy source code names where imported accounts come from (`hue-s`, `dvc-hue`).
pub fn valid_legacy_source(source: &str) -> bool {
    (1..=40).contains(&source.len())
        && source
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Whether `value` is the issuer, spelled exactly or as a URL parser would normalise it
/// (`HTTPS://Broker.example/` is the issuer too).
fn names_issuer(value: &str, issuer: &str) -> bool {
    let trim = |s: &str| s.trim_end_matches('/').to_string();
    if trim(value) == trim(issuer) {
        return true;
    }
    match (url::Url::parse(value), url::Url::parse(issuer)) {
        (Ok(v), Ok(i)) => trim(v.as_str()) == trim(i.as_str()),
        _ => false,
    }
}

/// RFC 6749 §3.3 scope-token characters.
pub fn is_scope_char(b: u8) -> bool {
    b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b)
}

/// A client id is used as a path segment (`/admin/clients/{id}`): only unreserved characters,
/// and never a dot-only segment such as `.` or `..`, which proxies and clients normalise away.
fn valid_client_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
        && !id.bytes().all(|b| b == b'.')
}

/// The registration service shared by the admin API and the CLI. Every change commits with
/// its audit entry, which names the actor (an operator, `bootstrap` or `cli`).
#[derive(Clone)]
pub struct Registrar {
    pub directory: ClientDirectory,
    pub master: MasterKey,
    pub grants: Arc<dyn GrantStore>,
    pub audit: Arc<dyn AuditLog>,
    pub transactions: Arc<dyn Transactions>,
    pub issuer: String,
    /// The broker runs with `environment = "production"`.
    pub production: bool,
}

fn audit_entry<'a>(
    kind: &'static str,
    client_id: &'a str,
    actor: &'a str,
    detail: serde_json::Value,
    now: i64,
) -> AuditEntry<'a> {
    AuditEntry {
        at: now,
        kind,
        account_id: None,
        client_id: Some(client_id),
        actor: Some(actor),
        detail,
    }
}

impl Registrar {
    /// Returns the client and, for confidential clients, the secret (shown once, stored hashed).
    pub async fn create(
        &self,
        req: &ClientRequest,
        actor: &str,
        now: i64,
    ) -> Result<(Client, Option<String>), RegistrationError> {
        let metadata = validate(req, &self.issuer, self.production)?;
        let client_id =
            match &req.client_id {
                Some(id) if valid_client_id(id) => id.clone(),
                Some(_) => return Err(meta_err(
                    "client_id may hold only letters, digits and -._~ (at most 128), not only dots",
                )),
                None => uuid::Uuid::new_v4().to_string(),
            };
        let secret = metadata
            .token_endpoint_auth_method
            .uses_secret()
            .then(random_token);
        let client = Client {
            client_id,
            secret_hash: secret.as_deref().map(|s| self.master.secret_hash(s)),
            metadata,
            created_at: now,
            updated_at: now,
        };
        let mut tx = self.transactions.begin().await?;
        match self.directory.store().insert(&mut tx, &client).await {
            Ok(()) => {}
            Err(ClientStoreError::Conflict) => return Err(RegistrationError::Conflict),
            Err(ClientStoreError::Other(e)) => return Err(RegistrationError::Store(e)),
        }
        let entry = audit_entry(
            "client.created",
            &client.client_id,
            actor,
            serde_json::json!({}),
            now,
        );
        self.audit.append(&mut tx, &entry).await?;
        tx.commit().await?;
        // A lookup of this id may have cached "no such client".
        self.directory.forget(&client.client_id);
        Ok((client, secret))
    }

    /// Replaces the metadata; `rotate_secret` issues a new secret (returned once).
    pub async fn update(
        &self,
        client_id: &str,
        req: &ClientRequest,
        rotate_secret: bool,
        actor: &str,
        now: i64,
    ) -> Result<(Client, Option<String>), RegistrationError> {
        // RFC 7592 §2.2: the body's client_id, if any, must be the one being updated.
        if req.client_id.as_deref().is_some_and(|id| id != client_id) {
            return Err(meta_err(
                "client_id in the body differs from the client being updated",
            ));
        }
        let existing = self
            .directory
            .store()
            .find(client_id)
            .await?
            .ok_or(RegistrationError::NotFound)?;
        let metadata = validate(req, &self.issuer, self.production)?;
        let needs_secret = metadata.token_endpoint_auth_method.uses_secret();
        let secret =
            (needs_secret && (rotate_secret || existing.secret_hash.is_none())).then(random_token);
        let secret_hash = match (&secret, needs_secret) {
            (Some(s), _) => Some(self.master.secret_hash(s)),
            (None, true) => existing.secret_hash.clone(),
            (None, false) => None,
        };
        let client = Client {
            client_id: client_id.to_string(),
            secret_hash,
            metadata,
            created_at: existing.created_at,
            updated_at: now,
        };
        let mut tx = self.transactions.begin().await?;
        if !self.directory.store().update(&mut tx, &client).await? {
            return Err(RegistrationError::NotFound);
        }
        let detail = serde_json::json!({ "secret_issued": secret.is_some() });
        let entry = audit_entry("client.updated", client_id, actor, detail, now);
        self.audit.append(&mut tx, &entry).await?;
        tx.commit().await?;
        self.directory.forget(client_id);
        self.revoke_unfitting(&client, now).await?;
        Ok((client, secret))
    }

    /// Revokes the client's live grants that its registration no longer allows.
    async fn revoke_unfitting(&self, client: &Client, now: i64) -> Result<(), RegistrationError> {
        let grants = self.grants.live_grants_of_client(&client.client_id).await?;
        let mut revoked = 0;
        for grant in grants.iter().filter(|g| !client.metadata.admits_grant(g)) {
            if self
                .grants
                .revoke_grant(&grant.id, "client registration changed", now)
                .await?
            {
                revoked += 1;
            }
        }
        if revoked > 0 {
            tracing::info!(client = %client.client_id, revoked, "grants revoked: no longer allowed");
        }
        Ok(())
    }

    /// Deletes the client and revokes all of its grants. The grants go first: a failure in
    /// between leaves a client without grants, never grants that a new client of the same id
    /// could inherit.
    pub async fn delete(
        &self,
        client_id: &str,
        actor: &str,
        now: i64,
    ) -> Result<(), RegistrationError> {
        self.grants
            .revoke_client(client_id, "client deleted", now)
            .await?;
        let mut tx = self.transactions.begin().await?;
        let deleted = self.directory.store().delete(&mut tx, client_id).await?;
        if deleted {
            let entry = audit_entry(
                "client.deleted",
                client_id,
                actor,
                serde_json::json!({}),
                now,
            );
            self.audit.append(&mut tx, &entry).await?;
        }
        tx.commit().await?;
        self.directory.forget(client_id);
        if deleted {
            Ok(())
        } else {
            Err(RegistrationError::NotFound)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_backchannel(uri: &str) -> ClientRequest {
        ClientRequest {
            redirect_uris: vec!["https://rp.example/cb".into()],
            backchannel_logout_uri: Some(uri.into()),
            ..Default::default()
        }
    }

    #[test]
    fn backchannel_logout_uri_rules() {
        let issuer = "https://broker.example";
        for (uri, production) in [
            ("https://rp.example/logout", true),
            ("https://rp.example/logout?tenant=hue", true),
            ("http://127.0.0.1:8080/logout", false),
            ("http://localhost/logout", false),
        ] {
            let metadata = validate(&with_backchannel(uri), issuer, production).unwrap();
            assert_eq!(metadata.backchannel_logout_uri.as_deref(), Some(uri));
        }
        for (uri, production) in [
            ("http://rp.example/logout", true),
            ("http://rp.example/logout", false),
            ("http://127.0.0.1/logout", true),
            ("https://rp.example/logout#frag", true),
            ("https://rp.example/logout#", false),
            ("https://user:pw@rp.example/logout", true),
            ("ftp://rp.example/logout", false),
            ("/logout", false),
            ("https:///logout", false),
            ("https://rp.example/log out", false),
        ] {
            let refused = validate(&with_backchannel(uri), issuer, production);
            assert!(
                matches!(refused, Err(RegistrationError::Metadata(_))),
                "{uri} (production: {production}) must be refused"
            );
        }
    }

    #[test]
    fn session_required_needs_a_uri() {
        let req = ClientRequest {
            redirect_uris: vec!["https://rp.example/cb".into()],
            backchannel_logout_session_required: true,
            ..Default::default()
        };
        assert!(validate(&req, "https://broker.example", true).is_err());
        let req = ClientRequest {
            backchannel_logout_uri: Some("https://rp.example/logout".into()),
            ..req
        };
        let metadata = validate(&req, "https://broker.example", true).unwrap();
        assert!(metadata.backchannel_logout_session_required);
    }
}
