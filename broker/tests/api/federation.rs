//! The upstream side: accounts from VNeID, tampered callbacks, browser binding, key rotation
//! upstream, assurance levels, SSO and prompt handling.

use broker_devkit::mock_vneid::Tamper;

use crate::support::browser::{code_request, location, query_of, Browser, Pkce};
use crate::support::TestApp;
use crate::{on_both_backends, on_both_backends_with};

async fn start_login(app: &TestApp, browser: &Browser, hint: &str) -> String {
    let client = app.confidential_client().await;
    let pkce = Pkce::new();
    let response = browser
        .authorize(
            app,
            &code_request(&client, &pkce, &[("state", "s1"), ("login_hint", hint)]),
        )
        .await;
    assert_eq!(response.status(), 200, "the login page");
    let page = response.text().await.expect("page");
    assert!(page.contains("Đăng nhập bằng VNeID"), "Vietnamese first");
    let upstream = crate::support::browser::login_button(&page).expect("button");
    let at_mock = browser.get(&upstream).await;
    location(&at_mock)
}

on_both_backends!(
    tampered_id_tokens_are_refused_and_change_nothing,
    |app: TestApp| async move {
        for tamper in [
            Tamper::BadSignature,
            Tamper::WrongNonce,
            Tamper::WrongAudience,
            Tamper::WrongIssuer,
            Tamper::Expired,
            Tamper::AlgNone,
            Tamper::MissingNonce,
        ] {
            app.mock.set_tamper(tamper);
            let browser = Browser::new();
            let callback = start_login(&app, &browser, "C01").await;
            let response = browser.get(&callback).await;
            assert_eq!(response.status(), 400, "{tamper:?} must be refused");
            assert!(
                !response.headers().get_all("set-cookie").iter().any(|c| c
                    .to_str()
                    .unwrap_or_default()
                    .starts_with("broker_session=")),
                "{tamper:?}: no session may start"
            );
            let body = response.text().await.expect("page");
            assert!(
                body.contains("1900 0368"),
                "the error page gives the hotlines"
            );
        }
        app.mock.set_tamper(Tamper::None);
        assert_eq!(
            app.count("accounts").await,
            0,
            "no account was created from a bad token"
        );
    }
);

on_both_backends!(
    callback_state_and_browser_binding,
    |app: TestApp| async move {
        let browser = Browser::new();
        let callback = start_login(&app, &browser, "C01").await;
        let params = query_of(&callback);
        // Wrong state.
        let forged = callback.replace(
            &params["state"],
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        );
        assert_eq!(browser.get(&forged).await.status(), 400);
        // Another browser (no binding cookie) cannot finish it, and does not spoil it.
        let attacker = Browser::new();
        assert_eq!(attacker.get(&callback).await.status(), 400);
        assert_eq!(app.count("accounts").await, 0);
        // The right browser still can, once.
        let done = browser.get(&callback).await;
        assert_eq!(done.status(), 303);
        assert!(location(&done).contains("code="));
        assert_eq!(
            browser.get(&callback).await.status(),
            400,
            "pending logins are single use"
        );
        assert_eq!(app.count("accounts").await, 1);
    }
);

on_both_backends!(
    upstream_key_rotation_is_followed,
    |app: TestApp| async move {
        let client = app.confidential_client().await;
        Browser::new()
            .login(&app, &client, "C01", &Pkce::new(), &[])
            .await;
        app.mock.rotate_key().expect("rotate");
        let callback = Browser::new()
            .login(&app, &client, "C01", &Pkce::new(), &[])
            .await;
        assert!(
            !callback.code().is_empty(),
            "after an unknown kid the broker refetches the JWKS"
        );
    }
);

