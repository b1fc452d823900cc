//! /token, /userinfo, /introspect, /revoke: grants, client authentication, replay and reuse.

use serde_json::{json, Value};

use crate::on_both_backends;
use crate::support::browser::{Browser, Pkce};
use crate::support::{jwt_parts, Client, TestApp};

async fn code_for(app: &TestApp, client: &Client, pkce: &Pkce) -> String {
    Browser::new()
        .login(app, client, "C01", pkce, &[])
        .await
        .code()
        .to_string()
}

on_both_backends!(
    code_is_single_use_and_replay_revokes,
    |app: TestApp| async move {
        let client = app.confidential_client().await;
        let pkce = Pkce::new();
        let code = code_for(&app, &client, &pkce).await;
        let (status, tokens) = app.exchange(&client, &code, &pkce.verifier).await;
        assert_eq!(status, 200, "{tokens}");
        let (header, claims) = jwt_parts(tokens["access_token"].as_str().expect("at"));
        assert_eq!(header["typ"], "at+jwt");
        assert_eq!(header["alg"], "ES256");
        assert_eq!(
            claims["aud"],
            json!(["https://api.example", app.url]),
            "the client's API audience, and the broker for userinfo"
        );
        assert!(claims["sid"].is_string());
        let (id_header, _) = jwt_parts(tokens["id_token"].as_str().expect("id"));
        assert_eq!(id_header["alg"], "RS256");
        assert_eq!(
            app.userinfo(tokens["access_token"].as_str().expect("at"))
                .await
                .0,
            200
        );

        let (status, replay) = app.exchange(&client, &code, &pkce.verifier).await;
        assert_eq!(
            (status, replay["error"].as_str()),
            (400, Some("invalid_grant"))
        );
        // What the first exchange issued is revoked.
        assert_eq!(
            app.userinfo(tokens["access_token"].as_str().expect("at"))
                .await
                .0,
            401
        );
        let (_, refreshed) = app
            .token(
                &client,
                &[
                    ("grant_type", "refresh_token"),
                    (
                        "refresh_token",
                        tokens["refresh_token"].as_str().expect("rt"),
                    ),
                ],
            )
            .await;
        assert_eq!(refreshed["error"], "invalid_grant");
    }
);

on_both_backends!(
    pkce_and_binding_failures_change_nothing,
    |app: TestApp| async move {
        let client = app.confidential_client().await;
        let other = app.confidential_client().await;
        let pkce = Pkce::new();
        let code = code_for(&app, &client, &pkce).await;
        let wrong = Pkce::new();
        for (who, form) in [
            (
                &client,
                vec![
                    ("grant_type", "authorization_code"),
                    ("code", code.as_str()),
                    ("redirect_uri", client.redirect_uri.as_str()),
                    ("code_verifier", wrong.verifier.as_str()),
                ],
            ),
            (
                &client,
                vec![
                    ("grant_type", "authorization_code"),
                    ("code", code.as_str()),
                    ("redirect_uri", client.redirect_uri.as_str()),
                ],
            ),
            (
                &client,
                vec![
                    ("grant_type", "authorization_code"),
                    ("code", code.as_str()),
                    ("redirect_uri", "https://app.example/other"),
                    ("code_verifier", pkce.verifier.as_str()),
                ],
            ),
            (
                &other,
                vec![
                    ("grant_type", "authorization_code"),
                    ("code", code.as_str()),
                    ("redirect_uri", client.redirect_uri.as_str()),
                    ("code_verifier", pkce.verifier.as_str()),
                ],
            ),
        ] {
            let (status, body) = app.token(who, &form).await;
            assert_eq!(
                (status, body["error"].as_str()),
                (400, Some("invalid_grant")),
                "{form:?}"
            );
        }
        let (status, _) = app.exchange(&client, &code, &pkce.verifier).await;
        assert_eq!(status, 200, "the failed attempts did not spend the code");

        // RFC 9700 §4.8.2: a verifier for a code issued without a challenge is refused.
        let b = Browser::new();
        let r = b
            .authorize(
                &app,
                &[
                    ("response_type", "code"),
                    ("client_id", &client.id),
                    ("redirect_uri", &client.redirect_uri),
                    ("scope", "openid"),
                    ("login_hint", "C01"),
                ],
            )
            .await;
        let back = b.through_upstream(r).await;
        let code = crate::support::browser::query_of(&crate::support::browser::location(&back))
            ["code"]
            .clone();
        let (status, body) = app.exchange(&client, &code, &Pkce::new().verifier).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_grant"))
        );
    }
);

