//! The admin REST API for clients, behind a bearer admin token from the configuration.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use actix_web::middleware::from_fn;

use super::errors::no_store;
use super::limits::rate_limit;
use super::Broker;
use crate::clients::registration::{ClientRequest, RegistrationError};
use crate::clients::view::client_view;
use crate::crypto::{ct_eq, sha256};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/admin/clients")
            .wrap(from_fn(rate_limit))
            .route("", web::get().to(clients_list))
            .route("", web::post().to(clients_create))
            .route("/{client_id}", web::get().to(clients_show))
            .route("/{client_id}", web::put().to(clients_update))
            .route("/{client_id}", web::delete().to(clients_delete)),
    );
}

fn authorised(broker: &Broker, req: &HttpRequest) -> bool {
    let Some(expected) = &broker.admin_token else {
        return false;
    };
    let offered = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    // Compare digests so that the comparison time does not depend on the token length.
    ct_eq(
        &sha256(offered.as_bytes()),
        &sha256(expected.expose().as_bytes()),
    )
}

fn denied() -> HttpResponse {
    HttpResponse::Unauthorized()
        .insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"broker-admin\""))
        .json(json!({"error": "invalid_token", "error_description": "admin token required"}))
}

fn registration_error(e: RegistrationError) -> HttpResponse {
    let body = json!({"error": e.code(), "error_description": e.to_string()});
    match e {
        RegistrationError::NotFound => HttpResponse::NotFound().json(body),
        RegistrationError::Conflict => HttpResponse::Conflict().json(body),
        RegistrationError::Store(inner) => {
            tracing::error!(error = format!("{inner:#}"), "client store failure");
            HttpResponse::ServiceUnavailable().json(json!({"error": "temporarily_unavailable"}))
        }
        _ => HttpResponse::BadRequest().json(body),
    }
}

fn parse_body(body: &[u8]) -> Result<ClientRequest, Box<HttpResponse>> {
    serde_json::from_slice(body).map_err(|e| {
        Box::new(HttpResponse::BadRequest().json(json!({"error": "invalid_client_metadata", "error_description": format!("invalid JSON: {e}")})))
    })
}

async fn clients_list(broker: web::Data<Broker>, req: HttpRequest) -> HttpResponse {
    if !authorised(&broker, &req) {
        return denied();
    }
    match broker.registrar.directory.store().list().await {
        Ok(clients) => HttpResponse::Ok().json(
            clients
                .iter()
                .map(|c| client_view(c, None))
                .collect::<Vec<_>>(),
        ),
        Err(e) => registration_error(RegistrationError::Store(e)),
    }
}

async fn clients_create(
    broker: web::Data<Broker>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    if !authorised(&broker, &req) {
        return denied();
    }
    let request = match parse_body(&body) {
        Ok(r) => r,
        Err(response) => return *response,
    };
    match broker
        .registrar
        .create(&request, broker.provider.now())
        .await
    {
        Ok((client, secret)) => {
            let mut builder = HttpResponse::Created();
            no_store(&mut builder);
            builder.json(client_view(&client, secret.as_deref()))
        }
        Err(e) => registration_error(e),
    }
}

async fn clients_show(
    broker: web::Data<Broker>,
    req: HttpRequest,
    path: web::Path<String>,
) -> HttpResponse {
    if !authorised(&broker, &req) {
        return denied();
    }
    match broker.registrar.directory.store().find(&path).await {
        Ok(Some(client)) => HttpResponse::Ok().json(client_view(&client, None)),
        Ok(None) => registration_error(RegistrationError::NotFound),
        Err(e) => registration_error(RegistrationError::Store(e)),
    }
}

#[derive(serde::Deserialize)]
struct UpdateQuery {
    #[serde(default)]
    rotate_secret: bool,
}

async fn clients_update(
    broker: web::Data<Broker>,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    if !authorised(&broker, &req) {
        return denied();
    }
    let rotate = web::Query::<UpdateQuery>::from_query(req.query_string())
        .map(|q| q.rotate_secret)
        .unwrap_or(false);
    let request = match parse_body(&body) {
        Ok(r) => r,
        Err(response) => return *response,
    };
    match broker
        .registrar
        .update(&path, &request, rotate, broker.provider.now())
        .await
    {
        Ok((client, secret)) => {
            let mut builder = HttpResponse::Ok();
            no_store(&mut builder);
            builder.json(client_view(&client, secret.as_deref()))
        }
        Err(e) => registration_error(e),
    }
}

async fn clients_delete(
    broker: web::Data<Broker>,
    req: HttpRequest,
    path: web::Path<String>,
) -> HttpResponse {
    if !authorised(&broker, &req) {
        return denied();
    }
    match broker.registrar.delete(&path, broker.provider.now()).await {
        Ok(()) => HttpResponse::NoContent().finish(),
        Err(e) => registration_error(e),
    }
}
