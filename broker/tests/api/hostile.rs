//! Malformed and hostile input: redirect URIs that only look registered, registrations that are
//! not valid URIs or safe ids, 401s without a challenge, request objects, a bad Host header.
//! Bad input changes nothing and is never answered with a 5xx.

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::on_both_backends;
use crate::support::browser::{code_request, location, query_of, Browser, Pkce};
use crate::support::{Client, TestApp};

/// Whether /authorize started a login (login page or straight to the upstream) for `redirect_uri`.
async fn starts_login(app: &TestApp, client: &Client, redirect_uri: &str) -> bool {
    let pkce = Pkce::new();
    let r = Browser::new()
        .authorize(
            app,
            &code_request(client, &pkce, &[("redirect_uri", redirect_uri)]),
        )
        .await;
    match r.status().as_u16() {
        200 | 303 => true,
        400 => {
            assert!(r.headers().get("location").is_none(), "{redirect_uri}");
            false
        }
        other => panic!("unexpected status {other} for {redirect_uri}"),
    }
}

on_both_backends!(redirect_uris_match_as_strings, |app: TestApp| async move {
    let native = app
        .client_with(json!({
            "client_name": "desktop app",
            "application_type": "native",
            "redirect_uris": ["http://127.0.0.1:9000/cb", "http://[::1]/cb"],
            "token_endpoint_auth_method": "none",
            "scope": "openid"
        }))
        .await;
    // RFC 8252 §7.3: only the port may vary.
    for good in [
        "http://127.0.0.1:9000/cb",
        "http://127.0.0.1:51234/cb",
        "http://127.0.0.1/cb",
        "http://[::1]:51234/cb",
    ] {
        assert!(starts_login(&app, &native, good).await, "{good}");
    }
    for bad in [
        "HTTP://127.0.0.1:9000/cb",
        "http://127.0.0.1:9000/cb/../cb",
        "http://127.0.0.1:9000/./cb",
        "http://127.1:9000/cb",
        "http://127.000.000.001:9000/cb",
        "http://\u{ff11}\u{ff12}\u{ff17}.\u{ff10}.\u{ff10}.\u{ff11}:9000/cb",
        "http://127.0.0.1:\u{ff19}\u{ff10}\u{ff10}\u{ff10}/cb",
        "http://127.0.0.1:9000/c%62",
        "http://127.0.0.1:9000/cb/extra",
        "http://127.0.0.1:9000/cb?x=1",
        "http://127.0.0.1:/cb",
        "http://127.0.0.1:99999/cb",
        "http://127.0.0.1:9000@evil.example/cb",
        "http://localhost:9000/cb",
        "http://[0:0:0:0:0:0:0:1]:9000/cb",
        "https://127.0.0.1:9000/cb",
    ] {
        assert!(!starts_login(&app, &native, bad).await, "{bad}");
    }
    // A web client's redirect URI is one exact string: extending it is not the same URI.
    let web = app.confidential_client().await;
    assert!(starts_login(&app, &web, "https://app.example/cb").await);
    for bad in [
        "https://app.example/cb/extra",
        "https://app.example/cb.evil.example",
        "https://app.example/cbx",
        "https://app.example/cb/../cb",
        "https://APP.example/cb",
    ] {
        assert!(!starts_login(&app, &web, bad).await, "{bad}");
    }
});

on_both_backends!(
    registration_refuses_invalid_uri_strings,
    |app: TestApp| async move {
        let base = json!({"client_name": "x", "redirect_uris": ["https://app.example/cb"]});
        let with = |field: &str, value: Value| {
            let mut body = base.clone();
            body[field] = value;
            body
        };
        let bad = [
            with("redirect_uris", json!(["https://app.example/cb\u{0}"])),
            with("redirect_uris", json!(["https://app.example/c\r\nb"])),
            with("redirect_uris", json!(["https:///cb"])),
            with("redirect_uris", json!(["https:app.example/cb"])),
            with("redirect_uris", json!(["https://app.example/a b"])),
            with("redirect_uris", json!(["https://app.example/%zz"])),
            with("redirect_uris", json!(["https://app.example/é"])),
            with(
                "post_logout_redirect_uris",
                json!(["https://app.example/out\u{0}"]),
            ),
            with("post_logout_redirect_uris", json!(["https:///out"])),
            with("audience", json!("https:///api")),
            with("resources", json!(["https://api.example/\r\n"])),
            with("introspection_audiences", json!(["https://api.example/ x"])),
        ];
        for body in bad {
            let r = app.admin_create(body.clone()).await;
            assert_eq!(r.status(), 400, "{body}");
            let v: Value = r.json().await.expect("json");
            assert!(
                v["error"]
                    .as_str()
                    .is_some_and(|e| e.starts_with("invalid_")),
                "{v}"
            );
        }
        // The same rules when an existing client is updated.
        let client = app.confidential_client().await;
        let r = app
            .http
            .put(app.endpoint(&format!("/admin/clients/{}", client.id)))
            .bearer_auth(&app.operator_token)
            .json(&with("redirect_uris", json!(["https:///cb"])))
            .send()
            .await
            .expect("put");
        assert_eq!(r.status(), 400);
        assert_eq!(app.count("clients").await, 1, "nothing else was stored");
    }
);

