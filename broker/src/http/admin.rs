//! The admin REST API: clients (`/admin/clients`) and operators (`/admin/operators`). Every
//! call needs a bearer token: an operator's (the [`Operator`] extractor), or, for creating and
//! listing operators only, the bootstrap token from the configuration ([`AdminCaller`]).
//! Tokens are checked on every request (an operator's against the database), so a revocation
//! is refused at once on every instance. Admin endpoints of other modules take an `Operator`
//! and register under [`configure`]'s rate-limited `/admin` scope.

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::middleware::from_fn;
use actix_web::{web, FromRequest, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::errors::{no_store, HttpError};
use super::limits::rate_limit;
use super::Broker;
use crate::clients::registration::{ClientRequest, RegistrationError};
use crate::clients::view::client_view;
use crate::crypto::{ct_eq, sha256};
use crate::oidc::error::OAuthError;
pub use crate::operators::Operator;
use crate::operators::BOOTSTRAP_ACTOR;

type LocalBoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T>>>;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/admin")
            .wrap(from_fn(rate_limit))
            .service(
                web::scope("/clients")
                    .route("", web::get().to(clients_list))
                    .route("", web::post().to(clients_create))
                    .route("/{client_id}", web::get().to(clients_show))
                    .route("/{client_id}", web::put().to(clients_update))
                    .route("/{client_id}", web::delete().to(clients_delete)),
            )
            .service(
                web::scope("/operators")
                    .route("", web::get().to(operators_list))
                    .route("", web::post().to(operators_create))
                    .route("/{name}", web::delete().to(operators_delete)),
            )
            .configure(super::roles_api::configure_admin)
            .configure(super::admin_accounts::configure)
            .configure(super::admin_deliveries::configure),
    );
}

/// Who calls the admin API.
#[derive(Clone, Debug)]
pub enum AdminCaller {
    /// The configured bootstrap token: it may only create and list operators.
    Bootstrap,
    Operator(Operator),
}

impl AdminCaller {
    /// The name the audit log records.
    pub fn actor(&self) -> &str {
        match self {
            AdminCaller::Bootstrap => BOOTSTRAP_ACTOR,
            AdminCaller::Operator(operator) => &operator.name,
        }
    }
}

fn offered_token(req: &HttpRequest) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

async fn admin_caller(broker: &Broker, req: &HttpRequest) -> Result<AdminCaller, HttpError> {
    let offered = offered_token(req).ok_or(HttpError::AdminDenied)?;
    if let Some(bootstrap) = &broker.admin_token {
        // Digests, so that the comparison time does not depend on the token length.
        if ct_eq(
            &sha256(offered.as_bytes()),
            &sha256(bootstrap.expose().as_bytes()),
        ) {
            return Ok(AdminCaller::Bootstrap);
        }
    }
    match broker.operators.authenticate(offered).await {
        Ok(Some(operator)) => Ok(AdminCaller::Operator(operator)),
        Ok(None) => Err(HttpError::AdminDenied),
        Err(e) => Err(HttpError::Json(OAuthError::unavailable(&e))),
    }
}

fn caller_future(req: &HttpRequest) -> LocalBoxFuture<Result<AdminCaller, HttpError>> {
    let req = req.clone();
    Box::pin(async move {
        let broker = req
            .app_data::<web::Data<Broker>>()
            .cloned()
            .ok_or(HttpError::AdminDenied)?;
        admin_caller(&broker, &req).await
    })
}

impl FromRequest for AdminCaller {
    type Error = HttpError;
    type Future = LocalBoxFuture<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        caller_future(req)
    }
}

/// An operator's token: what every admin endpoint but the operators' own needs.
impl FromRequest for Operator {
    type Error = HttpError;
    type Future = LocalBoxFuture<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let caller = caller_future(req);
        Box::pin(async move {
            match caller.await? {
                AdminCaller::Operator(operator) => Ok(operator),
                AdminCaller::Bootstrap => Err(HttpError::BootstrapOnly),
            }
        })
    }
}

fn parse_body(body: &[u8]) -> Result<ClientRequest, HttpError> {
    serde_json::from_slice(body).map_err(|e| {
        HttpError::Registration(RegistrationError::Metadata(format!("invalid JSON: {e}")))
    })
}

async fn clients_list(broker: web::Data<Broker>, _: Operator) -> Result<HttpResponse, HttpError> {
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
    operator: Operator,
    body: web::Bytes,
) -> Result<HttpResponse, HttpError> {
    let request = parse_body(&body)?;
    let (client, secret) = broker
        .registrar
        .create(&request, &operator.name, broker.provider.now())
        .await
        .map_err(HttpError::Registration)?;
    let mut builder = HttpResponse::Created();
    no_store(&mut builder);
    Ok(builder.json(client_view(&client, secret.as_deref())))
}

async fn clients_show(
    broker: web::Data<Broker>,
    _: Operator,
    path: web::Path<String>,
) -> Result<HttpResponse, HttpError> {
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

#[derive(Deserialize)]
struct UpdateQuery {
    #[serde(default)]
    rotate_secret: bool,
}

async fn clients_update(
    broker: web::Data<Broker>,
    operator: Operator,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, HttpError> {
    let rotate = web::Query::<UpdateQuery>::from_query(req.query_string())
        .map(|q| q.rotate_secret)
        .unwrap_or(false);
    let request = parse_body(&body)?;
    let (client, secret) = broker
        .registrar
        .update(
            &path,
            &request,
            rotate,
            &operator.name,
            broker.provider.now(),
        )
        .await
        .map_err(HttpError::Registration)?;
    let mut builder = HttpResponse::Ok();
    no_store(&mut builder);
    Ok(builder.json(client_view(&client, secret.as_deref())))
}

async fn clients_delete(
    broker: web::Data<Broker>,
    operator: Operator,
    path: web::Path<String>,
) -> Result<HttpResponse, HttpError> {
    broker
        .registrar
        .delete(&path, &operator.name, broker.provider.now())
        .await
        .map_err(HttpError::Registration)?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewOperator {
    name: String,
}

async fn operators_list(
    broker: web::Data<Broker>,
    _: AdminCaller,
) -> Result<HttpResponse, HttpError> {
    let operators = broker
        .operators
        .list()
        .await
        .map_err(|e| HttpError::Operators(e.into()))?;
    Ok(HttpResponse::Ok().json(operators))
}

/// The token is in this answer only.
async fn operators_create(
    broker: web::Data<Broker>,
    caller: AdminCaller,
    body: web::Bytes,
) -> Result<HttpResponse, HttpError> {
    let new: NewOperator = serde_json::from_slice(&body).map_err(|_| {
        HttpError::Json(OAuthError::invalid_request(
            "the body must be {\"name\": \"…\"}",
        ))
    })?;
    let (operator, token) = broker
        .operators
        .create(&new.name, caller.actor(), broker.provider.now())
        .await
        .map_err(HttpError::Operators)?;
    let mut builder = HttpResponse::Created();
    no_store(&mut builder);
    Ok(builder.json(serde_json::json!({
        "id": operator.id,
        "name": operator.name,
        "created_at": operator.created_at,
        "token": token,
    })))
}

async fn operators_delete(
    broker: web::Data<Broker>,
    operator: Operator,
    path: web::Path<String>,
) -> Result<HttpResponse, HttpError> {
    broker
        .operators
        .revoke(&path, &operator.name, broker.provider.now())
        .await
        .map_err(HttpError::Operators)?;
    Ok(HttpResponse::NoContent().finish())
}
