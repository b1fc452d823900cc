//! The one place where a failure becomes an HTTP answer: [`HttpError`] implements actix's
//! `ResponseError`, so handlers return `Result` and the domain never picks a status. JSON at
//! the back channel (RFC 6749 §5.2) with a challenge on every 401 (RFC 9110 §15.5.2), bearer
//! challenges at protected resources (RFC 6750 §3), bilingual pages and redirects to the client
//! at the front channel.

use std::fmt;

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, HttpResponseBuilder, ResponseError};
use serde_json::json;

use super::front::redirect_to_client;
use super::pages::message_page;
use crate::abuse::Refusal;
use crate::clients::registration::RegistrationError;
use crate::login::ClientRedirect;
use crate::oidc::dpop;
use crate::oidc::error::{ErrorCode, OAuthError};
use crate::operators::OperatorError;

/// Why a protected-resource request failed (RFC 6750 §3.1).
#[derive(Debug)]
pub enum BearerFailure {
    /// No credentials at all: the bare challenge, no error code.
    Missing,
    /// Credentials that did not do: the challenge names the error.
    Refused(OAuthError),
    /// Credentials sent with the DPoP scheme that did not do: the DPoP challenge names the
    /// error and the proof algorithms accepted (RFC 9449 §7.1).
    Dpop(OAuthError),
}

/// A front-channel page: its status, RFC code, and title and message in both languages.
#[derive(Debug)]
pub struct Page {
    pub status: StatusCode,
    pub code: &'static str,
    pub title: (&'static str, &'static str),
    pub message: (&'static str, &'static str),
    pub english: bool,
}

const SIGN_IN_FAILED: (&str, &str) = ("Không thể đăng nhập", "Sign-in failed");

impl Page {
    /// A sign-in page titled "Sign-in failed".
    pub fn sign_in(
        status: StatusCode,
        code: &'static str,
        message: (&'static str, &'static str),
        english: bool,
    ) -> Self {
        Self {
            status,
            code,
            title: SIGN_IN_FAILED,
            message,
            english,
        }
    }
}

#[derive(Debug)]
pub enum HttpError {
    /// A back-channel JSON error.
    Json(OAuthError),
    /// A protected resource's error, with its challenge.
    Bearer(BearerFailure),
    /// A bad sign-in request: a page, never a redirect (RFC 6749 §4.1.2.1).
    BadSignIn { error: OAuthError, english: bool },
    /// A bad sign-out request: a page titled as such.
    BadSignOut { error: OAuthError, english: bool },
    /// Any other page.
    Page(Page),
    /// Back to the client with an error (RFC 6749 §4.1.2.1).
    ToClient(ClientRedirect),
    /// A login budget is spent: 429 with `Retry-After`.
    TooManyLogins { refusal: Refusal, english: bool },
    /// A front-channel backend failure; already logged with its chain. (The back channel's
    /// become `temporarily_unavailable` JSON through `Json`.)
    Unavailable { english: bool },
    /// The upstream identity provider is not answering (timeouts, or the circuit breaker is
    /// open): "VNeID đang gián đoạn", at once, with the hotlines and `Retry-After`.
    UpstreamDown { english: bool, retry_after: u64 },
    /// The admin API without a valid admin token.
    AdminDenied,
    /// The bootstrap token at an endpoint that needs an operator's token.
    BootstrapOnly,
    /// The operators endpoints' errors.
    Operators(OperatorError),
    /// The admin API's registration errors (RFC 7591 §3.2.2 codes).
    Registration(RegistrationError),
}

/// A JSON API's refusal, `{"error", "error_description"}`, never cached (the admin API and the
/// roles API).
pub fn problem(status: StatusCode, error: &str, description: &str) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(json!({"error": error, "error_description": description}))
}

/// A JSON API's backend failure: logged with its chain, answered `temporarily_unavailable`.
pub fn unavailable(e: anyhow::Error) -> HttpError {
    HttpError::Json(OAuthError::unavailable(&e))
}

impl HttpError {
    /// Logs an unexpected backend failure with its whole chain and reports it without detail.
    pub fn unavailable_page(error: &anyhow::Error, english: bool) -> Self {
        tracing::error!(error = format!("{error:#}"), "backend failure");
        HttpError::Unavailable { english }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::Json(e)
            | HttpError::Bearer(BearerFailure::Refused(e) | BearerFailure::Dpop(e))
            | HttpError::BadSignIn { error: e, .. }
            | HttpError::BadSignOut { error: e, .. } => write!(f, "{e}"),
            HttpError::Bearer(BearerFailure::Missing) => f.write_str("no credentials"),
            HttpError::Page(p) => f.write_str(p.code),
            HttpError::ToClient(_) => f.write_str("error sent to the client"),
            HttpError::TooManyLogins { .. } => f.write_str("login budget spent"),
            HttpError::Unavailable { .. } => f.write_str("temporarily unavailable"),
            HttpError::UpstreamDown { .. } => f.write_str("the identity provider is not answering"),
            HttpError::AdminDenied => f.write_str("admin token required"),
            HttpError::BootstrapOnly => f.write_str("an operator's token is required"),
            HttpError::Operators(e) => write!(f, "{e}"),
            HttpError::Registration(e) => write!(f, "{e}"),
        }
    }
}