on_both_backends!(
    client_ids_are_safe_path_segments,
    |app: TestApp| async move {
        for id in [".", "..", "...", "a/b", "%2e%2e", "a b", "é", "a\u{0}"] {
            let r = app
                .admin_create(json!({"client_id": id, "redirect_uris": ["https://app.example/cb"]}))
                .await;
            assert_eq!(r.status(), 400, "{id:?}");
        }
        assert_eq!(app.count("clients").await, 0);
        for id in ["a.b", "hue-s", "app~1", "_x"] {
            let r = app
                .admin_create(json!({"client_id": id, "redirect_uris": ["https://app.example/cb"]}))
                .await;
            assert_eq!(r.status(), 201, "{id:?}");
        }
    }
);

on_both_backends!(every_401_carries_a_challenge, |app: TestApp| async move {
    let basic = app.confidential_client().await;
    let post = app
            .client_with(json!({"client_name": "post", "redirect_uris": ["https://post.example/cb"], "token_endpoint_auth_method": "client_secret_post", "scope": "openid"}))
            .await;
    for path in ["/token", "/introspect", "/revoke"] {
        let url = app.endpoint(path);
        let form = [("grant_type", "client_credentials"), ("token", "x")];
        let attempts = [
            // A wrong secret in the body.
            app.http.post(&url).form(&[
                ("grant_type", "client_credentials"),
                ("token", "x"),
                ("client_id", post.id.as_str()),
                ("client_secret", "wrong"),
            ]),
            // A wrong secret with Basic.
            app.http
                .post(&url)
                .basic_auth(&basic.id, Some("wrong"))
                .form(&form),
            // Malformed Basic headers.
            app.http
                .post(&url)
                .header("authorization", "Basic !!!")
                .form(&form),
            app.http
                .post(&url)
                .header("authorization", "BASIC bm8tY29sb24=")
                .form(&form),
            // No credentials at all.
            app.http.post(&url).form(&form),
        ];
        for (i, attempt) in attempts.into_iter().enumerate() {
            let r = attempt.send().await.expect("request");
            assert_eq!(r.status(), 401, "{path} attempt {i}");
            assert_eq!(
                r.headers()
                    .get("www-authenticate")
                    .and_then(|v| v.to_str().ok()),
                Some("Basic realm=\"broker\""),
                "{path} attempt {i}"
            );
            let body: Value = r.json().await.expect("json");
            assert_eq!(body["error"], "invalid_client", "{path} attempt {i}");
        }
    }
});

on_both_backends!(
    request_objects_get_their_own_error_codes,
    |app: TestApp| async move {
        let client = app.confidential_client().await;
        let pkce = Pkce::new();
        for (param, code) in [
            ("request", "request_not_supported"),
            ("request_uri", "request_uri_not_supported"),
        ] {
            let r = Browser::new()
                .authorize(
                    &app,
                    &code_request(
                        &client,
                        &pkce,
                        &[(param, "urn:example:req"), ("state", "s")],
                    ),
                )
                .await;
            assert_eq!(r.status(), 303, "{param}");
            assert!(location(&r).starts_with(&client.redirect_uri));
            let q = query_of(&location(&r));
            assert_eq!(q.get("error").map(String::as_str), Some(code));
            assert_eq!(q.get("state").map(String::as_str), Some("s"));
        }
        let discovery: Value = app
            .http
            .get(app.endpoint("/.well-known/openid-configuration"))
            .send()
            .await
            .expect("discovery")
            .json()
            .await
            .expect("json");
        assert_eq!(discovery["request_parameter_supported"], false);
        assert_eq!(discovery["request_uri_parameter_supported"], false);
    }
);

/// Sends raw bytes on a new connection and returns the status line of the answer.
async fn raw_status_line(app: &TestApp, request: &str) -> String {
    let address = app.url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while !answer.windows(2).any(|w| w == b"\r\n") {
        let n = stream.read(&mut buf).await.expect("read");
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&answer).to_string();
    text.lines().next().unwrap_or_default().to_string()
}

on_both_backends!(
    an_invalid_host_header_is_refused,
    |app: TestApp| async move {
        let port = app.url.rsplit(':').next().expect("port").to_string();
        let ok =
            format!("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
        assert_eq!(raw_status_line(&app, &ok).await, "HTTP/1.1 200 OK");
        for bad in [
        "GET /healthz HTTP/1.1\r\nHost: a b\r\nConnection: close\r\n\r\n".to_string(),
        "GET /healthz HTTP/1.1\r\nHost: a/b\r\nConnection: close\r\n\r\n".to_string(),
        "GET /healthz HTTP/1.1\r\nHost: a:port\r\nConnection: close\r\n\r\n".to_string(),
        "GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n".to_string(),
        format!("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nHost: evil.example\r\nConnection: close\r\n\r\n"),
        "GET /.well-known/openid-configuration HTTP/1.1\r\nHost: a b\r\nConnection: close\r\n\r\n".to_string(),
    ] {
        assert_eq!(
            raw_status_line(&app, &bad).await,
            "HTTP/1.1 400 Bad Request",
            "{bad:?}"
        );
    }
    }
);
