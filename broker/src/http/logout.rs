//! RP-initiated logout: `/end_session` (GET and POST). The protocol is in `login::logout`; this
//! handler adds what only HTTP knows (the POST came from the broker's own page) and renders.

use actix_web::http::{header, StatusCode};
use actix_web::middleware::from_fn;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use url::Url;

use super::errors::HttpError;
use super::front::{cookie, cookie_name, wants_english};
use super::limits::rate_limit;
use super::pages::{html, message_page, LogoutPage};
use super::{form_pairs, Broker};
use crate::login::logout::{logout, LogoutError, LogoutNext, LogoutRequest};
use crate::oidc::error::OAuthError;
use crate::oidc::params::Params;
use crate::sessions::sso::COOKIE as SSO_COOKIE;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/end_session")
            .wrap(from_fn(rate_limit))
            .route(web::get().to(end_session_get))
            .route(web::post().to(end_session_post)),
    );
}

async fn end_session_get(
    broker: web::Data<Broker>,
    req: HttpRequest,
) -> Result<HttpResponse, HttpError> {
    let pairs = form_pairs(req.query_string().as_bytes());
    end_session(&broker, &req, pairs, false).await
}

async fn end_session_post(
    broker: web::Data<Broker>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, HttpError> {
    end_session(&broker, &req, form_pairs(&body), true).await
}

async fn end_session(
    broker: &Broker,
    req: &HttpRequest,
    pairs: Option<Vec<(String, String)>>,
    posted: bool,
) -> Result<HttpResponse, HttpError> {
    let p = &broker.provider;
    let english = wants_english(req, None);
    let bad = |error| HttpError::BadSignOut { error, english };
    let pairs = pairs.ok_or_else(|| bad(OAuthError::invalid_request("malformed parameters")))?;
    let params = Params::collect(pairs).map_err(bad)?;
    let english = wants_english(req, params.get("ui_locales"));
    let sso = req.cookie(&cookie_name(broker, SSO_COOKIE));
    // Province apps share a registrable domain with the broker, so SameSite alone would let a
    // sibling site post the confirmation: it must come from our own page.
    let confirmation_posted =
        posted && params.get("confirm") == Some("yes") && same_origin(req, &p.issuer);
    let request = LogoutRequest {
        params: &params,
        sso_secret: sso.as_ref().map(|c| c.value()),
        confirmation_posted,
    };
    let next = logout(p, request, p.now()).await.map_err(|e| match e {
        LogoutError::BadRequest(error) => HttpError::BadSignOut { error, english },
        LogoutError::Unavailable(e) => HttpError::unavailable_page(&e, english),
    })?;
    let redirect = match next {
        LogoutNext::Confirm { fields } => return Ok(confirmation_page(broker, fields, english)),
        LogoutNext::Done { redirect } => redirect,
    };
    let mut removal = cookie(broker, SSO_COOKIE, String::new(), 0);
    removal.make_removal();
    Ok(match redirect {
        Some(url) => HttpResponse::SeeOther()
            .cookie(removal)
            .insert_header((header::LOCATION, url.as_str()))
            .finish(),
        None => {
            let mut response = message_page(
                StatusCode::OK,
                english,
                "logged_out",
                ("Đã đăng xuất", "Signed out"),
                ("Bạn đã đăng xuất.", "You have been signed out."),
            );
            let _ = response.add_cookie(&removal);
            response
        }
    })
}

fn confirmation_page(
    broker: &Broker,
    fields: Vec<(String, String)>,
    english: bool,
) -> HttpResponse {
    let action = broker.provider.endpoint("/end_session");
    let page = if english {
        LogoutPage {
            lang: "en",
            title: "Sign out",
            question: "Do you want to sign out of all provincial applications?",
            button: "Sign out",
            action: &action,
            fields,
        }
    } else {
        LogoutPage {
            lang: "vi",
            title: "Đăng xuất",
            question: "Bạn có muốn đăng xuất khỏi các ứng dụng của tỉnh?",
            button: "Đăng xuất",
            action: &action,
            fields,
        }
    };
    // The broker's default `Referrer-Policy: no-referrer` makes browsers post this form with
    // `Origin: null`, which `same_origin` refuses, so no real browser could ever confirm.
    // `same-origin` still sends no referrer to other sites and lets the form's POST carry the
    // broker's own origin.
    let mut response = html(StatusCode::OK, page.render());
    response.headers_mut().insert(
        header::REFERRER_POLICY,
        header::HeaderValue::from_static("same-origin"),
    );
    response
}

/// No sign of a cross-site request: `Sec-Fetch-Site` (when the browser sends it) is
/// same-origin or none, and `Origin` (when present) is the broker's own.
fn same_origin(req: &HttpRequest, issuer: &str) -> bool {
    let fetch_site_ok = req
        .headers()
        .get_all("sec-fetch-site")
        .all(|v| v.to_str().is_ok_and(|v| v == "same-origin" || v == "none"));
    // Every `Origin` must be ours: a request carrying several is not one a browser made.
    let own = Url::parse(issuer).map(|u| u.origin().ascii_serialization());
    let origin_ok = req.headers().get_all(header::ORIGIN).all(|v| {
        own.as_deref()
            .is_ok_and(|own| v.to_str().is_ok_and(|o| o == own))
    });
    fetch_site_ok && origin_ok
}

#[cfg(test)]
mod tests {
    use super::same_origin;
    use actix_web::test::TestRequest;

    const ISSUER: &str = "https://id.hue.gov.vn";

    #[test]
    fn only_our_own_origin_confirms() {
        let check = |headers: &[(&str, &str)]| {
            let mut req = TestRequest::post();
            for h in headers {
                req = req.append_header(*h);
            }
            same_origin(&req.to_http_request(), ISSUER)
        };
        assert!(check(&[]));
        assert!(check(&[
            ("origin", ISSUER),
            ("sec-fetch-site", "same-origin")
        ]));
        assert!(!check(&[("origin", "null")]));
        assert!(!check(&[("origin", "https://evil.hue.gov.vn")]));
        assert!(!check(&[
            ("origin", ISSUER),
            ("origin", "http://evil.example")
        ]));
        assert!(!check(&[("sec-fetch-site", "same-site")]));
        assert!(!check(&[
            ("sec-fetch-site", "same-origin"),
            ("sec-fetch-site", "cross-site")
        ]));
    }
}
