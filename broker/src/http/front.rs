//! Helpers shared by the front-channel endpoints: error pages, the redirect back to the client,
//! cookies.

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::{header, StatusCode};
use actix_web::HttpResponse;
use url::Url;

use super::pages::error_page;
use super::Broker;
use crate::oidc::error::OAuthError;

pub fn bad_request_page(error: &OAuthError) -> HttpResponse {
    error_page(
        StatusCode::BAD_REQUEST,
        false,
        error.code.as_str(),
        "Yêu cầu đăng nhập từ ứng dụng không hợp lệ. Vui lòng quay lại ứng dụng và thử lại.",
        "The application's sign-in request is invalid. Please go back to the application and try again.",
    )
}

pub fn unavailable_page() -> HttpResponse {
    error_page(
        StatusCode::SERVICE_UNAVAILABLE,
        false,
        "temporarily_unavailable",
        "Hệ thống đang bận, vui lòng thử lại sau ít phút.",
        "The service is busy; please try again in a few minutes.",
    )
}

/// 303 back to the client with the authorization response and `iss` (RFC 9207).
pub fn redirect_to_client(
    redirect_uri: &str,
    state: Option<&str>,
    issuer: &str,
    result: Result<&str, &OAuthError>,
) -> HttpResponse {
    let Ok(mut url) = Url::parse(redirect_uri) else {
        return bad_request_page(&OAuthError::invalid_request("redirect_uri"));
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

pub fn cookie<'a>(
    broker: &Broker,
    name: &'a str,
    value: String,
    path: &'a str,
    max_age: i64,
) -> Cookie<'a> {
    Cookie::build(name, value)
        .path(path)
        .http_only(true)
        .secure(broker.secure_cookies)
        .same_site(SameSite::Lax)
        .max_age(actix_web::cookie::time::Duration::seconds(max_age))
        .finish()
}