on_both_backends!(
    refresh_rotation_and_reuse_detection,
    |app: TestApp| async move {
        let client = app.confidential_client().await;
        let other = app.confidential_client().await;
        let pkce = Pkce::new();
        let (_, tokens) = app
            .exchange(
                &client,
                &code_for(&app, &client, &pkce).await,
                &pkce.verifier,
            )
            .await;
        let first = tokens["refresh_token"].as_str().expect("rt").to_string();
        let (status, body) = app
            .token(
                &other,
                &[("grant_type", "refresh_token"), ("refresh_token", &first)],
            )
            .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_grant")),
            "another client's refresh token"
        );
        let (status, second) = app
            .token(
                &client,
                &[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", &first),
                    ("scope", "openid"),
                ],
            )
            .await;
        assert_eq!(status, 200, "{second}");
        assert_eq!(
            second["scope"], "openid",
            "a narrower scope may be asked for"
        );
        let second_rt = second["refresh_token"].as_str().expect("rt").to_string();
        assert_ne!(second_rt, first);
        let (status, _) = app
            .token(
                &client,
                &[("grant_type", "refresh_token"), ("refresh_token", &first)],
            )
            .await;
        assert_eq!(status, 400, "the first token again: a replay");
        // Reusing the first token revoked the family: the second one is dead too.
        let (status, body) = app
            .token(
                &client,
                &[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", &second_rt),
                ],
            )
            .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_grant"))
        );
        assert_eq!(
            app.userinfo(second["access_token"].as_str().expect("at"))
                .await
                .0,
            401
        );
    }
);