on_both_backends!(
    accounts_link_on_issuer_and_subject_and_refresh,
    |app: TestApp| async move {
        let client = app.confidential_client().await;
        let mut subs = Vec::new();
        for _ in 0..2 {
            let pkce = Pkce::new();
            let cb = Browser::new().login(&app, &client, "C01", &pkce, &[]).await;
            let (status, tokens) = app.exchange(&client, cb.code(), &pkce.verifier).await;
            assert_eq!(status, 200);
            let (_, claims) =
                crate::support::jwt_parts(tokens["id_token"].as_str().expect("id_token"));
            subs.push(claims["sub"].as_str().expect("sub").to_string());
        }
        assert_eq!(
            subs[0], subs[1],
            "the same VNeID identity is the same account"
        );
        assert_eq!(app.count("accounts").await, 1);
        // The personal ID number is encrypted at rest.
        use sqlx::Row;
        let row = sqlx::query("SELECT personal_id_enc FROM accounts")
            .fetch_one(&app.app_db.pool())
            .await
            .expect("row");
        let sealed: String = row.try_get("personal_id_enc").expect("sealed");
        assert!(!sealed.contains("046085690467") && !sealed.is_empty());
        // A foreigner-like account without a personal ID and a flagged ID both log in.
        Browser::new()
            .login(&app, &client, "C09", &Pkce::new(), &[])
            .await
            .code();
        Browser::new()
            .login(&app, &client, "C10", &Pkce::new(), &[])
            .await
            .code();
        let row =
            sqlx::query("SELECT COUNT(*) AS n FROM accounts WHERE personal_id_flag IS NOT NULL")
                .fetch_one(&app.app_db.pool())
                .await
                .expect("row");
        assert_eq!(
            row.try_get::<i64, _>("n").expect("n"),
            1,
            "C10's malformed ID is kept and flagged"
        );
    }
);

on_both_backends!(
    level_one_never_satisfies_level_two,
    |app: TestApp| async move {
        let client = app.confidential_client().await;
        let acr2 = [("acr_values", "urn:vn:hue:broker:loa:2")];
        let browser = Browser::new();
        let cb = browser
            .login(&app, &client, "C06", &Pkce::new(), &acr2)
            .await;
        assert_eq!(cb.error(), Some("unmet_authentication_requirements"));
        // A level-1 SSO session does not answer a level-2 request without going upstream.
        let cb = browser.login(&app, &client, "C06", &Pkce::new(), &[]).await;
        assert!(cb.error().is_none());
        let pkce = Pkce::new();
        let again = browser
            .authorize(
                &app,
                &code_request(&client, &pkce, &[("acr_values", "urn:vn:hue:broker:loa:2")]),
            )
            .await;
        assert_eq!(again.status(), 200, "back to the login page, not a code");
        // Level 2 satisfies it.
        let pkce = Pkce::new();
        let cb = Browser::new()
            .login(&app, &client, "C07", &pkce, &acr2)
            .await;
        let (_, tokens) = app.exchange(&client, cb.code(), &pkce.verifier).await;
        let (_, claims) = crate::support::jwt_parts(tokens["id_token"].as_str().expect("id_token"));
        assert_eq!(claims["acr"], "urn:vn:hue:broker:loa:2");
    }
);

on_both_backends!(sso_session_prompt_and_max_age, |app: TestApp| async move {
    let client = app.confidential_client().await;
    let browser = Browser::new();
    browser.login(&app, &client, "C01", &Pkce::new(), &[]).await;
    let pkce = Pkce::new();
    let base = code_request(&client, &pkce, &[]);
    let silent = browser
        .authorize(&app, &[&base[..], &[("prompt", "none")]].concat())
        .await;
    assert_eq!(silent.status(), 303);
    assert!(
        query_of(&location(&silent)).contains_key("code"),
        "SSO answers prompt=none"
    );
    let forced = browser
        .authorize(&app, &[&base[..], &[("prompt", "login")]].concat())
        .await;
    assert_eq!(forced.status(), 200, "prompt=login goes to the login page");
    let upstream =
        crate::support::browser::login_button(&forced.text().await.expect("page")).expect("button");
    assert!(
        upstream.contains("prompt=login"),
        "re-authentication is demanded of VNeID too: {upstream}"
    );
    app.clock.advance(120);
    let aged_page = browser
        .authorize(&app, &[&base[..], &[("max_age", "60")]].concat())
        .await;
    let upstream = crate::support::browser::login_button(&aged_page.text().await.expect("page"))
        .expect("a session older than max_age goes to the login page");
    assert!(
        upstream.contains("max_age=60"),
        "max_age goes upstream: {upstream}"
    );
    let aged = browser
        .authorize(
            &app,
            &[&base[..], &[("max_age", "60"), ("prompt", "none")]].concat(),
        )
        .await;
    assert_eq!(
        query_of(&location(&aged)).get("error").map(String::as_str),
        Some("login_required")
    );
    let stranger = Browser::new()
        .authorize(&app, &[&base[..], &[("prompt", "none")]].concat())
        .await;
    assert_eq!(
        query_of(&location(&stranger))
            .get("error")
            .map(String::as_str),
        Some("login_required")
    );
});

