//! `/authorize` (GET and POST): validate, answer from the SSO session, or start an upstream login.

use std::collections::HashMap;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;

use super::front::{bad_request_page, cookie, redirect_to_client, unavailable_page};
use super::pages::{html, LoginPage};
use super::{form_pairs, Broker};
use crate::federation::pending::COOKIE as PENDING_COOKIE;
use crate::federation::upstream::UpstreamHints;
use crate::oidc::authorize::{self, AuthorizeError, AuthorizeRequest};
use crate::oidc::codes::CodeRecord;
use crate::oidc::error::{ErrorCode, OAuthError};
use crate::sessions::sso::{SsoSession, COOKIE as SSO_COOKIE};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/authorize", web::get().to(authorize_get))
        .route("/authorize", web::post().to(authorize_post));
}

async fn authorize_get(broker: web::Data<Broker>, req: HttpRequest) -> HttpResponse {
    let pairs = form_pairs(req.query_string().as_bytes());
    authorize(&broker, &req, pairs).await
}

async fn authorize_post(
    broker: web::Data<Broker>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    authorize(&broker, &req, form_pairs(&body)).await
}

async fn authorize(
    broker: &Broker,
    req: &HttpRequest,
    pairs: Option<Vec<(String, String)>>,
) -> HttpResponse {
    let p = &broker.provider;
    let Some(pairs) = pairs else {
        return bad_request_page(&OAuthError::invalid_request("malformed parameters"));
    };
    let params = match authorize::collect_params(pairs) {
        Ok(params) => params,
        Err(e) => return bad_request_page(&e),
    };
    let client = match p
        .clients
        .get(
            params
                .get("client_id")
                .map(String::as_str)
                .unwrap_or_default(),
        )
        .await
    {
        Ok(client) => client,
        Err(e) => {
            let _ = OAuthError::unavailable(&e);
            return unavailable_page();
        }
    };
    let parsed =
        authorize::check_client(client.as_deref(), &params).and_then(
            |redirect_uri| match &client {
                Some(c) => authorize::parse(c, redirect_uri, &params, &p.acr),
                None => Err(AuthorizeError::Page(OAuthError::invalid_client())),
            },
        );
    let request = match parsed {
        Ok(request) => request,
        Err(AuthorizeError::Page(e)) => return bad_request_page(&e),
        Err(AuthorizeError::Redirect {
            redirect_uri,
            state,
            error,
        }) => {
            return redirect_to_client(&redirect_uri, state.as_deref(), &p.issuer, Err(&error));
        }
    };
    let now = p.now();
    let session = match req.cookie(SSO_COOKIE) {
        Some(cookie) => p.sso.find(cookie.value()).await.unwrap_or_else(|e| {
            let _ = OAuthError::unavailable(&e);
            None
        }),
        None => None,
    };
    if let Some(session) =
        session.filter(|s| authorize::session_satisfies(&request, s.auth_time, s.loa, now))
    {
        return issue_code(broker, &request, &session, now).await;
    }
    if request.prompt_none {
        let error = OAuthError::new(ErrorCode::LoginRequired, "the user must log in");
        return redirect_to_client(
            &request.redirect_uri,
            request.state.as_deref(),
            &p.issuer,
            Err(&error),
        );
    }
    start_upstream_login(broker, req, &params, request, now).await
}

pub async fn issue_code(
    broker: &Broker,
    request: &AuthorizeRequest,
    session: &SsoSession,
    now: i64,
) -> HttpResponse {
    let p = &broker.provider;
    let record = CodeRecord {
        client_id: request.client_id.clone(),
        redirect_uri: request.redirect_uri.clone(),
        code_challenge: request.code_challenge.clone(),
        nonce: request.nonce.clone(),
        scope: request.scope_string(),
        resource: request.resource.clone(),
        account_id: session.account_id.clone(),
        sid: session.sid.clone(),
        auth_time: session.auth_time,
        loa: session.loa,
        amr: session.amr.clone(),
        grant_id: uuid::Uuid::now_v7().to_string(),
        expires_at: now + p.tokens.code_ttl_secs as i64,
    };
    match p.codes.issue(record).await {
        Ok(code) => redirect_to_client(
            &request.redirect_uri,
            request.state.as_deref(),
            &p.issuer,
            Ok(&code),
        ),
        Err(e) => {
            let error = OAuthError::unavailable(&e);
            redirect_to_client(
                &request.redirect_uri,
                request.state.as_deref(),
                &p.issuer,
                Err(&error),
            )
        }
    }
}

