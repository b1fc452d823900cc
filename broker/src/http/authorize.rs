//! `/authorize` (GET and POST): collect the parameters, run the login flow, render its answer.

use actix_web::http::{header, StatusCode};
use actix_web::middleware::from_fn;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;

use super::errors::HttpError;
use super::front::{cookie, cookie_name, flow_error, next_response, wants_english};
use super::limits::rate_limit;
use super::pages::{html, LoginPage};
use super::{form_pairs, Broker};
use crate::federation::pending::COOKIE_PREFIX as BINDING_PREFIX;
use crate::login::authorize::{Browser, Resolved};
use crate::login::Next;
use crate::oidc::authorize::RequestOrigin;
use crate::oidc::error::OAuthError;
use crate::oidc::params::Params;
use crate::sessions::sso::COOKIE as SSO_COOKIE;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/authorize")
            .wrap(from_fn(rate_limit))
            .route(web::get().to(authorize_get))
            .route(web::post().to(authorize_post)),
    );
}

async fn authorize_get(
    broker: web::Data<Broker>,
    req: HttpRequest,
) -> Result<HttpResponse, HttpError> {
    let pairs = form_pairs(req.query_string().as_bytes());
    authorize(&broker, &req, pairs).await
}

async fn authorize_post(
    broker: web::Data<Broker>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, HttpError> {
    authorize(&broker, &req, form_pairs(&body)).await
}

async fn authorize(
    broker: &Broker,
    req: &HttpRequest,
    pairs: Option<Vec<(String, String)>>,
) -> Result<HttpResponse, HttpError> {
    let english = wants_english(req, None);
    let bad = |error| HttpError::BadSignIn { error, english };
    let pairs = pairs.ok_or_else(|| bad(OAuthError::invalid_request("malformed parameters")))?;
    let params = Params::collect(pairs).map_err(bad)?;
    let now = broker.provider.now();
    let flow = broker.login_flow();
    let request = flow
        .resolve(params, now)
        .await
        .map_err(|e| flow_error(e, english))?;
    let english = wants_english(req, request.params.get("ui_locales"));
    let sso = req.cookie(&cookie_name(broker, SSO_COOKIE));
    let browser = Browser {
        sso_secret: sso.as_ref().map(|c| c.value()),
        client: broker.limits.client_key(req),
        user_agent: req
            .headers()
            .get(actix_web::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok()),
    };
    let next = flow
        .authorize(&request, browser, now)
        .await
        .map_err(|e| flow_error(e, english))?;
    match next {
        Next::Upstream { url, binding } => {
            let mut response = login_page(broker, &request, url, binding, english);
            drop_surplus_bindings(broker, req, &mut response);
            Ok(response)
        }
        other => Ok(next_response(broker, other)),
    }
}

/// More binding cookies than anyone logs in with at once mean a page is starting logins in this
/// browser on its own; left alone they would push the SSO cookie out of the browser's per-site
/// cookie limit. Past that many, every older binding is dropped (those logins must restart).
const MAX_BINDINGS: usize = 16;

fn drop_surplus_bindings(broker: &Broker, req: &HttpRequest, response: &mut HttpResponse) {
    let prefix = cookie_name(broker, BINDING_PREFIX);
    let Ok(cookies) = req.cookies() else {
        return;
    };
    let held: Vec<String> = cookies
        .iter()
        .filter(|c| c.name().starts_with(&prefix))
        .map(|c| c.name().to_string())
        .collect();
    if held.len() < MAX_BINDINGS {
        return;
    }
    for name in held {
        // `name` already carries any `__Host-` prefix; strip it back for `cookie`.
        let base = name.strip_prefix("__Host-").unwrap_or(&name).to_string();
        let mut removal = cookie(broker, &base, String::new(), 0);
        removal.make_removal();
        let _ = response.add_cookie(&removal);
    }
}

/// The broker's login page with its one button to the upstream, or straight there.
fn login_page(
    broker: &Broker,
    request: &Resolved,
    url: url::Url,
    binding: crate::login::BrowserCookie,
    english: bool,
) -> HttpResponse {
    let binding = cookie(broker, &binding.name, binding.value, binding.max_age);
    if broker.auto_redirect {
        return HttpResponse::SeeOther()
            .cookie(binding)
            .insert_header((header::LOCATION, url.as_str()))
            .finish();
    }
    let other_lang = if english { "vi" } else { "en" };
    // A pushed request was used up and its parameters are not for a URL: the app's backend
    // chose the language (`ui_locales`), and the page offers no switch.
    let other_url = match request.origin {
        RequestOrigin::Pushed => String::new(),
        RequestOrigin::Browser { .. } => language_switch(broker, &request.params, other_lang),
    };
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
fn language_switch(broker: &Broker, params: &Params, lang: &str) -> String {
    // An ID token (personal data) or a claims request has no place in a link's URL.
    let mut pairs: Vec<(&str, &str)> = params
        .iter()
        .filter(|(k, _)| !matches!(*k, "ui_locales" | "id_token_hint" | "claims"))
        .collect();
    pairs.sort_unstable();
    pairs.push(("ui_locales", lang));
    let query = serde_urlencoded::to_string(pairs).unwrap_or_default();
    format!("{}?{query}", broker.provider.endpoint("/authorize"))
}
