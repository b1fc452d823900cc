//! Pushed authorization requests (RFC 9126): an authenticated client posts its authorization
//! request to `/par` and gets a short-lived, single-use `request_uri` for `/authorize`. The
//! request is validated here exactly as `/authorize` would (`authorize::parse`) and stored in
//! the session store, shared by every instance, under a key that names the client: another
//! client's `request_uri` is simply unknown to it, and looking it up consumes nothing.
//! Parameters that must come from the app's backend, not the browser (`legacy_account`), are
//! accepted only this way.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::authorize::{self, AuthorizeError, RequestOrigin};
use super::error::{ErrorCode, OAuthError};
use super::params::Params;
use super::Provider;
use crate::clients::auth::Presented;
use crate::crypto::{random_token, sha256_b64url, TOKEN_LEN};
use crate::sessions::SessionStore;

/// RFC 9126 §2.2: the form of the `request_uri` this server hands out.
pub const REQUEST_URI_PREFIX: &str = "urn:ietf:params:oauth:request_uri:";

/// How long a pushed request waits for `/authorize`: long enough for one redirect.
pub const PUSHED_REQUEST_TTL_SECS: i64 = 60;

#[derive(Serialize, Deserialize)]
struct Stored {
    params: Vec<(String, String)>,
    expires_at: i64,
}

/// The 201 answer of `/par` (RFC 9126 §2.2).
#[derive(Debug, Serialize)]
pub struct PushedResponse {
    pub request_uri: String,
    pub expires_in: i64,
}

#[derive(Clone)]
pub struct PushedRequests {
    store: Arc<dyn SessionStore>,
}

impl PushedRequests {
    pub fn new(store: Arc<dyn SessionStore>) -> Self {
        Self { store }
    }

    fn key(client_id: &str, reference: &str) -> String {
        format!(
            "par:{}:{}",
            sha256_b64url(client_id),
            sha256_b64url(reference)
        )
    }

    /// Stores validated parameters for `client_id`; returns the `request_uri`.
    async fn put(&self, client_id: &str, params: &Params, now: i64) -> anyhow::Result<String> {
        let reference = random_token();
        let stored = Stored {
            params: params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            expires_at: now + PUSHED_REQUEST_TTL_SECS,
        };
        self.store
            .put(
                &Self::key(client_id, &reference),
                &serde_json::to_vec(&stored)?,
                Duration::from_secs(PUSHED_REQUEST_TTL_SECS as u64),
            )
            .await?;
        Ok(format!("{REQUEST_URI_PREFIX}{reference}"))
    }

    /// Takes a pushed request back, once: `None` when unknown, used, expired or pushed by
    /// another client (which it leaves in place for its own client).
    pub async fn take(
        &self,
        client_id: &str,
        request_uri: &str,
        now: i64,
    ) -> anyhow::Result<Option<Params>> {
        let Some(reference) = request_uri
            .strip_prefix(REQUEST_URI_PREFIX)
            .filter(|r| r.len() == TOKEN_LEN)
        else {
            return Ok(None);
        };
        let Some(bytes) = self.store.take(&Self::key(client_id, reference)).await? else {
            return Ok(None);
        };
        let stored: Stored = serde_json::from_slice(&bytes)?;
        if stored.expires_at <= now {
            return Ok(None);
        }
        Ok(Some(Params::collect(stored.params)?))
    }
}

/// `POST /par`: authenticates the client, validates its request as `/authorize` would, and
/// stores it.
pub async fn push(
    p: &Provider,
    presented: &Presented,
    params: &Params,
) -> Result<PushedResponse, OAuthError> {
    let now = p.now();
    let client = p.client_auth.authenticate(presented, now).await?;
    // §2.1: a pushed request cannot itself refer to another one.
    if params.contains("request_uri") {
        return Err(OAuthError::invalid_request(
            "request_uri is not allowed in a pushed authorization request",
        ));
    }
    // The client_id is the authenticated client's, whichever way it authenticated.
    let mut pairs: Vec<(String, String)> = params
        .iter()
        .filter(|(k, _)| *k != "client_id")
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    pairs.push(("client_id".into(), client.client_id.clone()));
    let params = Params::collect(pairs)?;
    let request = authorize::check_client(Some(&client), &params)
        .and_then(|redirect_uri| {
            authorize::parse(
                &client,
                redirect_uri,
                &params,
                &p.acr,
                RequestOrigin::Pushed,
            )
        })
        .map_err(|e| match e {
            AuthorizeError::Page(error) | AuthorizeError::Redirect { error, .. } => error,
        })?;
    authorize::check_idp_hint(&request, &p.upstream_names)?;
    let request_uri = p.pushed.put(&client.client_id, &params, now).await?;
    Ok(PushedResponse {
        request_uri,
        expires_in: PUSHED_REQUEST_TTL_SECS,
    })
}

/// The answer to a `request_uri` that cannot be used.
pub fn unusable_request_uri() -> OAuthError {
    OAuthError::new(
        ErrorCode::InvalidRequestUri,
        "request_uri is unknown, expired, already used or not this client's",
    )
}
