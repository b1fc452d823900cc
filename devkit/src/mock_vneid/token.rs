//! The token endpoint's protocol logic: client authentication, code redemption with PKCE, and
//! the token response. Errors carry their RFC 6749 §5.2 codes.

use aws_lc_rs::digest::{digest, SHA256};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde::Serialize;

use super::authorize::is_pkce_value;
use super::grants::{CodeGrant, ACCESS_TOKEN_TTL_SECS};
use super::id_token::{self, IdTokenFacts};
use super::{Inner, MockClient};
use crate::params::Params;

#[derive(Debug, Serialize)]
pub(crate) struct TokenResponse {
    access_token: String,
    token_type: &'static str,
    expires_in: u64,
    id_token: String,
    scope: String,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum TokenError {
    #[error("{0}")]
    InvalidRequest(&'static str),
    #[error("client authentication failed")]
    InvalidClient,
    #[error("{0}")]
    InvalidGrant(&'static str),
    #[error("only grant_type=authorization_code is supported")]
    UnsupportedGrantType,
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl TokenError {
    pub(crate) fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) => "invalid_request",
            Self::InvalidClient => "invalid_client",
            Self::InvalidGrant(_) => "invalid_grant",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::Internal(_) => "server_error",
        }
    }
}

/// Client credentials as sent in an `Authorization: Basic` header, already decoded.
pub(crate) struct BasicCredentials {
    pub(crate) client_id: String,
    pub(crate) client_secret: String,
}

impl BasicCredentials {
    /// Parses the header value. RFC 6749 §2.3.1 has both halves form-urlencoded before they are
    /// joined with `:`, so a secret may itself contain `:` once decoded.
    pub(crate) fn parse(header: &str) -> Result<Self, TokenError> {
        let (scheme, encoded) = header
            .trim()
            .split_once(' ')
            .ok_or(TokenError::InvalidClient)?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return Err(TokenError::InvalidClient);
        }
        let decoded = STANDARD
            .decode(encoded.trim())
            .map_err(|_| TokenError::InvalidClient)?;
        let decoded = String::from_utf8(decoded).map_err(|_| TokenError::InvalidClient)?;
        let (id, secret) = decoded.split_once(':').ok_or(TokenError::InvalidClient)?;
        Ok(Self {
            client_id: form_decode(id).ok_or(TokenError::InvalidClient)?,
            client_secret: form_decode(secret).ok_or(TokenError::InvalidClient)?,
        })
    }
}

pub(crate) fn exchange(
    inner: &Inner,
    basic: Option<BasicCredentials>,
    params: &Params,
    now: u64,
) -> Result<TokenResponse, TokenError> {
    // The national portal takes client_secret_post only.
    if matches!(inner.variant(), super::Variant::B | super::Variant::C) && basic.is_some() {
        return Err(TokenError::InvalidClient);
    }
    let client = authenticate(inner, basic, params)?;
    match params.get("grant_type") {
        None => return Err(TokenError::InvalidRequest("grant_type is required")),
        Some("authorization_code") => {}
        Some(_) => return Err(TokenError::UnsupportedGrantType),
    }
    let code = params
        .get("code")
        .ok_or(TokenError::InvalidRequest("code is required"))?;
    let grant = inner
        .grants
        .take_code(code, now)
        .ok_or(TokenError::InvalidGrant(
            "code is unknown, expired or already used",
        ))?;
    check_grant(&grant, client, params)?;
    let facts = IdTokenFacts {
        issuer: &inner.issuer,
        client_id: &client.client_id,
        citizen: &grant.citizen,
        nonce: grant.nonce.as_deref(),
        auth_time: grant.auth_time,
        now,
        minimal: inner.variant() == super::Variant::B,
    };
    let id_token = id_token::issue(&facts, &inner.signing_key(), inner.tamper())?;
    Ok(TokenResponse {
        access_token: inner
            .grants
            .issue_access_token(grant.citizen.clone(), now)?,
        token_type: "Bearer",
        expires_in: ACCESS_TOKEN_TTL_SECS,
        id_token,
        scope: grant.scope,
    })
}

/// client_secret_basic or client_secret_post, never both (RFC 6749 §2.3).
fn authenticate<'a>(
    inner: &'a Inner,
    basic: Option<BasicCredentials>,
    params: &Params,
) -> Result<&'a MockClient, TokenError> {
    let (client_id, secret) = match basic {
        Some(_) if params.get("client_secret").is_some() => {
            return Err(TokenError::InvalidRequest(
                "use one client authentication method",
            ));
        }
        Some(basic) => {
            // A client may repeat its id in the body, but it must be the same client.
            if params
                .get("client_id")
                .is_some_and(|id| id != basic.client_id)
            {
                return Err(TokenError::InvalidRequest(
                    "client_id differs from Basic credentials",
                ));
            }
            (basic.client_id, basic.client_secret)
        }
        None => match (params.owned("client_id"), params.owned("client_secret")) {
            (Some(id), Some(secret)) => (id, secret),
            _ => return Err(TokenError::InvalidClient),
        },
    };
    let client = inner.client(&client_id).ok_or(TokenError::InvalidClient)?;
    aws_lc_rs::constant_time::verify_slices_are_equal(
        client.client_secret.as_bytes(),
        secret.as_bytes(),
    )
    .map_err(|_| TokenError::InvalidClient)?;
    Ok(client)
}

fn check_grant(grant: &CodeGrant, client: &MockClient, params: &Params) -> Result<(), TokenError> {
    if grant.client_id != client.client_id {
        return Err(TokenError::InvalidGrant(
            "code was issued to another client",
        ));
    }
    if params.get("redirect_uri") != Some(grant.redirect_uri.as_str()) {
        return Err(TokenError::InvalidGrant(
            "redirect_uri differs from the authorization request",
        ));
    }
    match (&grant.code_challenge, params.get("code_verifier")) {
        (None, None) => Ok(()),
        (Some(_), None) => Err(TokenError::InvalidGrant("code_verifier is required")),
        // Without a challenge a verifier proves nothing; accepting it would hide a client bug.
        (None, Some(_)) => Err(TokenError::InvalidGrant("no code_challenge was sent")),
        (Some(challenge), Some(verifier)) => {
            let computed = URL_SAFE_NO_PAD.encode(digest(&SHA256, verifier.as_bytes()));
            if is_pkce_value(verifier) && computed == *challenge {
                Ok(())
            } else {
                Err(TokenError::InvalidGrant(
                    "code_verifier does not match code_challenge",
                ))
            }
        }
    }
}

/// Decodes one `application/x-www-form-urlencoded` component: `+` is a space, `%XX` a byte.
fn form_decode(input: &str) -> Option<String> {
    let mut out = Vec::with_capacity(input.len());
    let mut bytes = input.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = [bytes.next()?, bytes.next()?];
                let hex = std::str::from_utf8(&hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
            }
            _ => out.push(b),
        }
    }
    String::from_utf8(out).ok()
}
