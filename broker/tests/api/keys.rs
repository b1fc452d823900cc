//! Discovery, JWKS and key rotation: a new key is published before it signs; the old one keeps
//! verifying; the emergency rotation removes it at once.

use serde_json::Value;

use broker::tokens::keys::rotation::{rotate, RotationTimings};
use broker::tokens::keys::Alg;

use crate::on_both_backends;
use crate::support::{jwt_parts, TestApp};

async fn jwks(app: &TestApp) -> (Vec<String>, String) {
    let r = app
        .http
        .get(app.endpoint("/jwks"))
        .send()
        .await
        .expect("jwks");
    let cache = r
        .headers()
        .get("cache-control")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body: Value = r.json().await.expect("json");
    let kids = body["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| k["kid"].as_str().expect("kid").to_string())
        .collect();
    (kids, cache)
}

on_both_backends!(discovery_and_jwks, |app: TestApp| async move {
    let d: Value = app
        .http
        .get(app.endpoint("/.well-known/openid-configuration"))
        .send()
        .await
        .expect("discovery")
        .json()
        .await
        .expect("json");
    assert_eq!(d["issuer"], app.url.as_str());
    assert_eq!(
        d["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    assert_eq!(d["authorization_response_iss_parameter_supported"], true);
    let (kids, cache) = jwks(&app).await;
    assert_eq!(kids.len(), 3, "RS256, ES256 and EdDSA keys");
    assert_eq!(cache, "public, max-age=60");
});

on_both_backends!(
    rotation_publishes_first_then_promotes,
    |app: TestApp| async move {
        let client = app.confidential_client().await;
        let ring = app.broker.provider.signer.ring().clone();
        let timings = RotationTimings {
            jwks_max_age: 60,
            longest_token: 300,
        };
        let sign = || async {
            let (_, body) = app
                .token(&client, &[("grant_type", "client_credentials")])
                .await;
            body["access_token"].as_str().expect("at").to_string()
        };
        let before = sign().await;
        let old_kid = jwt_parts(&before).0["kid"]
            .as_str()
            .expect("kid")
            .to_string();
        let now = {
            use broker::clock::Clock;
            app.clock.now()
        };
        let plan = rotate(&ring, Alg::ES256, now, &timings, false)
            .await
            .expect("rotate");
        assert!(
            rotate(&ring, Alg::ES256, now, &timings, false)
                .await
                .is_err(),
            "one rotation at a time"
        );
        let (kids, _) = jwks(&app).await;
        assert!(
            kids.contains(&plan.new_kid) && kids.contains(&old_kid),
            "both published"
        );
        assert_eq!(
            jwt_parts(&sign().await).0["kid"],
            old_kid.as_str(),
            "the new key does not sign before the JWKS cache lifetime"
        );
        app.clock.advance(61);
        let after = sign().await;
        assert_eq!(
            jwt_parts(&after).0["kid"],
            plan.new_kid.as_str(),
            "promoted after the cache lifetime"
        );
        // The old key verifies (retired) until the longest token lifetime has passed.
        let introspect = |token: String| {
            let req = app
                .http
                .post(app.endpoint("/introspect"))
                .basic_auth(&client.id, client.secret.as_deref())
                .form(&[("token", token)]);
            async move {
                req.send()
                    .await
                    .expect("introspect")
                    .json::<Value>()
                    .await
                    .expect("json")["active"]
                    .as_bool()
            }
        };
        assert!(
            jwks(&app).await.0.contains(&old_kid),
            "retired keys stay published"
        );
        assert_eq!(
            introspect(before.clone()).await,
            Some(true),
            "tokens of the retired key still verify"
        );
        app.clock.advance(400);
        assert!(
            !jwks(&app).await.0.contains(&old_kid),
            "removed after the longest token lifetime"
        );

        // Emergency: the new key signs at once and the old one stops verifying at once.
        let current = sign().await;
        let now = {
            use broker::clock::Clock;
            app.clock.now()
        };
        let plan = rotate(&ring, Alg::ES256, now, &timings, true)
            .await
            .expect("emergency rotate");
        assert_eq!(jwt_parts(&sign().await).0["kid"], plan.new_kid.as_str());
        assert_eq!(
            introspect(current).await,
            Some(false),
            "a token of the revoked key no longer verifies"
        );
    }
);
