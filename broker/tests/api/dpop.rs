//! DPoP (RFC 9449) through HTTP: a mobile app's key binds its access tokens and its refresh
//! family, so a copied token is useless without the key; every proof rule is refused once.

use broker::clock::Clock;
use serde_json::{json, Value};

use crate::on_both_backends;
use crate::support::browser::{Browser, Pkce};
use crate::support::dpop::DpopKey;
use crate::support::{jwt_parts, Client, TestApp};

async fn code_for(app: &TestApp, client: &Client, pkce: &Pkce, extra: &[(&str, &str)]) -> String {
    Browser::new()
        .login(app, client, "C01", pkce, extra)
        .await
        .code()
        .to_string()
}

fn exchange_form<'a>(client: &'a Client, code: &'a str, pkce: &'a Pkce) -> Vec<(&'a str, &'a str)> {
    vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", client.redirect_uri.as_str()),
        ("code_verifier", pkce.verifier.as_str()),
    ]
}

fn refresh_form(token: &str) -> Vec<(&str, &str)> {
    vec![("grant_type", "refresh_token"), ("refresh_token", token)]
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_else(|| panic!("{key} in {v}"))
}

fn error(answer: &(u16, Value)) -> (u16, Option<&str>) {
    (answer.0, answer.1["error"].as_str())
}

/// A public client's tokens from a code exchanged with a proof of `key`.
async fn bound_tokens(app: &TestApp, client: &Client, key: &DpopKey) -> Value {
    let pkce = Pkce::new();
    let code = code_for(app, client, &pkce, &[]).await;
    let proof = key.proof(app, "POST", "/token", None);
    let (status, tokens) = app
        .token_dpop(client, &exchange_form(client, &code, &pkce), &[&proof])
        .await;
    assert_eq!(status, 200, "{tokens}");
    tokens
}