on_both_backends!(
    logout_needs_confirmation_or_hint_and_revokes_the_session,
    |app: TestApp| async move {
        let client = app
        .client_with(serde_json::json!({"client_name": "portal", "redirect_uris": ["https://portal.example/cb"], "post_logout_redirect_uris": ["https://portal.example/bye"], "scope": "openid profile"}))
        .await;
        let browser = Browser::new();
        let pkce = Pkce::new();
        let cb = browser.login(&app, &client, "C01", &pkce, &[]).await;
        let (_, tokens) = app.exchange(&client, cb.code(), &pkce.verifier).await;
        // A bare GET (as a cross-site link would do) only asks.
        let ask = browser.get(&app.endpoint("/end_session")).await;
        assert_eq!(ask.status(), 200);
        assert!(ask.text().await.expect("page").contains("confirm-logout"));
        assert!(
            silent(&app, &client, &browser).await.contains_key("code"),
            "still logged in"
        );
        // An unregistered post-logout URI is refused, not followed.
        let bad = browser
            .get(&format!(
                "{}?client_id={}&post_logout_redirect_uri=https://evil.example/",
                app.endpoint("/end_session"),
                client.id
            ))
            .await;
        assert_eq!(bad.status(), 400);
        // A code issued just before the logout (not yet redeemed).
        let late = Pkce::new();
        let pending_code = {
            let r = browser
                .authorize(&app, &code_request(&client, &late, &[("prompt", "none")]))
                .await;
            query_of(&location(&r))["code"].clone()
        };
        // With a valid id_token_hint it logs out and returns to the registered URI.
        let url = url::Url::parse_with_params(
            &app.endpoint("/end_session"),
            &[
                ("id_token_hint", tokens["id_token"].as_str().expect("id")),
                ("post_logout_redirect_uri", "https://portal.example/bye"),
                ("state", "st"),
            ],
        )
        .expect("url");
        let out = browser.get(url.as_str()).await;
        assert_eq!(out.status(), 303);
        assert_eq!(location(&out), "https://portal.example/bye?state=st");
        assert_eq!(
            silent(&app, &client, &browser)
                .await
                .get("error")
                .map(String::as_str),
            Some("login_required")
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
        assert_eq!(
            refreshed["error"], "invalid_grant",
            "logout revokes the session's grants"
        );
        let (status, body) = app.exchange(&client, &pending_code, &late.verifier).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_grant")),
            "a code of the ended session is worthless"
        );
        // The confirmed POST works too, with the form's CSRF token.
        let other = Browser::new();
        other.login(&app, &client, "C02", &Pkce::new(), &[]).await;
        let page = other
            .get(&app.endpoint("/end_session"))
            .await
            .text()
            .await
            .expect("page");
        let csrf = hidden_field(&page, "csrf").expect("the form carries a CSRF token");
        let r = other
            .http
            .post(app.endpoint("/end_session"))
            .form(&[("confirm", "yes"), ("csrf", csrf.as_str())])
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), 200);
        let page = r.text().await.expect("page");
        assert!(page.contains("Đã đăng xuất"), "a signed-out page: {page}");
        assert!(!page.contains("Không thể đăng nhập"), "not a failure page");
        assert_eq!(
            silent(&app, &client, &other)
                .await
                .get("error")
                .map(String::as_str),
            Some("login_required")
        );
    }
);

/// A `prompt=none` authorization request: the redirect's parameters (a code, or an error).
async fn silent(
    app: &TestApp,
    client: &crate::support::Client,
    b: &Browser,
) -> std::collections::HashMap<String, String> {
    let pkce = Pkce::new();
    let response = b
        .authorize(app, &code_request(client, &pkce, &[("prompt", "none")]))
        .await;
    query_of(&location(&response))
}

