//! OpenID Provider metadata (OIDC Discovery 1.0, RFC 8414).

use serde_json::{json, Value};

use super::Provider;

/// The document's bytes, serialised once per process.
pub fn bytes(p: &Provider) -> bytes::Bytes {
    p.discovery
        .get_or_init(|| bytes::Bytes::from(serde_json::to_vec(&metadata(p)).unwrap_or_default()))
        .clone()
}

pub fn metadata(p: &Provider) -> Value {
    let e = |path: &str| p.endpoint(path);
    json!({
        "issuer": &*p.issuer,
        "authorization_endpoint": e("/authorize"),
        "token_endpoint": e("/token"),
        "userinfo_endpoint": e("/userinfo"),
        "jwks_uri": e("/jwks"),
        "revocation_endpoint": e("/revoke"),
        "introspection_endpoint": e("/introspect"),
        "end_session_endpoint": e("/end_session"),
        "pushed_authorization_request_endpoint": e("/par"),
        "require_pushed_authorization_requests": p.require_pushed_requests,
        "scopes_supported": ["openid", "profile", "phone", "personal_id", "roles", "role_request", "role_approval"],
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256", "ES256", "EdDSA"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS256", "PS256", "ES256", "EdDSA"],
        "dpop_signing_alg_values_supported": super::dpop::SIGNING_ALGS,
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt"],
        "code_challenge_methods_supported": ["S256"],
        "acr_values_supported": p.acr.all(),
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr", "sid", "azp", "at_hash",
                             "name", "birthdate", "gender", "phone_number",
                             "phone_number_verified", "personal_id", "legacy_accounts", "roles"],
        "claims_parameter_supported": true,
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
        "authorization_response_iss_parameter_supported": true,
        "backchannel_logout_supported": true,
        "backchannel_logout_session_supported": true,
        "ui_locales_supported": ["vi", "en"],
        "prompt_values_supported": ["none", "login", "consent", "select_account"],
    })
}
