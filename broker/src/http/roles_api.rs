//! The roles' JSON APIs (`crate::roles`).
//!
//! - `/api/roles…` and `/api/approvals…`, for the province's digital-workplace platform and
//!   apps: called with an access token the broker issued to the person for the broker alone
//!   (`aud` the issuer only; `Authorization: Bearer` or `DPoP`). Scope `roles` lets a person see
//!   their own roles; `role_request` lets them file and withdraw requests (the platform's scope,
//!   not every app's that wants the claim); `role_approval` lets an approver work through their
//!   queue, see the roles of their units, decide, revoke and grant approvers below their units.
//!   Deciding needs a token from a level-2 login (`acr`).
//! - `/admin/approvers`, `/admin/org-units/{code}/policy`, `/admin/roles/{id}…` and
//!   `/admin/accounts/{id}/roles`: operators grant the first approvers, set a unit's policy,
//!   read any role and revoke one.
//!
//! Errors are JSON `{"error", "error_description"}` with 400, 403, 404 or 409; a token problem
//! is answered with the `WWW-Authenticate` challenge of RFC 6750 §3.

use actix_web::http::StatusCode;
use actix_web::middleware::from_fn;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::admin::Operator;
use super::errors::{problem, unavailable, BearerFailure, HttpError};
use super::limits::rate_limit;
use super::protocol::{authorization, dpop_header};
use super::Broker;
use crate::accounts::Loa;
use crate::directory::{Category, DirectoryStore};
use crate::oidc::access::{presented_access_token, PresentedToken, TokenScheme};
use crate::oidc::error::{ErrorCode, OAuthError};
use crate::roles::{Actor, RoleError, RoleForm};
use crate::tokens::claims::{AccessClaims, Audience};

/// The public API's routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api")
            .wrap(from_fn(rate_limit))
            .route("/roles", web::get().to(mine))
            .route("/roles", web::post().to(request))
            .route("/roles/options", web::get().to(options))
            .route("/roles/{id}", web::get().to(detail))
            .route("/roles/{id}/withdraw", web::post().to(withdraw))
            .route("/approvals", web::get().to(queue))
            .route("/approvals/decided", web::get().to(decided))
            .route("/approvals/{id}/approve", web::post().to(approve))
            .route("/approvals/{id}/reject", web::post().to(reject))
            .route("/approvals/{id}/revoke", web::post().to(revoke))
            .route("/approvers", web::get().to(delegated_list))
            .route("/approvers", web::post().to(delegate))
            .route(
                "/approvers/{account_id}/{org_code}",
                web::delete().to(undelegate),
            ),
    );
}

/// Routes inside the operators' `/admin` scope (`http::admin`).
pub fn configure_admin(cfg: &mut web::ServiceConfig) {
    cfg.route("/approvers", web::get().to(admin_approvers))
        .route("/approvers", web::post().to(admin_grant))
        .route(
            "/approvers/{account_id}/{org_code}",
            web::delete().to(admin_ungrant),
        )
        .route("/org-units/{code}/policy", web::put().to(admin_set_policy))
        .route("/roles/{id}", web::get().to(admin_role))
        .route("/roles/{id}/revoke", web::post().to(admin_revoke))
        .route(
            "/accounts/{account_id}/roles",
            web::get().to(admin_roles_of),
        );
}

/// Reads the caller's own roles (and releases the `roles` claim).
const ROLES: &str = "roles";
/// Files and withdraws the caller's own requests: the digital-workplace platform's, not every
/// app's that wants the claim.
const REQUEST: &str = "role_request";
/// An approver's powers.
const APPROVAL: &str = "role_approval";

/// The person behind a live access token with one of the scopes asked for, and the level of
/// their login.
struct Caller {
    account_id: String,
    loa: Loa,
    scope: crate::scope::Scope,
}

impl Caller {
    fn actor(&self) -> Actor<'_> {
        Actor::Account {
            id: &self.account_id,
            loa: self.loa,
        }
    }
}

fn refused(scheme: TokenScheme, e: OAuthError) -> HttpError {
    match scheme {
        TokenScheme::Dpop => HttpError::Bearer(BearerFailure::Dpop(e)),
        TokenScheme::Bearer => HttpError::Bearer(BearerFailure::Refused(e)),
    }
}

