//! A tiny relying party of the broker, for demos and manual end-to-end checks: one button that
//! logs in through the broker with the `openidconnect` crate, and a page showing what came back.

mod http;
mod oidc;
mod pages;
mod transactions;

use std::fmt;
use std::net::TcpListener;
use std::sync::Arc;

use actix_web::{web, App, HttpServer};

use oidc::RelyingParty;

/// Where the broker is and how this app is registered with it.
#[derive(Clone)]
pub struct DemoRpConfig {
    /// The broker's issuer, e.g. `http://127.0.0.1:8080`; a trailing slash is ignored.
    pub broker_issuer: url::Url,
    pub client_id: String,
    pub client_secret: String,
    /// Where this app is reachable, e.g. `http://127.0.0.1:8082`; the redirect URI registered
    /// at the broker must be this plus `/callback`.
    pub base_url: url::Url,
}

impl fmt::Debug for DemoRpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DemoRpConfig")
            .field("broker_issuer", &self.broker_issuer.as_str())
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("base_url", &self.base_url.as_str())
            .finish()
    }
}

/// Runs the demo app. Fails early if the configuration cannot work (bad URLs), not at first login.
pub fn serve(cfg: DemoRpConfig, listener: TcpListener) -> std::io::Result<actix_web::dev::Server> {
    let rp = RelyingParty::new(cfg).map_err(std::io::Error::other)?;
    let rp = web::Data::from(Arc::new(rp));
    let server =
        HttpServer::new(move || App::new().app_data(rp.clone()).configure(http::configure))
            .listen(listener)?
            .run();
    Ok(server)
}
