//! The citizen's account page `/account`, behind the broker's own SSO session: the profile
//! VNeID gave (read-only), the phone (changed with a new one-time code) and the linked legacy
//! accounts. Without a session it logs the person in like any relying party does: the broker
//! registers itself as the public client `broker-account` (PKCE, redirect to
//! `/account/callback`) and sends the browser through `/authorize`.

use actix_web::http::{header, StatusCode};
use actix_web::middleware::from_fn;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;

use super::errors::HttpError;
use super::front::{cookie, cookie_name, wants_english};
use super::limits::rate_limit;
use super::pages::{html, t};
use super::Broker;
use crate::accounts::phone;
use crate::accounts::Account;
use crate::crypto::{ct_eq, random_token, sha256_b64url};
use crate::oidc::codes::Redemption;
use crate::otp::{OtpFailure, OtpRefused};
use crate::sessions::sso::{SsoSession, COOKIE as SSO_COOKIE};

/// The broker's own client for the account page.
pub const ACCOUNT_CLIENT: &str = "broker-account";
/// Binds the account page's login to the browser: `state.verifier`.
const LOGIN_COOKIE: &str = "broker_account_login";

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/account")
            .wrap(from_fn(rate_limit))
            .route("", web::get().to(show))
            .route("/callback", web::get().to(callback))
            .route("/phone", web::post().to(phone_post))
            .route("/sessions", web::post().to(sessions_post))
            .configure(super::roles_pages::configure),
    );
}

/// The registration of the account page's client, created at startup when missing.
pub fn client_request(
    issuer: &str,
) -> Result<crate::clients::registration::ClientRequest, serde_json::Error> {
    serde_json::from_value(serde_json::json!({
        "client_id": ACCOUNT_CLIENT,
        "client_name": "Tài khoản của tôi",
        "redirect_uris": [format!("{}/account/callback", issuer.trim_end_matches('/'))],
        "token_endpoint_auth_method": "none",
        "scope": "openid profile phone",
    }))
}

#[derive(Deserialize)]
struct ShowQuery {
    lang: Option<String>,
}

/// The session behind the browser's SSO cookie, with its secret.
pub(super) async fn session(
    broker: &Broker,
    req: &HttpRequest,
) -> Result<Option<(String, SsoSession)>, HttpError> {
    let Some(cookie) = req.cookie(&cookie_name(broker, SSO_COOKIE)) else {
        return Ok(None);
    };
    let secret = cookie.value().to_string();
    match broker.provider.live_sso(&secret).await {
        Ok(found) => Ok(found.map(|s| (secret, s))),
        Err(e) => Err(HttpError::unavailable_page(&e, wants_english(req, None))),
    }
}

/// The forms' CSRF token: derived from the SSO cookie's secret, which no other site can read.
pub(super) fn csrf_of(sso_secret: &str) -> String {
    sha256_b64url(&format!("account-csrf:{sso_secret}"))
}

pub(super) fn english_of(req: &HttpRequest, lang: Option<&str>) -> bool {
    match lang {
        Some("en") => true,
        Some("vi") => false,
        _ => wants_english(req, None),
    }
}

async fn show(
    broker: web::Data<Broker>,
    req: HttpRequest,
    query: web::Query<ShowQuery>,
) -> Result<HttpResponse, HttpError> {
    let english = english_of(&req, query.lang.as_deref());
    let Some((secret, session)) = session(&broker, &req).await? else {
        return start_login(&broker, english).await;
    };
    page(&broker, &secret, &session, english, None).await
}

/// The page of the session's account, with a message after a form.
async fn page(
    broker: &Broker,
    secret: &str,
    session: &SsoSession,
    english: bool,
    message: Option<(&str, String)>,
) -> Result<HttpResponse, HttpError> {
    let unavailable = |e: anyhow::Error| HttpError::unavailable_page(&e, english);
    let accounts = &broker.provider.accounts;
    let Some(account) = accounts
        .find(&session.account_id)
        .await
        .map_err(unavailable)?
    else {
        return start_login(broker, english).await;
    };
    let linked = accounts
        .linked_records(&account.id)
        .await
        .map_err(unavailable)?;
    let pending = pending_change(broker, &session.sid)
        .await
        .map_err(unavailable)?
        .map(|change| change.phone);
    let sessions = session_rows(broker, session, english)
        .await
        .map_err(unavailable)?;
    let status = match &message {
        Some(("error", _)) => StatusCode::BAD_REQUEST,
        _ => StatusCode::OK,
    };
    let mut response = render(
        &account,
        &linked,
        english,
        &csrf_of(secret),
        pending.as_deref(),
        sessions,
        message,
    );
    *response.status_mut() = status;
    Ok(response)
}