on_both_backends!(
    code_exchange_binds_and_only_the_key_refreshes,
    |app: TestApp| async move {
        let discovery: Value = app
            .http
            .get(app.endpoint("/.well-known/openid-configuration"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            discovery["dpop_signing_alg_values_supported"],
            json!(["ES256", "PS256", "RS256", "EdDSA"])
        );
        let client = app.public_client().await;
        let key = DpopKey::new();
        let tokens = bound_tokens(&app, &client, &key).await;
        assert_eq!(tokens["token_type"], "DPoP");
        let (_, claims) = jwt_parts(str_of(&tokens, "access_token"));
        assert_eq!(claims["cnf"], json!({"jkt": key.jkt()}), "RFC 9449 §6.1");

        // Without a proof, or with another key's, the refresh token is refused and the family
        // does not move.
        let rt = str_of(&tokens, "refresh_token");
        let answer = app.token(&client, &refresh_form(rt)).await;
        assert_eq!(
            error(&answer),
            (400, Some("invalid_dpop_proof")),
            "{}",
            answer.1
        );
        let thief = DpopKey::new();
        let answer = app
            .token_dpop(
                &client,
                &refresh_form(rt),
                &[&thief.proof(&app, "POST", "/token", None)],
            )
            .await;
        assert_eq!(error(&answer), (400, Some("invalid_grant")), "{}", answer.1);

        // The holder of the key still refreshes with the same token.
        let (status, refreshed) = app
            .token_dpop(
                &client,
                &refresh_form(rt),
                &[&key.proof(&app, "POST", "/token", None)],
            )
            .await;
        assert_eq!(status, 200, "{refreshed}");
        assert_eq!(refreshed["token_type"], "DPoP");
        let (_, claims) = jwt_parts(str_of(&refreshed, "access_token"));
        assert_eq!(claims["cnf"]["jkt"], key.jkt());

        // The old token, copied off the device, presented without the key: refused, and it
        // does not even end the family (it proves nothing about the key holder).
        let answer = app
            .token_dpop(
                &client,
                &refresh_form(rt),
                &[&thief.proof(&app, "POST", "/token", None)],
            )
            .await;
        assert_eq!(error(&answer), (400, Some("invalid_grant")));
        let answer = app.token(&client, &refresh_form(rt)).await;
        assert_eq!(error(&answer), (400, Some("invalid_dpop_proof")));
        let current = str_of(&refreshed, "refresh_token");
        let (status, again) = app
            .token_dpop(
                &client,
                &refresh_form(current),
                &[&key.proof(&app, "POST", "/token", None)],
            )
            .await;
        assert_eq!(status, 200, "{again}");

        // The old token with the key is a real replay: the family is revoked (RFC 9700 §4.14.2).
        let answer = app
            .token_dpop(
                &client,
                &refresh_form(rt),
                &[&key.proof(&app, "POST", "/token", None)],
            )
            .await;
        assert_eq!(error(&answer), (400, Some("invalid_grant")));
        let answer = app
            .token_dpop(
                &client,
                &refresh_form(str_of(&again, "refresh_token")),
                &[&key.proof(&app, "POST", "/token", None)],
            )
            .await;
        assert_eq!(
            error(&answer),
            (400, Some("invalid_grant")),
            "the family is revoked"
        );
    }
);

on_both_backends!(a_proof_is_used_once, |app: TestApp| async move {
    let client = app.public_client().await;
    let key = DpopKey::new();
    let pkce = Pkce::new();
    let code = code_for(&app, &client, &pkce, &[]).await;
    let proof = key.proof(&app, "POST", "/token", None);
    let (status, tokens) = app
        .token_dpop(&client, &exchange_form(&client, &code, &pkce), &[&proof])
        .await;
    assert_eq!(status, 200, "{tokens}");
    let rt = str_of(&tokens, "refresh_token");
    let answer = app.token_dpop(&client, &refresh_form(rt), &[&proof]).await;
    assert_eq!(
        error(&answer),
        (400, Some("invalid_dpop_proof")),
        "{}",
        answer.1
    );
    assert!(str_of(&answer.1, "error_description").contains("already used"));
    // The family is unchanged: a fresh proof refreshes.
    let (status, _) = app
        .token_dpop(
            &client,
            &refresh_form(rt),
            &[&key.proof(&app, "POST", "/token", None)],
        )
        .await;
    assert_eq!(status, 200);
});

on_both_backends!(
    bad_proofs_are_refused_and_spend_nothing,
    |app: TestApp| async move {
        let client = app.public_client().await;
        let key = DpopKey::new();
        let pkce = Pkce::new();
        let code = code_for(&app, &client, &pkce, &[]).await;
        let now = app.clock.now();
        let token_url = app.endpoint("/token");
        let good = |claims: Value| key.sign(&key.header(), &claims);
        let with_header = |change: &dyn Fn(&mut Value)| {
            let mut header = key.header();
            change(&mut header);
            key.sign(&header, &DpopKey::claims("POST", &token_url, now, None))
        };
        let unsigned = {
            let mut header = key.header();
            header["alg"] = json!("none");
            let b64 = |v: &Value| {
                use base64::Engine;
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .encode(serde_json::to_vec(v).unwrap())
            };
            format!(
                "{}.{}.",
                b64(&header),
                b64(&DpopKey::claims("POST", &token_url, now, None))
            )
        };
        let cases: Vec<(&str, String)> = vec![
            ("htm", good(DpopKey::claims("GET", &token_url, now, None))),
            (
                "htu of another endpoint",
                good(DpopKey::claims(
                    "POST",
                    &app.endpoint("/userinfo"),
                    now,
                    None,
                )),
            ),
            (
                "htu of another server",
                good(DpopKey::claims(
                    "POST",
                    "https://id.example.vn/token",
                    now,
                    None,
                )),
            ),
            (
                "iat too old",
                good(DpopKey::claims("POST", &token_url, now - 61, None)),
            ),
            (
                "iat ahead",
                good(DpopKey::claims("POST", &token_url, now + 30, None)),
            ),
            ("typ", with_header(&|h| h["typ"] = json!("JWT"))),
            ("alg none", unsigned),
            ("alg HS256", with_header(&|h| h["alg"] = json!("HS256"))),
            (
                "private jwk",
                with_header(&|h| h["jwk"]["d"] = json!("AAAA")),
            ),
            (
                "another key's jwk",
                with_header(&|h| h["jwk"] = DpopKey::new().jwk),
            ),
            (
                "no jwk",
                with_header(&|h| {
                    h.as_object_mut().unwrap().remove("jwk");
                }),
            ),
            ("garbage", "not-a-jws".to_string()),
            ("oversized", "a".repeat(9000)),
        ];
        for (what, proof) in &cases {
            let answer = app
                .token_dpop(&client, &exchange_form(&client, &code, &pkce), &[proof])
                .await;
            assert_eq!(
                error(&answer),
                (400, Some("invalid_dpop_proof")),
                "{what}: {}",
                answer.1
            );
        }
        // Two DPoP headers (§4.3 point 1), each good on its own.
        let one = key.proof(&app, "POST", "/token", None);
        let two = key.proof(&app, "POST", "/token", None);
        let answer = app
            .token_dpop(
                &client,
                &exchange_form(&client, &code, &pkce),
                &[&one, &two],
            )
            .await;
        assert_eq!(
            error(&answer),
            (400, Some("invalid_dpop_proof")),
            "two headers"
        );

        // htu comes from the configured issuer, never from the Host header.
        let forged_host = "attacker.example";
        let proof = good(DpopKey::claims(
            "POST",
            &format!("http://{forged_host}/token"),
            now,
            None,
        ));
        let response = app
            .http
            .post(app.endpoint("/token"))
            .header("Host", forged_host)
            .header("DPoP", proof)
            .form(
                &[
                    exchange_form(&client, &code, &pkce),
                    vec![("client_id", client.id.as_str())],
                ]
                .concat(),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "invalid_dpop_proof", "{body}");

        // None of that used the code up.
        let (status, tokens) = app
            .token_dpop(
                &client,
                &exchange_form(&client, &code, &pkce),
                &[&key.proof(&app, "POST", "/token", None)],
            )
            .await;
        assert_eq!(status, 200, "{tokens}");
        assert_eq!(tokens["token_type"], "DPoP");
    }
);

on_both_backends!(
    userinfo_takes_bound_tokens_only_with_a_proof,
    |app: TestApp| async move {
        let client = app.public_client().await;
        let key = DpopKey::new();
        let tokens = bound_tokens(&app, &client, &key).await;
        let at = str_of(&tokens, "access_token");
        let proof = |k: &DpopKey, htm: &str, token: Option<&str>| {
            k.sign(
                &k.header(),
                &DpopKey::claims(htm, &app.endpoint("/userinfo"), app.clock.now(), token),
            )
        };

        let (status, body, _) = app
            .userinfo_with("DPoP", at, Some(&proof(&key, "GET", Some(at))))
            .await;
        assert_eq!(status, 200, "{body}");
        assert!(body["sub"].is_string());

        // A bound token as a bearer token is only a copy.
        let (status, body, challenge) = app.userinfo_with("Bearer", at, None).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("invalid_token"))
        );
        assert!(challenge.starts_with("Bearer"), "{challenge}");

        for (what, sent) in [
            ("no proof", None),
            ("another key", Some(proof(&DpopKey::new(), "GET", Some(at)))),
            ("no ath", Some(proof(&key, "GET", None))),
            (
                "ath of another token",
                Some(proof(&key, "GET", Some("another-token"))),
            ),
            ("htm", Some(proof(&key, "POST", Some(at)))),
        ] {
            let (status, body, challenge) = app.userinfo_with("DPoP", at, sent.as_deref()).await;
            assert_eq!(
                (status, body["error"].as_str()),
                (401, Some("invalid_dpop_proof")),
                "{what}: {body}"
            );
            assert!(
                challenge.starts_with("DPoP ")
                    && challenge.contains("error=\"invalid_dpop_proof\""),
                "{what}: {challenge}"
            );
        }
        // A proof is used once at the resource too.
        let once = proof(&key, "GET", Some(at));
        assert_eq!(app.userinfo_with("DPoP", at, Some(&once)).await.0, 200);
        assert_eq!(app.userinfo_with("DPoP", at, Some(&once)).await.0, 401);

        // An unbound token under the DPoP scheme is refused; as a bearer token it works.
        let pkce = Pkce::new();
        let code = code_for(&app, &client, &pkce, &[]).await;
        let (status, plain) = app.exchange(&client, &code, &pkce.verifier).await;
        assert_eq!(status, 200);
        assert_eq!(plain["token_type"], "Bearer");
        let plain_at = str_of(&plain, "access_token");
        let (status, body, _) = app
            .userinfo_with("DPoP", plain_at, Some(&proof(&key, "GET", Some(plain_at))))
            .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("invalid_token"))
        );
        assert_eq!(app.userinfo(plain_at).await.0, 200);
    }
);

