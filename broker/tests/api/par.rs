//! Pushed authorization requests (RFC 9126) and `legacy_account`: client authentication at
//! `/par`, the same validation as `/authorize`, a `request_uri` that is single use, short-lived
//! and bound to its client, and `legacy_account` accepted only this way.

use serde_json::{json, Value};

use crate::support::browser::{code_request, location, query_of, Browser, Pkce};
use crate::support::{Client, TestApp};
use crate::{on_both_backends, on_both_backends_with};

/// POST /par with client_secret_basic (or the client_id alone for a public client).
async fn push(app: &TestApp, client: &Client, form: &[(&str, &str)]) -> (u16, Value) {
    let mut request = app.http.post(app.endpoint("/par"));
    let mut form = form.to_vec();
    match &client.secret {
        Some(secret) => request = request.basic_auth(&client.id, Some(secret)),
        None => form.push(("client_id", &client.id)),
    }
    let response = request.form(&form).send().await.expect("par");
    let status = response.status().as_u16();
    if status == 201 {
        assert_eq!(
            response
                .headers()
                .get("cache-control")
                .and_then(|v| v.to_str().ok()),
            Some("no-store")
        );
    }
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The pushed request of `client` for citizen `hint`; returns its request_uri.
async fn pushed(app: &TestApp, client: &Client, pkce: &Pkce, extra: &[(&str, &str)]) -> String {
    let mut form = code_request(
        client,
        pkce,
        &[("state", "pushed-state"), ("login_hint", "C01")],
    );
    form.retain(|(k, _)| !extra.iter().any(|(e, _)| e == k) && *k != "client_id");
    form.extend_from_slice(extra);
    let (status, body) = push(app, client, &form).await;
    assert_eq!(status, 201, "{body}");
    body["request_uri"]
        .as_str()
        .expect("request_uri")
        .to_string()
}

/// /authorize?client_id=…&request_uri=… (and anything else the browser adds).
async fn authorize_with(
    app: &TestApp,
    browser: &Browser,
    client_id: &str,
    request_uri: &str,
    extra: &[(&str, &str)],
) -> reqwest::Response {
    let mut params = vec![("client_id", client_id), ("request_uri", request_uri)];
    params.extend_from_slice(extra);
    browser.authorize(app, &params).await
}

/// A refused request_uri: a page, never a redirect, with the RFC 9101 code.
async fn assert_unusable(response: reqwest::Response) {
    assert_eq!(response.status(), 400);
    assert!(response.headers().get("location").is_none());
    let page = response.text().await.expect("page");
    assert!(page.contains("invalid_request_uri"), "{page}");
}

async fn legacy_client(app: &TestApp) -> Client {
    app.client_with(json!({
        "client_name": "Hue-S",
        "redirect_uris": ["https://hue-s.example/cb"],
        "token_endpoint_auth_method": "client_secret_basic",
        "scope": "openid profile",
        "legacy_source": "hue-s"
    }))
    .await
}

on_both_backends!(pushed_request_logs_in, |app: TestApp| async move {
    let client = app.confidential_client().await;
    let pkce = Pkce::new();
    let mut form = code_request(&client, &pkce, &[("state", "pushed-state")]);
    form.push(("login_hint", "C01"));
    let (status, body) = push(&app, &client, &form).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["expires_in"], 60);
    let request_uri = body["request_uri"].as_str().expect("request_uri");
    assert!(request_uri.starts_with("urn:ietf:params:oauth:request_uri:"));

    // RFC 9126 §4: only client_id and request_uri count; what the browser adds is ignored.
    let browser = Browser::new();
    let first = authorize_with(
        &app,
        &browser,
        &client.id,
        request_uri,
        &[
            ("redirect_uri", "https://evil.example/cb"),
            ("state", "forged"),
            ("scope", "openid admin"),
        ],
    )
    .await;
    assert_eq!(first.status(), 200, "the login page");
    let back = browser.through_upstream(first).await;
    let target = location(&back);
    assert!(target.starts_with(&client.redirect_uri), "{target}");
    let params = query_of(&target);
    assert_eq!(
        params.get("state").map(String::as_str),
        Some("pushed-state")
    );
    let (status, tokens) = app.exchange(&client, &params["code"], &pkce.verifier).await;
    assert_eq!(status, 200, "{tokens}");
    assert!(tokens["id_token"].is_string());

    // Single use: the same request_uri again is refused, even in the browser that used it.
    assert_unusable(authorize_with(&app, &browser, &client.id, request_uri, &[]).await).await;
});

