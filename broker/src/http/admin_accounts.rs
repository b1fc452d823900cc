//! The admin API of standardisation and sessions, for support staff: the failures to review,
//! the legacy records of an account, linked and unlinked by hand, and ending one of an
//! account's sessions. Every change names its operator.

use actix_web::{web, HttpResponse};
use serde::Deserialize;

use super::admin::Operator;
use super::errors::{problem, unavailable, HttpError};
use super::Broker;
use crate::accounts::login::AdminChange;
use crate::login::logout::{end_session_of, AdminEnd, Ender};

/// Routes inside the `/admin` scope (`http::admin`), which rate-limits them.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/standardisation-failures")
            .route("", web::get().to(failures_list))
            .route("/{id}", web::get().to(failure_show))
            .route("/{id}/resolve", web::post().to(failure_resolve)),
    )
    .service(
        web::scope("/accounts/{account_id}")
            .route("/links", web::get().to(links_list))
            .route("/links", web::post().to(link_create))
            .route("/links/{source}/{legacy_id}", web::delete().to(link_delete))
            .route("/events", web::get().to(events_list))
            .route("/sessions", web::get().to(sessions_list))
            .route("/sessions/{sid}", web::delete().to(session_delete)),
    );
}

fn bad_request(description: &str) -> HttpResponse {
    HttpResponse::BadRequest()
        .insert_header(("Cache-Control", "no-store"))
        .json(serde_json::json!({"error": "invalid_request", "error_description": description}))
}

#[derive(Deserialize)]
struct ListQuery {
    open: Option<bool>,
    limit: Option<i64>,
    /// The 8-character reference the failure page showed the citizen (the id's tail).
    reference: Option<String>,
}

async fn failures_list(
    broker: web::Data<Broker>,
    _operator: Operator,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, HttpError> {
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let store = broker.provider.accounts.failures();
    let failures = match query.reference.as_deref() {
        Some(reference) => {
            let valid = reference.len() == 8 && reference.bytes().all(|b| b.is_ascii_hexdigit());
            if !valid {
                return Ok(bad_request(
                    "reference is the 8-character code shown on the failure page",
                ));
            }
            store
                .failures_by_reference(&reference.to_ascii_lowercase())
                .await
        }
        None => store.failures(query.open.unwrap_or(true), limit).await,
    }
    .map_err(unavailable)?;
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(failures))
}

async fn failure_show(
    broker: web::Data<Broker>,
    _operator: Operator,
    path: web::Path<String>,
) -> Result<HttpResponse, HttpError> {
    match broker
        .provider
        .accounts
        .failures()
        .failure(&path)
        .await
        .map_err(unavailable)?
    {
        Some(f) => Ok(HttpResponse::Ok()
            .insert_header(("Cache-Control", "no-store"))
            .json(f)),
        None => Ok(problem(
            actix_web::http::StatusCode::NOT_FOUND,
            "not_found",
            "no such failure",
        )),
    }
}

#[derive(Deserialize)]
struct Resolve {
    resolution: String,
}

async fn failure_resolve(
    broker: web::Data<Broker>,
    operator: Operator,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, HttpError> {
    let Ok(resolve) = serde_json::from_slice::<Resolve>(&body) else {
        return Ok(bad_request("the body must be {\"resolution\": \"...\"}"));
    };
    let resolution = resolve.resolution.trim();
    if resolution.is_empty() || resolution.chars().count() > 1000 {
        return Ok(bad_request("resolution: 1 to 1000 characters"));
    }
    let done = broker
        .provider
        .accounts
        .resolve_failure(&path, &operator.name, resolution, broker.provider.now())
        .await
        .map_err(unavailable)?;
    if !done {
        return Ok(problem(
            actix_web::http::StatusCode::CONFLICT,
            "conflict",
            "no such open failure",
        ));
    }
    tracing::info!(operator = %operator.name, failure = %path.as_str(), "standardisation failure resolved");
    Ok(HttpResponse::NoContent().finish())
}

async fn links_list(
    broker: web::Data<Broker>,
    _operator: Operator,
    path: web::Path<String>,
) -> Result<HttpResponse, HttpError> {
    let account_id = path.into_inner();
    if broker
        .provider
        .accounts
        .find(&account_id)
        .await
        .map_err(unavailable)?
        .is_none()
    {
        return Ok(problem(
            actix_web::http::StatusCode::NOT_FOUND,
            "not_found",
            "no such account",
        ));
    }
    let records = broker
        .provider
        .accounts
        .linked_records(&account_id)
        .await
        .map_err(unavailable)?;
    let view: Vec<_> = records
        .iter()
        .map(|r| {
            serde_json::json!({
                "source": r.source, "legacy_id": r.legacy_id, "linked_at": r.linked_at,
                "has_personal_id": r.personal_id.is_some(),
            })
        })
        .collect();
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(view))
}