on_both_backends!(
    dpop_jkt_binds_the_code_to_the_key,
    |app: TestApp| async move {
        let client = app.public_client().await;
        let key = DpopKey::new();
        let jkt = key.jkt();
        let pkce = Pkce::new();
        let code = code_for(&app, &client, &pkce, &[("dpop_jkt", jkt.as_str())]).await;
        let form = exchange_form(&client, &code, &pkce);
        let answer = app.token(&client, &form).await;
        assert_eq!(
            error(&answer),
            (400, Some("invalid_dpop_proof")),
            "{}",
            answer.1
        );
        let answer = app
            .token_dpop(
                &client,
                &form,
                &[&DpopKey::new().proof(&app, "POST", "/token", None)],
            )
            .await;
        assert_eq!(error(&answer), (400, Some("invalid_grant")), "{}", answer.1);
        let (status, tokens) = app
            .token_dpop(&client, &form, &[&key.proof(&app, "POST", "/token", None)])
            .await;
        assert_eq!(status, 200, "the failures did not use the code: {tokens}");
        assert_eq!(tokens["token_type"], "DPoP");

        // A malformed dpop_jkt goes back to the client as invalid_request.
        let response = Browser::new()
            .authorize(
                &app,
                &crate::support::browser::code_request(
                    &client,
                    &pkce,
                    &[("dpop_jkt", "not-a-thumbprint")],
                ),
            )
            .await;
        assert_eq!(response.status(), 303);
        let target = crate::support::browser::location(&response);
        assert!(target.contains("error=invalid_request"), "{target}");
    }
);

