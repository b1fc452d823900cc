//! `/authorize` (GET and POST): validate, answer from the SSO session, or start an upstream login.

use std::collections::HashMap;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;

use actix_web::middleware::from_fn;

use super::front::{
    bad_request_page, cookie, cookie_name, redirect_to_client, too_many_logins_page,
    unavailable_page, wants_english,
};
use super::limits::rate_limit;
use super::pages::{html, LoginPage};
use super::{form_pairs, Broker};
use crate::federation::pending::cookie_name as pending_cookie_name;
use crate::federation::upstream::UpstreamHints;
use crate::oidc::authorize::{self, AuthorizeError, AuthorizeRequest};
use crate::oidc::codes::CodeRecord;
use crate::oidc::error::{ErrorCode, OAuthError};
use crate::sessions::sso::{SsoSession, COOKIE as SSO_COOKIE};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/authorize")
            .wrap(from_fn(rate_limit))
            .route(web::get().to(authorize_get))
            .route(web::post().to(authorize_post)),
    );
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
    let english = wants_english(req, None);
    let Some(pairs) = pairs else {
        return bad_request_page(
            &OAuthError::invalid_request("malformed parameters"),
            english,
        );
    };
    let params = match authorize::collect_params(pairs) {
        Ok(params) => params,
        Err(e) => return bad_request_page(&e, english),
    };
    let english = wants_english(req, params.get("ui_locales").map(String::as_str));
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
            return unavailable_page(english);
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
        Err(AuthorizeError::Page(e)) => return bad_request_page(&e, english),
        Err(AuthorizeError::Redirect {
            redirect_uri,
            state,
            error,
        }) => {
            return redirect_to_client(&redirect_uri, state.as_deref(), &p.issuer, Err(&error));
        }
    };
    let now = p.now();
    let fail = |error: OAuthError| {
        redirect_to_client(
            &request.redirect_uri,
            request.state.as_deref(),
            &p.issuer,
            Err(&error),
        )
    };
    // OIDC Core §3.1.2.1: the hint names who the RP expects; it must be our ID token for this
    // client (expired is fine), and a session of someone else cannot answer the request.
    let hinted_subject = match params.get("id_token_hint") {
        Some(token) => match hint_subject(broker, token, &request.client_id, now) {
            Some(sub) => Some(sub),
            None => {
                return fail(OAuthError::invalid_request(
                    "id_token_hint is not a valid ID token of this broker for this client",
                ))
            }
        },
        None => None,
    };
    let session = match req.cookie(&cookie_name(broker, SSO_COOKIE)) {
        Some(cookie) => p.sso.find(cookie.value()).await.unwrap_or_else(|e| {
            let _ = OAuthError::unavailable(&e);
            None
        }),
        None => None,
    };
    // Neither a hinted person nor one the `claims` parameter requires may be replaced by the
    // person who happens to be logged in.
    let session = session.filter(|s| {
        [hinted_subject.as_deref(), request.subject.as_deref()]
            .into_iter()
            .flatten()
            .all(|sub| sub == s.account_id)
    });
    if let Some(session) =
        session.filter(|s| authorize::session_satisfies(&request, s.auth_time, s.loa, now))
    {
        return issue_code(broker, &request, &session, now).await;
    }
    if request.prompt_none {
        return fail(OAuthError::new(
            ErrorCode::LoginRequired,
            "the user must log in",
        ));
    }
    start_upstream_login(broker, req, &params, request, now).await
}

/// The subject of a valid `id_token_hint` issued by this broker to `client_id`.
fn hint_subject(broker: &Broker, token: &str, client_id: &str, now: i64) -> Option<String> {
    let claims = broker
        .provider
        .signer
        .verify::<serde_json::Value>(token, "JWT", now, false)
        .ok()?;
    let aud_matches = match claims.get("aud")? {
        serde_json::Value::String(a) => a == client_id,
        serde_json::Value::Array(list) => list.iter().any(|a| a.as_str() == Some(client_id)),
        _ => false,
    };
    aud_matches.then(|| claims.get("sub")?.as_str().map(str::to_string))?
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
        id_token_claims: request.id_token_claims.clone(),
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
    let english = wants_english(req, request.ui_locales.as_deref());
    if let Err(refusal) = broker.budget.admit(broker.limits.client_key(req), now) {
        tracing::debug!(?refusal, "pending login refused");
        return too_many_logins_page(refusal, english);
    }
    // The upstream must tell when the person authenticated: max_age makes VNeID send auth_time
    // (OIDC Core §3.1.2.1). An upstream known not to send it is asked for a fresh login
    // whenever the RP bounds the age, so that the callback time is the authentication time.
    let max_age = request
        .max_age
        .unwrap_or(broker.provider.sso.ttl().as_secs() as i64);
    let force_login =
        request.prompt_login || (request.max_age.is_some() && !profile.sends_auth_time);
    let (login_hint, ui_locales) = (request.login_hint.clone(), request.ui_locales.clone());
    let started = match broker
        .pending
        .start(
            request,
            force_login,
            profile.use_nonce,
            profile.use_pkce,
            now,
        )
        .await
    {
        Ok(started) => started,
        Err(e) => {
            broker.budget.finished(now, now);
            let _ = OAuthError::unavailable(&e);
            return unavailable_page(english);
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
                max_age: Some(max_age),
            },
        )
        .await
    {
        Ok(url) => url,
        Err(e) => {
            tracing::error!(error = %e, "upstream unavailable");
            return unavailable_page(english);
        }
    };
    let binding = cookie(
        broker,
        &pending_cookie_name(&started.state),
        started.browser_secret,
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
