//! The authorization endpoint: redirect URI checks, the chooser page, cancel, issuer paths.

use serde_json::Value;

use crate::support::*;

#[actix_web::test]
async fn unregistered_redirect_uri_gets_a_page_not_a_redirect() {
    let t = spawn_mock(vec![]);
    let params = [
        ("response_type", "code"),
        ("client_id", CLIENT_ID),
        ("redirect_uri", "http://evil.example/cb"),
        ("scope", "openid"),
        ("login_hint", "C01"),
    ];
    let response = t
        .http
        .get(t.url("/authorize"))
        .query(&params)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert!(response.headers().get("location").is_none());
    assert!(response.text().await.unwrap().contains("redirect_uri"));
}

#[actix_web::test]
async fn chooser_page_posts_back_and_deny_returns_access_denied() {
    let t = spawn_mock(vec![]);
    let params = [
        ("response_type", "code"),
        ("client_id", CLIENT_ID),
        ("redirect_uri", REDIRECT_URI),
        ("scope", "openid"),
        ("state", "s<1>"),
    ];
    let page = t
        .http
        .get(t.url("/authorize"))
        .query(&params)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers().get("set-cookie").is_none());
    let html = page.text().await.unwrap();
    assert!(html.contains("VNeID (mô phỏng / mock)") && html.contains("Võ Hữu Tài"));
    assert!(
        html.contains("s&#60;1&#62;") || html.contains("s&lt;1&gt;"),
        "state escaped"
    );

    let mut form = params.to_vec();
    form.push(("citizen", "C04"));
    let chosen = t
        .http
        .post(t.url("/authorize/choose"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(chosen.status(), 303);
    let back = location(&chosen);
    assert!(back.as_str().starts_with(REDIRECT_URI));
    assert_eq!(query(&back, "state").as_deref(), Some("s<1>"));
    assert!(query(&back, "code").is_some());

    let denied = t.authorize("access_denied", &[]).await;
    assert_eq!(query(&denied, "error").as_deref(), Some("access_denied"));
    assert_eq!(query(&denied, "state").as_deref(), Some("st-123"));
}

#[actix_web::test]
async fn an_issuer_with_a_path_serves_under_it() {
    let t = spawn_mock_at("/realms/vneid/", vec![]);
    assert!(t.issuer.ends_with("/realms/vneid"));
    let doc: Value = t
        .http
        .get(t.url("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["issuer"], t.issuer.as_str());
    let tokens = t.login("C01").await;
    let claims = t
        .verify(tokens["id_token"].as_str().unwrap())
        .await
        .unwrap()
        .claims;
    assert_eq!(claims["iss"], t.issuer.as_str());
}
