//! Issue 5's hardening: limits that follow the router, login budgets, honest `auth_time`, hints,
//! logout CSRF, binding cookies, the callback's issuer check, and localized pages.

use broker::config::Settings;
use broker_devkit::mock_vneid::Tamper;

use crate::support::browser::{code_request, location, login_button, query_of, Browser, Pkce};
use crate::support::{Client, TestApp};
use crate::{on_both_backends, on_both_backends_with};

fn behind_proxy(s: &mut Settings) {
    s.rate_limit.client_ip_header = Some("x-forwarded-for".into());
}

/// The upstream URL of a fresh login page for `client` with `extra` parameters.
async fn login_page(
    app: &TestApp,
    browser: &Browser,
    client: &Client,
    extra: &[(&str, &str)],
) -> reqwest::Response {
    let pkce = Pkce::new();
    let mut params = code_request(client, &pkce, &[("login_hint", "C01"), ("state", "s")]);
    params.retain(|(k, _)| !extra.iter().any(|(e, _)| e == k));
    params.extend_from_slice(extra);
    browser.authorize(app, &params).await
}

async fn upstream_url(
    app: &TestApp,
    browser: &Browser,
    client: &Client,
    extra: &[(&str, &str)],
) -> String {
    let page = login_page(app, browser, client, extra).await;
    assert_eq!(page.status(), 200, "the login page");
    login_button(&page.text().await.expect("page")).expect("button")
}

/// Logs `hint` in with `browser` for `client` and exchanges the code: the token response.
async fn tokens_of(
    app: &TestApp,
    client: &Client,
    browser: &Browser,
    hint: &str,
    extra: &[(&str, &str)],
) -> serde_json::Value {
    let pkce = Pkce::new();
    let cb = browser.login(app, client, hint, &pkce, extra).await;
    let (status, tokens) = app.exchange(client, cb.code(), &pkce.verifier).await;
    assert_eq!(status, 200, "{tokens}");
    tokens
}

/// Goes through the mock VNeID from an upstream URL; returns the broker's answer to the callback.
async fn through_mock(browser: &Browser, upstream: &str) -> reqwest::Response {
    let at_mock = browser.get(upstream).await;
    assert_eq!(at_mock.status(), 303, "the mock answers at once");
    browser.get(&location(&at_mock)).await
}

on_both_backends_with!(
    encoded_paths_are_limited_like_plain_ones,
    |s: &mut Settings| {
        behind_proxy(s);
        s.rate_limit.per_second = 1;
        s.rate_limit.burst = 3;
    },
    |app: TestApp| async move {
        let paths = [
            "/auth%6Frize",
            "/%61dmin/clients",
            "/end_sessio%6E",
            "/callback/vnei%64",
        ];
        // One address per path, so that each path must spend its own budget to be refused.
        for (i, path) in paths.into_iter().enumerate() {
            let address = format!("192.0.2.{}", i + 1);
            let mut limited = false;
            for _ in 0..6 {
                let r = app
                    .http
                    .get(app.endpoint(path))
                    .header("x-forwarded-for", address.as_str())
                    .bearer_auth(&app.operator_token)
                    .send()
                    .await
                    .expect("request");
                assert!(r.status().as_u16() < 500, "{path}: {}", r.status());
                if r.status() == 429 {
                    assert!(r.headers().get("retry-after").is_some());
                    limited = true;
                }
            }
            assert!(limited, "{path} reaches its handler, so it must be counted");
        }
    }
);

on_both_backends_with!(
    ipv6_clients_are_counted_by_their_64,
    |s: &mut Settings| {
        behind_proxy(s);
        s.rate_limit.per_second = 1;
        s.rate_limit.burst = 2;
    },
    |app: TestApp| async move {
        let status = |ip: &'static str| {
            let app = &app;
            async move {
                Browser::from_address(ip)
                    .get(&app.endpoint("/authorize"))
                    .await
                    .status()
                    .as_u16()
            }
        };
        assert_eq!(status("2001:db8:1:2::1").await, 400);
        assert_eq!(status("2001:db8:1:2::2").await, 400);
        assert_eq!(
            status("2001:db8:1:2:ffff::3").await,
            429,
            "another address of the same /64 shares the bucket"
        );
        assert_eq!(
            status("2001:db8:1:3::1").await,
            400,
            "the next /64 does not"
        );
        assert_eq!(status("10.0.0.1").await, 400);
    }
);