/// The account page's own client, registered the first time the page needs a login.
async fn ensure_account_client(broker: &Broker) -> anyhow::Result<()> {
    use crate::clients::registration::RegistrationError;
    if broker.provider.clients.get(ACCOUNT_CLIENT).await?.is_some() {
        return Ok(());
    }
    let request = client_request(&broker.provider.issuer)?;
    match broker
        .registrar
        .create(&request, "account-page", broker.provider.now())
        .await
    {
        Ok(_) | Err(RegistrationError::Conflict) => Ok(()),
        Err(e) => Err(anyhow::anyhow!(
            "cannot register the account page's client: {e}"
        )),
    }
}

/// Sends the browser through `/authorize` as the account page's client.
pub(super) async fn start_login(broker: &Broker, english: bool) -> Result<HttpResponse, HttpError> {
    ensure_account_client(broker)
        .await
        .map_err(|e| HttpError::unavailable_page(&e, english))?;
    Ok(start_login_redirect(broker, english))
}

fn start_login_redirect(broker: &Broker, english: bool) -> HttpResponse {
    let state = random_token();
    let verifier = random_token();
    let challenge = sha256_b64url(&verifier);
    let issuer = broker.provider.issuer.trim_end_matches('/').to_string();
    let url = url::Url::parse_with_params(
        &format!("{issuer}/authorize"),
        &[
            ("client_id", ACCOUNT_CLIENT),
            ("response_type", "code"),
            ("redirect_uri", &format!("{issuer}/account/callback")),
            ("scope", "openid"),
            ("state", &state),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
            ("ui_locales", if english { "en" } else { "vi" }),
        ],
    );
    match url {
        Ok(url) => HttpResponse::SeeOther()
            .cookie(cookie(
                broker,
                LOGIN_COOKIE,
                format!("{state}.{verifier}"),
                600,
            ))
            .insert_header((header::LOCATION, url.as_str()))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .finish(),
        Err(_) => HttpResponse::InternalServerError().finish(),
    }
}

#[derive(Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
}

/// Back from `/authorize`: the code must be this browser's (state and PKCE); redeeming it
/// leaves nothing usable behind. The SSO session the login set is what the page reads.
async fn callback(
    broker: web::Data<Broker>,
    req: HttpRequest,
    query: web::Query<CallbackQuery>,
) -> Result<HttpResponse, HttpError> {
    let english = wants_english(&req, None);
    let bound = req
        .cookie(&cookie_name(&broker, LOGIN_COOKIE))
        .map(|c| c.value().to_string())
        .unwrap_or_default();
    let (state, verifier) = bound.split_once('.').unwrap_or_default();
    let refused = || HttpError::BadSignIn {
        error: crate::oidc::error::OAuthError::invalid_request(
            "the sign-in to the account page did not come back to this browser",
        ),
        english,
    };
    if state.is_empty() || query.state.as_deref() != Some(state) {
        return Err(refused());
    }
    let code = query.code.as_deref().unwrap_or_default();
    let redemption = broker
        .provider
        .codes
        .redeem(ACCOUNT_CLIENT, code, &uuid::Uuid::now_v7().to_string())
        .await
        .map_err(|e| HttpError::unavailable_page(&e, english))?;
    match redemption {
        Redemption::Fresh(record)
            if record.code_challenge.as_deref() == Some(sha256_b64url(verifier).as_str()) => {}
        _ => return Err(refused()),
    }
    let mut removal = cookie(&broker, LOGIN_COOKIE, String::new(), 0);
    removal.make_removal();
    Ok(HttpResponse::SeeOther()
        .cookie(removal)
        .insert_header((header::LOCATION, "/account"))
        .finish())
}

