//! The authorization request (RFC 6749 §4.1.1, OIDC Core §3.1.2.1): parsing and validation.
//! Until the client and redirect URI are known good, errors are shown, never redirected
//! (RFC 6749 §4.1.2.1); after that they go back to the client with `state` and `iss`.

use serde::{Deserialize, Serialize};

use super::acr::AcrPolicy;
use super::dpop;
use super::error::{ErrorCode, OAuthError};
use super::params::Params;
use super::pkce;
use crate::accounts::Loa;
use crate::clients::redirect::is_registered;
use crate::clients::{Client, GrantType};
use crate::scope::Scope;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct AuthorizeRequest {
    pub client_id: String,
    pub redirect_uri: String,
    #[serde(with = "crate::scope::as_list")]
    pub scope: Scope,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub prompt_login: bool,
    pub prompt_none: bool,
    pub max_age: Option<i64>,
    /// The lowest VNeID level the RP accepts, from `acr_values`.
    pub required_loa: Option<Loa>,
    pub login_hint: Option<String>,
    pub ui_locales: Option<String>,
    pub resource: Option<String>,
    /// Individual claims the RP asked for in the ID token (`claims` parameter, OIDC Core §5.5),
    /// already limited to what the client may receive.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub id_token_claims: Vec<String>,
    /// The only person the RP accepts (`claims` with a `sub` value, OIDC Core §5.5.1): no
    /// session or login of anyone else may answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// `auth_time` asked for as an essential claim (OIDC Core §5.5.1): the ID token must carry
    /// it, so an unknown authentication time does not do.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub auth_time_required: bool,
    /// The id of a legacy account of the client's `legacy_source` that the app's backend says
    /// this person holds (`legacy_account`, accepted only in a pushed request): the linking
    /// step's candidate. Not yet checked against anything but its form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub legacy_account: Option<String>,
    /// The device a mobile client's request comes from (`device_id`, required of mobile
    /// clients, ignored for web clients): bound into the code, the session and the grant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// The client's device group (`device_slot`) when it is a mobile client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_group: Option<String>,
    /// RFC 9449 §10: the thumbprint of the DPoP key the code may be redeemed with only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpop_jkt: Option<String>,
    /// The upstream the RP chose (`idp_hint`, by its name): no choice on the login page, and
    /// only a session that upstream started may answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idp_hint: Option<String>,
}

impl AuthorizeRequest {
    /// Vietnamese unless the RP asked for English first.
    pub fn english(&self) -> bool {
        self.ui_locales
            .as_deref()
            .and_then(|l| l.split(' ').next())
            .is_some_and(|l| l.starts_with("en"))
    }
}

/// The error for an `idp_hint` that names none of the enabled upstreams (`names`).
pub fn check_idp_hint(request: &AuthorizeRequest, names: &[String]) -> Result<(), OAuthError> {
    match &request.idp_hint {
        Some(hint) if !names.iter().any(|n| n == hint) => Err(OAuthError::invalid_request(
            "idp_hint names no identity provider of this broker",
        )),
        _ => Ok(()),
    }
}

/// Where an authorization request's parameters came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestOrigin {
    /// From the browser; `par_required` when the server accepts pushed requests only.
    Browser { par_required: bool },
    /// Pushed by the authenticated client (RFC 9126), at `/par` or taken back by `request_uri`.
    Pushed,
}

/// The longest `device_id` accepted (a UUID is 36 characters; vendor ids are shorter).
const MAX_DEVICE_ID_LEN: usize = 128;

/// The longest `legacy_account` accepted: it is stored with the pending login.
const MAX_LEGACY_ACCOUNT_LEN: usize = 128;

/// Why an authorization request failed, and where the answer goes.
#[derive(Debug)]
pub enum AuthorizeError {
    /// Unknown client or bad redirect URI: show an error page, do not redirect.
    Page(OAuthError),
    /// Anything else: redirect to the client with the error.
    Redirect {
        redirect_uri: String,
        state: Option<String>,
        error: OAuthError,
    },
}