on_both_backends_with!(
    pending_logins_are_capped_per_address_and_per_instance,
    |s: &mut Settings| {
        behind_proxy(s);
        s.rate_limit.pending_logins_per_address = 3;
        s.rate_limit.pending_logins_per_instance = 5;
    },
    |app: TestApp| async move {
        let client = app.confidential_client().await;
        let busy = Browser::from_address("203.0.113.7");
        for _ in 0..3 {
            assert_eq!(login_page(&app, &busy, &client, &[]).await.status(), 200);
        }
        let refused = login_page(&app, &busy, &client, &[]).await;
        assert_eq!(refused.status(), 429, "the address's budget is spent");
        assert!(refused.headers().get("retry-after").is_some());
        let page = refused.text().await.expect("page");
        assert!(page.contains("Có quá nhiều lượt đăng nhập"), "{page}");
        // Another address still logs in, and finishing a login frees its place.
        let other = Browser::from_address("198.51.100.1");
        let upstream = upstream_url(&app, &other, &client, &[]).await;
        assert_eq!(through_mock(&other, &upstream).await.status(), 303);
        // The instance holds 3 live logins; two more fit, the sixth does not.
        let third = Browser::from_address("198.51.100.2");
        assert_eq!(login_page(&app, &third, &client, &[]).await.status(), 200);
        assert_eq!(login_page(&app, &third, &client, &[]).await.status(), 200);
        let full = login_page(&app, &Browser::from_address("198.51.100.3"), &client, &[]).await;
        assert_eq!(
            full.status(),
            429,
            "the instance cap holds across addresses"
        );
    }
);

on_both_backends_with!(
    failed_upstream_exchanges_stop_an_address_reaching_vneid,
    |s: &mut Settings| {
        behind_proxy(s);
        s.rate_limit.upstream_failures_per_address = 2;
    },
    |app: TestApp| async move {
        let client = app.confidential_client().await;
        let attacker = Browser::from_address("203.0.113.9");
        app.mock.set_tamper(Tamper::BadSignature);
        for _ in 0..2 {
            let upstream = upstream_url(&app, &attacker, &client, &[]).await;
            assert_eq!(through_mock(&attacker, &upstream).await.status(), 400);
        }
        app.mock.set_tamper(Tamper::None);
        // Even a good code from this address is no longer exchanged for now.
        let upstream = upstream_url(&app, &attacker, &client, &[]).await;
        let refused = through_mock(&attacker, &upstream).await;
        assert_eq!(refused.status(), 429);
        assert_eq!(app.count("accounts").await, 0, "nothing was exchanged");
        // Other addresses are unaffected.
        let citizen = Browser::from_address("198.51.100.1");
        let upstream = upstream_url(&app, &citizen, &client, &[]).await;
        assert_eq!(through_mock(&citizen, &upstream).await.status(), 303);
    }
);

on_both_backends!(
    max_age_always_goes_upstream_and_is_enforced,
    |app: TestApp| async move {
        let client = app.confidential_client().await;
        // Without an RP max_age the SSO lifetime bounds the upstream session.
        let url = upstream_url(&app, &Browser::new(), &client, &[]).await;
        assert_eq!(
            query_of(&url).get("max_age").map(String::as_str),
            Some("28800")
        );
        let url = upstream_url(&app, &Browser::new(), &client, &[("max_age", "300")]).await;
        assert_eq!(
            query_of(&url).get("max_age").map(String::as_str),
            Some("300")
        );
        // VNeID answers from a session two hours old: max_age=300 is not met.
        app.mock.set_tamper(Tamper::StaleAuthTime);
        let browser = Browser::new();
        let url = upstream_url(&app, &browser, &client, &[("max_age", "300")]).await;
        let back = through_mock(&browser, &url).await;
        assert_eq!(back.status(), 303);
        assert_eq!(
            query_of(&location(&back)).get("error").map(String::as_str),
            Some("login_required")
        );
        // After prompt=login, an auth_time from before the login started is refused too.
        let browser = Browser::new();
        let url = upstream_url(&app, &browser, &client, &[("prompt", "login")]).await;
        assert_eq!(
            query_of(&url).get("prompt").map(String::as_str),
            Some("login")
        );
        let back = through_mock(&browser, &url).await;
        assert_eq!(
            query_of(&location(&back)).get("error").map(String::as_str),
            Some("login_required")
        );
        app.mock.set_tamper(Tamper::None);
    }
);

