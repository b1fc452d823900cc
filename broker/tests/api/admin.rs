//! The admin API for clients: authorisation, validation, secrets shown once.

use serde_json::{json, Value};

use crate::on_both_backends;
use crate::support::TestApp;

on_both_backends!(admin_api_manages_clients, |app: TestApp| async move {
    let url = app.endpoint("/admin/clients");
    assert_eq!(
        app.http.get(&url).send().await.expect("list").status(),
        401,
        "no token"
    );
    assert_eq!(
        app.http
            .get(&url)
            .bearer_auth("wrong")
            .send()
            .await
            .expect("list")
            .status(),
        401,
        "wrong token"
    );

    let bad = [
        json!({"redirect_uris": ["http://app.example/cb"]}),
        json!({"redirect_uris": ["https://app.example/cb#frag"]}),
        json!({"redirect_uris": ["vn.hue.s:/cb"]}),
        json!({"redirect_uris": []}),
        json!({"redirect_uris": ["https://a.example/cb"], "token_endpoint_auth_method": "none", "grant_types": ["client_credentials"]}),
        json!({"redirect_uris": ["https://a.example/cb"], "unknown_field": 1}),
        json!({"redirect_uris": ["https://a.example/cb"], "client_id": "bad id with spaces"}),
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
    let r = app
        .http
        .post(&url)
        .bearer_auth(&app.operator_token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 400);
    assert_eq!(app.count("clients").await, 0, "nothing was stored");

    let r = app.admin_create(json!({"client_id": "hue-s", "client_name": "Hue-S", "redirect_uris": ["https://hue-s.example/cb"]})).await;
    assert_eq!(r.status(), 201);
    let created: Value = r.json().await.expect("json");
    let secret = created["client_secret"]
        .as_str()
        .expect("secret shown once");
    assert_eq!(secret.len(), 43, "256 bits, base64url");
    assert_eq!(
        app.admin_create(
            json!({"client_id": "hue-s", "redirect_uris": ["https://hue-s.example/cb"]})
        )
        .await
        .status(),
        409
    );

    let shown: Value = app
        .http
        .get(format!("{url}/hue-s"))
        .bearer_auth(&app.operator_token)
        .send()
        .await
        .expect("show")
        .json()
        .await
        .expect("json");
    assert!(
        shown.get("client_secret").is_none() && shown.get("secret_hash").is_none(),
        "never shown again"
    );
    use sqlx::Row;
    let stored: String = sqlx::query("SELECT secret_hash FROM clients WHERE client_id = 'hue-s'")
        .fetch_one(&app.app_db.pool())
        .await
        .expect("row")
        .try_get("secret_hash")
        .expect("hash");
    assert_ne!(stored, secret, "stored as a keyed hash");

    let r = app
        .http
        .put(format!("{url}/hue-s?rotate_secret=true"))
        .bearer_auth(&app.operator_token)
        .json(&json!({"client_name": "Hue-S 2", "redirect_uris": ["https://hue-s.example/cb2"]}))
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), 200);
    let updated: Value = r.json().await.expect("json");
    assert_ne!(updated["client_secret"].as_str(), Some(secret), "rotated");
    // A body naming another client is refused, not silently applied to this one.
    let r = app
        .http
        .put(format!("{url}/hue-s"))
        .bearer_auth(&app.operator_token)
        .json(&json!({"client_id": "other", "redirect_uris": ["https://evil.example/cb"]}))
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["error"], "invalid_client_metadata");
    let list: Value = app
        .http
        .get(&url)
        .bearer_auth(&app.operator_token)
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert_eq!(list.as_array().map(Vec::len), Some(1));
    assert_eq!(
        app.http
            .delete(format!("{url}/hue-s"))
            .bearer_auth(&app.operator_token)
            .send()
            .await
            .expect("del")
            .status(),
        204
    );
    assert_eq!(
        app.http
            .delete(format!("{url}/hue-s"))
            .bearer_auth(&app.operator_token)
            .send()
            .await
            .expect("del")
            .status(),
        404
    );
});
