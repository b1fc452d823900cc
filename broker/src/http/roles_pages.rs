//! The roles' pages, behind the account page's SSO session (`account.rs`): "Vai trò" — a
//! person's roles with their state and reason, "Đăng ký" (register) and "Sửa" (change) — and,
//! for approvers, the queue of their agencies' requests, a request's detail and history, and
//! the approve / reject / revoke forms. Server-rendered like the other pages, Vietnamese first,
//! a CSRF token on every form. The rules are `crate::roles`'s; these pages only show them.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;

use super::account::{csrf_of, english_of, local_time, session, start_login};
use super::errors::HttpError;
use super::pages::{html, t};
use super::Broker;
use crate::crypto::ct_eq;
use crate::directory::{Category, DirectoryStore};
use crate::roles::{Actor, AppRoles, Role, RoleError, RoleForm, RoleState};
use crate::sessions::sso::SsoSession;

/// Routes inside the account page's rate-limited `/account` scope.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/roles", web::get().to(roles_get))
        .route("/roles", web::post().to(roles_post))
        .route("/approvals", web::get().to(approvals_get))
        .route("/approvals/{id}", web::get().to(approval_get))
        .route("/approvals/{id}", web::post().to(approval_post));
}

const CATEGORIES: [Category; 4] = [
    Category::CanBo,
    Category::CongChuc,
    Category::VienChuc,
    Category::NguoiLaoDong,
];

fn state_label(state: RoleState, english: bool) -> &'static str {
    let (vi, en) = state.label();
    t(english, vi, en)
}

fn category_label(category: Category, english: bool) -> &'static str {
    let (vi, en) = category.label();
    t(english, vi, en)
}

/// The signed-in person, or the answer that logs them in.
async fn signed_in(
    broker: &Broker,
    req: &HttpRequest,
    english: bool,
) -> Result<Result<(String, SsoSession), HttpResponse>, HttpError> {
    match session(broker, req).await? {
        Some(found) => Ok(Ok(found)),
        None => Ok(Err(start_login(broker, english).await?)),
    }
}

fn stale_form(english: bool) -> HttpError {
    HttpError::BadSignIn {
        error: crate::oidc::error::OAuthError::invalid_request(
            "the form is out of date; reload the page",
        ),
        english,
    }
}

fn csrf_ok(secret: &str, offered: Option<&str>) -> bool {
    offered.is_some_and(|c| ct_eq(c.as_bytes(), csrf_of(secret).as_bytes()))
}

fn see_other(to: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, to))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

/// One role as the pages list it.
struct RoleRow {
    id: String,
    unit: String,
    category: &'static str,
    position: String,
    app_roles: String,
    state: &'static str,
    state_class: &'static str,
    reason: String,
    when: String,
    editable: bool,
    pending: bool,
}

fn role_row(role: &Role, english: bool, app_names: &dyn Fn(&AppRoles) -> String) -> RoleRow {
    RoleRow {
        id: role.id.clone(),
        unit: role.org_name.clone(),
        category: category_label(role.category, english),
        position: role.position.clone(),
        app_roles: app_names(&role.app_roles),
        state: state_label(role.state, english),
        state_class: role.state.as_str(),
        reason: role.reason.clone().unwrap_or_default(),
        when: local_time(role.decided_at.unwrap_or(role.created_at)),
        editable: role.state == RoleState::Approved,
        pending: role.state == RoleState::Pending,
    }
}

/// Every declared app role: (client id, code, "App: Role name").
async fn app_choices(
    broker: &Broker,
    english: bool,
) -> anyhow::Result<Vec<(String, String, String)>> {
    let mut out = Vec::new();
    for client in broker.provider.clients.store().list().await? {
        if client.metadata.disabled {
            continue;
        }
        for role in &client.metadata.roles {
            let name = match (&role.name_en, english) {
                (Some(en), true) => en.clone(),
                _ => role.name.clone(),
            };
            out.push((
                client.client_id.clone(),
                role.code.clone(),
                format!("{}: {name}", client.metadata.client_name),
            ));
        }
    }
    out.sort();
    Ok(out)
}

