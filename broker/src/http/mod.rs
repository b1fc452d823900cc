//! The only place with actix types: routes, extractors, and outcome → response mapping.

pub mod account;
pub mod admin;
pub mod admin_accounts;
pub mod admin_deliveries;
pub mod authorize;
pub mod callback;
pub mod dev_sms;
pub mod errors;
pub mod front;
pub mod host;
pub mod limits;
pub mod logging;
pub mod logout;
pub mod pages;
pub mod par;
pub mod protocol;
pub mod roles_api;
pub mod roles_pages;
mod steps;

use std::sync::Arc;

use actix_web::web;

use crate::abuse::LoginBudget;
use crate::clients::registration::Registrar;
use crate::config::Secret;
use crate::federation::pending::PendingLogins;
use crate::federation::upstreams::Upstreams;
use crate::oidc::Provider;
use crate::otp::dev::DevOutbox;
use crate::otp::Otp;

/// Shared application state handed to every handler.
pub struct Broker {
    pub provider: Provider,
    /// The enabled upstreams, in the login page's order.
    pub upstreams: Arc<Upstreams>,
    pub pending: PendingLogins,
    /// Pending logins and failed upstream exchanges per address and per instance.
    pub budget: LoginBudget,
    /// SMS one-time codes (phone confirmation in the login steps).
    pub otp: Otp,
    /// The dev SMS gateway's last messages, for `/dev/sms`; only with that gateway.
    pub dev_sms: Option<DevOutbox>,
    /// The session store (the account page's pending phone change).
    pub sessions: Arc<dyn crate::sessions::SessionStore>,
    /// Per-address request limits and the client-address rule they use.
    pub limits: limits::Limits,
    pub registrar: Registrar,
    /// The operators of the admin API and their tokens.
    pub operators: crate::operators::Operators,
    /// The dispatcher's deliveries, for the admin API.
    pub deliveries: Arc<dyn crate::dispatch::DeliveryStore>,
    /// The bootstrap admin token: it may only create and list operators.
    pub admin_token: Option<Secret>,
    pub auto_redirect: bool,
    /// Mark cookies `Secure` (the issuer is https).
    pub secure_cookies: bool,
    pub readiness: Arc<dyn Readiness>,
}

impl Broker {
    /// The login flow over this application's parts, for one request.
    pub fn login_flow(&self) -> crate::login::LoginFlow<'_> {
        crate::login::LoginFlow {
            provider: &self.provider,
            upstreams: &self.upstreams,
            pending: &self.pending,
            budget: &self.budget,
            otp: &self.otp,
        }
    }
}

#[async_trait::async_trait]
pub trait Readiness: Send + Sync {
    async fn check(&self) -> anyhow::Result<()>;
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::PayloadConfig::new(64 * 1024))
        .configure(protocol::configure)
        .configure(authorize::configure)
        .configure(par::configure)
        .configure(callback::configure)
        .configure(steps::configure)
        .configure(account::configure)
        .configure(roles_api::configure)
        .configure(logout::configure)
        .configure(admin::configure)
        .route("/healthz", web::get().to(health_get))
        .route("/healthz", web::head().to(health_get))
        .route("/readyz", web::get().to(ready_get))
        .route("/readyz", web::head().to(ready_get));
}

async fn health_get() -> actix_web::HttpResponse {
    actix_web::HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

async fn ready_get(broker: web::Data<Broker>) -> actix_web::HttpResponse {
    match broker.readiness.check().await {
        Ok(()) => actix_web::HttpResponse::Ok().json(serde_json::json!({"status": "ready"})),
        Err(e) => {
            tracing::warn!(error = format!("{e:#}"), "not ready");
            actix_web::HttpResponse::ServiceUnavailable()
                .json(serde_json::json!({"status": "unavailable"}))
        }
    }
}

/// Parses `application/x-www-form-urlencoded` bytes into pairs; `None` when malformed.
pub fn form_pairs(body: &[u8]) -> Option<Vec<(String, String)>> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(body).ok()
}
