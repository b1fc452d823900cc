//! Helpers shared by the front-channel endpoints: error pages, the redirect back to the client,
//! cookies.

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::{header, StatusCode};
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use url::Url;

use super::errors::{HttpError, Page};
use super::Broker;
use crate::login::{ClientRedirect, FlowError, Next};
use crate::oidc::error::OAuthError;

/// The flow's failures as HTTP errors: pages, never redirects (the request is not, or no
/// longer, known to be the client's).
pub fn flow_error(error: FlowError, english: bool) -> HttpError {
    match error {
        FlowError::BadRequest(error) => HttpError::BadSignIn { error, english },
        FlowError::Busy(refusal) => HttpError::TooManyLogins { refusal, english },
        FlowError::UnknownLogin => HttpError::Page(Page::sign_in(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            (
                "Phiên đăng nhập đã hết hạn, đã được dùng, hoặc được bắt đầu trên trình duyệt khác. Vui lòng đăng nhập lại từ ứng dụng.",
                "The sign-in has expired, was already used, or was started in another browser. Please sign in again from the application.",
            ),
            english,
        )),
        FlowError::UpstreamRefused => HttpError::Page(Page::sign_in(
            StatusCode::BAD_REQUEST,
            "access_denied",
            (
                "Không xác minh được thông tin đăng nhập từ VNeID. Vui lòng thử lại.",
                "The VNeID login could not be verified. Please try again.",
            ),
            english,
        )),
        FlowError::UpstreamDown { retry_after } => HttpError::UpstreamDown {
            english,
            retry_after,
        },
        FlowError::Unavailable(e) => HttpError::unavailable_page(&e, english),
    }
}

/// Where the flow sends the browser, as a response.
pub fn next_response(broker: &Broker, next: Next) -> HttpResponse {
    match next {
        Next::ToClient { redirect, session } => {
            let mut response = redirect_to_client(&redirect);
            if let Some(c) = session {
                let _ = response.add_cookie(&cookie(broker, &c.name, c.value, c.max_age));
            }
            response
        }
        Next::Upstream { url, binding } => HttpResponse::SeeOther()
            .cookie(cookie(
                broker,
                &binding.name,
                binding.value,
                binding.max_age,
            ))
            .insert_header((header::LOCATION, url.as_str()))
            .finish(),
        // Only `/authorize` offers a choice, and renders it with the request's language; this
        // is the same page in Vietnamese.
        Next::Choose { id, binding } => {
            super::authorize::choice_page(broker, None, &id, binding, false)
        }
        // The interaction's page where the flow has it at hand (a callback that stopped at its
        // first step), else a redirect to it.
        Next::Interaction(interaction) => {
            let mut response = match &interaction.view {
                Some(view) => super::steps::render(view, view.english),
                None => HttpResponse::SeeOther()
                    .insert_header((header::LOCATION, format!("/login/{}", interaction.id)))
                    .insert_header((header::CACHE_CONTROL, "no-store"))
                    .finish(),
            };
            if let Some(b) = interaction.binding {
                let _ = response.add_cookie(&cookie(broker, &b.name, b.value, b.max_age));
            }
            response
        }
    }
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
pub fn redirect_to_client(redirect: &ClientRedirect) -> HttpResponse {
    let Ok(mut url) = Url::parse(&redirect.redirect_uri) else {
        return HttpError::BadSignIn {
            error: OAuthError::invalid_request("redirect_uri"),
            english: false,
        }
        .error_response();
    };
    {
        let mut q = url.query_pairs_mut();
        match &redirect.result {
            Ok(code) => {
                q.append_pair("code", code);
            }
            Err(e) => {
                q.append_pair("error", e.code.as_str())
                    .append_pair("error_description", &e.description);
            }
        }
        if let Some(s) = &redirect.state {
            q.append_pair("state", s);
        }
        q.append_pair("iss", &redirect.issuer);
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