on_both_backends!(
    an_unknown_auth_time_never_satisfies_max_age,
    |app: TestApp| async move {
        let client = app.confidential_client().await;
        app.mock.set_tamper(Tamper::NoAuthTime);
        let browser = Browser::new();
        let tokens = tokens_of(&app, &client, &browser, "C01", &[]).await;
        let (_, claims) = crate::support::jwt_parts(tokens["id_token"].as_str().expect("id"));
        assert!(
            claims.get("auth_time").is_none(),
            "no invented auth_time: {claims}"
        );
        // The session answers requests without max_age, but not one with it.
        let silent = |extra: &'static [(&'static str, &'static str)]| {
            let (app, client, browser) = (&app, &client, &browser);
            async move {
                let pkce = Pkce::new();
                let mut params = code_request(client, &pkce, &[("prompt", "none")]);
                params.extend_from_slice(extra);
                query_of(&location(&browser.authorize(app, &params).await))
            }
        };
        assert!(silent(&[]).await.contains_key("code"));
        assert_eq!(
            silent(&[("max_age", "3600")])
                .await
                .get("error")
                .map(String::as_str),
            Some("login_required")
        );
        // With prompt=login sent upstream, the callback time stands for auth_time.
        let pkce = Pkce::new();
        let cb = browser
            .login(
                &app,
                &client,
                "C01",
                &pkce,
                &[("prompt", "login"), ("max_age", "60")],
            )
            .await;
        let (_, tokens) = app.exchange(&client, cb.code(), &pkce.verifier).await;
        let (_, claims) = crate::support::jwt_parts(tokens["id_token"].as_str().expect("id"));
        assert!(claims["auth_time"].as_i64().is_some(), "{claims}");
        app.mock.set_tamper(Tamper::None);
    }
);

on_both_backends_with!(
    an_upstream_without_auth_time_is_asked_for_a_fresh_login_under_max_age,
    |s: &mut Settings| s.upstream.sends_auth_time = false,
    |app: TestApp| async move {
        let client = app.confidential_client().await;
        let url = upstream_url(&app, &Browser::new(), &client, &[("max_age", "600")]).await;
        assert_eq!(
            query_of(&url).get("prompt").map(String::as_str),
            Some("login")
        );
        let url = upstream_url(&app, &Browser::new(), &client, &[]).await;
        assert_eq!(query_of(&url).get("prompt"), None);
    }
);

on_both_backends!(
    id_token_hint_of_another_person_is_not_answered_by_the_session,
    |app: TestApp| async move {
        let client = app.confidential_client().await;
        let other = Browser::new();
        let theirs = tokens_of(&app, &client, &other, "C02", &[]).await;
        let browser = Browser::new();
        let mine = tokens_of(&app, &client, &browser, "C01", &[]).await;
        let ask = |hint: String, prompt: &'static str| {
            let (app, client, browser) = (&app, &client, &browser);
            async move {
                let pkce = Pkce::new();
                let params = code_request(
                    client,
                    &pkce,
                    &[("prompt", prompt), ("id_token_hint", hint.as_str())],
                );
                browser.authorize(app, &params).await
            }
        };
        let r = ask(theirs["id_token"].as_str().expect("id").into(), "none").await;
        assert_eq!(
            query_of(&location(&r)).get("error").map(String::as_str),
            Some("login_required")
        );
        let r = ask(mine["id_token"].as_str().expect("id").into(), "none").await;
        assert!(
            query_of(&location(&r)).contains_key("code"),
            "the hinted person's session answers"
        );
        let r = ask("not-a-jwt".into(), "none").await;
        assert_eq!(
            query_of(&location(&r)).get("error").map(String::as_str),
            Some("invalid_request")
        );
        // Without prompt=none, a hint for someone else starts a new login.
        let r = ask(theirs["id_token"].as_str().expect("id").into(), "consent").await;
        assert_eq!(r.status(), 200, "the login page");
        // An ID token of another client is no hint for this one.
        let stranger = app.confidential_client().await;
        let pkce = Pkce::new();
        let params = code_request(
            &stranger,
            &pkce,
            &[
                ("prompt", "none"),
                ("id_token_hint", mine["id_token"].as_str().expect("id")),
            ],
        );
        let r = browser.authorize(&app, &params).await;
        assert_eq!(
            query_of(&location(&r)).get("error").map(String::as_str),
            Some("invalid_request")
        );
    }
);

