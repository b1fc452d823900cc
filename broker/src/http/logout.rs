//! RP-initiated logout: `/end_session` (GET and POST).

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use url::Url;

use actix_web::middleware::from_fn;

use super::front::{cookie, cookie_name, unavailable_page, wants_english};
use super::limits::rate_limit;
use super::pages::{html, message_page, LogoutPage};
use super::{form_pairs, Broker};
use crate::crypto::{ct_eq, sha256_b64url};
use crate::oidc::authorize;
use crate::oidc::error::OAuthError;
use crate::sessions::sso::COOKIE as SSO_COOKIE;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/end_session")
            .wrap(from_fn(rate_limit))
            .route(web::get().to(end_session_get))
            .route(web::post().to(end_session_post)),
    );
}

/// RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0). Without a valid
/// `id_token_hint` the user confirms first (a POST, which SameSite=Lax cookies do not follow
/// across sites), so no other site can log anyone out. Ending the session revokes the grants
/// issued under it.
async fn end_session_get(broker: web::Data<Broker>, req: HttpRequest) -> HttpResponse {
    end_session(
        &broker,
        &req,
        form_pairs(req.query_string().as_bytes()),
        false,
    )
    .await
}

async fn end_session_post(
    broker: web::Data<Broker>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    end_session(&broker, &req, form_pairs(&body), true).await
}

async fn end_session(
    broker: &Broker,
    req: &HttpRequest,
    pairs: Option<Vec<(String, String)>>,
    posted: bool,
) -> HttpResponse {
    let p = &broker.provider;
    let english = wants_english(req, None);
    let params = match pairs.map(authorize::collect_params) {
        Some(Ok(params)) => params,
        Some(Err(e)) => return bad_logout_page(&e, english),
        None => {
            return bad_logout_page(
                &OAuthError::invalid_request("malformed parameters"),
                english,
            )
        }
    };
    let english = wants_english(req, params.get("ui_locales").map(String::as_str));
    let now = p.now();
    let hint = match params.get("id_token_hint") {
        Some(token) => match p
            .signer
            .verify::<serde_json::Value>(token, "JWT", now, false)
        {
            Ok(claims) => Some(claims),
            Err(_) => {
                return bad_logout_page(
                    &OAuthError::invalid_request(
                        "id_token_hint is not a valid ID token of this broker",
                    ),
                    english,
                )
            }
        },
        None => None,
    };
    let hinted_client = hint
        .as_ref()
        .and_then(|c| c.get("aud"))
        .and_then(|a| a.as_str())
        .map(str::to_string);
    if let (Some(a), Some(b)) = (&hinted_client, params.get("client_id")) {
        if a != b {
            return bad_logout_page(
                &OAuthError::invalid_request("client_id does not match id_token_hint"),
                english,
            );
        }
    }
    let client_id = hinted_client.or_else(|| params.get("client_id").cloned());
    let target = match params.get("post_logout_redirect_uri") {
        Some(uri) => {
            let registered = match &client_id {
                Some(id) => match p.clients.get(id).await {
                    Ok(Some(client)) => client
                        .metadata
                        .post_logout_redirect_uris
                        .iter()
                        .any(|u| u == uri),
                    Ok(None) => false,
                    Err(e) => {
                        let _ = OAuthError::unavailable(&e);
                        return unavailable_page(english);
                    }
                },
                None => false,
            };
            if !registered {
                return bad_logout_page(
                    &OAuthError::invalid_request(
                        "post_logout_redirect_uri is not registered for this client",
                    ),
                    english,
                );
            }
            Some(uri.clone())
        }
        None => None,
    };
    let secret = req
        .cookie(&cookie_name(broker, SSO_COOKIE))
        .map(|c| c.value().to_string());
    let session = match &secret {
        Some(secret) => match p.sso.find(secret).await {
            Ok(session) => session,
            Err(e) => {
                let _ = OAuthError::unavailable(&e);
                return unavailable_page(english);
            }
        },
        None => None,
    };
    // A confirmation counts only when posted from our own page: the CSRF token bound to this
    // browser's SSO session, and no cross-site Origin or Sec-Fetch-Site. Province apps share a
    // registrable domain with the broker, so SameSite alone would let a sibling site post it.
    let expected_csrf = secret.as_deref().map(logout_csrf);
    let confirmed = posted
        && params.get("confirm").map(String::as_str) == Some("yes")
        && same_origin(req, &p.issuer)
        && match &expected_csrf {
            Some(expected) => params
                .get("csrf")
                .is_some_and(|c| ct_eq(c.as_bytes(), expected.as_bytes())),
            None => true,
        };
    // The hint proves the RP's wish only for the session it was issued in: someone else's ID
    // token (an attacker's own, say) must not log this browser out without asking.
    let hint_sid = hint
        .as_ref()
        .and_then(|c| c.get("sid"))
        .and_then(|s| s.as_str());
    let hint_is_for_this_session = match &session {
        Some(s) => hint_sid == Some(s.sid.as_str()),
        None => hint.is_some(),
    };
    if !hint_is_for_this_session && !confirmed {
        let mut fields: Vec<(String, String)> = params
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "confirm" | "csrf"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        fields.sort_unstable();
        if let Some(csrf) = expected_csrf {
            fields.push(("csrf".into(), csrf));
        }
        let action = p.endpoint("/end_session");
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
        // `same-origin` still sends no referrer to other sites and lets the form's POST carry
        // the broker's own origin.
        let mut response = html(StatusCode::OK, page.render());
        response.headers_mut().insert(
            header::REFERRER_POLICY,
            header::HeaderValue::from_static("same-origin"),
        );
        return response;
    }
    if let Some(secret) = secret {
        match p.sso.end(&secret).await {
            Ok(Some(session)) => {
                let ended = async {
                    p.codes.end_session(&session.sid).await?;
                    p.grants
                        .revoke_session(&session.sid, "logged out", now)
                        .await
                };
                if let Err(e) = ended.await {
                    let _ = OAuthError::unavailable(&e);
                    return unavailable_page(english);
                }
            }
            Ok(None) => {}
            Err(e) => {
                let _ = OAuthError::unavailable(&e);
                return unavailable_page(english);
            }
        }
    }
    let mut removal = cookie(broker, SSO_COOKIE, String::new(), 0);
    removal.make_removal();
    match target.and_then(|uri| Url::parse(&uri).ok()) {
        Some(mut url) => {
            if let Some(state) = params.get("state") {
                url.query_pairs_mut().append_pair("state", state);
            }
            HttpResponse::SeeOther()
                .cookie(removal)
                .insert_header((header::LOCATION, url.as_str()))
                .finish()
        }
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
    }
}

/// The logout form's CSRF token: derived from the SSO cookie's secret, which only this browser
/// holds (HttpOnly), under its own label so that it reveals nothing usable elsewhere.
fn logout_csrf(sso_secret: &str) -> String {
    sha256_b64url(&format!("logout-csrf:{sso_secret}"))
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

/// The logout's own error page: a sign-out request, not a sign-in, went wrong.
fn bad_logout_page(error: &OAuthError, english: bool) -> HttpResponse {
    message_page(
        StatusCode::BAD_REQUEST,
        english,
        error.code.as_str(),
        ("Không thể đăng xuất", "Sign-out failed"),
        (
            "Yêu cầu đăng xuất từ ứng dụng không hợp lệ. Vui lòng quay lại ứng dụng và thử lại.",
            "The application's sign-out request is invalid. Please go back to the application and try again.",
        ),
    )
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