on_both_backends!(
    request_uri_expires_and_is_bound_to_its_client,
    |app: TestApp| async move {
        let client = app.confidential_client().await;
        let other = app.public_client().await;
        let pkce = Pkce::new();
        let browser = Browser::new();

        // Another client's request_uri is unknown to it, and the attempt consumes nothing.
        let request_uri = pushed(&app, &client, &pkce, &[]).await;
        assert_unusable(authorize_with(&app, &browser, &other.id, &request_uri, &[]).await).await;
        assert_unusable(authorize_with(&app, &browser, "nobody", &request_uri, &[]).await).await;
        let r = browser
            .authorize(&app, &[("request_uri", request_uri.as_str())])
            .await;
        assert_eq!(r.status(), 400, "client_id is required with request_uri");
        let r = authorize_with(&app, &browser, &client.id, &request_uri, &[]).await;
        assert_eq!(r.status(), 200, "still usable by its own client");

        // 60 seconds, on the broker's clock.
        let request_uri = pushed(&app, &client, &pkce, &[]).await;
        app.clock.advance(61);
        assert_unusable(authorize_with(&app, &browser, &client.id, &request_uri, &[]).await).await;
        let request_uri = pushed(&app, &client, &pkce, &[]).await;
        app.clock.advance(59);
        let r = authorize_with(&app, &browser, &client.id, &request_uri, &[]).await;
        assert_eq!(r.status(), 200, "within its lifetime");

        // A made-up one of the right form.
        let made_up = format!(
            "urn:ietf:params:oauth:request_uri:{}",
            broker::crypto::random_token()
        );
        assert_unusable(authorize_with(&app, &browser, &client.id, &made_up, &[]).await).await;
    }
);

on_both_backends!(
    par_needs_client_authentication_and_a_valid_request,
    |app: TestApp| async move {
        let client = app.confidential_client().await;
        let pkce = Pkce::new();
        let form = code_request(&client, &pkce, &[]);
        // No credentials, a wrong secret: 401 invalid_client with a challenge.
        for request in [
            app.http.post(app.endpoint("/par")).form(&form),
            app.http
                .post(app.endpoint("/par"))
                .basic_auth(&client.id, Some("wrong"))
                .form(&form),
        ] {
            let r = request.send().await.expect("par");
            assert_eq!(r.status(), 401);
            assert!(r.headers().get("www-authenticate").is_some());
            let body: Value = r.json().await.expect("json");
            assert_eq!(body["error"], "invalid_client");
        }
        // The secret in the body (client_secret_post) is not this client's method.
        let mut posted = form.clone();
        posted.push((
            "client_secret",
            client.secret.as_deref().unwrap_or_default(),
        ));
        let r = app
            .http
            .post(app.endpoint("/par"))
            .form(&posted)
            .send()
            .await
            .expect("par");
        assert_eq!(r.status(), 401);

        // The same validation as /authorize, answered as JSON (RFC 9126 §2.3).
        let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
            (
                code_request(
                    &client,
                    &pkce,
                    &[("request_uri", "urn:ietf:params:oauth:request_uri:x")],
                ),
                "invalid_request",
            ),
            (
                code_request(
                    &client,
                    &pkce,
                    &[("redirect_uri", "https://evil.example/cb")],
                ),
                "invalid_request",
            ),
            (
                code_request(&client, &pkce, &[("scope", "profile")]),
                "invalid_scope",
            ),
            (
                code_request(&client, &pkce, &[("response_type", "token")]),
                "unsupported_response_type",
            ),
            (
                code_request(&client, &pkce, &[("code_challenge_method", "plain")]),
                "invalid_request",
            ),
        ];
        for (form, expected) in cases {
            let (status, body) = push(&app, &client, &form).await;
            assert_eq!(status, 400, "{form:?}");
            assert_eq!(body["error"], expected, "{form:?}");
        }
        let r = app
            .http
            .post(app.endpoint("/par"))
            .basic_auth(&client.id, client.secret.as_deref())
            .json(&json!({"response_type": "code"}))
            .send()
            .await
            .expect("par");
        assert_eq!(r.status(), 400, "a form body only");
        let r = app
            .http
            .get(app.endpoint("/par"))
            .send()
            .await
            .expect("par");
        assert_eq!(r.status(), 405);
    }
);