on_both_backends!(
    logout_confirmation_needs_its_csrf_token_and_our_origin,
    |app: TestApp| async move {
        let client = app.confidential_client().await;
        let browser = Browser::new();
        browser.login(&app, &client, "C01", &Pkce::new(), &[]).await;
        let still_in = || async {
            let pkce = Pkce::new();
            let r = browser
                .authorize(&app, &code_request(&client, &pkce, &[("prompt", "none")]))
                .await;
            query_of(&location(&r)).contains_key("code")
        };
        let post = |form: Vec<(&'static str, String)>, headers: Vec<(&'static str, String)>| {
            let (app, browser) = (&app, &browser);
            async move {
                let mut request = browser.http.post(app.endpoint("/end_session")).form(&form);
                for (k, v) in headers {
                    request = request.header(k, v);
                }
                request.send().await.expect("post")
            }
        };
        // A forged form without the token only asks again.
        let r = post(vec![("confirm", "yes".into())], vec![]).await;
        assert!(r.text().await.expect("page").contains("confirm-logout"));
        assert!(still_in().await, "no logout without the CSRF token");
        let confirmation = browser.get(&app.endpoint("/end_session")).await;
        // Under the default no-referrer a browser posts the form with `Origin: null`, which is
        // refused; the page must let it send the broker's origin (tests/browser caught this).
        assert_eq!(
            confirmation
                .headers()
                .get("referrer-policy")
                .and_then(|v| v.to_str().ok()),
            Some("same-origin")
        );
        let page = confirmation.text().await.expect("page");
        let csrf = crate::federation::hidden_field(&page, "csrf").expect("token");
        let r = post(
            vec![("confirm", "yes".into()), ("csrf", "A".repeat(43))],
            vec![],
        )
        .await;
        assert!(r.text().await.expect("page").contains("confirm-logout"));
        // The right token from a sibling site is refused too.
        let r = post(
            vec![("confirm", "yes".into()), ("csrf", csrf.clone())],
            vec![("origin", "https://evil.hue.gov.vn".into())],
        )
        .await;
        assert!(r.text().await.expect("page").contains("confirm-logout"));
        let r = post(
            vec![("confirm", "yes".into()), ("csrf", csrf.clone())],
            vec![("sec-fetch-site", "same-site".into())],
        )
        .await;
        assert!(r.text().await.expect("page").contains("confirm-logout"));
        assert!(still_in().await);
        let r = post(
            vec![("confirm", "yes".into()), ("csrf", csrf)],
            vec![
                ("origin", app.url.clone()),
                ("sec-fetch-site", "same-origin".into()),
            ],
        )
        .await;
        assert_eq!(r.status(), 200);
        assert!(!still_in().await, "logged out");
    }
);

