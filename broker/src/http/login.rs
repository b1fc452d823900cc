//! Front-channel endpoints: `/authorize`, the upstream callback, and RP-initiated logout.

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use url::Url;

use super::pages::{error_page, html, LoginPage, LogoutPage};
use super::{form_pairs, Broker};
use crate::accounts::login::LoginOutcome;
use crate::federation::pending::{UnknownLogin, COOKIE as PENDING_COOKIE};
use crate::federation::upstream::UpstreamError;
use crate::oidc::authorize::{self, AuthorizeError, AuthorizeRequest};
use crate::oidc::codes::CodeRecord;
use crate::oidc::error::{ErrorCode, OAuthError};
use crate::sessions::sso::{SsoSession, COOKIE as SSO_COOKIE};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/authorize", web::get().to(authorize_get))
        .route("/authorize", web::post().to(authorize_post))
        .route("/callback/{upstream}", web::get().to(callback_get))
        .route("/end_session", web::get().to(end_session_get))
        .route("/end_session", web::post().to(end_session_post));
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

fn bad_request_page(error: &OAuthError) -> HttpResponse {
    error_page(
        StatusCode::BAD_REQUEST,
        false,
        error.code.as_str(),
        "Yêu cầu đăng nhập từ ứng dụng không hợp lệ. Vui lòng quay lại ứng dụng và thử lại.",
        "The application's sign-in request is invalid. Please go back to the application and try again.",
    )
}

fn unavailable_page() -> HttpResponse {
    error_page(
        StatusCode::SERVICE_UNAVAILABLE,
        false,
        "temporarily_unavailable",
        "Hệ thống đang bận, vui lòng thử lại sau ít phút.",
        "The service is busy; please try again in a few minutes.",
    )
}

/// 303 back to the client with the authorization response and `iss` (RFC 9207).
fn redirect_to_client(
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
    start_upstream_login(broker, req, request, now).await
}