/// Checks the token once (a DPoP proof can be used only once) and wants one of `scopes`.
async fn caller(
    broker: &Broker,
    req: &HttpRequest,
    scopes: &[&'static str],
) -> Result<Caller, HttpError> {
    let (scheme, token) = authorization(req).ok_or(HttpError::Bearer(BearerFailure::Missing))?;
    let proof = match scheme {
        TokenScheme::Dpop => dpop_header(req).map_err(|e| refused(scheme, e))?,
        TokenScheme::Bearer => None,
    };
    let presented = PresentedToken {
        token: &token,
        scheme,
        proof: proof.as_deref(),
        method: req.method().as_str(),
    };
    let p = &broker.provider;
    let verified = presented_access_token(p, &presented, req.path(), p.now())
        .await
        .map_err(|e| refused(scheme, e))?;
    let claims: &AccessClaims = &verified.claims;
    // A person's token meant for the broker alone (RFC 9068 §4): a token that also names another
    // API could be replayed here by that API, acting as the person.
    if claims.aud != Audience::One(p.issuer.to_string()) || claims.gid.is_none() {
        return Err(refused(
            scheme,
            OAuthError::new(ErrorCode::InvalidToken, "the token is not one for this API"),
        ));
    }
    if !scopes.iter().any(|s| claims.has_scope(s)) {
        let needed = match scopes {
            [ROLES] => "this call needs the roles scope",
            [REQUEST] => "this call needs the role_request scope",
            [APPROVAL] => "this call needs the role_approval scope",
            _ => "this call needs the roles or the role_approval scope",
        };
        return Err(refused(
            scheme,
            OAuthError::new(ErrorCode::InsufficientScope, needed),
        ));
    }
    let loa = claims
        .acr
        .as_deref()
        .and_then(|acr| p.acr.level(acr))
        .unwrap_or(Loa::One);
    Ok(Caller {
        account_id: claims.sub.clone(),
        loa,
        scope: claims.scope.clone(),
    })
}

fn json<T: serde::Serialize>(status: StatusCode, body: T) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header(("Cache-Control", "no-store"))
        .json(body)
}

/// A refusal as JSON; a backend failure as `temporarily_unavailable` (logged).
fn role_error(e: RoleError) -> Result<HttpResponse, HttpError> {
    let (code, text) = (e.code(), e.text(true));
    let status = match e {
        RoleError::Invalid(_) => StatusCode::BAD_REQUEST,
        RoleError::NotFound => StatusCode::NOT_FOUND,
        RoleError::Forbidden(_) => StatusCode::FORBIDDEN,
        RoleError::Conflict(_) => StatusCode::CONFLICT,
        RoleError::Store(e) => return Err(unavailable(e)),
    };
    Ok(problem(status, code, text))
}

/// A JSON body, or what is wrong with it (for a 400, `refusal`).
fn body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, &'static str> {
    serde_json::from_slice(bytes).map_err(|e| e.classify_name())
}

fn refusal(what: &str) -> HttpResponse {
    problem(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        &format!("the body is not the expected JSON: {what}"),
    )
}

trait ClassifyName {
    fn classify_name(&self) -> &'static str;
}

impl ClassifyName for serde_json::Error {
    /// The kind of error without echoing the input (which may hold personal data).
    fn classify_name(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "unreadable",
            serde_json::error::Category::Syntax => "malformed JSON",
            serde_json::error::Category::Data => "wrong or missing fields",
            serde_json::error::Category::Eof => "truncated JSON",
        }
    }
}

macro_rules! parse_or_answer {
    ($bytes:expr) => {
        match body($bytes) {
            Ok(value) => value,
            Err(what) => return Ok(refusal(what)),
        }
    };
}

macro_rules! done_or_answer {
    ($result:expr) => {
        match $result {
            Ok(value) => value,
            Err(e) => return role_error(e),
        }
    };
}

/// `GET /api/roles`: the caller's roles and requests, newest first.
async fn mine(broker: web::Data<Broker>, req: HttpRequest) -> Result<HttpResponse, HttpError> {
    let caller = caller(&broker, &req, &[ROLES]).await?;
    let roles = broker
        .provider
        .roles
        .of_account(&caller.account_id)
        .await
        .map_err(unavailable)?;
    Ok(json(StatusCode::OK, serde_json::json!({ "roles": roles })))
}

