//! /authorize: what is refused, how, and that errors before the redirect URI is trusted are
//! never redirected.

use crate::on_both_backends;
use crate::support::browser::{code_request, location, query_of, Browser, Pkce};
use crate::support::TestApp;

on_both_backends!(bad_authorization_requests, |app: TestApp| async move {
    let client = app.confidential_client().await;
    let public = app.public_client().await;
    let b = Browser::new();
    let pkce = Pkce::new();
    let ok = vec![
        ("response_type", "code"),
        ("client_id", client.id.as_str()),
        ("redirect_uri", client.redirect_uri.as_str()),
        ("scope", "openid"),
        ("state", "xyz"),
        ("code_challenge", pkce.challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    let with = |changes: &[(&'static str, &'static str)]| {
        let mut p: Vec<(&str, &str)> = ok
            .iter()
            .filter(|(k, _)| !changes.iter().any(|(c, _)| c == k))
            .cloned()
            .collect();
        p.extend(changes.iter().filter(|(_, v)| !v.is_empty()).cloned());
        p
    };
    // Never redirected: unknown client, unregistered or missing redirect_uri.
    for params in [
        with(&[("client_id", "nobody")]),
        with(&[("redirect_uri", "https://evil.example/cb")]),
        with(&[("redirect_uri", "")]),
    ] {
        let r = b.authorize(&app, &params).await;
        assert_eq!(r.status(), 400, "{params:?}");
        assert!(
            r.headers().get("location").is_none(),
            "must not redirect: {params:?}"
        );
    }
    // Repeated and oversized parameters.
    let mut repeated = ok.clone();
    repeated.push(("state", "again"));
    assert_eq!(b.authorize(&app, &repeated).await.status(), 400);
    let huge = "x".repeat(5000);
    let mut oversized: Vec<(&str, &str)> = ok.clone();
    oversized.push(("nonce", &huge));
    assert_eq!(b.authorize(&app, &oversized).await.status(), 400);
    // Redirected with the RFC code, state and iss.
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (
            with(&[("response_type", "token")]),
            "unsupported_response_type",
        ),
        (with(&[("response_type", "")]), "invalid_request"),
        (with(&[("scope", "profile")]), "invalid_scope"),
        (with(&[("scope", "openid admin")]), "invalid_scope"),
        (
            with(&[("code_challenge_method", "plain")]),
            "invalid_request",
        ),
        (with(&[("code_challenge", "short")]), "invalid_request"),
        (with(&[("prompt", "none login")]), "invalid_request"),
        (with(&[("max_age", "-1")]), "invalid_request"),
        (
            with(&[("resource", "https://not-allowed.example")]),
            "invalid_target",
        ),
        (with(&[("prompt", "none")]), "login_required"),
        (with(&[("request", "eyJ")]), "request_not_supported"),
        (
            with(&[("request_uri", "urn:example:r")]),
            "request_uri_not_supported",
        ),
    ];
    for (params, expected) in cases {
        let r = b.authorize(&app, &params).await;
        assert_eq!(r.status(), 303, "{params:?}");
        let q = query_of(&location(&r));
        assert!(location(&r).starts_with(&client.redirect_uri));
        assert_eq!(
            q.get("error").map(String::as_str),
            Some(expected),
            "{params:?}"
        );
        assert_eq!(q.get("state").map(String::as_str), Some("xyz"));
        assert_eq!(q.get("iss"), Some(&app.url));
    }
    // Public clients must use PKCE.
    let r = b
        .authorize(
            &app,
            &[
                ("response_type", "code"),
                ("client_id", &public.id),
                ("redirect_uri", "vn.hue.s:/oauth"),
                ("scope", "openid"),
            ],
        )
        .await;
    assert_eq!(
        query_of(&location(&r)).get("error").map(String::as_str),
        Some("invalid_request")
    );
    // A native app's loopback redirect may use any port (RFC 8252 §7.3).
    let r = b
        .authorize(
            &app,
            &code_request(
                &public,
                &pkce,
                &[("redirect_uri", "http://127.0.0.1:49152/cb")],
            ),
        )
        .await;
    assert_eq!(
        r.status(),
        200,
        "login page for a loopback redirect on another port"
    );
    assert_eq!(app.count("accounts").await, 0);
});

on_both_backends!(
    authorize_accepts_post_and_english,
    |app: TestApp| async move {
        let client = app.confidential_client().await;
        let pkce = Pkce::new();
        let b = Browser::new();
        let r = b
            .http
            .post(app.endpoint("/authorize"))
            .form(&code_request(&client, &pkce, &[("ui_locales", "en")]))
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), 200);
        let page = r.text().await.expect("page");
        assert!(page.contains("Sign in with VNeID"));
        assert!(
            page.contains(&format!("client_id={}", client.id)) && page.contains("ui_locales=vi"),
            "the language switch repeats the POSTed request"
        );
        // Garbage never causes a server error.
        for query in [
            "%ZZ",
            "client_id=%00",
            "response_type=code&client_id=&&&",
            "a=b=c&client_id[]=x",
        ] {
            let r = b
                .get(&format!("{}?{query}", app.endpoint("/authorize")))
                .await;
            assert!(r.status().is_client_error(), "{query}: {}", r.status());
        }
    }
);

/// One address cannot make the broker hold unbounded pending logins: past the burst it gets 429
/// with Retry-After, while the back channel (client-authenticated) is not limited here.
#[tokio::test]
async fn authorize_is_rate_limited_per_address() {
    let app = TestApp::spawn_with(crate::support::Backends::SqliteMemory, |s| {
        s.rate_limit.per_second = 1;
        s.rate_limit.burst = 5;
    })
    .await;
    let client = app.confidential_client().await;
    let b = Browser::new();
    let pkce = Pkce::new();
    let params = code_request(&client, &pkce, &[]);
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(b.authorize(&app, &params).await.status().as_u16());
    }
    assert_eq!(&statuses[..4], &[200, 200, 200, 200], "within the burst");
    assert!(statuses.contains(&429), "past the burst: {statuses:?}");
    let r = b.authorize(&app, &params).await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().get("retry-after").is_some());
    let (status, _) = app
        .token(&client, &[("grant_type", "client_credentials")])
        .await;
    assert_eq!(status, 200, "the token endpoint is not limited by address");
}