on_both_backends!(
    profile_follows_vneid_on_every_login,
    |app: TestApp| async move {
        use broker::accounts::login::LoginOutcome;
        use broker::accounts::{AccountPolicy, Loa, UpstreamIdentity};
        let accounts = &app.broker.provider.accounts;
        let mut identity = UpstreamIdentity {
            upstream_iss: "https://vneid.example".into(),
            upstream_sub: "sub-1".into(),
            // No legacy record holds this number (C01's does hold 046085690467).
            personal_id: Some("046085000467".into()),
            legacy_cmnd: None,
            full_name: "Võ Hữu Tài".into(),
            birthdate: Some("1985-03-12".into()),
            gender: None,
            loa: Loa::One,
            account_type: "1".into(),
            phone: None,
            auth_time: None,
        };
        // No legacy record: the first login asks for a phone; a proven phone creates the account.
        assert!(matches!(
            accounts
                .complete_login(&identity, AccountPolicy::LinkAndCreate, None, 1_000)
                .await
                .expect("login"),
            LoginOutcome::NeedsPhone { notice: None, .. }
        ));
        let phone = broker::accounts::phone::normalise("0905123456").expect("phone");
        let LoginOutcome::Authenticated {
            account: first,
            created,
            ..
        } = accounts
            .complete_with_phone(
                &identity,
                AccountPolicy::LinkAndCreate,
                &phone,
                false,
                1_000,
            )
            .await
            .expect("login")
        else {
            panic!("a proven phone creates the account")
        };
        assert!(created);
        let LoginOutcome::Authenticated {
            account: same,
            created,
            ..
        } = accounts
            .complete_login(&identity, AccountPolicy::LinkAndCreate, None, 2_000)
            .await
            .expect("login")
        else {
            panic!("a linked identity is its account")
        };
        assert!(!created);
        assert_eq!(
            same.updated_at, 1_000,
            "an unchanged profile is not rewritten"
        );
        identity.full_name = "Võ Hữu Tài Em".into();
        identity.loa = Loa::Two;
        let LoginOutcome::Authenticated {
            account: changed, ..
        } = accounts
            .complete_login(&identity, AccountPolicy::LinkAndCreate, None, 3_000)
            .await
            .expect("login")
        else {
            panic!("a linked identity is its account")
        };
        assert_eq!(changed.id, first.id);
        let stored = accounts
            .find(&first.id)
            .await
            .expect("find")
            .expect("account");
        assert_eq!(
            (stored.full_name.as_str(), stored.loa, stored.updated_at),
            ("Võ Hữu Tài Em", Loa::Two, 3_000)
        );
        assert_eq!(stored.personal_id.as_deref(), Some("046085000467"));
        use sqlx::Row;
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM audit_log WHERE kind = 'login' AND account_id = $1",
        )
        .bind(&first.id)
        .fetch_one(&app.app_db.pool())
        .await
        .expect("row");
        assert_eq!(
            row.try_get::<i64, _>("n").expect("n"),
            3,
            "one audit entry per login"
        );
    }
);