/// Backend failures reach the back channel as `temporarily_unavailable` JSON.
impl From<OAuthError> for HttpError {
    fn from(error: OAuthError) -> Self {
        HttpError::Json(error)
    }
}

impl ResponseError for HttpError {
    fn status_code(&self) -> StatusCode {
        match self {
            HttpError::Json(e) | HttpError::Bearer(BearerFailure::Refused(e)) => {
                StatusCode::from_u16(e.code.status()).unwrap_or(StatusCode::BAD_REQUEST)
            }
            // At a resource, a bad proof is an authentication failure (RFC 9449 §7.1).
            HttpError::Bearer(BearerFailure::Dpop(e)) => match e.code {
                ErrorCode::InvalidDpopProof => StatusCode::UNAUTHORIZED,
                code => StatusCode::from_u16(code.status()).unwrap_or(StatusCode::BAD_REQUEST),
            },
            HttpError::Bearer(BearerFailure::Missing) => StatusCode::UNAUTHORIZED,
            HttpError::BadSignIn { .. } | HttpError::BadSignOut { .. } => StatusCode::BAD_REQUEST,
            HttpError::Page(p) => p.status,
            HttpError::ToClient(_) => StatusCode::SEE_OTHER,
            HttpError::TooManyLogins { .. } => StatusCode::TOO_MANY_REQUESTS,
            HttpError::Unavailable { .. } | HttpError::UpstreamDown { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            HttpError::AdminDenied => StatusCode::UNAUTHORIZED,
            HttpError::BootstrapOnly => StatusCode::FORBIDDEN,
            HttpError::Operators(e) => match e {
                OperatorError::InvalidName => StatusCode::BAD_REQUEST,
                OperatorError::Conflict => StatusCode::CONFLICT,
                OperatorError::NotFound => StatusCode::NOT_FOUND,
                OperatorError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            },
            HttpError::Registration(e) => match e {
                RegistrationError::NotFound => StatusCode::NOT_FOUND,
                RegistrationError::Conflict => StatusCode::CONFLICT,
                RegistrationError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::BAD_REQUEST,
            },
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            HttpError::Json(e) => json_error(e),
            HttpError::Bearer(BearerFailure::Missing) => {
                let mut builder = HttpResponse::Unauthorized();
                no_store(&mut builder);
                builder
                    .insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"broker\""))
                    .finish()
            }
            HttpError::Bearer(BearerFailure::Refused(e)) => {
                let mut builder = HttpResponseBuilder::new(self.status_code());
                no_store(&mut builder);
                let challenge = format!("Bearer realm=\"broker\", error=\"{}\"", e.code.as_str());
                builder
                    .insert_header((header::WWW_AUTHENTICATE, challenge))
                    .json(json!({"error": e.code.as_str(), "error_description": e.description}))
            }
            HttpError::Bearer(BearerFailure::Dpop(e)) => {
                let mut builder = HttpResponseBuilder::new(self.status_code());
                no_store(&mut builder);
                let challenge = format!(
                    "DPoP realm=\"broker\", error=\"{}\", algs=\"{}\"",
                    e.code.as_str(),
                    dpop::SIGNING_ALGS.join(" ")
                );
                builder
                    .insert_header((header::WWW_AUTHENTICATE, challenge))
                    .json(json!({"error": e.code.as_str(), "error_description": e.description}))
            }
            HttpError::BadSignIn { error, english } => message_page(
                StatusCode::BAD_REQUEST,
                *english,
                error.code.as_str(),
                SIGN_IN_FAILED,
                (
                    "Yêu cầu đăng nhập từ ứng dụng không hợp lệ. Vui lòng quay lại ứng dụng và thử lại.",
                    "The application's sign-in request is invalid. Please go back to the application and try again.",
                ),
            ),
            HttpError::BadSignOut { error, english } => message_page(
                StatusCode::BAD_REQUEST,
                *english,
                error.code.as_str(),
                ("Không thể đăng xuất", "Sign-out failed"),
                (
                    "Yêu cầu đăng xuất từ ứng dụng không hợp lệ. Vui lòng quay lại ứng dụng và thử lại.",
                    "The application's sign-out request is invalid. Please go back to the application and try again.",
                ),
            ),
            HttpError::Page(p) => message_page(p.status, p.english, p.code, p.title, p.message),
            HttpError::ToClient(redirect) => redirect_to_client(redirect),
            HttpError::TooManyLogins { refusal, english } => {
                too_many_logins_page(*refusal, *english)
            }
            HttpError::Unavailable { english } => message_page(
                StatusCode::SERVICE_UNAVAILABLE,
                *english,
                "temporarily_unavailable",
                SIGN_IN_FAILED,
                (
                    "Hệ thống đang bận, vui lòng thử lại sau ít phút.",
                    "The service is busy; please try again in a few minutes.",
                ),
            ),
            HttpError::UpstreamDown {
                english,
                retry_after,
            } => {
                let mut response = message_page(
                    StatusCode::SERVICE_UNAVAILABLE,
                    *english,
                    "temporarily_unavailable",
                    ("VNeID đang gián đoạn", "VNeID is interrupted"),
                    (
                        "Dịch vụ định danh điện tử VNeID đang gián đoạn, không phải do bạn. Vui lòng thử lại sau ít phút.",
                        "The VNeID electronic identity service is not answering; it is not your fault. Please try again in a few minutes.",
                    ),
                );
                if let Ok(value) = header::HeaderValue::from_str(&retry_after.to_string()) {
                    response.headers_mut().insert(header::RETRY_AFTER, value);
                }
                response
            }
            HttpError::AdminDenied => HttpResponse::Unauthorized()
                .insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"broker-admin\""))
                .json(json!({"error": "invalid_token", "error_description": "admin token required"})),
            HttpError::BootstrapOnly => HttpResponse::Forbidden().json(json!({
                "error": "insufficient_scope",
                "error_description": "the bootstrap token may only create and list operators; use an operator's token"
            })),
            HttpError::Operators(OperatorError::Store(inner)) => {
                tracing::error!(error = format!("{inner:#}"), "operator store failure");
                HttpResponse::ServiceUnavailable().json(json!({"error": "temporarily_unavailable"}))
            }
            HttpError::Operators(e) => {
                let code = match e {
                    OperatorError::NotFound => "not_found",
                    _ => "invalid_request",
                };
                HttpResponseBuilder::new(self.status_code())
                    .json(json!({"error": code, "error_description": e.to_string()}))
            }
            HttpError::Registration(RegistrationError::Store(inner)) => {
                tracing::error!(error = format!("{inner:#}"), "client store failure");
                HttpResponse::ServiceUnavailable().json(json!({"error": "temporarily_unavailable"}))
            }
            HttpError::Registration(e) => HttpResponseBuilder::new(self.status_code())
                .json(json!({"error": e.code(), "error_description": e.to_string()})),
        }
    }
}