on_both_backends!(
    concurrent_rotations_each_win_once,
    |app: TestApp| async move {
        // Rotations arriving together (on PostgreSQL they share one statement): every family
        // rotates, and of several requests with one token exactly one wins.
        let client = app.confidential_client().await;
        let mut tokens = Vec::new();
        for _ in 0..12 {
            let pkce = Pkce::new();
            let (_, body) = app
                .exchange(
                    &client,
                    &code_for(&app, &client, &pkce).await,
                    &pkce.verifier,
                )
                .await;
            tokens.push(body["refresh_token"].as_str().expect("rt").to_string());
        }
        let forms: Vec<[(&str, &str); 2]> = tokens
            .iter()
            .map(|rt| {
                [
                    ("grant_type", "refresh_token"),
                    ("refresh_token", rt.as_str()),
                ]
            })
            .collect();
        let answers =
            futures_util::future::join_all(forms.iter().map(|form| app.token(&client, form))).await;
        let mut next = Vec::new();
        for (status, body) in &answers {
            assert_eq!(*status, 200, "{body}");
            next.push(body["refresh_token"].as_str().expect("rt").to_string());
        }
        let shared = &next[0];
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", shared.as_str()),
        ];
        let answers =
            futures_util::future::join_all((0..8).map(|_| app.token(&client, &form))).await;
        let won: Vec<_> = answers
            .iter()
            .filter(|(status, _)| *status == 200)
            .collect();
        assert_eq!(won.len(), 1, "exactly one rotation wins: {answers:?}");
        for (status, body) in answers.iter().filter(|(status, _)| *status != 200) {
            assert_eq!(
                (*status, body["error"].as_str()),
                (400, Some("invalid_grant"))
            );
        }
        // The others were replays of an earlier generation: the family is revoked.
        let winner = won[0].1["refresh_token"].as_str().expect("rt");
        let (status, _) = app
            .token(
                &client,
                &[("grant_type", "refresh_token"), ("refresh_token", winner)],
            )
            .await;
        assert_eq!(status, 400, "the family was revoked by the replays");
        // The other families go on.
        let (status, body) = app
            .token(
                &client,
                &[("grant_type", "refresh_token"), ("refresh_token", &next[1])],
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
);

on_both_backends!(
    client_credentials_and_client_authentication,
    |app: TestApp| async move {
        let client = app.confidential_client().await;
        let (status, body) = app
            .token(
                &client,
                &[("grant_type", "client_credentials"), ("scope", "api.read")],
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let (_, claims) = jwt_parts(body["access_token"].as_str().expect("at"));
        assert_eq!(
            (claims["sub"].as_str(), claims["aud"].as_str()),
            (Some(client.id.as_str()), Some("https://api.example"))
        );
        let (_, body) = app
            .token(
                &client,
                &[
                    ("grant_type", "client_credentials"),
                    ("resource", "https://other-api.example"),
                ],
            )
            .await;
        assert_eq!(
            jwt_parts(body["access_token"].as_str().expect("at")).1["aud"],
            "https://other-api.example"
        );
        let (status, body) = app
            .token(
                &client,
                &[
                    ("grant_type", "client_credentials"),
                    ("resource", "https://evil.example"),
                ],
            )
            .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_target"))
        );
        let (status, body) = app
            .token(
                &client,
                &[("grant_type", "client_credentials"), ("scope", "openid")],
            )
            .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_scope"))
        );
        let (status, body) = app.token(&client, &[("grant_type", "password")]).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("unsupported_grant_type"))
        );

        // Wrong secret and unknown client look the same.
        let wrong = Client {
            id: client.id.clone(),
            secret: Some("wrong".into()),
            redirect_uri: String::new(),
        };
        let unknown = Client {
            id: "nobody".into(),
            secret: Some("wrong".into()),
            redirect_uri: String::new(),
        };
        for c in [&wrong, &unknown] {
            let r = app
                .http
                .post(app.endpoint("/token"))
                .basic_auth(&c.id, c.secret.as_deref())
                .form(&[("grant_type", "client_credentials")])
                .send()
                .await
                .expect("token");
            assert_eq!(r.status(), 401);
            assert!(r.headers().get("www-authenticate").is_some());
            let body: Value = r.json().await.expect("json");
            assert_eq!(
                body,
                json!({"error": "invalid_client", "error_description": "client authentication failed"})
            );
        }
        // client_secret_post is refused for a client registered for basic.
        let r = app
            .http
            .post(app.endpoint("/token"))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", &client.id),
                (
                    "client_secret",
                    client.secret.as_deref().unwrap_or_default(),
                ),
            ])
            .send()
            .await
            .expect("token");
        assert_eq!(r.status(), 401);
        // Bad bodies: wrong content type, malformed, oversized.
        let r = app
            .http
            .post(app.endpoint("/token"))
            .basic_auth(&client.id, client.secret.as_deref())
            .json(&json!({"grant_type": "client_credentials"}))
            .send()
            .await
            .expect("token");
        assert_eq!(r.status(), 400);
        let r = app
            .http
            .post(app.endpoint("/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("grant_type=client_credentials&grant_type=x")
            .basic_auth(&client.id, client.secret.as_deref())
            .send()
            .await
            .expect("token");
        assert_eq!(r.status(), 400);
        let r = app
            .http
            .post(app.endpoint("/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(vec![b'a'; 200_000])
            .send()
            .await
            .expect("token");
        assert!(r.status().is_client_error(), "oversized: {}", r.status());
    }
);

on_both_backends!(
    private_key_jwt_and_client_secret_post,
    |app: TestApp| async move {
        use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("key");
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
            .expect("key");
        let point = pair.public_key().as_ref();
        let b64 = |b: &[u8]| broker::crypto::b64url(b);
        let jwk = json!({"kty": "EC", "crv": "P-256", "kid": "k1", "x": b64(&point[1..33]), "y": b64(&point[33..])});
        let jwt_client = app
        .client_with(json!({"client_name": "jwt", "redirect_uris": ["https://jwt.example/cb"], "grant_types": ["client_credentials"], "token_endpoint_auth_method": "private_key_jwt", "jwks": {"keys": [jwk]}, "scope": "api.read"}))
        .await;
        let now = {
            use broker::clock::Clock;
            app.clock.now()
        };
        let assertion_with = |jti: &str, aud: Value, nbf: Option<i64>| {
            let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
            header.kid = Some("k1".into());
            let mut claims = json!({"iss": jwt_client.id, "sub": jwt_client.id, "aud": aud, "exp": now + 60, "iat": now, "jti": jti});
            if let Some(nbf) = nbf {
                claims["nbf"] = json!(nbf);
            }
            jsonwebtoken::encode(
                &header,
                &claims,
                &jsonwebtoken::EncodingKey::from_ec_der(pkcs8.as_ref()),
            )
            .expect("sign")
        };
        let assertion = |jti: &str, aud: &str| assertion_with(jti, json!(aud), None);
        let send = |a: String| {
            let http = app.http.clone();
            let url = app.endpoint("/token");
            async move {
                http.post(url)
                    .form(&[
                        ("grant_type", "client_credentials"),
                        (
                            "client_assertion_type",
                            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                        ),
                        ("client_assertion", a.as_str()),
                    ])
                    .send()
                    .await
                    .expect("token")
                    .status()
                    .as_u16()
            }
        };
        let token_endpoint = app.endpoint("/token");
        assert_eq!(send(assertion("j1", &app.url)).await, 200);
        assert_eq!(
            send(assertion("j1", &app.url)).await,
            401,
            "a replayed assertion is refused"
        );
        assert_eq!(
            send(assertion("j2", "https://elsewhere.example")).await,
            401,
            "wrong audience"
        );
        // Only the issuer, as a single string (the audience-injection advisory of February 2025).
        assert_eq!(
            send(assertion("j3", &token_endpoint)).await,
            401,
            "the token endpoint URL is not the audience"
        );
        assert_eq!(
            send(assertion_with("j4", json!([app.url]), None)).await,
            401,
            "an array, even of the issuer alone"
        );
        assert_eq!(
            send(assertion_with(
                "j5",
                json!([app.url, "https://elsewhere.example"]),
                None
            ))
            .await,
            401
        );
        // RFC 7519 §4.1.5: not before `nbf`.
        assert_eq!(
            send(assertion_with("j6", json!(app.url), Some(now + 3600))).await,
            401,
            "nbf an hour ahead"
        );
        assert_eq!(
            send(assertion_with("j7", json!(app.url), Some(now + 1))).await,
            401,
            "nbf just ahead"
        );
        assert_eq!(
            send(assertion_with("j8", json!(app.url), Some(now))).await,
            200,
            "nbf now"
        );

        let post_client = app
        .client_with(json!({"client_name": "post", "redirect_uris": ["https://post.example/cb"], "grant_types": ["client_credentials"], "token_endpoint_auth_method": "client_secret_post", "scope": "api.read"}))
        .await;
        let r = app
            .http
            .post(app.endpoint("/token"))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", &post_client.id),
                (
                    "client_secret",
                    post_client.secret.as_deref().unwrap_or_default(),
                ),
            ])
            .send()
            .await
            .expect("token");
        assert_eq!(r.status(), 200);
    }
);