/// Five wrong codes killed the change's challenge (it has been dropped): the next code starts
/// a new one.
fn too_many_wrong_codes(english: bool) -> (&'static str, String) {
    (
        "error",
        t(
            english,
            "Đã nhập sai mã quá nhiều lần. Vui lòng yêu cầu mã mới.",
            "Too many wrong codes. Please ask for a new code.",
        )
        .into(),
    )
}

/// One open session as the account page lists it.
struct SessionRow {
    sid: String,
    app: String,
    device: &'static str,
    started: String,
    from: String,
    current: bool,
}

/// The account's open sessions, this browser's first.
async fn session_rows(
    broker: &Broker,
    current: &SsoSession,
    english: bool,
) -> anyhow::Result<Vec<SessionRow>> {
    let p = &broker.provider;
    let since = p.now() - p.sso.ttl().as_secs() as i64;
    let mut rows = Vec::new();
    for s in p
        .session_records
        .open_sessions(&current.account_id, since)
        .await?
    {
        let app = match p.clients.get(&s.client_id).await? {
            Some(client) if !client.metadata.client_name.is_empty() => {
                client.metadata.client_name.clone()
            }
            _ => s.client_id.clone(),
        };
        let device = match (s.device_class.as_str(), english) {
            ("mobile", false) => "Điện thoại di động",
            ("mobile", true) => "Mobile phone",
            (_, false) => "Trình duyệt web",
            (_, true) => "Web browser",
        };
        let from = [s.address.clone(), s.user_agent.as_deref().map(short_agent)]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" · ");
        rows.push(SessionRow {
            current: s.sid == current.sid,
            sid: s.sid,
            app,
            device,
            started: local_time(s.started_at),
            from,
        });
    }
    rows.sort_by_key(|r| !r.current);
    Ok(rows)
}

/// A time as the province reads it: Vietnam's time (UTC+7), day first.
pub(super) fn local_time(at: i64) -> String {
    let format = time::macros::format_description!("[day]/[month]/[year] [hour]:[minute]");
    time::OffsetDateTime::from_unix_timestamp(at)
        .ok()
        .map(|t| t.to_offset(time::macros::offset!(+7)))
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_default()
}

/// The browser and system a `User-Agent` names, roughly, for a person to recognise.
fn short_agent(agent: &str) -> String {
    let browser = ["Zalo", "Edg", "Firefox", "Chrome", "Safari"]
        .into_iter()
        .find(|b| agent.contains(b))
        .map(|b| if b == "Edg" { "Edge" } else { b });
    let system = ["Android", "iPhone", "iPad", "Windows", "Mac OS", "Linux"]
        .into_iter()
        .find(|s| agent.contains(s));
    match (browser, system) {
        (Some(b), Some(s)) => format!("{b}, {s}"),
        (Some(x), None) | (None, Some(x)) => x.to_string(),
        (None, None) => agent.chars().take(40).collect(),
    }
}

#[derive(Deserialize)]
struct SessionForm {
    csrf: Option<String>,
    sid: Option<String>,
    lang: Option<String>,
}

