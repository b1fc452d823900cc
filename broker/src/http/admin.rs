//! The admin REST API for clients, behind a bearer admin token from the configuration.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

use actix_web::middleware::from_fn;

use super::errors::{no_store, HttpError};
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

/// The admin API's refusal without a valid admin token.
fn require_admin(broker: &Broker, req: &HttpRequest) -> Result<(), HttpError> {
    if authorised(broker, req) {
        Ok(())
    } else {
        Err(HttpError::AdminDenied)
    }
}

fn parse_body(body: &[u8]) -> Result<ClientRequest, HttpError> {
    serde_json::from_slice(body).map_err(|e| {
        HttpError::Registration(RegistrationError::Metadata(format!("invalid JSON: {e}")))
    })
}

async fn clients_list(
    broker: web::Data<Broker>,
    req: HttpRequest,
) -> Result<HttpResponse, HttpError> {
    require_admin(&broker, &req)?;
    let clients = broker
        .registrar
        .directory
        .store()
        .list()
        .await
        .map_err(|e| HttpError::Registration(RegistrationError::Store(e)))?;
    let views: Vec<_> = clients.iter().map(|c| client_view(c, None)).collect();
    Ok(HttpResponse::Ok().json(views))
}

async fn clients_create(
    broker: web::Data<Broker>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, HttpError> {
    require_admin(&broker, &req)?;
    let request = parse_body(&body)?;
    let (client, secret) = broker
        .registrar
        .create(&request, broker.provider.now())
        .await
        .map_err(HttpError::Registration)?;
    let mut builder = HttpResponse::Created();
    no_store(&mut builder);
    Ok(builder.json(client_view(&client, secret.as_deref())))
}

async fn clients_show(
    broker: web::Data<Broker>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, HttpError> {
    require_admin(&broker, &req)?;
    let client = broker
        .registrar
        .directory
        .store()
        .find(&path)
        .await
        .map_err(|e| HttpError::Registration(RegistrationError::Store(e)))?
        .ok_or(HttpError::Registration(RegistrationError::NotFound))?;
    Ok(HttpResponse::Ok().json(client_view(&client, None)))
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
) -> Result<HttpResponse, HttpError> {
    require_admin(&broker, &req)?;
    let rotate = web::Query::<UpdateQuery>::from_query(req.query_string())
        .map(|q| q.rotate_secret)
        .unwrap_or(false);
    let request = parse_body(&body)?;
    let (client, secret) = broker
        .registrar
        .update(&path, &request, rotate, broker.provider.now())
        .await
        .map_err(HttpError::Registration)?;
    let mut builder = HttpResponse::Ok();
    no_store(&mut builder);
    Ok(builder.json(client_view(&client, secret.as_deref())))
}

async fn clients_delete(
    broker: web::Data<Broker>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, HttpError> {
    require_admin(&broker, &req)?;
    broker
        .registrar
        .delete(&path, broker.provider.now())
        .await
        .map_err(HttpError::Registration)?;
    Ok(HttpResponse::NoContent().finish())
}
