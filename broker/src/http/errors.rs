//! OAuth errors → HTTP responses: JSON for back-channel endpoints (RFC 6749 §5.2), with
//! `WWW-Authenticate` where RFC 6749 §5.2 / RFC 6750 §3 require it.

use actix_web::http::header;
use actix_web::{HttpResponse, HttpResponseBuilder};
use serde_json::json;

use crate::oidc::error::{ErrorCode, OAuthError};

pub fn json_error(error: &OAuthError, basic_auth_used: bool) -> HttpResponse {
    let status = actix_web::http::StatusCode::from_u16(error.code.status())
        .unwrap_or(actix_web::http::StatusCode::BAD_REQUEST);
    let mut builder = HttpResponseBuilder::new(status);
    no_store(&mut builder);
    if error.code == ErrorCode::InvalidClient && basic_auth_used {
        builder.insert_header((header::WWW_AUTHENTICATE, "Basic realm=\"broker\""));
    }
    builder.json(json!({"error": error.code.as_str(), "error_description": error.description}))
}

pub fn bearer_error(error: &OAuthError) -> HttpResponse {
    let status = actix_web::http::StatusCode::from_u16(error.code.status())
        .unwrap_or(actix_web::http::StatusCode::UNAUTHORIZED);
    let mut builder = HttpResponseBuilder::new(status);
    no_store(&mut builder);
    let challenge = match error.code {
        ErrorCode::InvalidRequest if error.description.contains("missing") => {
            "Bearer realm=\"broker\"".to_string()
        }
        code => format!("Bearer realm=\"broker\", error=\"{}\"", code.as_str()),
    };
    builder.insert_header((header::WWW_AUTHENTICATE, challenge));
    builder.json(json!({"error": error.code.as_str(), "error_description": error.description}))
}

pub fn no_store(builder: &mut HttpResponseBuilder) {
    builder
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::PRAGMA, "no-cache"));
}
