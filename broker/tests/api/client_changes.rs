//! Grants follow their client's registration: narrowing, disabling or deleting a client revokes
//! what no longer fits; what a registration may name; ID tokens on refresh; userinfo without
//! credentials.

use serde_json::{json, Value};

use crate::on_both_backends;
use crate::support::browser::{Browser, Pkce};
use crate::support::{jwt_parts, Client, TestApp};

const PORTAL: &str = "portal";

fn portal_registration(scope: &str, resources: &[&str], grant_types: &[&str]) -> Value {
    json!({
        "client_id": PORTAL,
        "client_name": "portal",
        "redirect_uris": ["https://portal.example/cb"],
        "grant_types": grant_types,
        "scope": scope,
        "resources": resources
    })
}

/// A login of C01 for `client` with `extra` parameters, then the code exchange.
async fn tokens_for(app: &TestApp, client: &Client, extra: &[(&str, &str)]) -> Value {
    let pkce = Pkce::new();
    let code = Browser::new()
        .login(app, client, "C01", &pkce, extra)
        .await
        .code()
        .to_string();
    let (status, tokens) = app.exchange(client, &code, &pkce.verifier).await;
    assert_eq!(status, 200, "{tokens}");
    tokens
}

async fn refresh(app: &TestApp, client: &Client, tokens: &Value) -> (u16, Value) {
    app.token(
        client,
        &[
            ("grant_type", "refresh_token"),
            (
                "refresh_token",
                tokens["refresh_token"].as_str().expect("rt"),
            ),
        ],
    )
    .await
}

async fn admin_update(app: &TestApp, client_id: &str, body: &Value) -> reqwest::Response {
    app.http
        .put(app.endpoint(&format!("/admin/clients/{client_id}")))
        .bearer_auth(&app.operator_token)
        .json(body)
        .send()
        .await
        .expect("admin update")
}

fn access_token(tokens: &Value) -> &str {
    tokens["access_token"].as_str().expect("at")
}

on_both_backends!(
    narrowing_a_client_revokes_what_no_longer_fits,
    |app: TestApp| async move {
        let all = ["authorization_code", "refresh_token"];
        let client = app
            .client_with(portal_registration(
                "openid profile personal_id",
                &["https://api.example"],
                &all,
            ))
            .await;
        let with_id = tokens_for(&app, &client, &[("scope", "openid personal_id")]).await;
        let with_api = tokens_for(&app, &client, &[("resource", "https://api.example")]).await;
        let plain = tokens_for(&app, &client, &[]).await;

        // The personal-ID scope is removed: only the grant that holds it goes.
        let narrower = portal_registration("openid profile", &["https://api.example"], &all);
        assert_eq!(admin_update(&app, PORTAL, &narrower).await.status(), 200);
        let (status, body) = refresh(&app, &client, &with_id).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_grant"))
        );
        assert_eq!(app.userinfo(access_token(&with_id)).await.0, 401);
        let (status, with_api) = refresh(&app, &client, &with_api).await;
        assert_eq!(status, 200, "{with_api}");
        let (status, plain) = refresh(&app, &client, &plain).await;
        assert_eq!(status, 200, "{plain}");

        // The resource is removed: the grant made for it goes.
        let narrower = portal_registration("openid profile", &[], &all);
        assert_eq!(admin_update(&app, PORTAL, &narrower).await.status(), 200);
        assert_eq!(
            refresh(&app, &client, &with_api).await.1["error"],
            "invalid_grant"
        );
        let (status, plain) = refresh(&app, &client, &plain).await;
        assert_eq!(status, 200, "{plain}");

        // The refresh_token grant type is removed, then given back: the family stays dead.
        let no_refresh = portal_registration("openid profile", &[], &["authorization_code"]);
        assert_eq!(admin_update(&app, PORTAL, &no_refresh).await.status(), 200);
        assert_eq!(
            refresh(&app, &client, &plain).await.1["error"],
            "unauthorized_client"
        );
        let again = portal_registration("openid profile", &[], &all);
        assert_eq!(admin_update(&app, PORTAL, &again).await.status(), 200);
        assert_eq!(
            refresh(&app, &client, &plain).await.1["error"],
            "invalid_grant"
        );
        assert_eq!(app.userinfo(access_token(&plain)).await.0, 401);
    }
);

on_both_backends!(
    a_disabled_client_is_unknown_and_loses_its_grants,
    |app: TestApp| async move {
        let all = ["authorization_code", "refresh_token"];
        let client = app
            .client_with(portal_registration("openid profile", &[], &all))
            .await;
        let tokens = tokens_for(&app, &client, &[]).await;
        let mut disabled = portal_registration("openid profile", &[], &all);
        disabled["disabled"] = json!(true);
        let r = admin_update(&app, PORTAL, &disabled).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.json::<Value>().await.expect("json")["disabled"], true);
        let (status, body) = refresh(&app, &client, &tokens).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("invalid_client"))
        );
        assert_eq!(app.userinfo(access_token(&tokens)).await.0, 401);
        let pkce = Pkce::new();
        let r = Browser::new()
            .authorize(
                &app,
                &crate::support::browser::code_request(&client, &pkce, &[]),
            )
            .await;
        assert_eq!(r.status(), 400, "an error page, no redirect");
        assert!(r.headers().get("location").is_none());

        // Enabled again, it starts from nothing.
        let enabled = portal_registration("openid profile", &[], &all);
        assert_eq!(admin_update(&app, PORTAL, &enabled).await.status(), 200);
        assert_eq!(
            refresh(&app, &client, &tokens).await.1["error"],
            "invalid_grant"
        );
        let fresh = tokens_for(&app, &client, &[]).await;
        assert_eq!(refresh(&app, &client, &fresh).await.0, 200);
    }
);