/// `GET /api/roles/options`: what the registration form offers — the categories, the agency
/// tree, the app roles each client declares, and the caller's roster posts (to pre-fill).
async fn options(broker: web::Data<Broker>, req: HttpRequest) -> Result<HttpResponse, HttpError> {
    let caller = caller(&broker, &req, &[ROLES]).await?;
    let p = &broker.provider;
    let account = p
        .accounts
        .find(&caller.account_id)
        .await
        .map_err(unavailable)?;
    let roster = match &account {
        Some(account) => p.roles.roster_posts(account).await.map_err(unavailable)?,
        None => Vec::new(),
    };
    let units = DirectoryStore::org_units(&*p.roles.directory)
        .await
        .map_err(unavailable)?;
    let apps = declared_app_roles(&broker).await.map_err(unavailable)?;
    let categories: Vec<_> = [
        Category::CanBo,
        Category::CongChuc,
        Category::VienChuc,
        Category::NguoiLaoDong,
    ]
    .into_iter()
    .map(|c| {
        let (vi, en) = c.label();
        serde_json::json!({"code": c.as_str(), "name": vi, "name#en": en})
    })
    .collect();
    Ok(json(
        StatusCode::OK,
        serde_json::json!({
            "categories": categories,
            "org_units": units,
            "applications": apps,
            "roster": roster,
        }),
    ))
}

/// Every client that declares app roles: `{client_id, client_name, roles}`.
pub(super) async fn declared_app_roles(broker: &Broker) -> anyhow::Result<Vec<serde_json::Value>> {
    let mut apps: Vec<_> = broker
        .provider
        .clients
        .store()
        .list()
        .await?
        .into_iter()
        .filter(|c| !c.metadata.disabled && !c.metadata.roles.is_empty())
        .map(|c| {
            serde_json::json!({
                "client_id": c.client_id,
                "client_name": c.metadata.client_name,
                "roles": c.metadata.roles,
            })
        })
        .collect();
    apps.sort_by(|a, b| a["client_id"].as_str().cmp(&b["client_id"].as_str()));
    Ok(apps)
}

/// `POST /api/roles`: a request (or, with `replaces`, a change request).
async fn request(
    broker: web::Data<Broker>,
    req: HttpRequest,
    bytes: web::Bytes,
) -> Result<HttpResponse, HttpError> {
    let caller = caller(&broker, &req, &[REQUEST]).await?;
    let form: RoleForm = parse_or_answer!(&bytes);
    let p = &broker.provider;
    let Some(account) = p
        .accounts
        .find(&caller.account_id)
        .await
        .map_err(unavailable)?
    else {
        return Err(refused(
            TokenScheme::Bearer,
            OAuthError::new(ErrorCode::InvalidToken, "the account no longer exists"),
        ));
    };
    let role = done_or_answer!(p.roles.request(&account, &form, p.now()).await);
    Ok(json(StatusCode::CREATED, role))
}