on_both_backends!(
    introspection_and_revocation_rules,
    |app: TestApp| async move {
        let client = app.confidential_client().await;
        let stranger = app
        .client_with(json!({"client_name": "stranger", "redirect_uris": ["https://stranger.example/cb"], "grant_types": ["client_credentials"], "scope": "api.read"}))
        .await;
        let resource_server = app
        .client_with(json!({"client_name": "api", "redirect_uris": ["https://api.example/cb"], "grant_types": ["client_credentials"], "introspection_audiences": ["https://api.example"], "scope": "api.read"}))
        .await;
        let pkce = Pkce::new();
        let (_, tokens) = app
            .exchange(
                &client,
                &code_for(&app, &client, &pkce).await,
                &pkce.verifier,
            )
            .await;
        let at = tokens["access_token"].as_str().expect("at").to_string();
        let rt = tokens["refresh_token"].as_str().expect("rt").to_string();
        let introspect = |who: &Client, token: &str| {
            let req = app
                .http
                .post(app.endpoint("/introspect"))
                .basic_auth(&who.id, who.secret.as_deref())
                .form(&[("token", token.to_string())]);
            async move {
                let r = req.send().await.expect("introspect");
                (
                    r.status().as_u16(),
                    r.json::<Value>().await.unwrap_or(Value::Null),
                )
            }
        };
        let (status, own) = introspect(&client, &at).await;
        assert_eq!((status, own["active"].as_bool()), (200, Some(true)));
        assert_eq!(own["client_id"], client.id.as_str());
        assert_eq!(
            introspect(&stranger, &at).await.1,
            json!({"active": false}),
            "not issued to it nor meant for it"
        );
        assert_eq!(
            introspect(&resource_server, &at).await.1["active"],
            true,
            "meant for it (aud)"
        );
        assert_eq!(
            introspect(&client, &rt).await.1["token_type"],
            "refresh_token"
        );
        assert_eq!(introspect(&stranger, &rt).await.1, json!({"active": false}));
        assert_eq!(
            introspect(&client, "garbage").await.1,
            json!({"active": false})
        );
        let r = app
            .http
            .post(app.endpoint("/introspect"))
            .form(&[("token", at.as_str())])
            .send()
            .await
            .expect("introspect");
        assert_eq!(r.status(), 401, "only authenticated callers");

        let revoke = |who: &Client, token: &str| {
            let req = app
                .http
                .post(app.endpoint("/revoke"))
                .basic_auth(&who.id, who.secret.as_deref())
                .form(&[("token", token.to_string())]);
            async move { req.send().await.expect("revoke").status().as_u16() }
        };
        assert_eq!(revoke(&stranger, &at).await, 200);
        assert_eq!(
            app.userinfo(&at).await.0,
            200,
            "another client cannot revoke it"
        );
        assert_eq!(revoke(&client, &at).await, 200);
        assert_eq!(
            app.userinfo(&at).await.0,
            401,
            "a revoked access token is refused"
        );
        assert_eq!(introspect(&client, &at).await.1, json!({"active": false}));
        assert_eq!(revoke(&stranger, &rt).await, 200);
        assert_eq!(introspect(&client, &rt).await.1["active"], true);
        assert_eq!(revoke(&client, &rt).await, 200);
        let (_, body) = app
            .token(
                &client,
                &[("grant_type", "refresh_token"), ("refresh_token", &rt)],
            )
            .await;
        assert_eq!(body["error"], "invalid_grant");
        assert_eq!(revoke(&client, "unknown-token").await, 200);
        let (status, _) = app.userinfo("not.a.jwt").await;
        assert_eq!(status, 401);
    }
);

