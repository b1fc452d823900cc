//! `/authorize` (GET and POST): collect the parameters, run the login flow, render its answer.

use actix_web::http::{header, StatusCode};
use actix_web::middleware::from_fn;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;

use super::errors::HttpError;
use super::front::{cookie, cookie_name, flow_error, next_response, wants_english};
use super::limits::rate_limit;
use super::pages::{html, LoginButton, LoginPage};
use super::{form_pairs, Broker};
use crate::federation::pending::COOKIE_PREFIX as BINDING_PREFIX;
use crate::login::authorize::{choice_cookie, Browser, Resolved};
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
    )
    .service(
        web::resource("/login/choose/{upstream}")
            .wrap(from_fn(rate_limit))
            .route(web::get().to(choose_get)),
    );
}

#[derive(serde::Deserialize)]
struct ChooseQuery {
    choice: String,
}

/// A button of the choice page: the waiting request goes to the chosen upstream.
async fn choose_get(
    broker: web::Data<Broker>,
    req: HttpRequest,
    path: web::Path<String>,
    query: Option<web::Query<ChooseQuery>>,
) -> Result<HttpResponse, HttpError> {
    let english = wants_english(&req, None);
    let Some(query) = query else {
        return Err(HttpError::BadSignIn {
            error: OAuthError::invalid_request("choice is required"),
            english,
        });
    };
    let binding = choice_cookie(&query.choice);
    let secret = req.cookie(&cookie_name(&broker, &binding));
    let next = broker
        .login_flow()
        .choose(
            &query.choice,
            secret.as_ref().map(|c| c.value()),
            &path,
            broker.limits.client_key(&req),
            broker.provider.now(),
        )
        .await
        .map_err(|e| flow_error(e, english))?;
    Ok(next_response(&broker, next))
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
        Next::Choose { id, binding } => {
            let mut response = choice_page(broker, Some(&request), &id, binding, english);
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
    // The upstream the pending login went to: the RP's `idp_hint`, or the only one.
    let upstream = request
        .params
        .get("idp_hint")
        .and_then(|name| broker.upstreams.get(name))
        .unwrap_or_else(|| broker.upstreams.first());
    let button = LoginButton {
        // The id the login page has always had, for the browser tests and anyone scripting it.
        id: "vneid-login".into(),
        label: button_label(&upstream.profile.display_name, english),
        url: url.to_string(),
    };
    let mut response = page(broker, request, vec![button], english);
    let _ = response.add_cookie(&binding);
    response
}

/// The login page offering every enabled upstream: each button chooses one for the waiting
/// request (`/login/choose/{name}`). `auto_redirect` cannot choose for the person.
pub fn choice_page(
    broker: &Broker,
    request: Option<&Resolved>,
    choice_id: &str,
    binding: crate::login::BrowserCookie,
    english: bool,
) -> HttpResponse {
    let buttons = broker
        .upstreams
        .iter()
        .map(|u| {
            let name = &u.profile.name;
            let mut url = broker.provider.endpoint(&format!("/login/choose/{name}"));
            url.push_str("?choice=");
            url.push_str(choice_id);
            LoginButton {
                id: format!("login-{name}"),
                label: button_label(&u.profile.display_name, english),
                url,
            }
        })
        .collect();
    let mut response = match request {
        Some(request) => page(broker, request, buttons, english),
        None => render(buttons, english, String::new()),
    };
    let binding = cookie(broker, &binding.name, binding.value, binding.max_age);
    let _ = response.add_cookie(&binding);
    response
}

fn button_label(display_name: &str, english: bool) -> String {
    if english {
        format!("Sign in with {display_name}")
    } else {
        format!("Đăng nhập bằng {display_name}")
    }
}

fn page(
    broker: &Broker,
    request: &Resolved,
    buttons: Vec<LoginButton>,
    english: bool,
) -> HttpResponse {
    let other_lang = if english { "vi" } else { "en" };
    // A pushed request was used up and its parameters are not for a URL: the app's backend
    // chose the language (`ui_locales`), and the page offers no switch.
    let other_url = match request.origin {
        RequestOrigin::Pushed => String::new(),
        RequestOrigin::Browser { .. } => language_switch(broker, &request.params, other_lang),
    };
    render(buttons, english, other_url)
}

fn render(buttons: Vec<LoginButton>, english: bool, other_url: String) -> HttpResponse {
    let several = buttons.len() > 1;
    let page = if english {
        LoginPage {
            lang: "en",
            title: "Sign in",
            subtitle: if several {
                "Choose the account to sign in with"
            } else {
                "Sign in with your national electronic identity (VNeID) account"
            },
            buttons,
            help: "Need help? VNeID 1900 0368 · Hue-S 1900 1075",
            other_lang: "Tiếng Việt",
            other_lang_url: &other_url,
        }
    } else {
        LoginPage {
            lang: "vi",
            title: "Đăng nhập",
            subtitle: if several {
                "Chọn tài khoản để đăng nhập"
            } else {
                "Đăng nhập bằng tài khoản định danh điện tử VNeID"
            },
            buttons,
            help: "Cần hỗ trợ: VNeID 1900 0368 · Hue-S 1900 1075",
            other_lang: "English",
            other_lang_url: &other_url,
        }
    };
    html(StatusCode::OK, page.render())
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