/// Validates the client and redirect URI: the part whose errors are never redirected.
pub fn check_client(client: Option<&Client>, params: &Params) -> Result<String, AuthorizeError> {
    let Some(client) = client else {
        return Err(AuthorizeError::Page(OAuthError::new(
            ErrorCode::InvalidClient,
            "unknown client",
        )));
    };
    let redirect_uri = match params.get("redirect_uri") {
        Some(uri) if is_registered(&client.metadata, uri) => uri.to_string(),
        Some(_) => {
            return Err(AuthorizeError::Page(OAuthError::invalid_request(
                "redirect_uri is not registered for this client",
            )))
        }
        // OIDC requires redirect_uri; it is never guessed from the registration.
        None => {
            return Err(AuthorizeError::Page(OAuthError::invalid_request(
                "redirect_uri is required",
            )))
        }
    };
    Ok(redirect_uri)
}

pub fn parse(
    client: &Client,
    redirect_uri: String,
    params: &Params,
    acr: &AcrPolicy,
    origin: RequestOrigin,
) -> Result<AuthorizeRequest, AuthorizeError> {
    let state = params.get("state").map(str::to_string);
    let fail = |error: OAuthError| AuthorizeError::Redirect {
        redirect_uri: redirect_uri.clone(),
        state: state.clone(),
        error,
    };
    // OIDC Core §6.1–6.2: the codes of an OP that supports neither.
    if params.contains("request") {
        return Err(fail(OAuthError::new(
            ErrorCode::RequestNotSupported,
            "request objects are not supported",
        )));
    }
    // Our own pushed requests are taken back before parsing; any other reference is a request
    // object to fetch, which the broker does not do.
    if params.contains("request_uri") {
        return Err(fail(OAuthError::new(
            ErrorCode::RequestUriNotSupported,
            "request_uri is supported only for pushed authorization requests",
        )));
    }
    let pushed = origin == RequestOrigin::Pushed;
    let par_required = match origin {
        RequestOrigin::Browser { par_required } => par_required,
        RequestOrigin::Pushed => false,
    };
    if par_required || (!pushed && client.metadata.require_pushed_authorization_requests) {
        return Err(fail(OAuthError::invalid_request(
            "authorization requests must be pushed (/par) first",
        )));
    }
    let legacy_account = legacy_account(client, params, pushed).map_err(&fail)?;
    let idp_hint = params.get("idp_hint").map(str::to_string);
    let device_id = device_id(client, params).map_err(&fail)?;
    let dpop_jkt = match params.get("dpop_jkt") {
        Some(jkt) if dpop::valid_jkt(jkt) => Some(jkt.to_string()),
        Some(_) => {
            return Err(fail(OAuthError::invalid_request(
                "dpop_jkt must be a base64url SHA-256 JWK thumbprint",
            )))
        }
        None => None,
    };
    match params.get("response_type") {
        Some("code") => {}
        Some(_) => {
            return Err(fail(OAuthError::new(
                ErrorCode::UnsupportedResponseType,
                "only response_type=code is supported",
            )))
        }
        None => {
            return Err(fail(OAuthError::invalid_request(
                "response_type is required",
            )))
        }
    }
    if let Some(mode) = params.get("response_mode") {
        if mode != "query" {
            return Err(fail(OAuthError::invalid_request(
                "only response_mode=query is supported",
            )));
        }
    }
    if !client.metadata.allows_grant(GrantType::AuthorizationCode) {
        return Err(fail(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "client may not use the authorization code flow",
        )));
    }
    let scope = params.get("scope").map(Scope::parse).unwrap_or_default();
    if !scope.contains("openid") {
        return Err(fail(OAuthError::new(
            ErrorCode::InvalidScope,
            "scope must include openid",
        )));
    }
    if scope.iter().any(|s| !client.metadata.allows_scope(s)) {
        return Err(fail(OAuthError::new(
            ErrorCode::InvalidScope,
            "a requested scope is not allowed for this client",
        )));
    }
    let code_challenge = match (
        params.get("code_challenge"),
        params.get("code_challenge_method"),
    ) {
        (Some(c), Some("S256")) if pkce::valid_challenge(c) => Some(c.to_string()),
        (Some(_), Some("S256")) => {
            return Err(fail(OAuthError::invalid_request(
                "code_challenge is malformed",
            )))
        }
        (Some(_), Some(_)) => {
            return Err(fail(OAuthError::invalid_request(
                "only code_challenge_method=S256 is supported",
            )))
        }
        (Some(_), None) => {
            return Err(fail(OAuthError::invalid_request(
                "code_challenge_method=S256 is required",
            )))
        }
        (None, Some(_)) => {
            return Err(fail(OAuthError::invalid_request(
                "code_challenge_method without code_challenge",
            )))
        }
        (None, None) => None,
    };
    if client.metadata.is_public() && code_challenge.is_none() {
        return Err(fail(OAuthError::invalid_request(
            "public clients must use PKCE (S256)",
        )));
    }
    let prompts: Vec<&str> = params
        .get("prompt")
        .map(|p| p.split(' ').collect())
        .unwrap_or_default();
    let prompt_none = prompts.contains(&"none");
    if prompt_none && prompts.len() > 1 {
        return Err(fail(OAuthError::invalid_request(
            "prompt=none cannot be combined with other values",
        )));
    }
    if prompts
        .iter()
        .any(|p| !matches!(*p, "none" | "login" | "consent" | "select_account"))
    {
        return Err(fail(OAuthError::invalid_request("unknown prompt value")));
    }
    let max_age = match params.get("max_age") {
        Some(v) => match v.parse::<i64>() {
            Ok(n) if n >= 0 => Some(n),
            _ => {
                return Err(fail(OAuthError::invalid_request(
                    "max_age must be a non-negative integer",
                )))
            }
        },
        None => None,
    };
    let claims = match params.get("claims") {
        Some(raw) => ClaimsRequest::parse(raw, acr).map_err(&fail)?,
        None => ClaimsRequest::default(),
    };
    let required_loa = match (
        params.get("acr_values").and_then(|v| acr.required_level(v)),
        claims.acr_level,
    ) {
        (_, Some(level)) => Some(level),
        (from_values, None) => from_values,
    };
    let id_token_claims = claims
        .id_token
        .iter()
        .filter(|c| claim_scope(c).is_some_and(|s| client.metadata.allows_scope(s)))
        .cloned()
        .collect();
    let resource = match params.get("resource") {
        Some(r) => {
            if !client.metadata.allows_resource(r) {
                return Err(fail(OAuthError::new(
                    ErrorCode::InvalidTarget,
                    "resource is not allowed for this client",
                )));
            }
            Some(r.to_string())
        }
        None => None,
    };
    Ok(AuthorizeRequest {
        client_id: client.client_id.clone(),
        redirect_uri: redirect_uri.clone(),
        scope,
        state: state.clone(),
        nonce: params.get("nonce").map(str::to_string),
        code_challenge,
        prompt_login: prompts.contains(&"login"),
        prompt_none,
        max_age,
        required_loa,
        login_hint: params.get("login_hint").map(str::to_string),
        ui_locales: params.get("ui_locales").map(str::to_string),
        resource,
        id_token_claims,
        subject: claims.subject,
        auth_time_required: claims.auth_time_essential,
        legacy_account,
        device_group: device_id
            .is_some()
            .then(|| {
                client
                    .metadata
                    .device_group(&client.client_id)
                    .map(str::to_string)
            })
            .flatten(),
        device_id,
        idp_hint,
        dpop_jkt,
    })
}

