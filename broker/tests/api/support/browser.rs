//! A browser without a browser: a cookie jar, no automatic redirects, and the steps of a login.

use std::collections::HashMap;

use super::{Client, TestApp};
use broker::crypto::{random_token, sha256_b64url};

pub struct Browser {
    pub http: reqwest::Client,
}

/// Where the broker sent the browser back to the client.
#[derive(Debug)]
pub struct Callback {
    pub params: HashMap<String, String>,
}

impl Callback {
    pub fn code(&self) -> &str {
        self.params
            .get("code")
            .map(String::as_str)
            .unwrap_or_else(|| panic!("no code in {:?}", self.params))
    }
    pub fn error(&self) -> Option<&str> {
        self.params.get("error").map(String::as_str)
    }
}

pub struct Pkce {
    pub verifier: String,
    pub challenge: String,
}

impl Pkce {
    pub fn new() -> Self {
        let verifier = random_token();
        Self {
            challenge: sha256_b64url(&verifier),
            verifier,
        }
    }
}

pub fn location(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

pub fn query_of(url: &str) -> HashMap<String, String> {
    url::Url::parse(url)
        .map(|u| u.query_pairs().into_owned().collect())
        .unwrap_or_default()
}

/// An authorization-code request of `client` with PKCE (scope `openid`); `extra` adds
/// parameters or replaces these.
pub fn code_request<'a>(
    client: &'a Client,
    pkce: &'a Pkce,
    extra: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    let mut params = vec![
        ("response_type", "code"),
        ("client_id", client.id.as_str()),
        ("redirect_uri", client.redirect_uri.as_str()),
        ("scope", "openid"),
        ("code_challenge", pkce.challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    params.retain(|(k, _)| !extra.iter().any(|(e, _)| e == k));
    params.extend_from_slice(extra);
    params
}

/// The href of the login button on the broker's login page.
pub fn login_button(html: &str) -> Option<String> {
    let start = html.find("id=\"vneid-login\" href=\"")? + "id=\"vneid-login\" href=\"".len();
    let end = html[start..].find('"')? + start;
    Some(html[start..end].replace("&#38;", "&").replace("&amp;", "&"))
}

impl Browser {
    pub fn new() -> Self {
        let http = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("browser client");
        Self { http }
    }

    /// A browser whose requests arrive through a proxy that names `address` as the client
    /// (the broker must be configured with `rate_limit.client_ip_header = "x-forwarded-for"`).
    pub fn from_address(address: &str) -> Self {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("x-forwarded-for", address.parse().expect("header value"));
        let http = reqwest::Client::builder()
            .cookie_store(true)
            .default_headers(headers)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("browser client");
        Self { http }
    }

    pub async fn get(&self, url: &str) -> reqwest::Response {
        self.http.get(url).send().await.expect("GET")
    }

    /// Opens /authorize with the given parameters and returns the raw response.
    pub async fn authorize(&self, app: &TestApp, params: &[(&str, &str)]) -> reqwest::Response {
        let url = url::Url::parse_with_params(&app.endpoint("/authorize"), params).expect("url");
        self.get(url.as_str()).await
    }

    /// From the broker's answer to /authorize, goes through the mock VNeID (which picks the
    /// citizen named by login_hint) back to the broker's callback; returns the callback response.
    pub async fn through_upstream(
        &self,
        authorize_response: reqwest::Response,
    ) -> reqwest::Response {
        let upstream = match authorize_response.status().as_u16() {
            200 => login_button(&authorize_response.text().await.expect("page"))
                .expect("login page has the VNeID button"),
            303 => location(&authorize_response),
            other => panic!("unexpected /authorize answer {other}"),
        };
        let at_mock = self.get(&upstream).await;
        assert_eq!(
            at_mock.status(),
            303,
            "mock VNeID should pick the citizen at once (login_hint)"
        );
        self.get(&location(&at_mock)).await
    }

    /// Opens `/account`, logging `hint` in through the account page's own client if this
    /// browser has no session yet: the page's HTML.
    pub async fn account_page(&self, app: &TestApp, hint: &str) -> String {
        let first = self.get(&app.endpoint("/account")).await;
        if first.status() == 200 {
            return first.text().await.unwrap();
        }
        let to = location(&first);
        let at_authorize = self.get(&format!("{to}&login_hint={hint}")).await;
        let back = self.through_upstream(at_authorize).await;
        let back = self.through_steps(app, back, &test_phone(app, hint)).await;
        let done = self.get(&location(&back)).await;
        assert_eq!(location(&done), "/account");
        self.get(&app.endpoint("/account"))
            .await
            .text()
            .await
            .unwrap()
    }

    /// A complete login of the test citizen `hint` for `client`: the callback to the client.
    pub async fn login(
        &self,
        app: &TestApp,
        client: &Client,
        hint: &str,
        pkce: &Pkce,
        extra: &[(&str, &str)],
    ) -> Callback {
        let state = random_token();
        let mut defaults = vec![
            ("scope", "openid profile"),
            ("state", state.as_str()),
            ("nonce", "n-0S6_WzA2Mj"),
            ("login_hint", hint),
        ];
        // `extra` adds parameters or replaces the defaults above.
        defaults.retain(|(k, _)| !extra.iter().any(|(e, _)| e == k));
        defaults.extend_from_slice(extra);
        let params = code_request(client, pkce, &defaults);
        let first = self.authorize(app, &params).await;
        let back = if first.status() == 303 && location(&first).starts_with(&client.redirect_uri) {
            first
        } else {
            let callback = self.through_upstream(first).await;
            self.through_steps(app, callback, &test_phone(app, hint))
                .await
        };
        assert_eq!(
            back.status(),
            303,
            "the broker should redirect back to the client"
        );
        let target = location(&back);
        assert!(
            target.starts_with(&client.redirect_uri),
            "redirected to {target}"
        );
        let params = query_of(&target);
        assert_eq!(
            params.get("state"),
            Some(&state),
            "state must come back unchanged"
        );
        assert_eq!(
            params.get("iss"),
            Some(&app.url),
            "RFC 9207 iss must be present"
        );
        Callback { params }
    }
}

/// The phone a test citizen gives when the broker asks: their `phone_for_otp`, or one derived
/// from the hint (a valid Viettel number), so that citizens of one test do not share a phone.
pub fn test_phone(app: &TestApp, hint: &str) -> String {
    if let Some(phone) = app
        .mock
        .citizens()
        .iter()
        .find(|c| c.case == hint || c.sub() == hint)
        .and_then(|c| c.phone_for_otp.clone())
    {
        return phone;
    }
    let digest = sha256_b64url(hint);
    let n = digest.bytes().fold(0u64, |acc, b| {
        acc.wrapping_mul(31).wrapping_add(u64::from(b))
    });
    format!("096{:07}", n % 10_000_000)
}

/// A form field's value on a page (`name="x" value="..."`).
pub fn form_value(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')? + start;
    Some(html[start..end].to_string())
}

/// The step page a login stands at.
#[derive(Debug, PartialEq, Eq)]
pub enum StepPage {
    Phone,
    Code,
    Failure { can_continue: bool },
}

pub fn step_page(html: &str) -> StepPage {
    if html.contains("id=\"send-code\"") {
        StepPage::Phone
    } else if html.contains("id=\"verify-code\"") {
        StepPage::Code
    } else if html.contains("id=\"failure-fields\"") || html.contains("id=\"hotline-vneid\"") {
        StepPage::Failure {
            can_continue: html.contains("id=\"continue\""),
        }
    } else {
        panic!("not a step page: {html}")
    }
}

/// Where a step page's forms post: its first form's `action`.
pub fn form_action(html: &str) -> Option<String> {
    let marker = "<form method=\"post\" action=\"";
    let start = html.find(marker)? + marker.len();
    let end = html[start..].find('"')? + start;
    Some(
        html[start..end]
            .replace("&#x2f;", "/")
            .replace("&#47;", "/"),
    )
}

/// The last one-time code the dev SMS gateway "sent" to `phone`.
pub fn last_code(app: &TestApp, phone: &str) -> Option<String> {
    let phone = broker::accounts::phone::normalise(phone).expect("a valid test phone");
    let text = app.broker.dev_sms.as_ref()?.last_to(&phone)?;
    let digits: String = text
        .split(|c: char| !c.is_ascii_digit())
        .find(|w| w.len() == 6)?
        .to_string();
    Some(digits)
}

impl Browser {
    /// A step page's URL from a redirect to it.
    pub fn step_url(app: &TestApp, response: &reqwest::Response) -> Option<String> {
        let target = location(response);
        target.starts_with("/login/").then(|| app.endpoint(&target))
    }

    /// The step page a response shows: the page itself (a form that moved the login on, such
    /// as the phone, is answered with the next page) or the one its redirect names; `None` when
    /// it leads elsewhere (the response comes back, for the caller to read).
    pub async fn step_page(
        &self,
        app: &TestApp,
        response: reqwest::Response,
    ) -> Result<(String, String), reqwest::Response> {
        // A step page is answered at its own address, or at the callback's when the login
        // stopped at its first step there; either way its forms post to the step's address.
        let path = response.url().path().to_string();
        if response.status() == 200
            && (path.starts_with("/login/") || path.starts_with("/callback/"))
        {
            let here = response.url().to_string();
            let html = response.text().await.expect("step page");
            let url = form_action(&html)
                .map(|action| app.endpoint(&action))
                .unwrap_or(here);
            return Ok((url, html));
        }
        let Some(url) = Self::step_url(app, &response) else {
            return Err(response);
        };
        let html = self.get(&url).await.text().await.expect("step page");
        Ok((url, html))
    }

    /// Posts a step form with the page's CSRF token.
    pub async fn post_step(
        &self,
        page_url: &str,
        html: &str,
        fields: &[(&str, &str)],
    ) -> reqwest::Response {
        let csrf = form_value(html, "csrf").expect("the step page has a CSRF token");
        let mut form = vec![("csrf", csrf.as_str())];
        form.extend_from_slice(fields);
        self.http
            .post(page_url)
            .form(&form)
            .send()
            .await
            .expect("POST step")
    }

    /// Goes through the standardisation pages the way a citizen would (continue past a failure
    /// page, give `phone`, type the code the dev gateway got) until the broker sends the
    /// browser elsewhere; returns that response (or, at a failure page without a way on, that
    /// page as its address answers it).
    pub async fn through_steps(
        &self,
        app: &TestApp,
        mut response: reqwest::Response,
        phone: &str,
    ) -> reqwest::Response {
        for _ in 0..8 {
            let (url, html) = match self.step_page(app, response).await {
                Ok(page) => page,
                Err(elsewhere) => return elsewhere,
            };
            response = match step_page(&html) {
                StepPage::Phone => {
                    self.post_step(&url, &html, &[("action", "phone"), ("phone", phone)])
                        .await
                }
                StepPage::Code => {
                    let code = last_code(app, phone).expect("a code was sent");
                    self.post_step(&url, &html, &[("action", "code"), ("code", &code)])
                        .await
                }
                StepPage::Failure { can_continue: true } => {
                    self.post_step(&url, &html, &[("action", "continue")]).await
                }
                StepPage::Failure {
                    can_continue: false,
                } => return self.get(&url).await,
            };
        }
        panic!("the standardisation steps did not end");
    }
}
