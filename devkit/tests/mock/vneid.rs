//! The mock VNeID speaks standard OIDC: discovery, code flow with PKCE, ID token, userinfo.

use serde_json::Value;

use crate::support::*;

#[actix_web::test]
async fn discovery_describes_the_mock() {
    let t = spawn_mock(vec![]);
    let response = t
        .http
        .get(t.url("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let doc: Value = response.json().await.unwrap();
    assert_eq!(doc["issuer"], t.issuer.as_str());
    assert_eq!(doc["authorization_endpoint"], t.url("/authorize"));
    assert_eq!(doc["token_endpoint"], t.url("/token"));
    assert_eq!(doc["userinfo_endpoint"], t.url("/userinfo"));
    assert_eq!(doc["jwks_uri"], t.url("/jwks"));
    assert_eq!(doc["id_token_signing_alg_values_supported"][0], "RS256");
    assert_eq!(doc["code_challenge_methods_supported"][0], "S256");

    let jwks = t.http.get(t.url("/jwks")).send().await.unwrap();
    assert_eq!(jwks.headers()["cache-control"], "public, max-age=60");
    let jwks: Value = jwks.json().await.unwrap();
    let key = &jwks["keys"][0];
    assert_eq!(
        (key["kty"].as_str(), key["alg"].as_str()),
        (Some("RSA"), Some("RS256"))
    );
    assert_eq!(key["use"], "sig");
    assert!(key["kid"].is_string() && key["n"].is_string() && key["e"] == "AQAB");
}

#[actix_web::test]
async fn login_hint_logs_in_at_once_and_tokens_verify() {
    let t = spawn_mock(vec![]);
    let code = t.code("C01").await;
    let response = t.token(&code, Some(VERIFIER)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert!(response.headers().get("set-cookie").is_none());
    let tokens: Value = response.json().await.unwrap();
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 600);
    assert_eq!(tokens["scope"], "openid profile");

    let id_token = t
        .verify(tokens["id_token"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(
        id_token.header.kid.as_deref(),
        t.jwks().await.keys[0].common.key_id.as_deref()
    );
    let claims = id_token.claims;
    let c01 = &t.mock.citizens()[0];
    assert_eq!(claims["sub"], c01.sub());
    assert_eq!(claims["aud"], CLIENT_ID);
    assert_eq!(claims["nonce"], NONCE);
    assert_eq!(claims["SoDinhDanh"], "046085690467");
    assert_eq!(claims["HoVaTen"], "Võ Hữu Tài");
    assert_eq!(claims["NgayThangNamSinh"], "19850312");
    assert_eq!(claims["acr"], "2");
    assert_eq!(
        claims["exp"].as_u64().unwrap(),
        claims["iat"].as_u64().unwrap() + 300
    );
    assert!(claims["auth_time"].is_u64());

    let access = tokens["access_token"].as_str().unwrap();
    let info: Value = t
        .http
        .get(t.url("/userinfo"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["sub"], c01.sub());
    assert_eq!(info["SoDinhDanh"], "046085690467");
    assert_eq!(info["TechID"], c01.claims["TechID"]);

    let bad = t
        .http
        .get(t.url("/userinfo"))
        .bearer_auth("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
}

#[actix_web::test]
async fn citizens_without_an_id_number_or_with_a_cmnd_pass_through() {
    let t = spawn_mock(vec![]);
    for (case, present, absent) in [("C09", "HoVaTen", "SoDinhDanh"), ("C11", "SoCMND", "")] {
        let tokens = t.login(case).await;
        let claims = t
            .verify(tokens["id_token"].as_str().unwrap())
            .await
            .unwrap()
            .claims;
        assert!(claims.get(present).is_some(), "{case} lacks {present}");
        assert!(
            absent.is_empty() || claims.get(absent).is_none(),
            "{case} has {absent}"
        );
    }
    // A subject works as a hint too.
    let sub = t.mock.citizens()[2].sub().to_owned();
    let tokens = t.login(&sub).await;
    let claims = t
        .verify(tokens["id_token"].as_str().unwrap())
        .await
        .unwrap()
        .claims;
    assert_eq!(claims["sub"], sub.as_str());
}

async fn assert_oauth_error(response: reqwest::Response, status: u16, code: &str) {
    assert_eq!(response.status(), status);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], code, "{body}");
}

#[actix_web::test]
async fn pkce_and_single_use_are_enforced() {
    let t = spawn_mock(vec![]);
    let code = t.code("C02").await;
    assert_eq!(t.token(&code, Some(VERIFIER)).await.status(), 200);
    assert_oauth_error(t.token(&code, Some(VERIFIER)).await, 400, "invalid_grant").await;

    let code = t.code("C02").await;
    let wrong = "x".repeat(43);
    assert_oauth_error(t.token(&code, Some(&wrong)).await, 400, "invalid_grant").await;

    let code = t.code("C02").await;
    assert_oauth_error(t.token(&code, None).await, 400, "invalid_grant").await;
}

#[actix_web::test]
async fn client_authentication_by_post_and_its_failures() {
    let t = spawn_mock(vec![]);
    let code = t.code("C03").await;
    let form = |secret: &'static str, code: String| {
        vec![
            ("grant_type", "authorization_code".to_owned()),
            ("code", code),
            ("redirect_uri", REDIRECT_URI.to_owned()),
            ("code_verifier", VERIFIER.to_owned()),
            ("client_id", CLIENT_ID.to_owned()),
            ("client_secret", secret.to_owned()),
        ]
    };
    let post = |form| t.http.post(t.url("/token")).form(&form).send();
    let wrong = post(form("wrong", code.clone())).await.unwrap();
    assert_eq!(
        wrong.headers()["www-authenticate"],
        r#"Basic realm="mock-vneid""#
    );
    assert_oauth_error(wrong, 401, "invalid_client").await;
    // A failed client authentication does not spend the code.
    assert_eq!(post(form(CLIENT_SECRET, code)).await.unwrap().status(), 200);

    let grant = [
        ("grant_type", "password"),
        ("client_id", CLIENT_ID),
        ("client_secret", CLIENT_SECRET),
    ];
    let response = t
        .http
        .post(t.url("/token"))
        .form(&grant)
        .send()
        .await
        .unwrap();
    assert_oauth_error(response, 400, "unsupported_grant_type").await;

    let json = t
        .http
        .post(t.url("/token"))
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_oauth_error(json, 400, "invalid_request").await;
}