/// `POST /account/sessions`: ends another session of the account (a lost phone, a shared
/// computer). The session itself is ended by logging out.
async fn sessions_post(
    broker: web::Data<Broker>,
    req: HttpRequest,
    form: web::Form<SessionForm>,
) -> Result<HttpResponse, HttpError> {
    let english = english_of(&req, form.lang.as_deref());
    let Some((secret, session)) = session(&broker, &req).await? else {
        return start_login(&broker, english).await;
    };
    let csrf_ok = form
        .csrf
        .as_deref()
        .is_some_and(|c| ct_eq(c.as_bytes(), csrf_of(&secret).as_bytes()));
    let sid = form.sid.as_deref().unwrap_or_default();
    if !csrf_ok || sid.is_empty() || sid.len() > 255 {
        return Err(HttpError::BadSignIn {
            error: crate::oidc::error::OAuthError::invalid_request(
                "the form is out of date; reload the page",
            ),
            english,
        });
    }
    let message = if sid == session.sid {
        (
            "error",
            t(
                english,
                "Để thoát phiên trên thiết bị này, vui lòng đăng xuất.",
                "To end the session on this device, please log out.",
            )
            .to_string(),
        )
    } else {
        let p = &broker.provider;
        let ended = crate::login::logout::end_session_of(
            p,
            crate::login::logout::Ender::Citizen,
            &session.account_id,
            sid,
            p.now(),
        )
        .await
        .map_err(|e| HttpError::unavailable_page(&e, english))?;
        match ended {
            crate::login::logout::AdminEnd::Ended => (
                "info",
                t(
                    english,
                    "Đã đăng xuất phiên đăng nhập đó.",
                    "That session has been signed out.",
                )
                .to_string(),
            ),
            crate::login::logout::AdminEnd::NotFound => (
                "error",
                t(
                    english,
                    "Không tìm thấy phiên đăng nhập này.",
                    "That session was not found.",
                )
                .to_string(),
            ),
        }
    };
    page(&broker, &secret, &session, english, Some(message)).await
}

#[derive(Deserialize)]
struct PhoneForm {
    csrf: Option<String>,
    action: Option<String>,
    phone: Option<String>,
    code: Option<String>,
    lang: Option<String>,
}

fn pending_key(sid: &str) -> String {
    format!("account-phone:{}", sha256_b64url(sid))
}

/// A phone change waiting for its code: the new number (E.164) and the OTP challenge its codes
/// were sent under. A resend to the same number keeps the challenge, so it buys no new
/// guesses; five wrong codes kill the challenge and drop the change, and the next code starts a
/// new one (the per-phone and per-account SMS limits bound how often).
#[derive(serde::Serialize, Deserialize)]
struct PendingChange {
    phone: String,
    challenge: String,
}

/// The phone change waiting for its code, if any.
async fn pending_change(broker: &Broker, sid: &str) -> anyhow::Result<Option<PendingChange>> {
    Ok(broker
        .sessions
        .get(&pending_key(sid))
        .await?
        .and_then(|b| serde_json::from_slice(&b).ok()))
}