/// 429 with `Retry-After`: a login budget (per address or per instance) is spent.
fn too_many_logins_page(refusal: Refusal, english: bool) -> HttpResponse {
    let message = match refusal {
        Refusal::TooManyFailures { .. } => (
            "Có quá nhiều lượt đăng nhập không thành công từ mạng của bạn. Vui lòng thử lại sau ít phút.",
            "Too many sign-ins from your network failed. Please try again in a few minutes.",
        ),
        Refusal::AddressBusy { .. } | Refusal::InstanceFull { .. } => (
            "Có quá nhiều lượt đăng nhập đang diễn ra. Vui lòng thử lại sau ít phút.",
            "Too many sign-ins are in progress. Please try again in a few minutes.",
        ),
    };
    let mut response = message_page(
        StatusCode::TOO_MANY_REQUESTS,
        english,
        "temporarily_unavailable",
        SIGN_IN_FAILED,
        message,
    );
    if let Ok(value) = header::HeaderValue::from_str(&refusal.retry_after().to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

/// A client-authenticated endpoint's error. Every 401 carries a challenge (RFC 9110 §15.5.2):
/// `Basic`, the scheme RFC 6749 §2.3.1 defines for client credentials, whether the client tried
/// Basic, sent its secret in the body, or sent a malformed Authorization header.
fn json_error(error: &OAuthError) -> HttpResponse {
    let status = StatusCode::from_u16(error.code.status()).unwrap_or(StatusCode::BAD_REQUEST);
    let mut builder = HttpResponseBuilder::new(status);
    no_store(&mut builder);
    if status == StatusCode::UNAUTHORIZED {
        builder.insert_header((header::WWW_AUTHENTICATE, "Basic realm=\"broker\""));
    }
    builder.json(json!({"error": error.code.as_str(), "error_description": error.description}))
}

pub fn no_store(builder: &mut HttpResponseBuilder) {
    builder
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::PRAGMA, "no-cache"));
}