on_both_backends!(
    id_token_algorithm_is_per_client,
    |app: TestApp| async move {
        for alg in ["ES256", "EdDSA"] {
            let client = app
            .client_with(json!({"client_name": alg, "redirect_uris": ["https://alg.example/cb"], "id_token_signed_response_alg": alg, "scope": "openid profile"}))
            .await;
            let pkce = Pkce::new();
            let (status, tokens) = app
                .exchange(
                    &client,
                    &code_for(&app, &client, &pkce).await,
                    &pkce.verifier,
                )
                .await;
            assert_eq!(status, 200);
            let (header, claims) = jwt_parts(tokens["id_token"].as_str().expect("id_token"));
            assert_eq!(header["alg"], alg);
            assert!(claims["at_hash"].is_string());
        }
    }
);

on_both_backends!(
    expired_tokens_are_purged_but_live_ones_stay,
    |app: TestApp| async move {
        let client = app.confidential_client().await;
        let pkce = Pkce::new();
        let (_, tokens) = app
            .exchange(
                &client,
                &code_for(&app, &client, &pkce).await,
                &pkce.verifier,
            )
            .await;
        let now = {
            use broker::clock::Clock;
            app.clock.now()
        };
        let grants = &app.broker.provider.grants;
        assert_eq!(
            grants.purge_expired(now).await.expect("purge"),
            0,
            "nothing has expired yet"
        );
        assert_eq!(refresh_credentials(&app).await, 1);
        let (status, _) = app
            .token(
                &client,
                &[
                    ("grant_type", "refresh_token"),
                    (
                        "refresh_token",
                        tokens["refresh_token"].as_str().expect("rt"),
                    ),
                ],
            )
            .await;
        assert_eq!(status, 200, "still usable after a purge");
        let far = now + 365 * 24 * 3600;
        assert_eq!(
            grants.purge_expired(far).await.expect("purge"),
            1,
            "the expired refresh credential"
        );
        assert_eq!(refresh_credentials(&app).await, 0);
        assert_eq!(app.count("grants").await, 1, "grants stay as the record");
    }
);

async fn refresh_credentials(app: &TestApp) -> i64 {
    use sqlx::Row;
    sqlx::query("SELECT COUNT(*) AS n FROM grants WHERE refresh_generation IS NOT NULL")
        .fetch_one(&app.app_db.pool())
        .await
        .expect("count")
        .try_get::<i64, _>("n")
        .expect("n")
}

