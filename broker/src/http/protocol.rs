//! Back-channel protocol endpoints: discovery, JWKS, token, userinfo, revocation, introspection.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

use super::errors::{no_store, BearerFailure, HttpError};
use super::{form_pairs, Broker};
use crate::clients::auth::Presented;
use crate::oidc::access::{PresentedToken, TokenScheme};
use crate::oidc::error::OAuthError;
use crate::oidc::params::Params;
use crate::oidc::{discovery, dpop, grant_types, introspect, revoke, userinfo};

pub fn configure(cfg: &mut web::ServiceConfig) {
    // One resource per path, so that another method gets 405 with `Allow`, not 404. What answers
    // GET answers HEAD (RFC 9110 §9.3.2; actix sends the headers without the body).
    cfg.service(
        web::resource("/.well-known/openid-configuration")
            .route(web::get().to(discovery_get))
            .route(web::head().to(discovery_get)),
    )
    .service(
        web::resource("/jwks")
            .route(web::get().to(jwks_get))
            .route(web::head().to(jwks_get)),
    )
    .service(web::resource("/token").route(web::post().to(token_post)))
    .service(
        web::resource("/userinfo")
            .route(web::get().to(userinfo_get))
            .route(web::post().to(userinfo_post)),
    )
    .service(web::resource("/revoke").route(web::post().to(revoke_post)))
    .service(web::resource("/introspect").route(web::post().to(introspect_post)));
}

async fn discovery_get(broker: web::Data<Broker>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .content_type("application/json")
        .body(discovery::bytes(&broker.provider))
}

async fn jwks_get(broker: web::Data<Broker>) -> HttpResponse {
    let p = &broker.provider;
    HttpResponse::Ok()
        .insert_header((
            header::CACHE_CONTROL,
            format!("public, max-age={}", p.jwks_max_age),
        ))
        .content_type("application/jwk-set+json")
        .body(p.signer.ring().jwks_bytes(p.now()))
}

/// A form body plus the client credentials it and its headers present.
pub(super) struct ClientRequest {
    pub params: Params,
    pub presented: Presented,
}

pub(super) fn read_form(req: &HttpRequest, body: &[u8]) -> Result<ClientRequest, OAuthError> {
    let is_form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';').next().is_some_and(|m| {
                m.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            })
        });
    if !is_form {
        return Err(OAuthError::invalid_request(
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    let pairs = form_pairs(body)
        .ok_or_else(|| OAuthError::invalid_request("the body is not valid form encoding"))?;
    let mut params = Params::collect(pairs)?;
    let basic = match req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        Some(value) if value.len() >= 6 && value[..6].eq_ignore_ascii_case("basic ") => {
            Some(Presented::parse_basic(value).ok_or_else(OAuthError::invalid_client)?)
        }
        _ => None,
    };
    let presented = Presented {
        basic,
        client_id: params.get("client_id").map(str::to_string),
        client_secret: params.take("client_secret"),
        assertion_type: params.take("client_assertion_type"),
        assertion: params.take("client_assertion"),
    };
    Ok(ClientRequest { params, presented })
}

async fn token_post(
    broker: web::Data<Broker>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, HttpError> {
    let form = read_form(&req, &body)?;
    let proof = dpop_header(&req)?;
    let tokens = grant_types::token(
        &broker.provider,
        &form.presented,
        &form.params,
        proof.as_deref(),
    )
    .await?;
    Ok(json_ok(tokens))
}

/// The request's `DPoP` header (RFC 9449 §4.3: at most one, a compact JWS of at most 8 KB).
pub(super) fn dpop_header(req: &HttpRequest) -> Result<Option<String>, OAuthError> {
    let mut values = req.headers().get_all("dpop");
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(OAuthError::invalid_dpop_proof(
            "send exactly one DPoP header",
        ));
    }
    if value.len() > dpop::MAX_PROOF_LEN {
        return Err(OAuthError::invalid_dpop_proof("the DPoP proof is too long"));
    }
    value
        .to_str()
        .map(|v| Some(v.trim().to_string()))
        .map_err(|_| OAuthError::invalid_dpop_proof("the DPoP proof is not a JWS"))
}

/// A back-channel JSON answer, never cached.
fn json_ok<T: serde::Serialize>(body: T) -> HttpResponse {
    let mut builder = HttpResponse::Ok();
    no_store(&mut builder);
    builder.json(body)
}

/// The access token of `Authorization: Bearer …` or `Authorization: DPoP …` (RFC 9449 §7.1).
pub(super) fn authorization(req: &HttpRequest) -> Option<(TokenScheme, String)> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let scheme = if scheme.eq_ignore_ascii_case("bearer") {
        TokenScheme::Bearer
    } else if scheme.eq_ignore_ascii_case("dpop") {
        TokenScheme::Dpop
    } else {
        return None;
    };
    Some((scheme, token.trim().to_string()))
}

async fn userinfo_get(
    broker: web::Data<Broker>,
    req: HttpRequest,
) -> Result<HttpResponse, HttpError> {
    userinfo_answer(&broker, &req, authorization(&req)).await
}

async fn userinfo_post(
    broker: web::Data<Broker>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, HttpError> {
    let from_body = form_pairs(&body).and_then(|pairs| {
        pairs
            .into_iter()
            .find(|(k, _)| k == "access_token")
            .map(|(_, v)| v)
    });
    match (authorization(&req), from_body) {
        (Some(_), Some(_)) => Err(HttpError::Bearer(BearerFailure::Refused(
            OAuthError::invalid_request("use one way to send the access token"),
        ))),
        (header_token, body_token) => {
            let presented = header_token.or(body_token.map(|t| (TokenScheme::Bearer, t)));
            userinfo_answer(&broker, &req, presented).await
        }
    }
}

async fn userinfo_answer(
    broker: &Broker,
    req: &HttpRequest,
    presented: Option<(TokenScheme, String)>,
) -> Result<HttpResponse, HttpError> {
    let (scheme, token) = presented.ok_or(HttpError::Bearer(BearerFailure::Missing))?;
    // A DPoP failure is answered with the DPoP challenge (RFC 9449 §7.1), a bearer one with
    // the Bearer challenge.
    let refused = |e: OAuthError| match scheme {
        TokenScheme::Dpop => HttpError::Bearer(BearerFailure::Dpop(e)),
        TokenScheme::Bearer => HttpError::Bearer(BearerFailure::Refused(e)),
    };
    let proof = match scheme {
        TokenScheme::Dpop => dpop_header(req).map_err(refused)?,
        TokenScheme::Bearer => None,
    };
    let presented = PresentedToken {
        token: &token,
        scheme,
        proof: proof.as_deref(),
        method: req.method().as_str(),
    };
    let claims = userinfo::userinfo(&broker.provider, &presented)
        .await
        .map_err(refused)?;
    Ok(json_ok(claims))
}

async fn revoke_post(
    broker: web::Data<Broker>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, HttpError> {
    let form = read_form(&req, &body)?;
    revoke::revoke(&broker.provider, &form.presented, &form.params).await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish())
}

async fn introspect_post(
    broker: web::Data<Broker>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, HttpError> {
    let form = read_form(&req, &body)?;
    let answer = introspect::introspect(&broker.provider, &form.presented, &form.params).await?;
    Ok(json_ok(answer))
}