on_both_backends!(legacy_account_only_through_par, |app: TestApp| async move {
    let legacy = legacy_client(&app).await;
    let plain = app.confidential_client().await;
    let pkce = Pkce::new();
    let browser = Browser::new();

    // In a browser's request it could name anyone's account: refused by redirect.
    let r = browser
        .authorize(
            &app,
            &code_request(
                &legacy,
                &pkce,
                &[("state", "s"), ("legacy_account", "HS1003230")],
            ),
        )
        .await;
    assert_eq!(r.status(), 303);
    let q = query_of(&location(&r));
    assert_eq!(q.get("error").map(String::as_str), Some("invalid_request"));
    assert!(location(&r).starts_with(&legacy.redirect_uri));

    // A client without a legacy_source cannot push one either.
    let mut form = code_request(&plain, &pkce, &[("legacy_account", "HS1003230")]);
    form.retain(|(k, _)| *k != "client_id");
    let (status, body) = push(&app, &plain, &form).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_request");

    // Malformed values.
    let long = "x".repeat(129);
    for bad in ["HS 1003230", long.as_str()] {
        let form = code_request(&legacy, &pkce, &[("legacy_account", bad)]);
        let (status, body) = push(&app, &legacy, &form).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_request")),
            "{bad}"
        );
    }

    // The client of that source, from its backend: accepted, and the login goes on. C01 is
    // not the holder of HS1003230 (another name, date and ID): the failure page, no link.
    app.seed_legacy(&["HS1003230"]).await;
    let request_uri = pushed(&app, &legacy, &pkce, &[("legacy_account", "HS1003230")]).await;
    let first = authorize_with(&app, &browser, &legacy.id, &request_uri, &[]).await;
    assert_eq!(first.status(), 200);
    let back = browser.through_upstream(first).await;
    let (step, page) = browser
        .step_page(&app, back)
        .await
        .expect("the failure page");
    assert!(page.contains("<li>Họ và tên</li>"), "{page}");
    assert!(!page.contains("Nguyễn Mỹ Anh"), "never the record's data");
    let back = browser
        .post_step(&step, &page, &[("action", "continue")])
        .await;
    let code = query_of(&location(&back))
        .get("code")
        .cloned()
        .expect("a code after the failure page");
    let (status, tokens) = app.exchange(&legacy, &code, &pkce.verifier).await;
    assert_eq!(status, 200, "{tokens}");
    let (_, id_claims) = crate::support::jwt_parts(tokens["id_token"].as_str().unwrap());
    assert_eq!(
        id_claims["legacy_accounts"],
        json!(["HS1004606"]),
        "C01's own record (linked by ID), never the refused one"
    );
});

on_both_backends!(
    the_app_links_its_own_account_through_par,
    |app: TestApp| async move {
        app.seed_legacy(&["HS1003456"]).await;
        let legacy = legacy_client(&app).await;
        // C01's own Hue-S account is seeded (HS1004606) and would link by ID anyway; a record
        // without an ID number proves what the app's request adds: C05's HS1003456.
        let pkce = Pkce::new();
        let request_uri = pushed(
            &app,
            &legacy,
            &pkce,
            &[("legacy_account", "HS1003456"), ("login_hint", "C05")],
        )
        .await;
        let browser = Browser::new();
        let first = authorize_with(&app, &browser, &legacy.id, &request_uri, &[]).await;
        let back = browser.through_upstream(first).await;
        let params = query_of(&location(&back));
        let code = params
            .get("code")
            .unwrap_or_else(|| panic!("no phone step: {params:?}"));
        let (status, tokens) = app.exchange(&legacy, code, &pkce.verifier).await;
        assert_eq!(status, 200, "{tokens}");
        let (_, id_claims) = crate::support::jwt_parts(tokens["id_token"].as_str().unwrap());
        assert_eq!(id_claims["legacy_accounts"], json!(["HS1003456"]));
        let (_, access) = crate::support::jwt_parts(tokens["access_token"].as_str().unwrap());
        assert_eq!(access["legacy_accounts"], json!(["HS1003456"]));
        let (_, userinfo) = app.userinfo(tokens["access_token"].as_str().unwrap()).await;
        assert_eq!(userinfo["legacy_accounts"], json!(["HS1003456"]));
        // A client of another source never sees it.
        let other = app.confidential_client().await;
        let login = browser.login(&app, &other, "C05", &Pkce::new(), &[]).await;
        assert!(login.params.contains_key("code"));
    }
);