on_both_backends!(
    a_forged_refresh_token_revokes_nothing,
    |app: TestApp| async move {
        let client = app.confidential_client().await;
        let pkce = Pkce::new();
        let (_, tokens) = app
            .exchange(
                &client,
                &code_for(&app, &client, &pkce).await,
                &pkce.verifier,
            )
            .await;
        let rt = tokens["refresh_token"].as_str().expect("rt").to_string();
        // The grant id is no secret (it is in the access token); a token built from it is refused
        // and does not count as a replay of the family.
        let gid = jwt_parts(tokens["access_token"].as_str().expect("at")).1["gid"]
            .as_str()
            .expect("gid")
            .to_string();
        assert!(rt.starts_with(&gid));
        for forged in [
            format!("{gid}.0.{}", "A".repeat(43)),
            format!("{gid}.-1.{}", "A".repeat(43)),
            format!("{gid}.1"),
            rt.replacen(".0.", ".1.", 1),
        ] {
            let (status, body) = app
                .token(
                    &client,
                    &[("grant_type", "refresh_token"), ("refresh_token", &forged)],
                )
                .await;
            assert_eq!(
                (status, body["error"].as_str()),
                (400, Some("invalid_grant")),
                "{forged}"
            );
        }
        let (status, _) = app
            .token(
                &client,
                &[("grant_type", "refresh_token"), ("refresh_token", &rt)],
            )
            .await;
        assert_eq!(status, 200, "the family is intact");
    }
);

on_both_backends!(
    userinfo_accepts_only_tokens_meant_for_it,
    |app: TestApp| async move {
        // A token for another API (client_credentials, aud = the API) is refused at userinfo.
        let client = app.confidential_client().await;
        let (_, cc) = app
            .token(&client, &[("grant_type", "client_credentials")])
            .await;
        assert_eq!(
            app.userinfo(cc["access_token"].as_str().expect("at"))
                .await
                .0,
            401
        );
        // A user token that also goes to an API works at userinfo, without the personal ID number.
        let pkce = Pkce::new();
        let cb = Browser::new()
            .login(
                &app,
                &client,
                "C01",
                &pkce,
                &[("scope", "openid profile personal_id")],
            )
            .await;
        let (_, shared) = app.exchange(&client, cb.code(), &pkce.verifier).await;
        let (status, info) = app
            .userinfo(shared["access_token"].as_str().expect("at"))
            .await;
        assert_eq!(status, 200);
        assert!(
            info.get("personal_id").is_none(),
            "not released through a token an API also holds: {info}"
        );
        assert_eq!(
            jwt_parts(shared["id_token"].as_str().expect("id")).1["personal_id"],
            "046085690467",
            "the RP has it in its ID token"
        );
        // A client without an API audience gets a token only for the broker, and userinfo releases it.
        let own = app
        .client_with(json!({"client_name": "own", "redirect_uris": ["https://own.example/cb"], "scope": "openid profile personal_id"}))
        .await;
        let pkce = Pkce::new();
        let cb = Browser::new()
            .login(
                &app,
                &own,
                "C01",
                &pkce,
                &[("scope", "openid profile personal_id")],
            )
            .await;
        let (_, tokens) = app.exchange(&own, cb.code(), &pkce.verifier).await;
        let (status, info) = app
            .userinfo(tokens["access_token"].as_str().expect("at"))
            .await;
        assert_eq!(
            (status, info["personal_id"].as_str()),
            (200, Some("046085690467"))
        );
    }
);

on_both_backends!(
    requests_the_grant_cannot_satisfy_change_nothing,
    |app: TestApp| async move {
        let client = app.confidential_client().await;
        let pkce = Pkce::new();
        let code = code_for(&app, &client, &pkce).await;
        let (status, body) = app
            .token(
                &client,
                &[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("redirect_uri", &client.redirect_uri),
                    ("code_verifier", &pkce.verifier),
                    ("resource", "https://other-api.example"),
                ],
            )
            .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_target")),
            "not the resource of the authorization"
        );
        let (status, tokens) = app.exchange(&client, &code, &pkce.verifier).await;
        assert_eq!(status, 200, "the code was not spent");
        let rt = tokens["refresh_token"].as_str().expect("rt").to_string();
        for (key, value, error) in [
            ("scope", "openid admin", "invalid_scope"),
            ("resource", "https://other-api.example", "invalid_target"),
        ] {
            let (status, body) = app
                .token(
                    &client,
                    &[
                        ("grant_type", "refresh_token"),
                        ("refresh_token", &rt),
                        (key, value),
                    ],
                )
                .await;
            assert_eq!((status, body["error"].as_str()), (400, Some(error)));
        }
        let (status, _) = app
            .token(
                &client,
                &[("grant_type", "refresh_token"), ("refresh_token", &rt)],
            )
            .await;
        assert_eq!(
            status, 200,
            "the family did not move on, so this is not a replay"
        );
    }
);