/// A mobile client names the device it runs on; without it the one-device rule could not hold,
/// so the request is refused. It is the app's own assertion (see docs/devices.md): opaque,
/// 1 to 128 characters of `A-Z a-z 0-9 . _ : -`. Web clients' `device_id` is ignored.
fn device_id(client: &Client, params: &Params) -> Result<Option<String>, OAuthError> {
    if client.metadata.device_class != crate::clients::DeviceClass::Mobile {
        return Ok(None);
    }
    let Some(id) = params.get("device_id") else {
        return Err(OAuthError::invalid_request(
            "device_id is required: this client is a mobile application (device_class mobile)",
        ));
    };
    let well_formed = (1..=MAX_DEVICE_ID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    if !well_formed {
        return Err(OAuthError::invalid_request(
            "device_id must be 1 to 128 characters of A-Z, a-z, 0-9, '.', '_', ':' and '-'",
        ));
    }
    Ok(Some(id.to_string()))
}

/// `legacy_account` must come from the app's authenticated backend (a pushed request) of a
/// client registered with a `legacy_source`: a value in a browser's URL could name anyone's.
fn legacy_account(
    client: &Client,
    params: &Params,
    pushed: bool,
) -> Result<Option<String>, OAuthError> {
    let Some(id) = params.get("legacy_account") else {
        return Ok(None);
    };
    if !pushed {
        return Err(OAuthError::invalid_request(
            "legacy_account is accepted only in a pushed authorization request (/par)",
        ));
    }
    if client.metadata.legacy_source().is_none() {
        return Err(OAuthError::invalid_request(
            "legacy_account needs a client registered with a legacy_source",
        ));
    }
    // A public client's `/par` proves nothing about who sends it: anyone could name anyone's
    // legacy account with its client_id alone.
    if client.metadata.is_public() {
        return Err(OAuthError::invalid_request(
            "legacy_account needs a client that authenticates (not token_endpoint_auth_method none)",
        ));
    }
    let well_formed = id.chars().count() <= MAX_LEGACY_ACCOUNT_LEN
        && !id.chars().any(|c| c.is_whitespace() || c.is_control());
    if !well_formed {
        return Err(OAuthError::invalid_request("legacy_account is malformed"));
    }
    Ok(Some(id.to_string()))
}

/// The scope under which a user claim is released (OIDC Core §5.4), if the broker has it.
pub fn claim_scope(claim: &str) -> Option<&'static str> {
    match claim {
        "name" | "birthdate" | "gender" => Some("profile"),
        "personal_id" => Some("personal_id"),
        "phone_number" | "phone_number_verified" => Some("phone"),
        _ => None,
    }
}