on_both_backends!(clients_may_require_par, |app: TestApp| async move {
    let client = app
        .client_with(json!({
            "redirect_uris": ["https://strict.example/cb"],
            "require_pushed_authorization_requests": true
        }))
        .await;
    let pkce = Pkce::new();
    let browser = Browser::new();
    let r = browser
        .authorize(&app, &code_request(&client, &pkce, &[("state", "s")]))
        .await;
    assert_eq!(r.status(), 303);
    assert_eq!(
        query_of(&location(&r)).get("error").map(String::as_str),
        Some("invalid_request")
    );
    let request_uri = pushed(&app, &client, &pkce, &[]).await;
    let r = authorize_with(&app, &browser, &client.id, &request_uri, &[]).await;
    assert_eq!(r.status(), 200, "pushed, it is accepted");

    let shown: Value = app
        .http
        .get(app.endpoint(&format!("/admin/clients/{}", client.id)))
        .bearer_auth(&app.operator_token)
        .send()
        .await
        .expect("show")
        .json()
        .await
        .expect("json");
    assert_eq!(shown["require_pushed_authorization_requests"], true);

    let discovery: Value = app
        .http
        .get(app.endpoint("/.well-known/openid-configuration"))
        .send()
        .await
        .expect("discovery")
        .json()
        .await
        .expect("json");
    assert_eq!(
        discovery["pushed_authorization_request_endpoint"],
        app.endpoint("/par")
    );
    assert_eq!(discovery["require_pushed_authorization_requests"], false);
});

on_both_backends_with!(
    the_server_may_require_par,
    |s: &mut broker::config::Settings| s.login.require_pushed_authorization_requests = true,
    |app: TestApp| async move {
        let client = app.confidential_client().await;
        let pkce = Pkce::new();
        let browser = Browser::new();
        let r = browser
            .authorize(&app, &code_request(&client, &pkce, &[("state", "s")]))
            .await;
        assert_eq!(
            query_of(&location(&r)).get("error").map(String::as_str),
            Some("invalid_request")
        );
        let request_uri = pushed(&app, &client, &pkce, &[]).await;
        let r = authorize_with(&app, &browser, &client.id, &request_uri, &[]).await;
        assert_eq!(r.status(), 200);
        let discovery: Value = app
            .http
            .get(app.endpoint("/.well-known/openid-configuration"))
            .send()
            .await
            .expect("discovery")
            .json()
            .await
            .expect("json");
        assert_eq!(discovery["require_pushed_authorization_requests"], true);
    }
);

on_both_backends!(
    legacy_source_is_validated_metadata,
    |app: TestApp| async move {
        let long = "a".repeat(41);
        for bad in ["", "Hue-S", "hue s", "hue_s", long.as_str()] {
            let r = app
                .admin_create(
                    json!({"redirect_uris": ["https://a.example/cb"], "legacy_source": bad}),
                )
                .await;
            assert_eq!(r.status(), 400, "{bad:?}");
        }
        let client = legacy_client(&app).await;
        let url = app.endpoint(&format!("/admin/clients/{}", client.id));
        let shown: Value = app
            .http
            .get(&url)
            .bearer_auth(&app.operator_token)
            .send()
            .await
            .expect("show")
            .json()
            .await
            .expect("json");
        assert_eq!(shown["legacy_source"], "hue-s");
        let r = app
            .http
            .put(&url)
            .bearer_auth(&app.operator_token)
            .json(
                &json!({"redirect_uris": ["https://hue-s.example/cb"], "legacy_source": "dvc-hue"}),
            )
            .send()
            .await
            .expect("put");
        let updated: Value = r.json().await.expect("json");
        assert_eq!(updated["legacy_source"], "dvc-hue");
    }
);

/// Each push stores a request, so one address is limited like at /authorize.
#[tokio::test]
async fn par_is_rate_limited_per_address() {
    let app = TestApp::spawn_with(crate::support::Backends::SqliteMemory, |s| {
        s.rate_limit.per_second = 1;
        s.rate_limit.burst = 3;
    })
    .await;
    let client = app.confidential_client().await;
    let pkce = Pkce::new();
    let form = code_request(&client, &pkce, &[]);
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(push(&app, &client, &form).await.0);
    }
    assert_eq!(&statuses[..2], &[201, 201]);
    assert!(statuses.contains(&429), "{statuses:?}");
}
