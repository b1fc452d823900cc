//! Helpers shared by the front-channel endpoints: error pages, the redirect back to the client,
//! cookies.

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::{header, StatusCode};
use actix_web::{HttpRequest, HttpResponse};
use url::Url;

use super::pages::error_page;
use super::Broker;
use crate::abuse::Refusal;
use crate::oidc::error::OAuthError;

pub fn bad_request_page(error: &OAuthError, english: bool) -> HttpResponse {
    error_page(
        StatusCode::BAD_REQUEST,
        english,
        error.code.as_str(),
        "Yêu cầu đăng nhập từ ứng dụng không hợp lệ. Vui lòng quay lại ứng dụng và thử lại.",
        "The application's sign-in request is invalid. Please go back to the application and try again.",
    )
}

pub fn unavailable_page(english: bool) -> HttpResponse {
    error_page(
        StatusCode::SERVICE_UNAVAILABLE,
        english,
        "temporarily_unavailable",
        "Hệ thống đang bận, vui lòng thử lại sau ít phút.",
        "The service is busy; please try again in a few minutes.",
    )
}

/// 429 with `Retry-After`: a login budget (per address or per instance) is spent.
pub fn too_many_logins_page(refusal: Refusal, english: bool) -> HttpResponse {
    let (vi, en) = match refusal {
        Refusal::TooManyFailures { .. } => (
            "Có quá nhiều lượt đăng nhập không thành công từ mạng của bạn. Vui lòng thử lại sau ít phút.",
            "Too many sign-ins from your network failed. Please try again in a few minutes.",
        ),
        Refusal::AddressBusy { .. } | Refusal::InstanceFull { .. } => (
            "Có quá nhiều lượt đăng nhập đang diễn ra. Vui lòng thử lại sau ít phút.",
            "Too many sign-ins are in progress. Please try again in a few minutes.",
        ),
    };
    let mut response = error_page(
        StatusCode::TOO_MANY_REQUESTS,
        english,
        "temporarily_unavailable",
        vi,
        en,
    );
    if let Ok(value) = header::HeaderValue::from_str(&refusal.retry_after().to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

/// Whether a page should be in English: the request's `ui_locales` first, else the browser's
/// `Accept-Language`. Vietnamese is the default.
pub fn wants_english(req: &HttpRequest, ui_locales: Option<&str>) -> bool {
    let first = |list: &str| {
        list.split([' ', ','])
            .map(|t| {
                t.trim()
                    .split(';')
                    .next()
                    .unwrap_or_default()
                    .to_ascii_lowercase()
            })
            .find(|t| !t.is_empty())
    };
    let tag = ui_locales.and_then(first).or_else(|| {
        req.headers()
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
            .and_then(first)
    });
    tag.is_some_and(|t| t.starts_with("en"))
}

/// 303 back to the client with the authorization response and `iss` (RFC 9207).
pub fn redirect_to_client(
    redirect_uri: &str,
    state: Option<&str>,
    issuer: &str,
    result: Result<&str, &OAuthError>,
) -> HttpResponse {
    let Ok(mut url) = Url::parse(redirect_uri) else {
        return bad_request_page(&OAuthError::invalid_request("redirect_uri"), false);
    };
    {
        let mut q = url.query_pairs_mut();
        match result {
            Ok(code) => {
                q.append_pair("code", code);
            }
            Err(e) => {
                q.append_pair("error", e.code.as_str())
                    .append_pair("error_description", &e.description);
            }
        }
        if let Some(s) = state {
            q.append_pair("state", s);
        }
        q.append_pair("iss", issuer);
    }
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, url.as_str()))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

/// A cookie's name as set and read: `__Host-` first when the issuer is https, so that no
/// sibling subdomain can set or shadow it (the prefix requires `Secure`, `Path=/`, no `Domain`).
pub fn cookie_name(broker: &Broker, base: &str) -> String {
    if broker.secure_cookies {
        format!("__Host-{base}")
    } else {
        base.to_string()
    }
}

/// An HttpOnly, SameSite=Lax cookie for the whole broker (`Path=/`, as `__Host-` requires).
pub fn cookie(broker: &Broker, base: &str, value: String, max_age: i64) -> Cookie<'static> {
    Cookie::build(cookie_name(broker, base), value)
        .path("/")
        .http_only(true)
        .secure(broker.secure_cookies)
        .same_site(SameSite::Lax)
        .max_age(actix_web::cookie::time::Duration::seconds(max_age))
        .finish()
}
