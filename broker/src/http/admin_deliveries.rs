//! The admin API of the dispatcher: `GET /admin/deliveries[?status=failed&limit=N]` lists
//! deliveries (newest first) and `GET /admin/deliveries/{id}/attempts` one delivery's attempts,
//! so that operators see what did not reach an RP. Nothing here shows a payload or a token.

use actix_web::{web, HttpResponse};
use serde::Deserialize;

use super::admin::Operator;
use super::errors::HttpError;
use super::Broker;
use crate::dispatch::DeliveryStatus;
use crate::oidc::error::OAuthError;

/// Routes inside the `/admin` scope (`http::admin`), which rate-limits them.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/deliveries")
            .route("", web::get().to(deliveries_list))
            .route("/{id}/attempts", web::get().to(attempts_list)),
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
