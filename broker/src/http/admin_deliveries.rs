//! The admin API of the dispatcher: `GET /admin/deliveries[?status=failed&limit=N]` lists
//! deliveries (newest first), `GET /admin/deliveries/{id}` shows one and
//! `GET /admin/deliveries/{id}/attempts` its attempts, so that operators see what did not reach
//! an RP; `POST /admin/deliveries/{id}/replay` sends a finished one again as a new delivery
//! (audited). Nothing here shows a payload or a token.

use actix_web::{web, HttpResponse};
use serde::Deserialize;

use super::admin::Operator;
use super::errors::{problem, HttpError};
use super::Broker;
use crate::dispatch::replay::{ReplayOutcome, Replayer};
use crate::dispatch::DeliveryStatus;
use crate::oidc::error::OAuthError;

/// Delivery ids are UUIDs; anything longer is not one.
const MAX_ID_LEN: usize = 64;

fn not_found() -> HttpResponse {
    problem(
        actix_web::http::StatusCode::NOT_FOUND,
        "not_found",
        "no such delivery",
    )
}

/// Routes inside the `/admin` scope (`http::admin`), which rate-limits them.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/deliveries")
            .route("", web::get().to(deliveries_list))
            .route("/{id}", web::get().to(delivery_get))
            .route("/{id}/attempts", web::get().to(attempts_list))
            .route("/{id}/replay", web::post().to(delivery_replay)),
    );
}

#[derive(Deserialize)]
struct ListQuery {
    status: Option<String>,
    limit: Option<i64>,
}

fn json(body: impl serde::Serialize) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(body)
}

async fn deliveries_list(
    broker: web::Data<Broker>,
    _operator: Operator,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, HttpError> {
    let status = match query.status.as_deref() {
        None => None,
        Some(s) => Some(DeliveryStatus::parse(s).ok_or_else(|| {
            HttpError::Json(OAuthError::invalid_request(
                "status must be pending, delivered, failed or cancelled",
            ))
        })?),
    };
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let deliveries = broker
        .deliveries
        .list(status, limit)
        .await
        .map_err(|e| HttpError::Json(OAuthError::unavailable(&e)))?;
    Ok(json(deliveries))
}

async fn attempts_list(
    broker: web::Data<Broker>,
    _operator: Operator,
    path: web::Path<String>,
) -> Result<HttpResponse, HttpError> {
    let attempts = broker
        .deliveries
        .attempts(&path)
        .await
        .map_err(|e| HttpError::Json(OAuthError::unavailable(&e)))?;
    Ok(json(attempts))
}

async fn delivery_get(
    broker: web::Data<Broker>,
    _operator: Operator,
    path: web::Path<String>,
) -> Result<HttpResponse, HttpError> {
    if path.len() > MAX_ID_LEN {
        return Ok(not_found());
    }
    let delivery = broker
        .deliveries
        .find(&path)
        .await
        .map_err(|e| HttpError::Json(OAuthError::unavailable(&e)))?;
    Ok(delivery.map_or_else(not_found, json))
}

async fn delivery_replay(
    broker: web::Data<Broker>,
    operator: Operator,
    path: web::Path<String>,
) -> Result<HttpResponse, HttpError> {
    if path.len() > MAX_ID_LEN {
        return Ok(not_found());
    }
    let replayer = Replayer {
        store: &*broker.deliveries,
        transactions: &*broker.registrar.transactions,
        audit: &*broker.registrar.audit,
    };
    let outcome = replayer
        .replay(&path, &operator.name, broker.provider.now())
        .await
        .map_err(|e| HttpError::Json(OAuthError::unavailable(&e)))?;
    Ok(match outcome {
        ReplayOutcome::Replayed(id) => {
            tracing::info!(operator = %operator.name, delivery = %path, replay = %id, "delivery replayed");
            HttpResponse::Created()
                .insert_header(("Cache-Control", "no-store"))
                .json(serde_json::json!({"id": id, "replay_of": path.as_str()}))
        }
        ReplayOutcome::NotFound => not_found(),
        ReplayOutcome::StillPending => problem(
            actix_web::http::StatusCode::CONFLICT,
            "conflict",
            "the delivery is still pending; it will be sent",
        ),
    })
}