on_both_backends!(
    a_hint_from_another_session_only_asks,
    |app: TestApp| async move {
        let client = app
        .client_with(serde_json::json!({"client_name": "portal", "redirect_uris": ["https://portal.example/cb"], "post_logout_redirect_uris": ["https://portal.example/bye"], "scope": "openid profile"}))
        .await;
        // The attacker logs in as themselves and keeps their own ID token.
        let attacker = Browser::new();
        let pkce = Pkce::new();
        let cb = attacker.login(&app, &client, "C02", &pkce, &[]).await;
        let (_, theirs) = app.exchange(&client, cb.code(), &pkce.verifier).await;
        // The victim is logged in in another browser.
        let victim = Browser::new();
        let pkce = Pkce::new();
        let cb = victim.login(&app, &client, "C01", &pkce, &[]).await;
        let (_, victims) = app.exchange(&client, cb.code(), &pkce.verifier).await;
        // A link with the attacker's hint, opened by the victim, must not log the victim out.
        let url = url::Url::parse_with_params(
            &app.endpoint("/end_session"),
            &[
                ("id_token_hint", theirs["id_token"].as_str().expect("id")),
                ("post_logout_redirect_uri", "https://portal.example/bye"),
            ],
        )
        .expect("url");
        let r = victim.get(url.as_str()).await;
        assert_eq!(r.status(), 200, "a confirmation page, not a logout");
        assert!(r.text().await.expect("page").contains("confirm-logout"));
        assert!(
            silent(&app, &client, &victim).await.contains_key("code"),
            "still logged in"
        );
        let (status, _) = app
            .token(
                &client,
                &[
                    ("grant_type", "refresh_token"),
                    (
                        "refresh_token",
                        victims["refresh_token"].as_str().expect("rt"),
                    ),
                ],
            )
            .await;
        assert_eq!(status, 200, "the victim's grant is untouched");
        let (status, _) = app
            .userinfo(victims["access_token"].as_str().expect("at"))
            .await;
        assert_eq!(status, 200);
    }
);

/// The value of a hidden form field on a page.
pub fn hidden_field(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')? + start;
    Some(html[start..end].to_string())
}

on_both_backends_with!(
    a_vneid_outage_answers_at_once_and_recovers,
    |s: &mut broker::config::Settings| {
        s.upstream.timeout_secs = 1;
        s.upstream.breaker_failures = 2;
        s.upstream.breaker_open_secs = 2;
    },
    |app: TestApp| async move {
        let outage =
            |body: &str| body.contains("VNeID đang gián đoạn") && body.contains("tel:19000368");
        // Refusals are answers, even as HTML: made-up codes never open the breaker (they count
        // against the caller's budget instead).
        app.mock.set_tamper(Tamper::TokenRefusesPlainly);
        for hint in ["C01", "C02", "C03"] {
            let browser = Browser::new();
            let callback = start_login(&app, &browser, hint).await;
            assert_eq!(browser.get(&callback).await.status(), 400);
        }
        // The token endpoint fails fast (a proxy's 502): the citizen is told VNeID is
        // interrupted, nothing is created.
        app.mock.set_tamper(Tamper::TokenFails);
        let browser = Browser::new();
        let callback = start_login(&app, &browser, "C01").await;
        let response = browser.get(&callback).await;
        assert_eq!(response.status(), 503);
        assert!(response.headers().contains_key("retry-after"));
        assert!(outage(&response.text().await.unwrap()));
        // It hangs: the callback answers after the configured timeout, not the mock's minute.
        app.mock.set_tamper(Tamper::TokenHangs);
        let browser = Browser::new();
        let callback = start_login(&app, &browser, "C02").await;
        let started = std::time::Instant::now();
        let response = browser.get(&callback).await;
        assert_eq!(response.status(), 503);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "bounded by upstream.timeout_secs, not by VNeID"
        );
        assert_eq!(app.count("accounts").await, 0);
        assert_eq!(app.count("sessions").await, 0);
        // Two calls in a row without an answer: the breaker is open, and a new login is told at
        // once, without being sent to VNeID or holding a pending login.
        let client = app.confidential_client().await;
        let response = Browser::new()
            .authorize(
                &app,
                &code_request(&client, &Pkce::new(), &[("login_hint", "C03")]),
            )
            .await;
        assert_eq!(response.status(), 503, "not a redirect to VNeID");
        assert!(outage(&response.text().await.unwrap()));
        // VNeID is back: after the open period a login goes through and closes the breaker.
        app.mock.set_tamper(Tamper::None);
        tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
        let browser = Browser::new();
        let pkce = Pkce::new();
        let cb = browser.login(&app, &client, "C01", &pkce, &[]).await;
        let (status, _) = app.exchange(&client, cb.code(), &pkce.verifier).await;
        assert_eq!(status, 200);
    }
);