#[derive(Deserialize)]
struct LinkBody {
    source: String,
    legacy_id: String,
}

fn change_response(change: AdminChange, created: bool) -> HttpResponse {
    use actix_web::http::StatusCode;
    match change {
        AdminChange::Done if created => HttpResponse::Created().finish(),
        AdminChange::Done => HttpResponse::NoContent().finish(),
        AdminChange::NoSuchAccount => {
            problem(StatusCode::NOT_FOUND, "not_found", "no such account")
        }
        AdminChange::NoSuchRecord => {
            problem(StatusCode::NOT_FOUND, "not_found", "no such legacy record")
        }
        AdminChange::Conflict if created => problem(
            StatusCode::CONFLICT,
            "conflict",
            "the legacy record is linked to another account",
        ),
        AdminChange::Conflict => problem(
            StatusCode::CONFLICT,
            "conflict",
            "the legacy record is not linked to this account",
        ),
    }
}

async fn link_create(
    broker: web::Data<Broker>,
    operator: Operator,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, HttpError> {
    let Ok(link) = serde_json::from_slice::<LinkBody>(&body) else {
        return Ok(bad_request(
            "the body must be {\"source\": \"...\", \"legacy_id\": \"...\"}",
        ));
    };
    let change = broker
        .provider
        .accounts
        .admin_link(
            &path,
            &link.source,
            &link.legacy_id,
            &operator.name,
            broker.provider.now(),
        )
        .await
        .map_err(unavailable)?;
    Ok(change_response(change, true))
}

async fn link_delete(
    broker: web::Data<Broker>,
    operator: Operator,
    path: web::Path<(String, String, String)>,
) -> Result<HttpResponse, HttpError> {
    let (account_id, source, legacy_id) = path.into_inner();
    let change = broker
        .provider
        .accounts
        .admin_unlink(
            &account_id,
            &source,
            &legacy_id,
            &operator.name,
            broker.provider.now(),
        )
        .await
        .map_err(unavailable)?;
    Ok(change_response(change, false))
}

async fn events_list(
    broker: web::Data<Broker>,
    _operator: Operator,
    path: web::Path<String>,
) -> Result<HttpResponse, HttpError> {
    let events = broker
        .provider
        .accounts
        .outbox()
        .of_subject(&path)
        .await
        .map_err(unavailable)?;
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(events))
}

/// Ends one session of an account: its grants revoked, its RPs told by back-channel logout.
/// `GET /admin/accounts/{id}/sessions`: the account's open sessions (newest first) and who
/// holds its mobile slot.
async fn sessions_list(
    broker: web::Data<Broker>,
    _operator: Operator,
    path: web::Path<String>,
) -> Result<HttpResponse, HttpError> {
    let account_id = path.into_inner();
    if account_id.len() > 255 {
        return Ok(bad_request("account id: at most 255 characters"));
    }
    let p = &broker.provider;
    let since = p.now() - p.sso.ttl().as_secs() as i64;
    let sessions = p
        .session_records
        .open_sessions(&account_id, since)
        .await
        .map_err(unavailable)?;
    let slot = p.devices.holder(&account_id).await.map_err(unavailable)?;
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(serde_json::json!({"sessions": sessions, "mobile_slot": slot})))
}

async fn session_delete(
    broker: web::Data<Broker>,
    operator: Operator,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, HttpError> {
    let (account_id, sid) = path.into_inner();
    if account_id.len() > 255 || sid.len() > 255 {
        return Ok(bad_request("account id and sid: at most 255 characters"));
    }
    let p = &broker.provider;
    let ender = Ender::Operator {
        audit: &*broker.registrar.audit,
        name: &operator.name,
    };
    let outcome = end_session_of(p, ender, &account_id, &sid, p.now())
        .await
        .map_err(unavailable)?;
    Ok(match outcome {
        AdminEnd::Ended => {
            tracing::info!(operator = %operator.name, "session ended by an operator");
            HttpResponse::NoContent().finish()
        }
        AdminEnd::NotFound => problem(
            actix_web::http::StatusCode::NOT_FOUND,
            "not_found",
            "no such session of this account",
        ),
    })
}