on_both_backends!(
    dpop_bound_access_tokens_client_must_send_a_proof,
    |app: TestApp| async move {
        let client = app
            .client_with(json!({
                "client_name": "mobile app",
                "application_type": "native",
                "redirect_uris": ["vn.hue.s:/oauth"],
                "token_endpoint_auth_method": "none",
                "scope": "openid profile",
                "dpop_bound_access_tokens": true
            }))
            .await;
        let pkce = Pkce::new();
        let code = code_for(&app, &client, &pkce, &[]).await;
        let form = exchange_form(&client, &code, &pkce);
        let answer = app.token(&client, &form).await;
        assert_eq!(
            error(&answer),
            (400, Some("invalid_dpop_proof")),
            "{}",
            answer.1
        );
        let key = DpopKey::new();
        let (status, tokens) = app
            .token_dpop(&client, &form, &[&key.proof(&app, "POST", "/token", None)])
            .await;
        assert_eq!(status, 200, "{tokens}");
        assert_eq!(tokens["token_type"], "DPoP");
    }
);

on_both_backends!(
    confidential_clients_get_bound_access_tokens_and_an_unbound_family,
    |app: TestApp| async move {
        let client = app.confidential_client().await;
        let key = DpopKey::new();
        let pkce = Pkce::new();
        let code = code_for(&app, &client, &pkce, &[]).await;
        let (status, tokens) = app
            .token_dpop(
                &client,
                &exchange_form(&client, &code, &pkce),
                &[&key.proof(&app, "POST", "/token", None)],
            )
            .await;
        assert_eq!(status, 200, "{tokens}");
        assert_eq!(tokens["token_type"], "DPoP");

        // RFC 9449 §6.2: introspection tells the resource server about the binding.
        let at = str_of(&tokens, "access_token");
        let introspected = app.introspect(&client, at).await;
        assert_eq!(introspected["active"], true, "{introspected}");
        assert_eq!(introspected["token_type"], "DPoP");
        assert_eq!(introspected["cnf"], json!({"jkt": key.jkt()}));

        // A confidential client's refresh token is bound to its credentials, not to the key
        // (§5): it refreshes without a proof, and gets a bearer token then.
        let (status, refreshed) = app
            .token(&client, &refresh_form(str_of(&tokens, "refresh_token")))
            .await;
        assert_eq!(status, 200, "{refreshed}");
        assert_eq!(refreshed["token_type"], "Bearer");
        let plain = app
            .introspect(&client, str_of(&refreshed, "access_token"))
            .await;
        assert_eq!(plain["token_type"], "Bearer");
        assert!(plain.get("cnf").is_none(), "{plain}");
    }
);