/// `POST /account/phone`: `action=send` with a phone sends a code; `action=verify` with the
/// code changes the phone.
async fn phone_post(
    broker: web::Data<Broker>,
    req: HttpRequest,
    form: web::Form<PhoneForm>,
) -> Result<HttpResponse, HttpError> {
    let english = english_of(&req, form.lang.as_deref());
    let Some((secret, session)) = session(&broker, &req).await? else {
        return start_login(&broker, english).await;
    };
    let csrf = csrf_of(&secret);
    let csrf_ok = form
        .csrf
        .as_deref()
        .is_some_and(|c| ct_eq(c.as_bytes(), csrf.as_bytes()));
    if !csrf_ok {
        return Err(HttpError::BadSignIn {
            error: crate::oidc::error::OAuthError::invalid_request(
                "the form is out of date; reload the page",
            ),
            english,
        });
    }
    let unavailable = |e: anyhow::Error| HttpError::unavailable_page(&e, english);
    let Some(account) = broker
        .provider
        .accounts
        .find(&session.account_id)
        .await
        .map_err(unavailable)?
    else {
        return start_login(&broker, english).await;
    };
    let now = broker.provider.now();
    let store = &broker.sessions;
    let pending = pending_change(&broker, &session.sid)
        .await
        .map_err(unavailable)?;
    let message: (&str, String) = match form.action.as_deref() {
        Some("send") => match phone::normalise(form.phone.as_deref().unwrap_or_default()) {
            Err(_) => (
                "error",
                t(
                    english,
                    "Số điện thoại không hợp lệ.",
                    "That is not a valid phone number.",
                )
                .into(),
            ),
            Ok(new) => {
                let change = PendingChange {
                    phone: new.e164().to_string(),
                    challenge: match pending {
                        Some(p) if p.phone == new.e164() => p.challenge,
                        _ => format!("account:{}", random_token()),
                    },
                };
                match broker
                    .otp
                    .send(
                        &change.challenge,
                        &new,
                        &account.id,
                        broker.limits.client_key(&req),
                        now,
                    )
                    .await
                {
                    Ok(_) => {
                        store
                            .put(
                                &pending_key(&session.sid),
                                &serde_json::to_vec(&change).map_err(|e| unavailable(e.into()))?,
                                std::time::Duration::from_secs(600),
                            )
                            .await
                            .map_err(unavailable)?;
                        (
                            "info",
                            t(
                                english,
                                "Mã xác thực đã được gửi tới số mới.",
                                "A code was sent to the new number.",
                            )
                            .into(),
                        )
                    }
                    Err(
                        OtpRefused::TooSoon { retry_after } | OtpRefused::Limited { retry_after },
                    ) => (
                        "error",
                        if english {
                            format!("Please try again in {retry_after} seconds.")
                        } else {
                            format!("Vui lòng thử lại sau {retry_after} giây.")
                        },
                    ),
                    Err(OtpRefused::NotMobile) => (
                        "error",
                        t(
                            english,
                            "Chỉ nhận số điện thoại di động Việt Nam.",
                            "Only Vietnamese mobile numbers can receive the code.",
                        )
                        .into(),
                    ),
                    Err(OtpRefused::Exhausted) => {
                        store
                            .delete(&pending_key(&session.sid))
                            .await
                            .map_err(unavailable)?;
                        too_many_wrong_codes(english)
                    }
                    Err(OtpRefused::Unavailable(e)) => {
                        tracing::warn!(error = format!("{e:#}"), "one-time code not sent");
                        (
                            "error",
                            t(
                                english,
                                "Hiện không gửi được tin nhắn. Vui lòng thử lại sau.",
                                "The text message could not be sent. Please try again later.",
                            )
                            .into(),
                        )
                    }
                }
            }
        },
        Some("verify") => {
            let normalised = pending
                .as_ref()
                .map(|p| (phone::normalise(&p.phone), p.challenge.as_str()));
            match normalised {
                Some((Ok(new), challenge)) => match broker
                    .otp
                    .verify(
                        challenge,
                        &new,
                        form.code.as_deref().unwrap_or_default().trim(),
                        now,
                    )
                    .await
                {
                    Ok(()) => {
                        broker
                            .provider
                            .accounts
                            .change_phone(&account.id, &new, now)
                            .await
                            .map_err(unavailable)?;
                        store
                            .delete(&pending_key(&session.sid))
                            .await
                            .map_err(unavailable)?;
                        (
                            "info",
                            t(
                                english,
                                "Đã cập nhật số điện thoại.",
                                "Your phone number was updated.",
                            )
                            .into(),
                        )
                    }
                    Err(OtpFailure::Wrong { attempts_left }) => (
                        "error",
                        if english {
                            format!("The code is not correct. {attempts_left} attempts left.")
                        } else {
                            format!("Mã xác thực không đúng. Bạn còn {attempts_left} lần thử.")
                        },
                    ),
                    Err(OtpFailure::Expired) => (
                        "error",
                        t(english, "Mã xác thực đã hết hạn.", "The code has expired.").into(),
                    ),
                    Err(OtpFailure::Exhausted) => {
                        store
                            .delete(&pending_key(&session.sid))
                            .await
                            .map_err(unavailable)?;
                        too_many_wrong_codes(english)
                    }
                    Err(OtpFailure::Unavailable(e)) => return Err(unavailable(e)),
                },
                _ => (
                    "error",
                    t(
                        english,
                        "Vui lòng nhập số điện thoại mới trước.",
                        "Please enter the new number first.",
                    )
                    .into(),
                ),
            }
        }
        _ => (
            "error",
            t(english, "Yêu cầu không hợp lệ.", "Invalid request.").into(),
        ),
    };
    page(&broker, &secret, &session, english, Some(message)).await
}

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage<'a> {
    lang: &'a str,
    title: &'a str,
    profile_title: &'a str,
    profile_note: &'a str,
    rows: Vec<(&'a str, String)>,
    phone_title: &'a str,
    phone_now: String,
    phone_label: &'a str,
    send_label: &'a str,
    code_label: &'a str,
    verify_label: &'a str,
    pending_phone: Option<String>,
    linked_title: &'a str,
    linked_none: &'a str,
    linked: Vec<(String, String)>,
    roles_title: &'a str,
    roles_link: &'a str,
    sessions_title: &'a str,
    sessions: Vec<SessionRow>,
    this_device: &'a str,
    end_label: &'a str,
    message: Option<(&'a str, String)>,
    csrf: &'a str,
    lang_field: &'a str,
    other_lang: &'a str,
    other_lang_code: &'a str,
    other_lang_url: String,
}

fn render(
    account: &Account,
    linked: &[crate::accounts::legacy::LegacyRecord],
    english: bool,
    csrf: &str,
    pending_phone: Option<&str>,
    sessions: Vec<SessionRow>,
    message: Option<(&str, String)>,
) -> HttpResponse {
    let dash = || "—".to_string();
    let rows = vec![
        (
            t(english, "Họ và tên", "Full name"),
            account.full_name.clone(),
        ),
        (
            t(english, "Ngày sinh", "Date of birth"),
            account.birthdate.clone().unwrap_or_else(dash),
        ),
        (
            t(english, "Số định danh cá nhân", "Personal ID number"),
            account
                .personal_id
                .as_deref()
                .map(crate::accounts::personal_id::mask)
                .unwrap_or_else(dash),
        ),
        (
            t(english, "Mức định danh", "Identity level"),
            format!("{}", i64::from(account.loa)),
        ),
    ];
    let phone_now = match (&account.phone, account.phone_verified) {
        (Some(p), verified) => {
            let shown = phone::normalise(p)
                .map(|p| p.national())
                .unwrap_or_else(|_| p.clone());
            let state = match (verified, english) {
                (true, false) => "đã xác thực",
                (true, true) => "confirmed",
                (false, false) => "chưa xác thực",
                (false, true) => "not confirmed",
            };
            format!("{shown} ({state})")
        }
        (None, _) => t(english, "Chưa có", "None yet").to_string(),
    };
    let (other_lang, other_lang_code) = if english {
        ("Tiếng Việt", "vi")
    } else {
        ("English", "en")
    };
    let page = AccountPage {
        lang: if english { "en" } else { "vi" },
        title: t(english, "Tài khoản của tôi", "My account"),
        profile_title: t(english, "Thông tin định danh", "Identity details"),
        profile_note: t(
            english,
            "Thông tin do VNeID cung cấp; thay đổi thông tin qua ứng dụng VNeID.",
            "Provided by VNeID; change them in the VNeID app.",
        ),
        rows,
        phone_title: t(english, "Số điện thoại", "Phone number"),
        phone_now,
        phone_label: t(english, "Số điện thoại mới", "New phone number"),
        send_label: t(english, "Gửi mã xác thực", "Send a code"),
        code_label: t(english, "Mã OTP", "One-time code"),
        verify_label: t(english, "Xác nhận", "Confirm"),
        pending_phone: pending_phone
            .and_then(|p| phone::normalise(p).ok())
            .map(|p| p.masked()),
        linked_title: t(
            english,
            "Tài khoản ứng dụng đã liên kết",
            "Linked app accounts",
        ),
        linked_none: t(
            english,
            "Chưa có tài khoản nào được liên kết.",
            "No app account is linked.",
        ),
        linked: linked
            .iter()
            .map(|r| (r.source.clone(), r.legacy_id.clone()))
            .collect(),
        roles_title: t(english, "Vai trò", "Roles"),
        roles_link: t(
            english,
            "Đăng ký, sửa và xem vai trò công tác",
            "Register, change and view your work roles",
        ),
        sessions_title: t(
            english,
            "Thiết bị và phiên đăng nhập",
            "Devices and sessions",
        ),
        sessions,
        this_device: t(english, "thiết bị này", "this device"),
        end_label: t(english, "Đăng xuất", "Sign out"),
        message,
        csrf,
        lang_field: if english { "en" } else { "vi" },
        other_lang,
        other_lang_code,
        other_lang_url: format!("/account?lang={other_lang_code}"),
    };
    html(StatusCode::OK, page.render())
}