fn app_names(choices: &[(String, String, String)]) -> impl Fn(&AppRoles) -> String + '_ {
    move |roles: &AppRoles| {
        roles
            .iter()
            .flat_map(|(client, codes)| {
                codes.iter().map(move |code| {
                    choices
                        .iter()
                        .find(|(c, k, _)| c == client && k == code)
                        .map(|(_, _, label)| label.clone())
                        .unwrap_or_else(|| format!("{client}: {code}"))
                })
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[derive(Template)]
#[template(path = "roles.html")]
struct RolesPage<'a> {
    lang: &'a str,
    title: &'a str,
    message: Option<(&'a str, String)>,
    roles: Vec<RoleRow>,
    none: &'a str,
    csrf: &'a str,
    approver_link: Option<&'a str>,
    // The form.
    form_title: &'a str,
    replaces: String,
    categories: Vec<(&'static str, &'static str, bool)>,
    category_label: &'a str,
    choose_label: &'a str,
    chosen: bool,
    units: Vec<(String, String)>,
    org_code: String,
    org_label: &'a str,
    org_hint: &'a str,
    position: String,
    position_label: &'a str,
    prefilled: Option<&'a str>,
    apps: Vec<(String, String, bool)>,
    apps_label: &'a str,
    submit_label: &'a str,
    edit_label: &'a str,
    withdraw_label: &'a str,
    labels: [&'a str; 5],
    other_lang: &'a str,
    other_lang_code: &'a str,
    other_lang_url: String,
}

#[derive(Deserialize, Default)]
struct RolesQuery {
    lang: Option<String>,
    category: Option<String>,
    replaces: Option<String>,
}

/// What the form shows again after a refusal.
#[derive(Default)]
struct Draft {
    category: Option<String>,
    org_code: String,
    position: String,
    apps: Vec<String>,
    replaces: Option<String>,
}

async fn roles_get(
    broker: web::Data<Broker>,
    req: HttpRequest,
    query: web::Query<RolesQuery>,
) -> Result<HttpResponse, HttpError> {
    let english = english_of(&req, query.lang.as_deref());
    let (secret, session) = match signed_in(&broker, &req, english).await? {
        Ok(found) => found,
        Err(answer) => return Ok(answer),
    };
    let draft = Draft {
        category: query.category.clone(),
        replaces: query.replaces.clone(),
        ..Default::default()
    };
    roles_page(&broker, &secret, &session, english, draft, None, true).await
}

async fn roles_page(
    broker: &Broker,
    secret: &str,
    session: &SsoSession,
    english: bool,
    mut draft: Draft,
    message: Option<(&str, String)>,
    prefill: bool,
) -> Result<HttpResponse, HttpError> {
    let unavailable = |e: anyhow::Error| HttpError::unavailable_page(&e, english);
    let p = &broker.provider;
    let Some(account) = p
        .accounts
        .find(&session.account_id)
        .await
        .map_err(unavailable)?
    else {
        return start_login(broker, english).await;
    };
    let mine = p.roles.of_account(&account.id).await.map_err(unavailable)?;
    let choices = app_choices(broker, english).await.map_err(unavailable)?;
    let names = app_names(&choices);
    let roles: Vec<RoleRow> = mine.iter().map(|r| role_row(r, english, &names)).collect();
    // "Sửa": the form starts from the role it changes.
    let replaced = draft.replaces.as_deref().and_then(|id| {
        mine.iter()
            .find(|r| r.id == id && r.state == RoleState::Approved)
    });
    if draft.replaces.is_some() && replaced.is_none() {
        draft.replaces = None;
    }
    let mut prefilled = None;
    if let (Some(old), true) = (replaced, prefill) {
        draft
            .category
            .get_or_insert_with(|| old.category.as_str().to_string());
        draft.org_code = old.org_code.clone();
        draft.position = old.position.clone();
        draft.apps = old
            .app_roles
            .iter()
            .flat_map(|(c, codes)| codes.iter().map(move |k| format!("{c} {k}")))
            .collect();
    }
    let category = draft.category.as_deref().and_then(Category::parse);
    if let (Some(category), None, true) = (category, replaced, prefill) {
        // The guide's note: for someone on the roster, choosing đối tượng fills in the rest.
        let roster = p.roles.roster_posts(&account).await.map_err(unavailable)?;
        if let Some(post) = roster.iter().find(|post| post.category == category) {
            draft.org_code = post.org_code.clone();
            draft.position = post.position.clone();
            prefilled = Some(t(
                english,
                "Thông tin được điền sẵn theo danh sách cán bộ của tỉnh; vui lòng kiểm tra lại.",
                "Filled in from the province's staff roster; please check it.",
            ));
        }
    }
    let units = if category.is_some() {
        unit_paths(&*p.roles.directory).await.map_err(unavailable)?
    } else {
        Vec::new()
    };
    let is_approver = p
        .roles
        .is_approver(&account.id)
        .await
        .map_err(unavailable)?;
    let (other_lang, other_lang_code) = other_language(english);
    let page = RolesPage {
        lang: lang(english),
        title: t(english, "Vai trò", "Roles"),
        message,
        roles,
        none: t(
            english,
            "Bạn chưa đăng ký vai trò nào.",
            "You have no roles yet.",
        ),
        csrf: &csrf_of(secret),
        approver_link: is_approver.then(|| t(english, "Phê duyệt vai trò", "Approve roles")),
        form_title: if replaced.is_some() {
            t(english, "Sửa vai trò", "Change a role")
        } else {
            t(english, "Đăng ký vai trò", "Register a role")
        },
        replaces: draft.replaces.clone().unwrap_or_default(),
        categories: CATEGORIES
            .iter()
            .map(|c| {
                (
                    c.as_str(),
                    category_label(*c, english),
                    Some(*c) == category,
                )
            })
            .collect(),
        category_label: t(english, "Đối tượng", "Category"),
        choose_label: t(english, "Chọn", "Choose"),
        chosen: category.is_some(),
        units,
        org_code: draft.org_code,
        org_label: t(english, "Đơn vị công tác", "Agency"),
        org_hint: t(
            english,
            "Gõ tên hoặc mã đơn vị để tìm trong danh sách.",
            "Type an agency's name or code to search the list.",
        ),
        position: draft.position,
        position_label: t(english, "Chức vụ", "Position"),
        prefilled,
        apps: choices
            .iter()
            .map(|(client, code, label)| {
                let value = format!("{client} {code}");
                let checked = draft.apps.contains(&value);
                (value, label.clone(), checked)
            })
            .collect(),
        apps_label: t(english, "Vai trò trong ứng dụng", "Application roles"),
        submit_label: t(english, "Đăng ký", "Register"),
        edit_label: t(english, "Sửa", "Change"),
        withdraw_label: t(english, "Rút yêu cầu", "Withdraw"),
        labels: [
            t(english, "Đơn vị", "Agency"),
            t(english, "Chức vụ", "Position"),
            t(english, "Trạng thái", "State"),
            t(english, "Lý do", "Reason"),
            t(english, "Ứng dụng", "Applications"),
        ],
        other_lang,
        other_lang_code,
        other_lang_url: format!("/account/roles?lang={other_lang_code}"),
    };
    let status = match message_kind(&page.message) {
        Some("error") => StatusCode::BAD_REQUEST,
        _ => StatusCode::OK,
    };
    Ok(html(status, page.render()))
}

fn message_kind<'a>(message: &'a Option<(&'a str, String)>) -> Option<&'a str> {
    message.as_ref().map(|(kind, _)| *kind)
}

fn lang(english: bool) -> &'static str {
    if english {
        "en"
    } else {
        "vi"
    }
}

fn other_language(english: bool) -> (&'static str, &'static str) {
    if english {
        ("Tiếng Việt", "vi")
    } else {
        ("English", "en")
    }
}

/// Every unit with its path ("Sở Y tế › Phòng Nghiệp vụ Y"), in tree order.
async fn unit_paths(directory: &dyn DirectoryStore) -> anyhow::Result<Vec<(String, String)>> {
    let units = directory.org_units().await?;
    let by_code: std::collections::HashMap<&str, &crate::directory::OrgUnit> =
        units.iter().map(|u| (u.code.as_str(), u)).collect();
    let mut out: Vec<(String, String)> = units
        .iter()
        .map(|unit| {
            let mut names = vec![unit.name.as_str()];
            let mut parent = unit.parent_code.as_deref();
            // Below the root (UBND tỉnh), which every path would start with.
            while let Some(code) = parent {
                match by_code.get(code) {
                    Some(p) if p.parent_code.is_some() => {
                        names.push(p.name.as_str());
                        parent = p.parent_code.as_deref();
                    }
                    _ => break,
                }
                if names.len() > 64 {
                    break;
                }
            }
            names.reverse();
            (unit.code.clone(), names.join(" › "))
        })
        .collect();
    out.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(out)
}

#[derive(Deserialize)]
struct RoleFormBody {
    csrf: Option<String>,
    lang: Option<String>,
    action: Option<String>,
    category: Option<String>,
    org_code: Option<String>,
    position: Option<String>,
    replaces: Option<String>,
    role_id: Option<String>,
}

/// `POST /account/roles`: `action=register` (a request or, with `replaces`, a change) or
/// `action=withdraw`. The app roles come as repeated `app_role=client code` fields.
async fn roles_post(
    broker: web::Data<Broker>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, HttpError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let form: RoleFormBody = serde_urlencoded::from_bytes(&body).map_err(|_| stale_form(false))?;
    let english = english_of(&req, form.lang.as_deref());
    let (secret, session) = match signed_in(&broker, &req, english).await? {
        Ok(found) => found,
        Err(answer) => return Ok(answer),
    };
    if !csrf_ok(&secret, form.csrf.as_deref()) {
        return Err(stale_form(english));
    }
    let p = &broker.provider;
    let unavailable = |e: anyhow::Error| HttpError::unavailable_page(&e, english);
    let apps: Vec<String> = pairs
        .iter()
        .filter(|(k, _)| k == "app_role")
        .map(|(_, v)| v.clone())
        .take(100)
        .collect();
    let draft = Draft {
        category: form.category.clone(),
        org_code: form.org_code.clone().unwrap_or_default(),
        position: form.position.clone().unwrap_or_default(),
        apps: apps.clone(),
        replaces: form.replaces.clone().filter(|r| !r.is_empty()),
    };
    let outcome = match form.action.as_deref() {
        Some("withdraw") => p
            .roles
            .withdraw(
                &session.account_id,
                form.role_id.as_deref().unwrap_or_default(),
                p.now(),
            )
            .await
            .map(|_| t(english, "Đã rút yêu cầu.", "The request was withdrawn.")),
        _ => {
            let Some(account) = p
                .accounts
                .find(&session.account_id)
                .await
                .map_err(unavailable)?
            else {
                return start_login(&broker, english).await;
            };
            let mut app_roles = AppRoles::new();
            for value in &apps {
                if let Some((client, code)) = value.split_once(' ') {
                    app_roles
                        .entry(client.to_string())
                        .or_default()
                        .push(code.to_string());
                }
            }
            let request = RoleForm {
                category: draft.category.clone().unwrap_or_default(),
                org_code: draft.org_code.clone(),
                position: draft.position.clone(),
                app_roles,
                replaces: draft.replaces.clone(),
            };
            p.roles
                .request(&account, &request, p.now())
                .await
                .map(|role| match role.state {
                    RoleState::Approved => t(
                        english,
                        "Vai trò khớp danh sách cán bộ và đã được phê duyệt tự động.",
                        "The role matches the staff roster and was approved at once.",
                    ),
                    _ => t(
                        english,
                        "Đã gửi yêu cầu; vui lòng chờ phê duyệt.",
                        "Your request was sent; it awaits approval.",
                    ),
                })
        }
    };
    match outcome {
        Ok(done) => {
            roles_page(
                &broker,
                &secret,
                &session,
                english,
                Draft::default(),
                Some(("info", done.to_string())),
                false,
            )
            .await
        }
        Err(RoleError::Store(e)) => Err(unavailable(e)),
        Err(e) => {
            roles_page(
                &broker,
                &secret,
                &session,
                english,
                draft,
                Some(("error", e.text(english).to_string())),
                false,
            )
            .await
        }
    }
}

/// One request in an approver's lists.
struct QueueRow {
    id: String,
    person: String,
    unit: String,
    category: &'static str,
    position: String,
    state: &'static str,
    when: String,
    change: bool,
}

#[derive(Template)]
#[template(path = "approvals.html")]
struct ApprovalsPage<'a> {
    lang: &'a str,
    title: &'a str,
    pending_title: &'a str,
    decided_title: &'a str,
    none: &'a str,
    pending: Vec<QueueRow>,
    decided: Vec<QueueRow>,
    change_label: &'a str,
    back_label: &'a str,
    other_lang: &'a str,
    other_lang_code: &'a str,
    other_lang_url: String,
}

#[derive(Deserialize)]
struct LangQuery {
    lang: Option<String>,
}

async fn queue_rows(
    broker: &Broker,
    roles: &[Role],
    english: bool,
) -> anyhow::Result<Vec<QueueRow>> {
    let mut out = Vec::with_capacity(roles.len());
    for role in roles {
        let person = broker
            .provider
            .accounts
            .find(&role.account_id)
            .await?
            .map(|a| a.full_name)
            .unwrap_or_default();
        out.push(QueueRow {
            id: role.id.clone(),
            person,
            unit: role.org_name.clone(),
            category: category_label(role.category, english),
            position: role.position.clone(),
            state: state_label(role.state, english),
            when: local_time(role.updated_at),
            change: role.replaces.is_some(),
        });
    }
    Ok(out)
}

async fn approvals_get(
    broker: web::Data<Broker>,
    req: HttpRequest,
    query: web::Query<LangQuery>,
) -> Result<HttpResponse, HttpError> {
    let english = english_of(&req, query.lang.as_deref());
    let (_secret, session) = match signed_in(&broker, &req, english).await? {
        Ok(found) => found,
        Err(answer) => return Ok(answer),
    };
    let unavailable = |e: anyhow::Error| HttpError::unavailable_page(&e, english);
    let roles = &broker.provider.roles;
    if !roles
        .is_approver(&session.account_id)
        .await
        .map_err(unavailable)?
    {
        return Ok(see_other("/account/roles"));
    }
    let pending = roles
        .queue(&session.account_id)
        .await
        .map_err(unavailable)?;
    let decided = roles
        .decided(&session.account_id, 50)
        .await
        .map_err(unavailable)?;
    let (other_lang, other_lang_code) = other_language(english);
    let page = ApprovalsPage {
        lang: lang(english),
        title: t(english, "Phê duyệt vai trò", "Role approvals"),
        pending_title: t(english, "Chờ phê duyệt", "Awaiting approval"),
        decided_title: t(english, "Đã xử lý gần đây", "Recently decided"),
        none: t(english, "Không có yêu cầu nào.", "No requests."),
        pending: queue_rows(&broker, &pending, english)
            .await
            .map_err(unavailable)?,
        decided: queue_rows(&broker, &decided, english)
            .await
            .map_err(unavailable)?,
        change_label: t(english, "yêu cầu sửa", "change request"),
        back_label: t(english, "Vai trò của tôi", "My roles"),
        other_lang,
        other_lang_code,
        other_lang_url: format!("/account/approvals?lang={other_lang_code}"),
    };
    Ok(html(StatusCode::OK, page.render()))
}

#[derive(Template)]
#[template(path = "approval.html")]
struct ApprovalPage<'a> {
    lang: &'a str,
    title: &'a str,
    message: Option<(&'a str, String)>,
    rows: Vec<(&'a str, String)>,
    history_title: &'a str,
    history: Vec<(String, &'static str, String, String)>,
    csrf: &'a str,
    id: String,
    can_decide: bool,
    can_revoke: bool,
    level_note: Option<&'a str>,
    reason_label: &'a str,
    approve_label: &'a str,
    reject_label: &'a str,
    revoke_label: &'a str,
    back_label: &'a str,
    other_lang: &'a str,
    other_lang_code: &'a str,
    other_lang_url: String,
}

async fn approval_get(
    broker: web::Data<Broker>,
    req: HttpRequest,
    path: web::Path<String>,
    query: web::Query<LangQuery>,
) -> Result<HttpResponse, HttpError> {
    let english = english_of(&req, query.lang.as_deref());
    let (secret, session) = match signed_in(&broker, &req, english).await? {
        Ok(found) => found,
        Err(answer) => return Ok(answer),
    };
    approval_page(&broker, &secret, &session, &path, english, None).await
}

async fn approval_page(
    broker: &Broker,
    secret: &str,
    session: &SsoSession,
    id: &str,
    english: bool,
    message: Option<(&str, String)>,
) -> Result<HttpResponse, HttpError> {
    let unavailable = |e: anyhow::Error| HttpError::unavailable_page(&e, english);
    let p = &broker.provider;
    let viewer = Actor::Account {
        id: &session.account_id,
        loa: session.loa,
    };
    let (role, history) = match p.roles.detail(&viewer, id).await {
        Ok(found) => found,
        Err(RoleError::Store(e)) => return Err(unavailable(e)),
        Err(_) => {
            return Err(HttpError::BadSignIn {
                error: crate::oidc::error::OAuthError::invalid_request("no such request"),
                english,
            })
        }
    };
    let approver = p
        .roles
        .store
        .approves(&session.account_id, &role.org_code, false)
        .await
        .map_err(unavailable)?;
    let own = role.account_id == session.account_id;
    let level2 = session.loa >= crate::accounts::Loa::Two;
    let person = p
        .accounts
        .find(&role.account_id)
        .await
        .map_err(unavailable)?;
    let on_roster = match &person {
        Some(account) => p
            .roles
            .roster_posts(account)
            .await
            .map_err(unavailable)?
            .iter()
            .any(|post| {
                post.category == role.category
                    && post.org_code == role.org_code
                    && post.position == role.position
            }),
        None => false,
    };
    let choices = app_choices(broker, english).await.map_err(unavailable)?;
    let path = p
        .roles
        .store
        .org_path(&role.org_code)
        .await
        .map_err(unavailable)?
        .into_iter()
        .map(|(_, name)| name)
        .collect::<Vec<_>>()
        .join(" › ");
    let mut rows = vec![
        (
            t(english, "Người đăng ký", "Requested by"),
            person
                .as_ref()
                .map(|a| a.full_name.clone())
                .unwrap_or_default(),
        ),
        (
            t(english, "Ngày sinh", "Date of birth"),
            person
                .as_ref()
                .and_then(|a| a.birthdate.clone())
                .unwrap_or_default(),
        ),
        (
            t(english, "Đối tượng", "Category"),
            category_label(role.category, english).into(),
        ),
        (t(english, "Đơn vị", "Agency"), path),
        (t(english, "Chức vụ", "Position"), role.position.clone()),
        (
            t(english, "Vai trò trong ứng dụng", "Application roles"),
            app_names(&choices)(&role.app_roles),
        ),
        (
            t(english, "Trạng thái", "State"),
            state_label(role.state, english).into(),
        ),
        (
            t(english, "Danh sách cán bộ", "Staff roster"),
            if on_roster {
                t(english, "Khớp danh sách cán bộ", "Matches the roster")
            } else {
                t(
                    english,
                    "Không có trong danh sách cán bộ",
                    "Not on the roster",
                )
            }
            .into(),
        ),
    ];
    if role.replaces.is_some() {
        rows.push((
            t(english, "Loại yêu cầu", "Kind"),
            t(
                english,
                "Sửa vai trò đang hiệu lực",
                "Change of an active role",
            )
            .into(),
        ));
    }
    let history = history
        .into_iter()
        .map(|h| {
            (
                local_time(h.at),
                state_label(h.state, english),
                h.action,
                h.reason.unwrap_or_default(),
            )
        })
        .collect();
    let (other_lang, other_lang_code) = other_language(english);
    let decider = approver && !own;
    let page = ApprovalPage {
        lang: lang(english),
        title: t(english, "Yêu cầu vai trò", "Role request"),
        message,
        rows,
        history_title: t(english, "Lịch sử", "History"),
        history,
        csrf: &csrf_of(secret),
        id: role.id.clone(),
        can_decide: decider && level2 && role.state == RoleState::Pending,
        can_revoke: decider && level2 && role.state == RoleState::Approved,
        level_note: (decider && !level2).then(|| {
            t(
                english,
                "Phê duyệt cần đăng nhập bằng tài khoản định danh điện tử mức độ 2.",
                "Deciding needs a login with a level-2 electronic identity.",
            )
        }),
        reason_label: t(english, "Lý do", "Reason"),
        approve_label: t(english, "Phê duyệt", "Approve"),
        reject_label: t(english, "Từ chối", "Reject"),
        revoke_label: t(english, "Thu hồi", "Revoke"),
        back_label: t(english, "Danh sách yêu cầu", "All requests"),
        other_lang,
        other_lang_code,
        other_lang_url: format!("/account/approvals/{}?lang={other_lang_code}", role.id),
    };
    let status = match message_kind(&page.message) {
        Some("error") => StatusCode::BAD_REQUEST,
        _ => StatusCode::OK,
    };
    Ok(html(status, page.render()))
}

#[derive(Deserialize)]
struct DecisionForm {
    csrf: Option<String>,
    lang: Option<String>,
    action: Option<String>,
    reason: Option<String>,
}

/// `POST /account/approvals/{id}`: `action=approve|reject|revoke` with a `reason`.
async fn approval_post(
    broker: web::Data<Broker>,
    req: HttpRequest,
    path: web::Path<String>,
    form: web::Form<DecisionForm>,
) -> Result<HttpResponse, HttpError> {
    let english = english_of(&req, form.lang.as_deref());
    let (secret, session) = match signed_in(&broker, &req, english).await? {
        Ok(found) => found,
        Err(answer) => return Ok(answer),
    };
    if !csrf_ok(&secret, form.csrf.as_deref()) {
        return Err(stale_form(english));
    }
    let p = &broker.provider;
    let actor = Actor::Account {
        id: &session.account_id,
        loa: session.loa,
    };
    let reason = form.reason.as_deref().unwrap_or_default();
    let now = p.now();
    let outcome = match form.action.as_deref() {
        Some("approve") => p
            .roles
            .approve(&actor, &path, Some(reason), now)
            .await
            .map(|_| t(english, "Đã phê duyệt.", "Approved.")),
        Some("reject") => p
            .roles
            .reject(&actor, &path, reason, now)
            .await
            .map(|_| t(english, "Đã từ chối.", "Rejected.")),
        Some("revoke") => p
            .roles
            .revoke(&actor, &path, reason, now)
            .await
            .map(|_| t(english, "Đã thu hồi vai trò.", "The role was revoked.")),
        _ => Err(RoleError::Invalid((
            "Yêu cầu không hợp lệ.",
            "Invalid request.",
        ))),
    };
    let message = match outcome {
        Ok(done) => ("info", done.to_string()),
        Err(RoleError::Store(e)) => return Err(HttpError::unavailable_page(&e, english)),
        Err(e) => ("error", e.text(english).to_string()),
    };
    approval_page(&broker, &secret, &session, &path, english, Some(message)).await
}