on_both_backends!(an_unbound_family_stays_unbound, |app: TestApp| async move {
    let client = app.public_client().await;
    let pkce = Pkce::new();
    let code = code_for(&app, &client, &pkce, &[]).await;
    let (status, tokens) = app.exchange(&client, &code, &pkce.verifier).await;
    assert_eq!(status, 200);
    let key = DpopKey::new();
    let (status, refreshed) = app
        .token_dpop(
            &client,
            &refresh_form(str_of(&tokens, "refresh_token")),
            &[&key.proof(&app, "POST", "/token", None)],
        )
        .await;
    assert_eq!(status, 200, "{refreshed}");
    assert_eq!(
        refreshed["token_type"], "DPoP",
        "the new access token is bound"
    );
    let (status, again) = app
        .token(&client, &refresh_form(str_of(&refreshed, "refresh_token")))
        .await;
    assert_eq!(status, 200, "the family is not: {again}");
    assert_eq!(again["token_type"], "Bearer");
});

on_both_backends!(dpop_jkt_in_a_pushed_request, |app: TestApp| async move {
    use crate::support::browser::{code_request, location, query_of};
    let client = app.confidential_client().await;
    let key = DpopKey::new();
    let jkt = key.jkt();
    let pkce = Pkce::new();
    let mut form = code_request(&client, &pkce, &[("login_hint", "C01"), ("dpop_jkt", &jkt)]);
    form.retain(|(k, _)| *k != "client_id");
    let pushed: Value = app
        .http
        .post(app.endpoint("/par"))
        .basic_auth(&client.id, client.secret.as_deref())
        .form(&form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let request_uri = str_of(&pushed, "request_uri");
    let browser = Browser::new();
    let first = browser
        .authorize(
            &app,
            &[("client_id", &client.id), ("request_uri", request_uri)],
        )
        .await;
    let back = browser.through_upstream(first).await;
    let code = query_of(&location(&back)).remove("code").expect("a code");
    let form = exchange_form(&client, &code, &pkce);
    let answer = app.token(&client, &form).await;
    assert_eq!(
        error(&answer),
        (400, Some("invalid_dpop_proof")),
        "{}",
        answer.1
    );
    let (status, tokens) = app
        .token_dpop(&client, &form, &[&key.proof(&app, "POST", "/token", None)])
        .await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(tokens["token_type"], "DPoP");
});
