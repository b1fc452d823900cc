//! RP-initiated logout: `/end_session` (GET and POST).

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use url::Url;

use super::front::{bad_request_page, cookie, unavailable_page};
use super::pages::{error_page, html, LogoutPage};
use super::{form_pairs, Broker};
use crate::oidc::authorize;
use crate::oidc::error::OAuthError;
use crate::sessions::sso::COOKIE as SSO_COOKIE;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/end_session", web::get().to(end_session_get))
        .route("/end_session", web::post().to(end_session_post));
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
    let params = match pairs.map(authorize::collect_params) {
        Some(Ok(params)) => params,
        Some(Err(e)) => return bad_request_page(&e),
        None => return bad_request_page(&OAuthError::invalid_request("malformed parameters")),
    };
    let now = p.now();
    let hint = match params.get("id_token_hint") {
        Some(token) => match p
            .signer
            .verify::<serde_json::Value>(token, "JWT", now, false)
        {
            Ok(claims) => Some(claims),
            Err(_) => {
                return bad_request_page(&OAuthError::invalid_request(
                    "id_token_hint is not a valid ID token of this broker",
                ))
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
            return bad_request_page(&OAuthError::invalid_request(
                "client_id does not match id_token_hint",
            ));
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
                        return unavailable_page();
                    }
                },
                None => false,
            };
            if !registered {
                return bad_request_page(&OAuthError::invalid_request(
                    "post_logout_redirect_uri is not registered for this client",
                ));
            }
            Some(uri.clone())
        }
        None => None,
    };
    let english = params
        .get("ui_locales")
        .is_some_and(|l| l.starts_with("en"));
    let confirmed = posted && params.get("confirm").map(String::as_str) == Some("yes");
    let secret = req.cookie(SSO_COOKIE).map(|c| c.value().to_string());
    let session = match &secret {
        Some(secret) => match p.sso.find(secret).await {
            Ok(session) => session,
            Err(e) => {
                let _ = OAuthError::unavailable(&e);
                return unavailable_page();
            }
        },
        None => None,
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
        let fields: Vec<(String, String)> = params
            .iter()
            .filter(|(k, _)| k.as_str() != "confirm")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
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
        return html(StatusCode::OK, page.render());
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
                    return unavailable_page();
                }
            }
            Ok(None) => {}
            Err(e) => {
                let _ = OAuthError::unavailable(&e);
                return unavailable_page();
            }
        }
    }
    let mut removal = cookie(broker, SSO_COOKIE, String::new(), "/", 0);
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
            let mut response = error_page(
                StatusCode::OK,
                english,
                "logged_out",
                "Bạn đã đăng xuất.",
                "You have been signed out.",
            );
            let _ = response.add_cookie(&removal);
            response
        }
    }
}
