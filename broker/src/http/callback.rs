//! The upstream callback `/callback/{upstream}`: hand the answer to the login flow, render its
//! outcome, and drop the pending login's binding cookie whatever happened.

use actix_web::middleware::from_fn;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};

use super::errors::HttpError;
use super::front::{cookie, cookie_name, flow_error, next_response, wants_english};
use super::limits::rate_limit;
use super::Broker;
use crate::federation::pending::cookie_name as binding_cookie_name;
use crate::login::callback::{raw_query_param, Callback};
use crate::oidc::error::OAuthError;
use crate::sessions::sso::COOKIE as SSO_COOKIE;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/callback/{upstream}")
            .wrap(from_fn(rate_limit))
            .route(web::get().to(callback_get)),
    );
}

async fn callback_get(
    broker: web::Data<Broker>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, HttpError> {
    if broker.upstreams.get(path.as_str()).is_none() {
        return Ok(HttpResponse::NotFound().finish());
    }
    let english = wants_english(&req, None);
    let query = req.query_string();
    if query.len() > 8192 {
        return Err(HttpError::BadSignIn {
            error: OAuthError::invalid_request("callback too large"),
            english,
        });
    }
    let state = raw_query_param(query, "state").unwrap_or_default();
    let binding = binding_cookie_name(&state);
    let secret = req.cookie(&cookie_name(&broker, &binding));
    let sso = req.cookie(&cookie_name(&broker, SSO_COOKIE));
    let completed = broker
        .login_flow()
        .callback(
            Callback {
                upstream: path.as_str(),
                query,
                binding_secret: secret.as_ref().map(|c| c.value()),
                sso_secret: sso.as_ref().map(|c| c.value()),
                client: broker.limits.client_key(&req),
            },
            broker.provider.now(),
        )
        .await;
    let english = completed.english.unwrap_or(english);
    let mut response = match completed.next {
        Ok(next) => next_response(&broker, next),
        Err(e) => flow_error(e, english).error_response(),
    };
    // The binding cookie has done its job once the pending login was taken (or never existed).
    if !completed.keep_binding {
        let mut removal = cookie(&broker, &binding, String::new(), 0);
        removal.make_removal();
        let _ = response.add_cookie(&removal);
    }
    Ok(response)
}