on_both_backends!(
    binding_cookies_are_per_login_and_cannot_be_planted,
    |app: TestApp| async move {
        let client = app.confidential_client().await;
        let planted = "P".repeat(43);
        // A sibling subdomain tosses a binding cookie into the victim's browser.
        let victim = Browser::new();
        let first = upstream_url(&app, &victim, &client, &[]).await;
        let second = upstream_url(&app, &victim, &client, &[]).await;
        let at_mock = victim.get(&first).await;
        let callback = location(&at_mock);
        // The attacker holds the planted secret under every name it could guess.
        let attacker = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        let state = query_of(&callback)["state"].clone();
        let guessed = format!(
            "broker_login={planted}; {}={planted}",
            broker::federation::pending::cookie_name(&state)
        );
        let r = attacker
            .get(&callback)
            .header("cookie", guessed)
            .send()
            .await
            .expect("get");
        assert_eq!(r.status(), 400, "a planted secret binds nothing");
        // Two tabs: both logins finish, in either order.
        let back = through_mock(&victim, &second).await;
        assert_eq!(back.status(), 303);
        let back = victim.get(&callback).await;
        assert_eq!(back.status(), 303, "the first tab still finishes");
        assert!(query_of(&location(&back)).contains_key("code"));
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_issuers_get_host_prefixed_cookies_and_hsts() {
    let app = TestApp::spawn_with(crate::support::Backends::SqliteMemory, |s| {
        s.issuer = "https://id.hue.gov.vn".parse().expect("url");
    })
    .await;
    let _dir = app.guard();
    let client = app.confidential_client().await;
    let r = login_page(&app, &Browser::new(), &client, &[]).await;
    assert_eq!(
        r.headers()
            .get("strict-transport-security")
            .and_then(|v| v.to_str().ok()),
        Some("max-age=31536000")
    );
    let cookie = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap_or_default().to_string())
        .find(|c| c.starts_with("__Host-broker_login_"))
        .expect("a __Host- binding cookie");
    assert!(cookie.contains("Secure"), "{cookie}");
    assert!(
        cookie.contains("Path=/;") || cookie.ends_with("Path=/"),
        "{cookie}"
    );
    assert!(!cookie.to_ascii_lowercase().contains("domain="), "{cookie}");
}

on_both_backends!(
    the_callback_checks_the_upstream_issuer,
    |app: TestApp| async move {
        let client = app.confidential_client().await;
        for tamper in [Tamper::CallbackNoIss, Tamper::CallbackWrongIss] {
            app.mock.set_tamper(tamper);
            let browser = Browser::new();
            let url = upstream_url(&app, &browser, &client, &[]).await;
            let r = through_mock(&browser, &url).await;
            assert_eq!(r.status(), 400, "{tamper:?}: a mix-up is refused");
        }
        app.mock.set_tamper(Tamper::None);
        assert_eq!(app.count("accounts").await, 0);
    }
);

on_both_backends!(
    pages_follow_the_language_asked_for,
    |app: TestApp| async move {
        let page = |url: String, lang: Option<&'static str>| {
            let app = &app;
            async move {
                let mut request = app.http.get(url);
                if let Some(lang) = lang {
                    request = request.header("accept-language", lang);
                }
                request
                    .send()
                    .await
                    .expect("get")
                    .text()
                    .await
                    .expect("page")
            }
        };
        let bad = app.endpoint("/authorize?client_id=nobody&ui_locales=en");
        let text = page(bad, None).await;
        assert!(
            text.contains("lang=\"en\"") && text.contains("Sign-in failed"),
            "{text}"
        );
        let text = page(
            app.endpoint("/authorize?client_id=nobody"),
            Some("en-US,en;q=0.9"),
        )
        .await;
        assert!(
            text.contains("lang=\"en\""),
            "Accept-Language is honoured: {text}"
        );
        let text = page(app.endpoint("/authorize?client_id=nobody"), None).await;
        assert!(text.contains("lang=\"vi\""), "Vietnamese first");
    }
);

