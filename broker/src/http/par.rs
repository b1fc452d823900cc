//! `POST /par` (RFC 9126): the client-authenticated back-channel entry of an authorization
//! request. Rate-limited per address like `/authorize`, since each call stores a request.

use actix_web::middleware::from_fn;
use actix_web::{web, HttpRequest, HttpResponse};

use super::errors::{no_store, HttpError};
use super::limits::rate_limit;
use super::protocol::read_form;
use super::Broker;
use crate::oidc::par;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/par")
            .wrap(from_fn(rate_limit))
            .route(web::post().to(par_post)),
    );
}

async fn par_post(
    broker: web::Data<Broker>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, HttpError> {
    let form = read_form(&req, &body)?;
    let pushed = par::push(&broker.provider, &form.presented, &form.params).await?;
    let mut builder = HttpResponse::Created();
    no_store(&mut builder);
    Ok(builder.json(pushed))
}
