//! OAuth errors → HTTP responses: JSON for back-channel endpoints (RFC 6749 §5.2), with
//! `WWW-Authenticate` where RFC 6749 §5.2 / RFC 6750 §3 require it.

use actix_web::http::header;
use actix_web::{HttpResponse, HttpResponseBuilder};
use serde_json::json;

use crate::oidc::error::OAuthError;

/// A client-authenticated endpoint's error. Every 401 carries a challenge (RFC 9110 §15.5.2):
/// `Basic`, the scheme RFC 6749 §2.3.1 defines for client credentials, whether the client tried
/// Basic, sent its secret in the body, or sent a malformed Authorization header.
pub fn json_error(error: &OAuthError) -> HttpResponse {
    let status = actix_web::http::StatusCode::from_u16(error.code.status())
        .unwrap_or(actix_web::http::StatusCode::BAD_REQUEST);
    let mut builder = HttpResponseBuilder::new(status);
    no_store(&mut builder);
    if status == actix_web::http::StatusCode::UNAUTHORIZED {
        builder.insert_header((header::WWW_AUTHENTICATE, "Basic realm=\"broker\""));
    }
    builder.json(json!({"error": error.code.as_str(), "error_description": error.description}))
}

/// RFC 6750 §3.1: a request with no credentials at all gets the bare challenge, no error code.
pub fn bearer_missing() -> HttpResponse {
    let mut builder = HttpResponse::Unauthorized();
    no_store(&mut builder);
    builder
        .insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"broker\""))
        .finish()
}

pub fn bearer_error(error: &OAuthError) -> HttpResponse {
    let status = actix_web::http::StatusCode::from_u16(error.code.status())
        .unwrap_or(actix_web::http::StatusCode::UNAUTHORIZED);
    let mut builder = HttpResponseBuilder::new(status);
    no_store(&mut builder);
    let challenge = format!("Bearer realm=\"broker\", error=\"{}\"", error.code.as_str());
    builder.insert_header((header::WWW_AUTHENTICATE, challenge));
    builder.json(json!({"error": error.code.as_str(), "error_description": error.description}))
}

pub fn no_store(builder: &mut HttpResponseBuilder) {
    builder
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::PRAGMA, "no-cache"));
}
