//! The HTTP client and the browser-like walk through a federated login: follow redirects by hand, carry
//! each login's own cookies, click the login page's VNeID link, and stop at the relying party's
//! redirect URI without fetching it.

use std::time::Duration;

use anyhow::Context;
use reqwest::header::{COOKIE, LOCATION};
use reqwest::redirect::Policy;
use reqwest::StatusCode;
use url::Url;

use crate::cli::ensure_loopback;
use crate::cookies::CookieJar;
use crate::failure::Failure;
use crate::page::{find_login_href, is_redirect_uri, redirect_target};

/// A login is a handful of hops; more than this is a redirect loop.
const MAX_HOPS: usize = 8;

/// One client for every request of a run, so connections are pooled as a load balancer would see them.
/// No cookie store (each login brings its own jar), no redirects followed, no proxy from the environment.
pub fn build_client(request_timeout: Duration, pool: usize) -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .no_proxy()
        .timeout(request_timeout)
        .connect_timeout(Duration::from_secs(5))
        .pool_max_idle_per_host(pool)
        .tcp_nodelay(true)
        .user_agent(concat!("broker-loadgen/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("building the HTTP client")
}

/// Walks from the broker's `/authorize` URL to the redirect back to the relying party and returns that
/// final URL (which carries `code`, `state` and `iss`).
pub async fn walk_login(
    http: &reqwest::Client,
    authorize: Url,
    redirect_uri: &Url,
) -> Result<Url, Failure> {
    let broker_origin = authorize.origin();
    let mut jar = CookieJar::default();
    let mut url = authorize;
    for _ in 0..MAX_HOPS {
        if is_redirect_uri(&url, redirect_uri) {
            return Ok(url);
        }
        let step = if url.origin() == broker_origin {
            format!("GET {}", url.path())
        } else {
            format!("GET upstream {}", url.path())
        };
        if let Err(e) = ensure_loopback(&url) {
            return Err(Failure::bad(
                step,
                "refused non-loopback target",
                &e.to_string(),
            ));
        }
        let mut request = http.get(url.clone());
        if let Some(cookie) = jar.header_for(&url) {
            request = request.header(COOKIE, cookie);
        }
        let response = request
            .send()
            .await
            .map_err(|e| Failure::transport(&step, &e))?;
        jar.store(&url, response.headers());
        let status = response.status();
        if status.is_redirection() {
            let location = response
                .headers()
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| Failure::bad(&step, "redirect without Location", ""))?;
            url = redirect_target(&url, location)
                .map_err(|e| Failure::bad(&step, "unparsable Location", &e.to_string()))?;
            continue;
        }
        let body = response
            .text()
            .await
            .map_err(|e| Failure::transport(&step, &e))?;
        if status != StatusCode::OK {
            return Err(Failure::status(step, status.as_u16(), &body));
        }
        // A login page: the browser's user clicks "Đăng nhập bằng VNeID".
        let href = find_login_href(&body)
            .ok_or_else(|| Failure::bad(&step, "page without a#vneid-login", &body))?;
        url = redirect_target(&url, &href)
            .map_err(|e| Failure::bad(&step, "unparsable vneid-login href", &e.to_string()))?;
    }
    Err(Failure::bad("login", "too many redirects", url.as_str()))
}