on_both_backends!(
    claims_parameter_acr_and_individual_claims,
    |app: TestApp| async move {
        let client = app.confidential_client().await;
        let discovery: serde_json::Value = app
            .http
            .get(app.endpoint("/.well-known/openid-configuration"))
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("json");
        assert_eq!(discovery["claims_parameter_supported"], true);
        let browser = Browser::new();
        // Essential acr with a value the broker never issues: unmet at once.
        let pkce = Pkce::new();
        let claims = r#"{"id_token":{"acr":{"essential":true,"values":["urn:other:loa"]}}}"#;
        let r = browser
            .authorize(&app, &code_request(&client, &pkce, &[("claims", claims)]))
            .await;
        assert_eq!(
            query_of(&location(&r)).get("error").map(String::as_str),
            Some("unmet_authentication_requirements")
        );
        let r = browser
            .authorize(
                &app,
                &code_request(&client, &pkce, &[("claims", "{not json")]),
            )
            .await;
        assert_eq!(
            query_of(&location(&r)).get("error").map(String::as_str),
            Some("invalid_request")
        );
        // A named claim in the ID token with scope openid only, and an acr the login meets.
        let pkce = Pkce::new();
        let claims = r#"{"id_token":{"name":{"essential":true},"acr":{"essential":true,"values":["urn:vn:hue:broker:loa:1"]}}}"#;
        let cb = browser
            .login(
                &app,
                &client,
                "C01",
                &pkce,
                &[("scope", "openid"), ("claims", claims)],
            )
            .await;
        let (_, tokens) = app.exchange(&client, cb.code(), &pkce.verifier).await;
        let (_, id) = crate::support::jwt_parts(tokens["id_token"].as_str().expect("id"));
        assert!(
            id["name"].is_string(),
            "the requested claim is released: {id}"
        );
        assert!(id.get("personal_id").is_none());
    }
);