/// What the broker takes from the `claims` request parameter (OIDC Core §5.5).
#[derive(Debug, Default, PartialEq)]
pub struct ClaimsRequest {
    /// Individual claims asked for in the ID token.
    pub id_token: Vec<String>,
    /// The lowest level that satisfies an `acr` request with `value`/`values`.
    pub acr_level: Option<Loa>,
    /// A `sub` request with a `value`: the only person the RP accepts.
    pub subject: Option<String>,
    /// `auth_time` requested as essential.
    pub auth_time_essential: bool,
}

impl ClaimsRequest {
    /// Parses the JSON; a malformed request is `invalid_request`, and an essential `acr` that
    /// names none of the broker's values is `unmet_authentication_requirements` (§5.5.1.1).
    pub fn parse(raw: &str, acr: &AcrPolicy) -> Result<Self, OAuthError> {
        let malformed = || OAuthError::invalid_request("claims is not a valid claims request");
        let value: serde_json::Value = serde_json::from_str(raw).map_err(|_| malformed())?;
        let top = value.as_object().ok_or_else(malformed)?;
        let mut out = ClaimsRequest::default();
        for (member, requests) in top {
            // §5.5: members other than these two are ignored when not understood.
            if member != "id_token" && member != "userinfo" {
                continue;
            }
            let requests = requests.as_object().ok_or_else(malformed)?;
            for (name, request) in requests {
                let request = match request {
                    serde_json::Value::Null => None,
                    serde_json::Value::Object(o) => Some(o),
                    _ => return Err(malformed()),
                };
                if name == "auth_time" {
                    match request.and_then(|r| r.get("essential")) {
                        None => {}
                        Some(serde_json::Value::Bool(essential)) => {
                            out.auth_time_essential |= *essential;
                        }
                        Some(_) => return Err(malformed()),
                    }
                    continue;
                }
                if name == "acr" {
                    if let Some(level) = Self::acr_request(request, acr)? {
                        out.acr_level = Some(out.acr_level.map_or(level, |l| l.max(level)));
                    }
                    continue;
                }
                if name == "sub" {
                    match request.and_then(|r| r.get("value")) {
                        None => {}
                        Some(serde_json::Value::String(v))
                            if out.subject.as_ref().is_none_or(|s| s == v) =>
                        {
                            out.subject = Some(v.clone());
                        }
                        // Two different persons asked for at once: nobody can satisfy it.
                        Some(serde_json::Value::String(_)) => {
                            return Err(OAuthError::invalid_request(
                                "claims asks for two different subjects",
                            ))
                        }
                        Some(_) => return Err(malformed()),
                    }
                    continue;
                }
                if member == "id_token" && !out.id_token.contains(name) {
                    out.id_token.push(name.clone());
                }
            }
        }
        Ok(out)
    }