/// VNeID variant B, the national public-service portal: explicit endpoints (no discovery),
/// client_secret_post, `acr_values` by the level the RP requires, an ID token with `sub` and
/// `acr` only and the identity from userinfo.
fn variant_b(s: &mut broker::config::Settings) {
    use broker::federation::profile::{AcrValues, UpstreamAuthMethod};
    let base = s.upstream.issuer.as_str().trim_end_matches('/').to_string();
    let at = |path: &str| Some(format!("{base}{path}").parse().expect("url"));
    s.upstream.discovery = false;
    s.upstream.authorization_endpoint = at("/authorize");
    s.upstream.token_endpoint = at("/token");
    s.upstream.userinfo_endpoint = at("/userinfo");
    s.upstream.jwks_uri = at("/jwks");
    s.upstream.auth_method = UpstreamAuthMethod::ClientSecretPost;
    s.upstream.use_nonce = false;
    s.upstream.use_pkce = false;
    s.upstream.use_userinfo = true;
    s.upstream.acr_values = AcrValues {
        level1: Some("LoA1".into()),
        level2: Some("LoA2".into()),
    };
}

on_both_backends_with!(
    variant_b_logs_in_through_explicit_endpoints_and_userinfo,
    variant_b,
    |app: TestApp| async move {
        app.mock.set_variant(broker_devkit::mock_vneid::Variant::B);
        let client = app.confidential_client().await;
        // The mock refuses client_secret_basic and a request without acr_values: a login
        // that succeeds sent client_secret_post and LoA1.
        let pkce = Pkce::new();
        let browser = Browser::new();
        let cb = browser.login(&app, &client, "C01", &pkce, &[]).await;
        let (status, tokens) = app.exchange(&client, cb.code(), &pkce.verifier).await;
        assert_eq!(status, 200, "{tokens}");
        let (_, claims) = crate::support::jwt_parts(tokens["id_token"].as_str().unwrap());
        assert_eq!(claims["name"], "Võ Hữu Tài", "the name came from userinfo");
        assert_eq!(
            claims["acr"], "urn:vn:hue:broker:loa:2",
            "the ID token's LoA2 read as level 2"
        );
        // A level-2 requirement is asked of the portal as LoA2; a level-1 citizen is refused
        // there, and the RP told.
        let acr2 = [("acr_values", "urn:vn:hue:broker:loa:2")];
        let cb = Browser::new()
            .login(&app, &client, "C06", &Pkce::new(), &acr2)
            .await;
        assert!(cb.error().is_some(), "refused upstream");
        let pkce = Pkce::new();
        let cb = Browser::new()
            .login(&app, &client, "C07", &pkce, &acr2)
            .await;
        assert_eq!(
            app.exchange(&client, cb.code(), &pkce.verifier).await.0,
            200
        );
        // Userinfo that names someone else is refused, and creates nothing.
        let accounts = app.count("accounts").await;
        app.mock.set_tamper(Tamper::UserinfoOtherSub);
        let browser = Browser::new();
        let callback = start_login(&app, &browser, "C02").await;
        assert_eq!(browser.get(&callback).await.status(), 400);
        assert_eq!(app.count("accounts").await, accounts);
    }
);

/// VNeID variant C, direct VNeID for third parties: no ID token relied on, the identity from
/// userinfo, client_secret_post, no nonce or PKCE, and answers encrypted to the broker's RSA key
/// (`{"data", "key"}`, AES in the mode the profile names).
async fn variant_c(app: &TestApp, cbc: bool) {
    app.mock.set_variant(broker_devkit::mock_vneid::Variant::C);
    app.mock
        .set_encryption(Some(broker_devkit::mock_vneid::MockEncryption {
            rp_public_key_der: std::fs::read(key_dir(app).join("upstream-rsa.pub.der"))
                .expect("public key"),
            cbc,
        }));
}

/// Where `variant_c_settings` put the broker's upstream key pair.
fn key_dir(app: &TestApp) -> std::path::PathBuf {
    let file = app
        .broker
        .upstreams
        .first()
        .profile
        .encryption
        .as_ref()
        .expect("variant C settings")
        .private_key_file
        .clone();
    file.parent().expect("dir").to_path_buf()
}