/// A stand-in upstream that only serves discovery and an empty JWKS, slowly, counting the
/// discovery requests; `failing` makes it answer 500.
struct SlowUpstream {
    url: String,
    discoveries: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    failing: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl SlowUpstream {
    async fn start() -> Self {
        use std::sync::atomic::Ordering;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let discoveries = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let failing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (d, f, issuer) = (discoveries.clone(), failing.clone(), url.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let (d, f, issuer) = (d.clone(), f.clone(), issuer.clone());
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let n = socket.read(&mut buf).await.unwrap_or(0);
                    let head = String::from_utf8_lossy(&buf[..n]).to_string();
                    let body = if head.starts_with("GET /.well-known/openid-configuration") {
                        d.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                        serde_json::json!({
                            "issuer": issuer,
                            "authorization_endpoint": format!("{issuer}/authorize"),
                            "token_endpoint": format!("{issuer}/token"),
                            "jwks_uri": format!("{issuer}/jwks"),
                            "response_types_supported": ["code"],
                            "subject_types_supported": ["public"],
                            "id_token_signing_alg_values_supported": ["RS256"],
                        })
                        .to_string()
                    } else {
                        r#"{"keys":[]}"#.to_string()
                    };
                    let status = if f.load(Ordering::SeqCst) {
                        "500 Internal Server Error"
                    } else {
                        "200 OK"
                    };
                    let response = format!(
                        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = socket.write_all(response.as_bytes()).await;
                });
            }
        });
        Self {
            url,
            discoveries,
            failing,
        }
    }

    fn discoveries(&self) -> usize {
        self.discoveries.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_metadata_is_fetched_by_one_request_and_backs_off_after_failure() {
    let upstream = SlowUpstream::start().await;
    let issuer = upstream.url.clone();
    let app = TestApp::spawn_with(crate::support::Backends::SqliteMemory, |s| {
        s.upstream.issuer = issuer.parse().expect("url");
        s.upstream.metadata_max_age_secs = 1;
    })
    .await;
    let _dir = app.guard();
    let client = app.confidential_client().await;
    let burst = |n: usize| {
        let (app, client) = (&app, &client);
        async move {
            let pages = (0..n).map(|_| async move {
                login_page(app, &Browser::new(), client, &[])
                    .await
                    .status()
                    .as_u16()
            });
            futures_util::future::join_all(pages).await
        }
    };
    assert!(burst(8).await.iter().all(|s| *s == 200));
    assert_eq!(
        upstream.discoveries(),
        1,
        "concurrent first logins share one fetch"
    );
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    upstream
        .failing
        .store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(
        burst(8).await.iter().all(|s| *s == 200),
        "a failed refetch keeps the previous copy serving"
    );
    // One refetch for the stale copy, not one per login; discovery is idempotent, so that
    // refetch is tried twice before it counts as failed.
    assert_eq!(
        upstream.discoveries(),
        3,
        "one refetch (two tries) for the stale copy, not one per login"
    );
    assert!(burst(4).await.iter().all(|s| *s == 200));
    assert_eq!(
        upstream.discoveries(),
        3,
        "after a failure the next attempt waits"
    );
}

on_both_backends!(
    a_claims_sub_value_binds_the_person,
    |app: TestApp| async move {
        let client = app.confidential_client().await;
        let other = Browser::new();
        let theirs = tokens_of(&app, &client, &other, "C02", &[]).await;
        let (_, their_claims) = crate::support::jwt_parts(theirs["id_token"].as_str().expect("id"));
        let their_sub = their_claims["sub"].as_str().expect("sub").to_string();
        let browser = Browser::new();
        browser.login(&app, &client, "C01", &Pkce::new(), &[]).await;
        let claims = serde_json::json!({"id_token": {"sub": {"value": their_sub}}}).to_string();
        // C01's session cannot answer a request for C02.
        let pkce = Pkce::new();
        let r = browser
            .authorize(
                &app,
                &code_request(
                    &client,
                    &pkce,
                    &[("prompt", "none"), ("claims", claims.as_str())],
                ),
            )
            .await;
        assert_eq!(
            query_of(&location(&r)).get("error").map(String::as_str),
            Some("login_required")
        );
        // Nor can a fresh login of C01.
        let fresh = Browser::new();
        let pkce = Pkce::new();
        let mut params = code_request(
            &client,
            &pkce,
            &[
                ("claims", claims.as_str()),
                ("login_hint", "C01"),
                ("state", "s"),
            ],
        );
        params.push(("nonce", "n"));
        let page = fresh.authorize(&app, &params).await;
        let upstream = login_button(&page.text().await.expect("page")).expect("button");
        let back = through_mock(&fresh, &upstream).await;
        assert_eq!(
            query_of(&location(&back)).get("error").map(String::as_str),
            Some("login_required")
        );
        // The right person's session does answer.
        let r = other
            .authorize(
                &app,
                &code_request(
                    &client,
                    &Pkce::new(),
                    &[("prompt", "none"), ("claims", claims.as_str())],
                ),
            )
            .await;
        assert!(query_of(&location(&r)).contains_key("code"));
    }
);

on_both_backends!(
    head_answers_where_get_does_without_a_body,
    |app: TestApp| async move {
        for path in [
            "/.well-known/openid-configuration",
            "/jwks",
            "/healthz",
            "/readyz",
        ] {
            let get = app.http.get(app.endpoint(path)).send().await.expect("get");
            let head = app
                .http
                .head(app.endpoint(path))
                .send()
                .await
                .expect("head");
            assert_eq!(head.status(), get.status(), "{path}");
            assert_eq!(
                head.headers().get("content-type"),
                get.headers().get("content-type"),
                "{path}"
            );
            assert!(
                head.bytes().await.expect("body").is_empty(),
                "{path}: no body"
            );
        }
    }
);

on_both_backends!(
    a_huge_max_age_and_a_hinted_language_link_are_handled,
    |app: TestApp| async move {
        let client = app.confidential_client().await;
        // i64::MAX seconds: satisfied by any authentication, never an overflow.
        let browser = Browser::new();
        let pkce = Pkce::new();
        let cb = browser
            .login(
                &app,
                &client,
                "C01",
                &pkce,
                &[("max_age", "9223372036854775807")],
            )
            .await;
        let (status, tokens) = app.exchange(&client, cb.code(), &pkce.verifier).await;
        assert_eq!(status, 200);
        // The login page's language link never carries the ID token hint or a claims request.
        let hint = tokens["id_token"].as_str().expect("id");
        let page = login_page(
            &app,
            &Browser::new(),
            &client,
            &[
                ("id_token_hint", hint),
                ("claims", r#"{"id_token":{"name":null}}"#),
            ],
        )
        .await;
        assert_eq!(page.status(), 200);
        let html = page.text().await.expect("page");
        assert!(!html.contains(hint), "no ID token in the page's links");
        assert!(
            !html.contains("claims="),
            "no claims request in the page's links"
        );
    }
);

on_both_backends!(
    a_new_login_replaces_the_browsers_previous_session,
    |app: TestApp| async move {
        let client = app.confidential_client().await;
        let refresh_status = |tokens: &serde_json::Value| {
            let (app, client) = (&app, &client);
            let token = tokens["refresh_token"].as_str().expect("rt").to_string();
            async move {
                app.token(
                    client,
                    &[("grant_type", "refresh_token"), ("refresh_token", &token)],
                )
                .await
            }
        };
        let browser = Browser::new();
        let first = tokens_of(&app, &client, &browser, "C01", &[]).await;
        // The same person authenticates again: the session keeps its sid.
        let second = tokens_of(&app, &client, &browser, "C01", &[("prompt", "login")]).await;
        let sid = |t: &serde_json::Value| {
            crate::support::jwt_parts(t["id_token"].as_str().expect("id")).1["sid"].clone()
        };
        assert_eq!(sid(&first), sid(&second), "one browser session, one sid");
        let (status, first) = refresh_status(&first).await;
        assert_eq!(status, 200, "the first grant lives on");
        // Another person logs in in the same browser: the first person's session ends, with
        // what was issued under it.
        let pkce = Pkce::new();
        browser
            .login(&app, &client, "C02", &pkce, &[("prompt", "login")])
            .await;
        let (status, body) = refresh_status(&first).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_grant"))
        );
        let (status, _) = refresh_status(&second).await;
        assert_eq!(
            status, 400,
            "every grant of the replaced session is revoked"
        );
    }
);

on_both_backends!(
    an_essential_auth_time_needs_a_known_time,
    |app: TestApp| async move {
        let client = app.confidential_client().await;
        let claims = r#"{"id_token":{"auth_time":{"essential":true}}}"#;
        app.mock.set_tamper(Tamper::NoAuthTime);
        // A login whose time VNeID does not report cannot answer it.
        let browser = Browser::new();
        let url = upstream_url(&app, &browser, &client, &[("claims", claims)]).await;
        let back = through_mock(&browser, &url).await;
        assert_eq!(
            query_of(&location(&back)).get("error").map(String::as_str),
            Some("login_required")
        );
        // Nor can a session whose time is unknown, silently.
        let browser = Browser::new();
        browser.login(&app, &client, "C01", &Pkce::new(), &[]).await;
        let pkce = Pkce::new();
        let r = browser
            .authorize(
                &app,
                &code_request(&client, &pkce, &[("prompt", "none"), ("claims", claims)]),
            )
            .await;
        assert_eq!(
            query_of(&location(&r)).get("error").map(String::as_str),
            Some("login_required")
        );
        app.mock.set_tamper(Tamper::None);
        // With the time reported, the ID token carries it.
        let pkce = Pkce::new();
        let cb = Browser::new()
            .login(&app, &client, "C01", &pkce, &[("claims", claims)])
            .await;
        let (_, tokens) = app.exchange(&client, cb.code(), &pkce.verifier).await;
        let (_, id) = crate::support::jwt_parts(tokens["id_token"].as_str().expect("id"));
        assert!(id["auth_time"].as_i64().is_some(), "{id}");
    }
);

on_both_backends!(
    a_browser_never_holds_more_than_a_few_binding_cookies,
    |app: TestApp| async move {
        let client = app.confidential_client().await;
        let browser = Browser::new();
        // Each login page sets one binding cookie; once the browser holds 16, the next page
        // drops them all, so it never holds more than 16 however many pages start logins.
        let mut drops = Vec::new();
        for _ in 0..40 {
            let page = login_page(&app, &browser, &client, &[]).await;
            assert_eq!(page.status(), 200);
            let removed = page
                .headers()
                .get_all("set-cookie")
                .iter()
                .filter(|c| {
                    let c = c.to_str().unwrap_or_default();
                    c.starts_with("broker_login_") && c.contains("Max-Age=0")
                })
                .count();
            drops.push(removed);
        }
        let dropped: Vec<usize> = drops.iter().copied().filter(|n| *n > 0).collect();
        assert_eq!(
            dropped,
            vec![16, 16],
            "pages 17 and 33 drop the 16 held: {drops:?}"
        );
        // A login started after a drop still finishes.
        let url = upstream_url(&app, &browser, &client, &[]).await;
        assert_eq!(through_mock(&browser, &url).await.status(), 303);
    }
);