on_both_backends!(
    a_client_recreated_under_the_same_id_inherits_nothing,
    |app: TestApp| async move {
        let registration = portal_registration(
            "openid profile",
            &[],
            &["authorization_code", "refresh_token"],
        );
        let old = app.client_with(registration.clone()).await;
        let tokens = tokens_for(&app, &old, &[]).await;
        let r = app
            .http
            .delete(app.endpoint(&format!("/admin/clients/{PORTAL}")))
            .bearer_auth(&app.operator_token)
            .send()
            .await
            .expect("delete");
        assert_eq!(r.status(), 204);
        assert_eq!(app.userinfo(access_token(&tokens)).await.0, 401);

        let new = app.client_with(registration).await;
        assert_eq!(new.id, old.id);
        let (status, body) = refresh(&app, &new, &tokens).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_grant"))
        );
        let introspected: Value = app
            .http
            .post(app.endpoint("/introspect"))
            .basic_auth(&new.id, new.secret.as_deref())
            .form(&[("token", tokens["refresh_token"].as_str().expect("rt"))])
            .send()
            .await
            .expect("introspect")
            .json()
            .await
            .expect("json");
        assert_eq!(introspected, json!({"active": false}));
    }
);

on_both_backends!(
    registration_refuses_the_issuer_and_private_keys,
    |app: TestApp| async move {
        let issuer = app.url.clone();
        let base = json!({"client_name": "x", "redirect_uris": ["https://app.example/cb"], "grant_types": ["authorization_code", "client_credentials"]});
        let with = |field: &str, value: Value| {
            let mut body = base.clone();
            body[field] = value;
            body
        };
        let ec = json!({"kty": "EC", "crv": "P-256", "kid": "k1",
            "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
            "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"});
        let mut ec_private = ec.clone();
        ec_private["d"] = json!("jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI");
        let mut bad = vec![
            with("introspection_audiences", json!([issuer])),
            with("introspection_audiences", json!([format!("{issuer}/")])),
            with("audience", json!(issuer)),
            with("resources", json!([issuer.to_uppercase()])),
            with("jwks", json!({"keys": [ec_private]})),
            with("jwks", json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]})),
            with("jwks", json!({"keys": [{"kty": "oct"}]})),
            with("jwks", json!({"keys": ["not a key"]})),
            with("jwks", json!([ec])),
        ];
        for member in ["p", "q", "dp", "dq", "qi", "k"] {
            let mut key = ec.clone();
            key[member] = json!("AQAB");
            bad.push(with("jwks", json!({"keys": [key]})));
        }
        for body in bad {
            let r = app.admin_create(body.clone()).await;
            assert_eq!(r.status(), 400, "{body}");
            assert_eq!(
                r.json::<Value>().await.expect("json")["error"],
                "invalid_client_metadata"
            );
        }
        assert_eq!(app.count("clients").await, 0, "nothing was stored");
        let r = app.admin_create(with("jwks", json!({"keys": [ec]}))).await;
        assert_eq!(r.status(), 201, "a public key is fine");
    }
);

on_both_backends!(
    id_tokens_on_refresh_keep_the_original_authentication,
    |app: TestApp| async move {
        let client = app
            .client_with(json!({
                "client_name": "wants id tokens",
                "redirect_uris": ["https://idt.example/cb"],
                "scope": "openid profile",
                "id_token_on_refresh": true
            }))
            .await;
        let tokens = tokens_for(&app, &client, &[]).await;
        let (_, original) = jwt_parts(tokens["id_token"].as_str().expect("id token"));
        app.clock.advance(120);
        let (status, refreshed) = refresh(&app, &client, &tokens).await;
        assert_eq!(status, 200, "{refreshed}");
        let (header, claims) = jwt_parts(refreshed["id_token"].as_str().expect("id token"));
        assert_eq!(header["alg"], "RS256");
        for same in [
            "iss",
            "sub",
            "aud",
            "azp",
            "auth_time",
            "acr",
            "amr",
            "sid",
            "name",
        ] {
            assert_eq!(claims[same], original[same], "{same}");
        }
        assert_eq!(claims["iat"], original["iat"].as_i64().expect("iat") + 120);
        assert!(claims.get("nonce").is_none(), "no nonce on refresh");
        assert!(claims["at_hash"].is_string());

        // Off by default.
        let plain = app.confidential_client().await;
        let tokens = tokens_for(&app, &plain, &[]).await;
        let (status, refreshed) = refresh(&app, &plain, &tokens).await;
        assert_eq!(status, 200);
        assert!(refreshed.get("id_token").is_none(), "{refreshed}");
    }
);

on_both_backends!(
    userinfo_without_credentials_gets_a_bare_challenge,
    |app: TestApp| async move {
        let get = app
            .http
            .get(app.endpoint("/userinfo"))
            .send()
            .await
            .expect("userinfo");
        let post = app
            .http
            .post(app.endpoint("/userinfo"))
            .form(&[("x", "y")])
            .send()
            .await
            .expect("userinfo");
        for r in [get, post] {
            assert_eq!(r.status(), 401);
            assert_eq!(
                r.headers()
                    .get("www-authenticate")
                    .and_then(|v| v.to_str().ok()),
                Some("Bearer realm=\"broker\"")
            );
            let body = r.text().await.expect("body");
            assert!(!body.contains("error"), "no error code: {body}");
        }
        let r = app
            .http
            .get(app.endpoint("/userinfo"))
            .bearer_auth("not.a.jwt")
            .send()
            .await
            .expect("userinfo");
        assert_eq!(r.status(), 401);
        assert_eq!(
            r.headers()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok()),
            Some("Bearer realm=\"broker\", error=\"invalid_token\"")
        );
    }
);