    fn acr_request(
        request: Option<&serde_json::Map<String, serde_json::Value>>,
        acr: &AcrPolicy,
    ) -> Result<Option<Loa>, OAuthError> {
        let malformed = || OAuthError::invalid_request("claims: acr request is malformed");
        let Some(request) = request else {
            return Ok(None);
        };
        let essential = match request.get("essential") {
            None => false,
            Some(serde_json::Value::Bool(b)) => *b,
            Some(_) => return Err(malformed()),
        };
        let mut wanted: Vec<&str> = Vec::new();
        match request.get("value") {
            None => {}
            Some(serde_json::Value::String(v)) => wanted.push(v),
            Some(_) => return Err(malformed()),
        }
        match request.get("values") {
            None => {}
            Some(serde_json::Value::Array(list)) => {
                for v in list {
                    wanted.push(v.as_str().ok_or_else(malformed)?);
                }
            }
            Some(_) => return Err(malformed()),
        }
        if wanted.is_empty() {
            return Ok(None);
        }
        let level = wanted.iter().filter_map(|v| acr.level(v)).min();
        match level {
            Some(level) => Ok(Some(level)),
            None if essential => Err(OAuthError::new(
                ErrorCode::UnmetAuthenticationRequirements,
                "none of the requested acr values can be met",
            )),
            None => Ok(None),
        }
    }
}

/// Whether an existing SSO session can answer this request without a new upstream login.
pub fn session_satisfies(
    req: &AuthorizeRequest,
    auth_time: Option<i64>,
    loa: Loa,
    now: i64,
) -> bool {
    if req.prompt_login || (req.auth_time_required && auth_time.is_none()) {
        return false;
    }
    if let Some(max_age) = req.max_age {
        // An unknown authentication time cannot be shown to be recent enough.
        if auth_time.is_none_or(|t| now - t > max_age) {
            return false;
        }
    }
    req.required_loa.is_none_or(|required| loa >= required)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(legacy_source: Option<&str>) -> Client {
        let metadata = serde_json::json!({
            "client_name": "Hue-S", "redirect_uris": ["https://app.example/cb"],
            "grant_types": ["authorization_code"], "token_endpoint_auth_method": "client_secret_basic",
            "scope": "openid", "legacy_source": legacy_source
        });
        Client {
            client_id: "hue-s".into(),
            secret_hash: None,
            metadata: serde_json::from_value(metadata).unwrap(),
            created_at: 0,
            updated_at: 0,
        }
    }

    fn params(extra: &[(&str, &str)]) -> Params {
        let mut pairs = vec![("response_type", "code"), ("scope", "openid")];
        pairs.extend_from_slice(extra);
        Params::collect(
            pairs
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
        .unwrap()
    }

    /// The linking step reads `legacy_account` from the stored request: only a pushed request
    /// of a client with a `legacy_source` carries one.
    #[test]
    fn legacy_account_is_carried_only_when_pushed() {
        let acr = AcrPolicy::new("urn:vn:hue:broker:loa:1", "urn:vn:hue:broker:loa:2");
        let with = params(&[("legacy_account", "HS1003230")]);
        let redirect = || "https://app.example/cb".to_string();
        let req = parse(
            &client(Some("hue-s")),
            redirect(),
            &with,
            &acr,
            RequestOrigin::Pushed,
        )
        .unwrap();
        assert_eq!(req.legacy_account.as_deref(), Some("HS1003230"));
        let browser = RequestOrigin::Browser {
            par_required: false,
        };
        assert!(parse(&client(Some("hue-s")), redirect(), &with, &acr, browser).is_err());
        assert!(parse(
            &client(None),
            redirect(),
            &with,
            &acr,
            RequestOrigin::Pushed
        )
        .is_err());
        let req = parse(&client(None), redirect(), &params(&[]), &acr, browser).unwrap();
        assert_eq!(req.legacy_account, None);
    }

    /// Pending logins already in the session store keep reading and writing the same JSON:
    /// the scope as a list, the required level as an integer.
    #[test]
    fn stored_request_keeps_its_format() {
        let stored = serde_json::json!({
            "client_id": "app", "redirect_uri": "https://app.example/cb",
            "scope": ["openid", "profile"], "state": "s", "nonce": null,
            "code_challenge": null, "prompt_login": false, "prompt_none": false,
            "max_age": null, "required_loa": 2, "login_hint": null, "ui_locales": null,
            "resource": null
        });
        let req: AuthorizeRequest = serde_json::from_value(stored.clone()).unwrap();
        assert_eq!(req.scope, Scope::parse("openid profile"));
        assert_eq!(req.required_loa, Some(Loa::Two));
        assert_eq!(serde_json::to_value(&req).unwrap(), stored);
    }
}