/// `GET /api/roles/{id}`: a role and its history, for its owner (scope `roles`) or an
/// approver of its unit (scope `role_approval`).
async fn detail(
    broker: web::Data<Broker>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, HttpError> {
    let caller = caller(&broker, &req, &[ROLES, APPROVAL]).await?;
    let (role, history) =
        done_or_answer!(broker.provider.roles.detail(&caller.actor(), &path).await);
    // Someone else's role is shown only to an approver's token, never to one that reads the
    // person's own roles.
    if role.account_id != caller.account_id && !caller.scope.contains(APPROVAL) {
        return role_error(RoleError::NotFound);
    }
    Ok(json(
        StatusCode::OK,
        serde_json::json!({"role": role, "history": history}),
    ))
}

async fn withdraw(
    broker: web::Data<Broker>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, HttpError> {
    let caller = caller(&broker, &req, &[REQUEST]).await?;
    let p = &broker.provider;
    let role = done_or_answer!(p.roles.withdraw(&caller.account_id, &path, p.now()).await);
    Ok(json(StatusCode::OK, role))
}

/// `GET /api/approvals`: the pending requests of the caller's units, oldest first.
async fn queue(broker: web::Data<Broker>, req: HttpRequest) -> Result<HttpResponse, HttpError> {
    let caller = caller(&broker, &req, &[APPROVAL]).await?;
    let roles = broker
        .provider
        .roles
        .queue(&caller.account_id)
        .await
        .map_err(unavailable)?;
    Ok(json(
        StatusCode::OK,
        serde_json::json!({ "requests": roles }),
    ))
}

#[derive(Deserialize)]
struct DecidedQuery {
    limit: Option<i64>,
}

/// `GET /api/approvals/decided`: the latest decided roles of the caller's units.
async fn decided(
    broker: web::Data<Broker>,
    req: HttpRequest,
    query: web::Query<DecidedQuery>,
) -> Result<HttpResponse, HttpError> {
    let caller = caller(&broker, &req, &[APPROVAL]).await?;
    let limit = query.limit.unwrap_or(100).clamp(1, 500);
    let roles = broker
        .provider
        .roles
        .decided(&caller.account_id, limit)
        .await
        .map_err(unavailable)?;
    Ok(json(StatusCode::OK, serde_json::json!({ "roles": roles })))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Reason {
    #[serde(default)]
    reason: Option<String>,
}

fn reason_of(bytes: &[u8]) -> Result<Reason, &'static str> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Reason::default());
    }
    body(bytes)
}

/// An approver's (or an operator's) decision on a role.
#[derive(Clone, Copy)]
enum Decision {
    Approve,
    Reject,
    Revoke,
}

/// Applies `decision` with the body's `reason` (required to reject and revoke).
async fn decide(
    broker: &Broker,
    actor: &Actor<'_>,
    role_id: &str,
    bytes: &[u8],
    decision: Decision,
) -> Result<HttpResponse, HttpError> {
    let reason = match reason_of(bytes) {
        Ok(r) => r.reason,
        Err(what) => return Ok(refusal(what)),
    };
    let p = &broker.provider;
    let (roles, now) = (&p.roles, p.now());
    let required = reason.as_deref().unwrap_or_default();
    let role = done_or_answer!(match decision {
        Decision::Approve => roles.approve(actor, role_id, reason.as_deref(), now).await,
        Decision::Reject => roles.reject(actor, role_id, required, now).await,
        Decision::Revoke => roles.revoke(actor, role_id, required, now).await,
    });
    Ok(json(StatusCode::OK, role))
}

async fn approve(
    broker: web::Data<Broker>,
    req: HttpRequest,
    path: web::Path<String>,
    bytes: web::Bytes,
) -> Result<HttpResponse, HttpError> {
    let caller = caller(&broker, &req, &[APPROVAL]).await?;
    decide(&broker, &caller.actor(), &path, &bytes, Decision::Approve).await
}

async fn reject(
    broker: web::Data<Broker>,
    req: HttpRequest,
    path: web::Path<String>,
    bytes: web::Bytes,
) -> Result<HttpResponse, HttpError> {
    let caller = caller(&broker, &req, &[APPROVAL]).await?;
    decide(&broker, &caller.actor(), &path, &bytes, Decision::Reject).await
}

async fn revoke(
    broker: web::Data<Broker>,
    req: HttpRequest,
    path: web::Path<String>,
    bytes: web::Bytes,
) -> Result<HttpResponse, HttpError> {
    let caller = caller(&broker, &req, &[APPROVAL]).await?;
    decide(&broker, &caller.actor(), &path, &bytes, Decision::Revoke).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantBody {
    account_id: String,
    org_code: String,
}

/// `GET /api/approvers`: the caller's own approver grants.
async fn delegated_list(
    broker: web::Data<Broker>,
    req: HttpRequest,
) -> Result<HttpResponse, HttpError> {
    let caller = caller(&broker, &req, &[APPROVAL]).await?;
    let grants = broker
        .provider
        .roles
        .approvers(Some(&caller.account_id))
        .await
        .map_err(unavailable)?;
    Ok(json(
        StatusCode::OK,
        serde_json::json!({ "approvers": grants }),
    ))
}

/// `POST /api/approvers`: an approver makes someone an approver of a unit below theirs.
async fn delegate(
    broker: web::Data<Broker>,
    req: HttpRequest,
    bytes: web::Bytes,
) -> Result<HttpResponse, HttpError> {
    let caller = caller(&broker, &req, &[APPROVAL]).await?;
    let grant: GrantBody = parse_or_answer!(&bytes);
    grant_answer(&broker, &caller.actor(), &grant).await
}

async fn undelegate(
    broker: web::Data<Broker>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, HttpError> {
    let caller = caller(&broker, &req, &[APPROVAL]).await?;
    let (account_id, org_code) = path.into_inner();
    ungrant_answer(&broker, &caller.actor(), &account_id, &org_code).await
}

async fn grant_answer(
    broker: &Broker,
    granter: &Actor<'_>,
    grant: &GrantBody,
) -> Result<HttpResponse, HttpError> {
    let p = &broker.provider;
    let exists = grant.account_id.len() <= 255
        && p.accounts
            .find(&grant.account_id)
            .await
            .map_err(unavailable)?
            .is_some();
    let added = done_or_answer!(
        p.roles
            .grant_approver(granter, &grant.account_id, &grant.org_code, exists, p.now())
            .await
    );
    let status = if added {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(json(
        status,
        serde_json::json!({"account_id": grant.account_id, "org_code": grant.org_code}),
    ))
}

async fn ungrant_answer(
    broker: &Broker,
    granter: &Actor<'_>,
    account_id: &str,
    org_code: &str,
) -> Result<HttpResponse, HttpError> {
    let p = &broker.provider;
    let removed = done_or_answer!(
        p.roles
            .revoke_approver(granter, account_id, org_code, p.now())
            .await
    );
    Ok(if removed {
        HttpResponse::NoContent().finish()
    } else {
        problem(StatusCode::NOT_FOUND, "not_found", "no such approver grant")
    })
}

#[derive(Deserialize)]
struct ApproversQuery {
    account_id: Option<String>,
}

async fn admin_approvers(
    broker: web::Data<Broker>,
    _operator: Operator,
    query: web::Query<ApproversQuery>,
) -> Result<HttpResponse, HttpError> {
    let grants = broker
        .provider
        .roles
        .approvers(query.account_id.as_deref())
        .await
        .map_err(unavailable)?;
    Ok(json(
        StatusCode::OK,
        serde_json::json!({ "approvers": grants }),
    ))
}

async fn admin_grant(
    broker: web::Data<Broker>,
    operator: Operator,
    bytes: web::Bytes,
) -> Result<HttpResponse, HttpError> {
    let grant: GrantBody = parse_or_answer!(&bytes);
    grant_answer(&broker, &Actor::Operator(&operator.name), &grant).await
}

async fn admin_ungrant(
    broker: web::Data<Broker>,
    operator: Operator,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, HttpError> {
    let (account_id, org_code) = path.into_inner();
    ungrant_answer(
        &broker,
        &Actor::Operator(&operator.name),
        &account_id,
        &org_code,
    )
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyBody {
    auto_approve: bool,
}

async fn admin_set_policy(
    broker: web::Data<Broker>,
    operator: Operator,
    path: web::Path<String>,
    bytes: web::Bytes,
) -> Result<HttpResponse, HttpError> {
    let policy: PolicyBody = parse_or_answer!(&bytes);
    let p = &broker.provider;
    done_or_answer!(
        p.roles
            .set_policy(&operator.name, &path, policy.auto_approve, p.now())
            .await
    );
    Ok(json(
        StatusCode::OK,
        serde_json::json!({"org_code": path.into_inner(), "auto_approve": policy.auto_approve}),
    ))
}

async fn admin_role(
    broker: web::Data<Broker>,
    operator: Operator,
    path: web::Path<String>,
) -> Result<HttpResponse, HttpError> {
    let (role, history) = done_or_answer!(
        broker
            .provider
            .roles
            .detail(&Actor::Operator(&operator.name), &path)
            .await
    );
    Ok(json(
        StatusCode::OK,
        serde_json::json!({"role": role, "history": history}),
    ))
}

async fn admin_revoke(
    broker: web::Data<Broker>,
    operator: Operator,
    path: web::Path<String>,
    bytes: web::Bytes,
) -> Result<HttpResponse, HttpError> {
    let actor = Actor::Operator(&operator.name);
    decide(&broker, &actor, &path, &bytes, Decision::Revoke).await
}

async fn admin_roles_of(
    broker: web::Data<Broker>,
    _operator: Operator,
    path: web::Path<String>,
) -> Result<HttpResponse, HttpError> {
    let roles = broker
        .provider
        .roles
        .of_account(&path)
        .await
        .map_err(unavailable)?;
    Ok(json(StatusCode::OK, serde_json::json!({ "roles": roles })))
}