on_both_backends!(public_native_client_with_pkce, |app: TestApp| async move {
    let client = app.public_client().await;
    assert!(client.secret.is_none(), "public clients get no secret");
    let pkce = Pkce::new();
    let cb = Browser::new().login(&app, &client, "C01", &pkce, &[]).await;
    // Without the verifier the code is worthless to whoever intercepted the redirect.
    let (status, body) = app
        .token(
            &client,
            &[
                ("grant_type", "authorization_code"),
                ("code", cb.code()),
                ("redirect_uri", &client.redirect_uri),
            ],
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let (status, tokens) = app.exchange(&client, cb.code(), &pkce.verifier).await;
    assert_eq!(status, 200, "{tokens}");
    let (status, refreshed) = app
        .token(
            &client,
            &[
                ("grant_type", "refresh_token"),
                (
                    "refresh_token",
                    tokens["refresh_token"].as_str().expect("rt"),
                ),
            ],
        )
        .await;
    assert_eq!(status, 200, "{refreshed}");
    // A public client cannot ask for client_credentials, nor pretend to have a secret.
    let (status, body) = app
        .token(&client, &[("grant_type", "client_credentials")])
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unauthorized_client"))
    );
    let r = app
        .http
        .post(app.endpoint("/token"))
        .basic_auth(&client.id, Some("made-up"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("token");
    assert_eq!(r.status(), 401);
});

/// A rotation on PostgreSQL is a heap-only update: it changes no indexed column, and the table
/// keeps room on its pages, so the row is rewritten on its own page and no index is touched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotations_stay_on_their_page() {
    use sqlx::Row;
    let Some(app) = TestApp::spawn_production().await else {
        return;
    };
    let pool = &app.app_db.pool();
    let options: String = sqlx::query(
        "SELECT COALESCE(array_to_string(reloptions, ','), '') AS o FROM pg_class \
         WHERE relname = 'grants' AND relkind = 'r'",
    )
    .fetch_one(pool)
    .await
    .expect("reloptions")
    .get("o");
    assert!(options.contains("fillfactor=70"), "{options}");
    let indexed: Vec<String> = sqlx::query(
        "SELECT indexdef FROM pg_indexes WHERE tablename = 'grants' \
         AND (indexdef LIKE '%refresh_generation%' OR indexdef LIKE '%rotated_at%')",
    )
    .fetch_all(pool)
    .await
    .expect("indexes")
    .iter()
    .map(|r| r.get("indexdef"))
    .collect();
    assert!(indexed.is_empty(), "a rotation would touch {indexed:?}");

    let client = app.confidential_client().await;
    let pkce = Pkce::new();
    let (_, body) = app
        .exchange(
            &client,
            &code_for(&app, &client, &pkce).await,
            &pkce.verifier,
        )
        .await;
    let gid = jwt_parts(body["access_token"].as_str().expect("at")).1["gid"]
        .as_str()
        .expect("gid")
        .to_string();
    let page = || async {
        sqlx::query("SELECT (ctid::text::point)[0]::bigint AS page FROM grants WHERE id = $1")
            .bind(&gid)
            .fetch_one(pool)
            .await
            .expect("ctid")
            .get::<i64, _>("page")
    };
    let before = page().await;
    let mut rt = body["refresh_token"].as_str().expect("rt").to_string();
    for _ in 0..5 {
        let (status, body) = app
            .token(
                &client,
                &[("grant_type", "refresh_token"), ("refresh_token", &rt)],
            )
            .await;
        assert_eq!(status, 200, "{body}");
        rt = body["refresh_token"].as_str().expect("rt").to_string();
    }
    assert_eq!(page().await, before, "the row left its page");
}