async fn start_upstream_login(
    broker: &Broker,
    req: &HttpRequest,
    params: &HashMap<String, String>,
    request: AuthorizeRequest,
    now: i64,
) -> HttpResponse {
    let profile = &broker.upstream.profile;
    let english = request.english();
    let existing = req.cookie(PENDING_COOKIE).map(|c| c.value().to_string());
    let (login_hint, ui_locales) = (request.login_hint.clone(), request.ui_locales.clone());
    let (force_login, max_age) = (request.prompt_login, request.max_age);
    let started = match broker
        .pending
        .start(
            request.clone(),
            existing,
            profile.use_nonce,
            profile.use_pkce,
            now,
        )
        .await
    {
        Ok(started) => started,
        Err(e) => {
            let _ = OAuthError::unavailable(&e);
            return unavailable_page();
        }
    };
    let url = match broker
        .upstream
        .authorization_url(
            &started.state,
            started.nonce.as_deref(),
            started.pkce_verifier.as_deref(),
            &UpstreamHints {
                login_hint: login_hint.as_deref(),
                ui_locales: ui_locales.as_deref(),
                force_login,
                max_age,
            },
        )
        .await
    {
        Ok(url) => url,
        Err(e) => {
            tracing::error!(error = %e, "upstream unavailable");
            return unavailable_page();
        }
    };
    let binding = cookie(
        broker,
        PENDING_COOKIE,
        started.browser_secret,
        "/callback",
        broker.pending.ttl().as_secs() as i64,
    );
    if broker.auto_redirect {
        return HttpResponse::SeeOther()
            .cookie(binding)
            .insert_header((header::LOCATION, url.as_str()))
            .finish();
    }
    let other_lang = if english { "vi" } else { "en" };
    let other_url = language_switch(broker, params, other_lang);
    let name = &broker.upstream.profile.display_name;
    let (button_en, button_vi) = (
        format!("Sign in with {name}"),
        format!("Đăng nhập bằng {name}"),
    );
    let page = if english {
        LoginPage {
            lang: "en",
            title: "Sign in",
            subtitle: "Sign in with your national electronic identity (VNeID) account",
            button: &button_en,
            help: "Need help? VNeID 1900 0368 · Hue-S 1900 1075",
            upstream_url: url.as_str(),
            other_lang: "Tiếng Việt",
            other_lang_url: &other_url,
        }
    } else {
        LoginPage {
            lang: "vi",
            title: "Đăng nhập",
            subtitle: "Đăng nhập bằng tài khoản định danh điện tử VNeID",
            button: &button_vi,
            help: "Cần hỗ trợ: VNeID 1900 0368 · Hue-S 1900 1075",
            upstream_url: url.as_str(),
            other_lang: "English",
            other_lang_url: &other_url,
        }
    };
    let mut response = html(StatusCode::OK, page.render());
    let _ = response.add_cookie(&binding);
    response
}

/// The same authorization request in the other language (works for GET and POST requests).
fn language_switch(broker: &Broker, params: &HashMap<String, String>, lang: &str) -> String {
    let mut pairs: Vec<(&str, &str)> = params
        .iter()
        .filter(|(k, _)| k.as_str() != "ui_locales")
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    pairs.sort_unstable();
    pairs.push(("ui_locales", lang));
    let query = serde_urlencoded::to_string(pairs).unwrap_or_default();
    format!("{}?{query}", broker.provider.endpoint("/authorize"))
}