async fn issue_code(
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

fn cookie<'a>(
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

async fn start_upstream_login(
    broker: &Broker,
    req: &HttpRequest,
    request: AuthorizeRequest,
    now: i64,
) -> HttpResponse {
    let profile = &broker.upstream.profile;
    let english = request.english();
    let existing = req.cookie(PENDING_COOKIE).map(|c| c.value().to_string());
    let (login_hint, ui_locales) = (request.login_hint.clone(), request.ui_locales.clone());
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
            login_hint.as_deref(),
            ui_locales.as_deref(),
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
    let mut other =
        Url::parse(&broker.provider.endpoint("/authorize")).unwrap_or_else(|_| url.clone());
    other.set_query(
        req.query_string()
            .is_empty()
            .then_some("")
            .or(Some(req.query_string())),
    );
    let other_lang = if english { "vi" } else { "en" };
    let other_url = {
        let pairs: Vec<(String, String)> = other
            .query_pairs()
            .filter(|(k, _)| k != "ui_locales")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        other
            .query_pairs_mut()
            .clear()
            .extend_pairs(pairs)
            .append_pair("ui_locales", other_lang);
        other.to_string()
    };
    let page = if english {
        LoginPage {
            lang: "en",
            title: "Sign in",
            subtitle: "Sign in with your national electronic identity (VNeID) account",
            button: "Sign in with VNeID",
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
            button: "Đăng nhập bằng VNeID",
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

/// Reads the raw query without turning `+` into a space: some upstreams put `+` in codes.
fn raw_query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| {
            percent_encoding::percent_decode_str(v)
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

async fn callback_get(
    broker: web::Data<Broker>,
    req: HttpRequest,
    path: web::Path<String>,
) -> HttpResponse {
    let p = &broker.provider;
    if path.as_str() != broker.upstream.profile.name {
        return HttpResponse::NotFound().finish();
    }
    let query = req.query_string();
    if query.len() > 8192 {
        return bad_request_page(&OAuthError::invalid_request("callback too large"));
    }
    let state = raw_query_param(query, "state").unwrap_or_default();
    let browser = req.cookie(PENDING_COOKIE).map(|c| c.value().to_string());
    let pending = match broker.pending.finish(&state, browser.as_deref()).await {
        Ok(Ok(pending)) => pending,
        Ok(Err(UnknownLogin)) => {
            return error_page(
                StatusCode::BAD_REQUEST,
                false,
                "invalid_request",
                "Phiên đăng nhập đã hết hạn, đã được dùng, hoặc được bắt đầu trên trình duyệt khác. Vui lòng đăng nhập lại từ ứng dụng.",
                "The sign-in has expired, was already used, or was started in another browser. Please sign in again from the application.",
            );
        }
        Err(e) => {
            let _ = OAuthError::unavailable(&e);
            return unavailable_page();
        }
    };
    let request = &pending.request;
    let english = request.english();
    if raw_query_param(query, "error").is_some() {
        let error = OAuthError::new(
            ErrorCode::AccessDenied,
            "the user did not complete the VNeID login",
        );
        return redirect_to_client(
            &request.redirect_uri,
            request.state.as_deref(),
            &p.issuer,
            Err(&error),
        );
    }
    let Some(code) = raw_query_param(query, "code").filter(|c| !c.is_empty()) else {
        return bad_request_page(&OAuthError::invalid_request(
            "the identity provider sent no code",
        ));
    };
    let now = p.now();
    let identity = match broker
        .upstream
        .complete(
            &code,
            pending.nonce.as_deref(),
            pending.pkce_verifier.as_deref(),
            now,
        )
        .await
    {
        Ok(identity) => identity,
        Err(UpstreamError::Unavailable(e)) => {
            tracing::error!(error = format!("{e:#}"), "upstream unavailable");
            return unavailable_page();
        }
        Err(e) => {
            tracing::warn!(error = %e, "upstream login refused");
            return error_page(
                StatusCode::BAD_REQUEST,
                english,
                "access_denied",
                "Không xác minh được thông tin đăng nhập từ VNeID. Vui lòng thử lại.",
                "The VNeID login could not be verified. Please try again.",
            );
        }
    };
    if request
        .required_loa
        .is_some_and(|required| identity.loa < required)
    {
        let error = OAuthError::new(
            ErrorCode::UnmetAuthenticationRequirements,
            "the application requires a higher VNeID assurance level",
        );
        return redirect_to_client(
            &request.redirect_uri,
            request.state.as_deref(),
            &p.issuer,
            Err(&error),
        );
    }
    let account = match p.accounts.complete_login(&identity, now).await {
        Ok(LoginOutcome::Authenticated { account, .. }) => account,
        Err(e) => {
            let _ = OAuthError::unavailable(&e);
            return unavailable_page();
        }
    };
    let session = SsoSession {
        sid: uuid::Uuid::new_v4().to_string(),
        account_id: account.id.clone(),
        auth_time: now,
        loa: identity.loa,
        amr: vec!["fed".into()],
        upstream: broker.upstream.profile.name.clone(),
    };
    let secret = match p.sso.start(&session).await {
        Ok(secret) => secret,
        Err(e) => {
            let _ = OAuthError::unavailable(&e);
            return unavailable_page();
        }
    };
    let mut response = issue_code(&broker, request, &session, now).await;
    let _ = response.add_cookie(&cookie(
        &broker,
        SSO_COOKIE,
        secret,
        "/",
        p.sso.ttl().as_secs() as i64,
    ));
    response
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
    if hint.is_none() && !confirmed {
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
    if let Some(cookie) = req.cookie(SSO_COOKIE) {
        match p.sso.end(cookie.value()).await {
            Ok(Some(session)) => {
                if let Err(e) = p
                    .grants
                    .revoke_session(&session.sid, "logged out", now)
                    .await
                {
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
