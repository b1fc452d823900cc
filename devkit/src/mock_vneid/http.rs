//! The mock's routes: the only place that knows actix. Each handler parses, makes one protocol
//! call and maps the outcome to a response.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use askama::Template;
use serde_json::json;

use super::authorize::{self, AuthorizeOutcome};
use super::pages::{ChoosePage, ErrorPage};
use super::token::{self, BasicCredentials, TokenError};
use super::MockVneid;
use crate::params::Params;
use crate::util::unix_now;

type Mock = web::Data<MockVneid>;

pub(super) fn configure(mock: MockVneid, cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::Data::new(mock))
        .route(
            "/.well-known/openid-configuration",
            web::get().to(discovery_get),
        )
        .route("/jwks", web::get().to(jwks_get))
        .route("/authorize", web::get().to(authorize_get))
        .route("/authorize/choose", web::post().to(authorize_choose_post))
        .route("/token", web::post().to(token_post))
        .route("/userinfo", web::get().to(userinfo_get))
        .route("/userinfo", web::post().to(userinfo_get));
}

async fn discovery_get(mock: Mock) -> HttpResponse {
    let inner = mock.inner();
    HttpResponse::Ok().json(json!({
        "issuer": inner.issuer,
        "authorization_endpoint": inner.endpoint("/authorize"),
        "token_endpoint": inner.endpoint("/token"),
        "userinfo_endpoint": inner.endpoint("/userinfo"),
        "jwks_uri": inner.endpoint("/jwks"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": true,
        "scopes_supported": ["openid", "profile", "email"],
        "claims_supported": [
            "sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "acr",
            "TechID", "SoDinhDanh", "SoCMND", "HoVaTen", "NgayThangNamSinh", "LoaiTaiKhoan"
        ],
    }))
}

async fn jwks_get(mock: Mock) -> HttpResponse {
    let key = mock.inner().signing_key();
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=60"))
        .json(json!({ "keys": [key.jwk] }))
}

#[tracing::instrument(name = "mock_vneid.authorize", skip_all)]
async fn authorize_get(mock: Mock, req: HttpRequest) -> HttpResponse {
    match Params::parse(req.query_string().as_bytes()) {
        Ok(params) => respond(&mock, authorize::start(mock.inner(), &params, unix_now())),
        Err(e) => error_page(StatusCode::BAD_REQUEST, &e.to_string()),
    }
}

#[tracing::instrument(name = "mock_vneid.authorize_choose", skip_all)]
async fn authorize_choose_post(mock: Mock, body: web::Bytes) -> HttpResponse {
    match Params::parse(&body) {
        Ok(params) => respond(&mock, authorize::choose(mock.inner(), &params, unix_now())),
        Err(e) => error_page(StatusCode::BAD_REQUEST, &e.to_string()),
    }
}

fn respond(mock: &MockVneid, outcome: anyhow::Result<AuthorizeOutcome>) -> HttpResponse {
    match outcome {
        Ok(AuthorizeOutcome::Redirect(url)) => HttpResponse::SeeOther()
            .insert_header((header::LOCATION, url.as_str()))
            .finish(),
        Ok(AuthorizeOutcome::Reject(message)) => error_page(StatusCode::BAD_REQUEST, &message),
        Ok(AuthorizeOutcome::Choose(request)) => {
            let action = mock.inner().endpoint("/authorize/choose");
            html(
                StatusCode::OK,
                ChoosePage::new(action, &request, mock.citizens()).render(),
            )
        }
        Err(e) => {
            tracing::error!(error = ?e, "mock VNeID failed to issue a code");
            error_page(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
    }
}

#[tracing::instrument(name = "mock_vneid.token", skip_all)]
async fn token_post(mock: Mock, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    if mock.inner().token_call_hangs() {
        tokio::time::sleep(std::time::Duration::from_secs(60)).await;
    }
    match mock.inner().tamper() {
        super::Tamper::TokenHangs => {
            tokio::time::sleep(std::time::Duration::from_secs(60)).await;
        }
        super::Tamper::TokenRefusesPlainly => {
            return HttpResponse::BadRequest()
                .content_type("text/html")
                .body("<html><body>Bad request</body></html>");
        }
        super::Tamper::TokenFails => {
            return HttpResponse::BadGateway()
                .content_type("text/html")
                .body("<html><body><h1>502 Bad Gateway</h1></body></html>");
        }
        _ => {}
    }
    let mut response = match token_request(&mock, &req, &body) {
        Ok(tokens) => match serde_json::to_vec(&tokens)
            .map_err(anyhow::Error::from)
            .and_then(|json| mock.inner().seal(json))
        {
            Ok(body) => HttpResponse::Ok()
                .content_type("application/json")
                .body(body),
            Err(e) => token_error(&TokenError::Internal(e)),
        },
        Err(e) => token_error(&e),
    };
    // RFC 6749 §5.1: token responses must not be cached, errors included.
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

fn token_request(
    mock: &MockVneid,
    req: &HttpRequest,
    body: &[u8],
) -> Result<token::TokenResponse, TokenError> {
    if req.content_type() != "application/x-www-form-urlencoded" {
        return Err(TokenError::InvalidRequest(
            "body must be application/x-www-form-urlencoded",
        ));
    }
    let params =
        Params::parse(body).map_err(|_| TokenError::InvalidRequest("a parameter is repeated"))?;
    let basic = match req.headers().get(header::AUTHORIZATION) {
        Some(value) => Some(BasicCredentials::parse(
            value.to_str().map_err(|_| TokenError::InvalidClient)?,
        )?),
        None => None,
    };
    token::exchange(mock.inner(), basic, &params, unix_now())
}

fn token_error(e: &TokenError) -> HttpResponse {
    let status = match e {
        TokenError::InvalidClient => StatusCode::UNAUTHORIZED,
        TokenError::Internal(inner) => {
            tracing::error!(error = ?inner, "mock VNeID token endpoint failed");
            StatusCode::INTERNAL_SERVER_ERROR
        }
        _ => StatusCode::BAD_REQUEST,
    };
    let mut builder = HttpResponse::build(status);
    if status == StatusCode::UNAUTHORIZED {
        builder.insert_header((header::WWW_AUTHENTICATE, r#"Basic realm="mock-vneid""#));
    }
    builder.json(json!({ "error": e.code(), "error_description": e.to_string() }))
}

#[tracing::instrument(name = "mock_vneid.userinfo", skip_all)]
async fn userinfo_get(mock: Mock, req: HttpRequest) -> HttpResponse {
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    let inner = mock.inner();
    let citizen = token.and_then(|t| inner.grants.access_token_citizen(t, unix_now()));
    match citizen {
        Some(citizen) => {
            let mut claims = citizen.claims.clone();
            if inner.tamper() == super::Tamper::UserinfoOtherSub {
                claims.insert("sub".into(), json!("someone-else"));
            }
            match serde_json::to_vec(&claims)
                .map_err(anyhow::Error::from)
                .and_then(|json| inner.seal(json))
            {
                Ok(body) => HttpResponse::Ok()
                    .insert_header((header::CACHE_CONTROL, "no-store"))
                    .content_type("application/json")
                    .body(body),
                Err(e) => {
                    tracing::error!(error = ?e, "mock VNeID userinfo failed");
                    HttpResponse::InternalServerError().finish()
                }
            }
        }
        None => HttpResponse::Unauthorized()
            .insert_header((header::WWW_AUTHENTICATE, r#"Bearer error="invalid_token""#))
            .json(json!({ "error": "invalid_token" })),
    }
}

fn error_page(status: StatusCode, message: &str) -> HttpResponse {
    html(status, ErrorPage { message }.render())
}

fn html(status: StatusCode, rendered: askama::Result<String>) -> HttpResponse {
    match rendered {
        Ok(body) => HttpResponse::build(status)
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .content_type("text/html; charset=utf-8")
            .body(body),
        Err(e) => {
            tracing::error!(error = %e, "mock VNeID page failed to render");
            HttpResponse::InternalServerError().finish()
        }
    }
}
