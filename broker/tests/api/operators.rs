//! Operators of the admin API: the bootstrap token only creates (and lists) operators, each
//! operator's token works until revoked and not a request longer, and audited changes name
//! their operator.

use serde_json::{json, Value};

use crate::on_both_backends;
use crate::support::TestApp;

async fn create_operator(app: &TestApp, token: &str, name: &str) -> reqwest::Response {
    app.http
        .post(app.endpoint("/admin/operators"))
        .bearer_auth(token)
        .json(&json!({ "name": name }))
        .send()
        .await
        .expect("create operator")
}

async fn create_client(app: &TestApp, token: &str, client_id: &str) -> reqwest::Response {
    app.http
        .post(app.endpoint("/admin/clients"))
        .bearer_auth(token)
        .json(&json!({"client_id": client_id, "redirect_uris": ["https://app.example/cb"]}))
        .send()
        .await
        .expect("create client")
}

async fn actor_of(app: &TestApp, kind: &str) -> Vec<Option<String>> {
    use sqlx::Row;
    sqlx::query("SELECT actor FROM audit_log WHERE kind = $1 ORDER BY id")
        .bind(kind)
        .fetch_all(&app.app_db.pool())
        .await
        .expect("audit")
        .iter()
        .map(|r| r.try_get::<Option<String>, _>("actor").expect("actor"))
        .collect()
}

on_both_backends!(operators_and_their_tokens, |app: TestApp| async move {
    // The bootstrap token: operators only.
    let r = create_client(&app, &app.admin_token, "by-bootstrap").await;
    assert_eq!(r.status(), 403, "the bootstrap token cannot create clients");
    let r = app
        .http
        .get(app.endpoint("/admin/clients"))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .expect("list");
    assert_eq!(r.status(), 403);
    let r = create_operator(&app, &app.admin_token, "an.nguyen").await;
    assert_eq!(r.status(), 201);
    assert_eq!(
        r.headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
    let created: Value = r.json().await.expect("json");
    let token = created["token"]
        .as_str()
        .expect("token shown once")
        .to_string();
    assert_eq!(token.len(), 43, "256 bits, base64url");
    // The harness made operator `tester` the same way.
    assert_eq!(
        actor_of(&app, "operator.created").await,
        [Some("bootstrap".to_string()), Some("bootstrap".to_string())]
    );
    assert_eq!(
        create_operator(&app, &app.admin_token, "an.nguyen")
            .await
            .status(),
        409,
        "names are unique"
    );
    assert_eq!(
        create_operator(&app, &app.admin_token, "Bad Name")
            .await
            .status(),
        400
    );
    assert_eq!(
        create_operator(&app, &app.admin_token, "bootstrap")
            .await
            .status(),
        400
    );

    // Stored as a keyed hash, listed without it.
    use sqlx::Row;
    let stored: String = sqlx::query("SELECT token_hash FROM operators WHERE name = 'an.nguyen'")
        .fetch_one(&app.app_db.pool())
        .await
        .expect("row")
        .try_get("token_hash")
        .expect("hash");
    assert_ne!(stored, token);
    assert_ne!(
        stored,
        broker::crypto::sha256_b64url(&token),
        "keyed, not a plain digest"
    );
    let list = app
        .http
        .get(app.endpoint("/admin/operators"))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .expect("list")
        .text()
        .await
        .expect("body");
    assert!(list.contains("an.nguyen") && !list.contains(&token) && !list.contains(&stored));

    // The operator's token administers clients, and the audit log names them.
    let r = create_client(&app, &token, "hue-s").await;
    assert_eq!(r.status(), 201);
    let r = app
        .http
        .put(app.endpoint("/admin/clients/hue-s"))
        .bearer_auth(&token)
        .json(&json!({"redirect_uris": ["https://app.example/cb2"]}))
        .send()
        .await
        .expect("update");
    assert_eq!(r.status(), 200);
    assert_eq!(
        actor_of(&app, "client.created").await,
        [Some("an.nguyen".to_string())]
    );
    assert_eq!(
        actor_of(&app, "client.updated").await,
        [Some("an.nguyen".to_string())]
    );
    let r = app
        .http
        .delete(app.endpoint("/admin/clients/hue-s"))
        .bearer_auth(&app.operator_token)
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), 204);
    assert_eq!(
        actor_of(&app, "client.deleted").await,
        [Some("tester".to_string())]
    );

    // The bootstrap token cannot revoke; an operator can, and it takes effect at once.
    let revoke = |token: String| {
        let http = app.http.clone();
        let url = app.endpoint("/admin/operators/an.nguyen");
        async move {
            http.delete(url)
                .bearer_auth(token)
                .send()
                .await
                .expect("revoke")
        }
    };
    assert_eq!(revoke(app.admin_token.clone()).await.status(), 403);
    assert_eq!(revoke(app.operator_token.clone()).await.status(), 204);
    assert_eq!(
        actor_of(&app, "operator.revoked").await,
        [Some("tester".to_string())]
    );
    assert_eq!(
        revoke(app.operator_token.clone()).await.status(),
        404,
        "already revoked"
    );
    let r = create_client(&app, &token, "after-revocation").await;
    assert_eq!(r.status(), 401, "a revoked token is refused");
    assert!(r
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("Bearer")));
    assert_eq!(app.count("clients").await, 0);

    // No token, a wrong one, another scheme.
    for auth in [None, Some("Bearer nope"), Some("Basic dGVzdA==")] {
        let mut request = app.http.get(app.endpoint("/admin/operators"));
        if let Some(value) = auth {
            request = request.header("authorization", value);
        }
        let r = request.send().await.expect("list");
        assert_eq!(r.status(), 401, "{auth:?}");
        assert!(r.headers().get("www-authenticate").is_some());
    }
});