fn variant_c_settings(
    mode: broker::federation::envelope::AesMode,
) -> impl FnOnce(&mut broker::config::Settings) {
    move |s: &mut broker::config::Settings| {
        use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
        use aws_lc_rs::rsa::{KeySize, PrivateDecryptingKey};
        use broker::federation::profile::UpstreamAuthMethod;
        // The broker's key pair at VNeID, in a directory of its own: the private half for the
        // broker, the public half beside it for the mock.
        let dir = std::env::temp_dir().join(format!("broker-test-{}", uuid::Uuid::new_v4()));
        let private = PrivateDecryptingKey::generate(KeySize::Rsa2048).expect("rsa");
        let der = AsDer::<Pkcs8V1Der>::as_der(&private).expect("pkcs8");
        let public = AsDer::<PublicKeyX509Der>::as_der(&private.public_key()).expect("spki");
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("upstream-rsa.der"), der.as_ref()).expect("write key");
        std::fs::write(dir.join("upstream-rsa.pub.der"), public.as_ref()).expect("write key");
        let base = s.upstream.issuer.as_str().trim_end_matches('/').to_string();
        let at = |path: &str| Some(format!("{base}{path}").parse().expect("url"));
        s.upstream.discovery = false;
        s.upstream.authorization_endpoint = at("/authorize");
        s.upstream.token_endpoint = at("/token");
        s.upstream.userinfo_endpoint = at("/userinfo");
        s.upstream.auth_method = UpstreamAuthMethod::ClientSecretPost;
        s.upstream.use_nonce = false;
        s.upstream.use_pkce = false;
        s.upstream.use_id_token = false;
        s.upstream.use_userinfo = true;
        s.upstream.encryption = Some(broker::federation::envelope::EncryptionSettings {
            private_key_file: dir.join("upstream-rsa.der"),
            mode,
        });
    }
}

on_both_backends_with!(
    variant_c_logs_in_from_encrypted_userinfo,
    variant_c_settings(broker::federation::envelope::AesMode::Ecb),
    |app: TestApp| async move {
        variant_c(&app, false).await;
        let client = app.confidential_client().await;
        let pkce = Pkce::new();
        let cb = Browser::new().login(&app, &client, "C01", &pkce, &[]).await;
        let (status, tokens) = app.exchange(&client, cb.code(), &pkce.verifier).await;
        assert_eq!(status, 200, "{tokens}");
        let (_, claims) = crate::support::jwt_parts(tokens["id_token"].as_str().unwrap());
        assert_eq!(
            claims["name"], "Võ Hữu Tài",
            "read from the decrypted userinfo"
        );
        // A spoilt key and spoilt data fail alike, and create nothing.
        let accounts = app.count("accounts").await;
        let mut answers = Vec::new();
        for tamper in [Tamper::EnvelopeBadKey, Tamper::EnvelopeBadData] {
            app.mock.set_tamper(tamper);
            let browser = Browser::new();
            let callback = start_login(&app, &browser, "C02").await;
            let response = browser.get(&callback).await;
            answers.push((response.status().as_u16(), response.text().await.unwrap()));
        }
        assert_eq!(answers[0].0, 400);
        assert_eq!(
            answers[0], answers[1],
            "one answer for every failure: no oracle"
        );
        assert_eq!(app.count("accounts").await, accounts);
        // A CBC envelope does not open under the ECB profile.
        app.mock.set_tamper(Tamper::None);
        variant_c(&app, true).await;
        let browser = Browser::new();
        let callback = start_login(&app, &browser, "C02").await;
        assert_eq!(browser.get(&callback).await.status(), 400);
        let _ = std::fs::remove_dir_all(key_dir(&app));
    }
);

on_both_backends_with!(
    variant_c_opens_cbc_envelopes,
    variant_c_settings(broker::federation::envelope::AesMode::Cbc),
    |app: TestApp| async move {
        variant_c(&app, true).await;
        let client = app.confidential_client().await;
        let pkce = Pkce::new();
        let cb = Browser::new().login(&app, &client, "C07", &pkce, &[]).await;
        let (status, tokens) = app.exchange(&client, cb.code(), &pkce.verifier).await;
        assert_eq!(status, 200, "{tokens}");
        let _ = std::fs::remove_dir_all(key_dir(&app));
    }
);
