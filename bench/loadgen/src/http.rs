//! The HTTP client and the browser-like walk through a federated login: follow redirects by hand, carry
//! each login's own cookies, click the login page's VNeID link, answer the standardisation pages of a
//! first login, and stop at the relying party's redirect URI without fetching it.

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
use crate::steps::{self, Answers};

/// A login is a handful of hops (a first login with its phone and code pages a dozen at most);
/// more than this is a loop.
const MAX_HOPS: usize = 12;

/// One client for every request of a run, so connections are pooled as a load balancer would see them.
/// No cookie store (each login brings its own jar), no redirects followed, no proxy from the environment.
pub fn build_client(request_timeout: Duration, pool: usize) -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .no_proxy()
        .timeout(request_timeout)
        .connect_timeout(Duration::from_secs(5))
        .pool_max_idle_per_host(pool)
        // Shorter than the servers' keep-alive (actix-web's default: 5 s), so that the pool
        // drops an idle connection before the server closes it: a request sent on a connection
        // the server is closing at that moment fails at the transport level (seen between
        // rounds, once in tens of thousands of logins, on the mock VNeID's /authorize).
        .pool_idle_timeout(Duration::from_secs(3))
        .tcp_nodelay(true)
        .user_agent(concat!("broker-loadgen/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("building the HTTP client")
}

/// Where a login ended: the redirect back to the relying party (which carries `code`, `state` and
/// `iss`), and how many standardisation pages were answered on the way.
pub struct Walked {
    pub back: Url,
    pub step_pages: usize,
    /// The `Cookie` header this browser would now send to the broker (its SSO session).
    pub cookie: Option<reqwest::header::HeaderValue>,
}

/// Walks from the broker's `/authorize` URL to the redirect back to the relying party. Without
/// `answers` a page other than the login page is a failure; with them, the standardisation pages
/// are answered.
pub async fn walk_login(
    http: &reqwest::Client,
    authorize: Url,
    redirect_uri: &Url,
    answers: Option<&Answers<'_>>,
) -> Result<Walked, Failure> {
    let broker_origin = authorize.origin();
    let broker_url = authorize.clone();
    let mut jar = CookieJar::default();
    let mut url = authorize;
    // A form to post to `url` instead of getting it (a step page posts to its form's action).
    let mut form: Option<Vec<(&'static str, String)>> = None;
    let mut step_pages = 0;
    for _ in 0..MAX_HOPS {
        if is_redirect_uri(&url, redirect_uri) {
            return Ok(Walked {
                back: url,
                step_pages,
                cookie: jar.header_for(&broker_url),
            });
        }
        let method = if form.is_some() { "POST" } else { "GET" };
        let step = if url.origin() == broker_origin {
            format!("{method} {}", url.path())
        } else {
            format!("{method} upstream {}", url.path())
        };
        if let Err(e) = ensure_loopback(&url) {
            return Err(Failure::bad(
                step,
                "refused non-loopback target",
                &e.to_string(),
            ));
        }
        let mut request = match form.take() {
            Some(fields) => http.post(url.clone()).form(&fields),
            None => http.get(url.clone()),
        };
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
        if let Some(href) = find_login_href(&body) {
            url = redirect_target(&url, &href)
                .map_err(|e| Failure::bad(&step, "unparsable vneid-login href", &e.to_string()))?;
            continue;
        }
        let answers =
            answers.ok_or_else(|| Failure::bad(&step, "page without a#vneid-login", &body))?;
        form = Some(steps::answer(http, &body, answers, &step).await?);
        // The form posts to the step's address: the page may have come at the callback's.
        if let Some(action) = steps::form_action(&body) {
            url = redirect_target(&url, &action)
                .map_err(|e| Failure::bad(&step, "unparsable form action", &e.to_string()))?;
        }
        step_pages += 1;
    }
    Err(Failure::bad("login", "too many redirects", url.as_str()))
}
