//! Several upstreams at once: `[upstream]` (the mock VNeID of every test, `vneid`) and a second
//! mock as `[upstreams.test]`, a ministry test gateway. The login page offers both, `idp_hint`
//! picks one, a state answers only at its own upstream's callback, one account holds the
//! identities of both, and a gateway whose policy isolates it never reaches a real account.

use std::net::TcpListener;
use std::sync::{Arc, OnceLock};

use broker::accounts::AccountPolicy;
use broker::config::{Secret, Settings};
use broker::federation::profile::UpstreamProfile;
use broker_devkit::mock_vneid::{self, MockClient, MockVneid, MockVneidConfig, Tamper};

use crate::support::browser::{code_request, location, query_of, Browser, Pkce};
use crate::support::{Backends, Client, TestApp};

/// The gateway's display name on the login page.
const GATEWAY: &str = "Cổng thử nghiệm";

/// Starts the second mock and adds it to the settings as `upstreams.test` with `policy`.
fn with_gateway(
    policy: AccountPolicy,
    gateway: Arc<OnceLock<MockVneid>>,
) -> impl FnOnce(&mut Settings) {
    move |s: &mut Settings| {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind gateway");
        let url = format!(
            "http://127.0.0.1:{}",
            listener.local_addr().expect("addr").port()
        );
        let secret = broker::crypto::random_token();
        let broker_url = s.issuer.as_str().trim_end_matches('/').to_string();
        let mock = MockVneid::new(MockVneidConfig {
            issuer: url.parse().expect("url"),
            clients: vec![MockClient {
                client_id: "broker".into(),
                client_secret: secret.clone(),
                redirect_uris: vec![format!("{broker_url}/callback/test")],
            }],
        })
        .expect("gateway mock");
        tokio::spawn(mock_vneid::serve(mock.clone(), listener).expect("gateway server"));
        // Explicit endpoints, as a gateway without discovery has: the issuer is configured
        // all the same (half of the link key), and no RFC 9207 `iss` is promised, so only the
        // state's binding to its upstream stops a mix-up.
        let at = |path: &str| Some(format!("{url}{path}").parse().expect("url"));
        s.upstreams.insert(
            "test".into(),
            UpstreamProfile {
                display_name: GATEWAY.into(),
                issuer: url.parse().expect("url"),
                discovery: false,
                authorization_endpoint: at("/authorize"),
                token_endpoint: at("/token"),
                jwks_uri: at("/jwks"),
                client_secret: Some(Secret::new(secret)),
                accounts: policy,
                ..Default::default()
            },
        );
        let _ = gateway.set(mock);
    }
}

async fn spawn(backends: Backends, policy: AccountPolicy) -> Option<(TestApp, MockVneid)> {
    let gateway = Arc::new(OnceLock::new());
    let adjust = with_gateway(policy, gateway.clone());
    let app = match backends {
        Backends::SqliteMemory => TestApp::spawn_with(backends, adjust).await,
        Backends::PostgresRedis => TestApp::spawn_production_with(adjust).await?,
    };
    let gateway = gateway.get().expect("the gateway started").clone();
    Some((app, gateway))
}

/// Like `on_both_backends!`, with the gateway under `policy` and its mock for the body.
macro_rules! with_two_upstreams {
    ($name:ident, $policy:expr, $body:expr) => {
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite_memory() {
                let (app, gateway) = spawn(Backends::SqliteMemory, $policy).await.unwrap();
                let _guard = app.guard();
                ($body)(app, gateway).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres_redis() {
                let Some((app, gateway)) = spawn(Backends::PostgresRedis, $policy).await else {
                    return;
                };
                let _guard = app.guard();
                ($body)(app, gateway).await;
            }
        }
    };
}

/// The href of the button with this id on a login page.
fn button(page: &str, id: &str) -> Option<String> {
    let marker = format!("id=\"{id}\" href=\"");
    let start = page.find(&marker)? + marker.len();
    let end = page[start..].find('"')? + start;
    Some(page[start..end].replace("&#38;", "&").replace("&amp;", "&"))
}

/// The broker's `sub` for a login of `hint` through the upstream `idp` (by `idp_hint`).
async fn sub_through(app: &TestApp, client: &Client, hint: &str, idp: &str) -> String {
    let pkce = Pkce::new();
    let cb = Browser::new()
        .login(app, client, hint, &pkce, &[("idp_hint", idp)])
        .await;
    let (status, tokens) = app.exchange(client, cb.code(), &pkce.verifier).await;
    assert_eq!(status, 200, "{tokens}");
    let (_, claims) = crate::support::jwt_parts(tokens["id_token"].as_str().expect("id_token"));
    claims["sub"].as_str().expect("sub").to_string()
}

/// A `prompt=none` request naming the upstream `idp`: the redirect's parameters.
async fn silent(
    app: &TestApp,
    client: &Client,
    browser: &Browser,
    idp: &str,
) -> std::collections::HashMap<String, String> {
    let pkce = Pkce::new();
    let r = browser
        .authorize(
            app,
            &code_request(client, &pkce, &[("prompt", "none"), ("idp_hint", idp)]),
        )
        .await;
    query_of(&location(&r))
}

async fn links(app: &TestApp, issuer: &str) -> i64 {
    use sqlx::Row;
    sqlx::query("SELECT COUNT(*) AS n FROM account_links WHERE upstream_iss = $1")
        .bind(issuer)
        .fetch_one(&app.app_db.pool())
        .await
        .expect("count")
        .try_get("n")
        .expect("n")
}

with_two_upstreams!(
    the_login_page_offers_both_and_one_account_holds_both_identities,
    AccountPolicy::LinkAndCreate,
    |app: TestApp, gateway: MockVneid| async move {
        let client = app.confidential_client().await;
        // No idp_hint: a choice, one button per upstream, Vietnamese first.
        let browser = Browser::new();
        let pkce = Pkce::new();
        let page = browser
            .authorize(
                &app,
                &code_request(&client, &pkce, &[("login_hint", "C01"), ("state", "s")]),
            )
            .await;
        assert_eq!(page.status(), 200);
        let page = page.text().await.unwrap();
        assert!(page.contains("Đăng nhập bằng VNeID"), "{page}");
        assert!(page.contains(&format!("Đăng nhập bằng {GATEWAY}")));
        let to_vneid = button(&page, "login-vneid").expect("a VNeID button");
        let to_gateway = button(&page, "login-test").expect("a gateway button");
        // A choice of an unknown upstream, or by a browser without the choice's cookie, is
        // refused without reaching any upstream.
        let unknown = to_gateway.replace("/login/choose/test", "/login/choose/nope");
        assert_eq!(browser.get(&unknown).await.status(), 400);
        assert_eq!(Browser::new().get(&to_gateway).await.status(), 400);
        // Choosing the gateway sends the browser there, and its login comes back with a code.
        let chosen = browser.get(&to_gateway).await;
        assert_eq!(chosen.status(), 303);
        assert!(
            location(&chosen).starts_with(gateway.issuer()),
            "to the gateway"
        );
        let at_gateway = browser.get(&location(&chosen)).await;
        let callback = location(&at_gateway);
        assert!(callback.contains("/callback/test?"), "{callback}");
        let back = browser.get(&callback).await;
        let back = browser
            .through_steps(
                &app,
                back,
                &crate::support::browser::test_phone(&app, "C01"),
            )
            .await;
        assert!(query_of(&location(&back)).contains_key("code"));
        // The VNeID button of the same page still leads to VNeID (the back button).
        let chosen = browser.get(&to_vneid).await;
        assert!(location(&chosen).starts_with(app.mock.issuer()));

        // The same citizen through each upstream, named by idp_hint: one account, one link of
        // each issuer (the ID number, name and date of birth agree).
        let through_vneid = sub_through(&app, &client, "C02", "vneid").await;
        let through_gateway = sub_through(&app, &client, "C02", "test").await;
        assert_eq!(through_vneid, through_gateway, "one account for both");
        assert_eq!(app.count("accounts").await, 2, "C01 and C02");
        assert_eq!(links(&app, app.mock.issuer()).await, 1);
        assert_eq!(links(&app, gateway.issuer()).await, 2);

        // idp_hint skips the choice: one button, to that upstream.
        let page = Browser::new()
            .authorize(
                &app,
                &code_request(&client, &Pkce::new(), &[("idp_hint", "test")]),
            )
            .await
            .text()
            .await
            .unwrap();
        let only = crate::support::browser::login_button(&page).expect("one button");
        assert!(only.starts_with(gateway.issuer()), "{only}");
        assert!(button(&page, "login-vneid").is_none());

        // A session the gateway started does not answer an RP that names VNeID.
        let browser = Browser::new();
        browser
            .login(&app, &client, "C02", &Pkce::new(), &[("idp_hint", "test")])
            .await
            .code();
        assert!(silent(&app, &client, &browser, "test")
            .await
            .contains_key("code"));
        assert_eq!(
            silent(&app, &client, &browser, "vneid")
                .await
                .get("error")
                .map(String::as_str),
            Some("login_required")
        );
    }
);

with_two_upstreams!(
    an_unknown_idp_hint_is_refused_at_authorize_and_par,
    AccountPolicy::LinkAndCreate,
    |app: TestApp, gateway: MockVneid| async move {
        let client = app.confidential_client().await;
        let r = Browser::new()
            .authorize(
                &app,
                &code_request(
                    &client,
                    &Pkce::new(),
                    &[("idp_hint", "nope"), ("state", "s1")],
                ),
            )
            .await;
        assert_eq!(r.status(), 303);
        let back = query_of(&location(&r));
        assert_eq!(back["error"], "invalid_request");
        assert_eq!(back["state"], "s1");
        assert!(location(&r).starts_with(&client.redirect_uri));
        // Names are exact: not a prefix, not another case.
        // (An empty value counts as absent, RFC 6749 §3.1.)
        for hint in ["VNEID", "tes", "vneid "] {
            let r = Browser::new()
                .authorize(
                    &app,
                    &code_request(&client, &Pkce::new(), &[("idp_hint", hint)]),
                )
                .await;
            assert_eq!(
                query_of(&location(&r)).get("error").map(String::as_str),
                Some("invalid_request"),
                "{hint:?}"
            );
        }
        // Pushed: refused at /par already; a good hint is kept through the request_uri.
        let pkce = Pkce::new();
        let mut form = code_request(&client, &pkce, &[("idp_hint", "nope")]);
        form.retain(|(k, _)| *k != "client_id");
        let refused = app
            .http
            .post(app.endpoint("/par"))
            .basic_auth(&client.id, client.secret.as_ref())
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 400);
        let body: serde_json::Value = refused.json().await.unwrap();
        assert_eq!(body["error"], "invalid_request");
        let mut form = code_request(&client, &pkce, &[("idp_hint", "test")]);
        form.retain(|(k, _)| *k != "client_id");
        let pushed: serde_json::Value = app
            .http
            .post(app.endpoint("/par"))
            .basic_auth(&client.id, client.secret.as_ref())
            .form(&form)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let uri = pushed["request_uri"].as_str().expect("request_uri");
        let page = Browser::new()
            .authorize(&app, &[("client_id", &client.id), ("request_uri", uri)])
            .await
            .text()
            .await
            .unwrap();
        let only = crate::support::browser::login_button(&page).expect("one button");
        assert!(only.starts_with(gateway.issuer()), "{only}");
    }
);

with_two_upstreams!(
    a_callback_at_another_upstreams_path_is_refused,
    AccountPolicy::LinkAndCreate,
    |app: TestApp, gateway: MockVneid| async move {
        let client = app.confidential_client().await;
        for (sent_to, answered_at) in [("test", "vneid"), ("vneid", "test")] {
            let browser = Browser::new();
            let page = browser
                .authorize(
                    &app,
                    &code_request(
                        &client,
                        &Pkce::new(),
                        &[("idp_hint", sent_to), ("login_hint", "C01")],
                    ),
                )
                .await
                .text()
                .await
                .unwrap();
            let upstream = crate::support::browser::login_button(&page).expect("button");
            let callback = location(&browser.get(&upstream).await);
            let own = format!("/callback/{sent_to}?");
            assert!(callback.contains(&own), "{callback}");
            // Without `iss` (an upstream that does not send it) only the binding of the state
            // to its upstream tells; the gateway's token endpoint fails, so an exchange tried
            // there would answer 503, not the refusal.
            let mut elsewhere =
                url::Url::parse(&callback.replace(&own, &format!("/callback/{answered_at}?")))
                    .unwrap();
            let kept: Vec<(String, String)> = elsewhere
                .query_pairs()
                .into_owned()
                .filter(|(k, _)| k != "iss")
                .collect();
            elsewhere.query_pairs_mut().clear().extend_pairs(kept);
            gateway.set_tamper(Tamper::TokenFails);
            let refused = browser.get(elsewhere.as_str()).await;
            gateway.set_tamper(Tamper::None);
            assert_eq!(refused.status(), 400, "{sent_to} answered at {answered_at}");
            assert!(refused.text().await.unwrap().contains("1900 0368"));
            // The login is over: its own callback cannot finish it afterwards either.
            assert_eq!(browser.get(&callback).await.status(), 400);
        }
        assert_eq!(app.count("accounts").await, 0);
        assert_eq!(app.count("sessions").await, 0);
        // A path that names no upstream is not a callback.
        assert_eq!(
            Browser::new()
                .get(&app.endpoint("/callback/nope?state=x&code=y"))
                .await
                .status(),
            404
        );
    }
);

with_two_upstreams!(
    an_isolated_test_gateway_never_reaches_a_real_account,
    AccountPolicy::Isolated,
    |app: TestApp, gateway: MockVneid| async move {
        let client = app.confidential_client().await;
        // C01 through VNeID: the real account, with the legacy records that hold the number.
        let real = sub_through(&app, &client, "C01", "vneid").await;
        let legacy_linked = |app: &TestApp| {
            let pool = app.app_db.pool().clone();
            async move {
                use sqlx::Row;
                sqlx::query(
                    "SELECT COUNT(*) AS n FROM legacy_accounts WHERE account_id IS NOT NULL",
                )
                .fetch_one(&pool)
                .await
                .unwrap()
                .try_get::<i64, _>("n")
                .unwrap()
            }
        };
        let linked_before = legacy_linked(&app).await;
        assert!(linked_before > 0, "C01's legacy records are linked");
        // The same citizen (same ID number, name, date of birth, even the same `sub`) through
        // the gateway gets an account of its own, at once: no phone step, no legacy record.
        let test = sub_through(&app, &client, "C01", "test").await;
        assert_ne!(test, real, "never the real account");
        assert_eq!(app.count("accounts").await, 2);
        assert_eq!(legacy_linked(&app).await, linked_before);
        use sqlx::Row;
        let isolated: Option<String> =
            sqlx::query("SELECT a.isolated_to FROM accounts a JOIN account_links l ON l.account_id = a.id WHERE l.upstream_iss = $1")
                .bind(gateway.issuer())
                .fetch_one(&app.app_db.pool())
                .await
                .unwrap()
                .try_get("isolated_to")
                .unwrap();
        assert_eq!(isolated.as_deref(), Some(gateway.issuer()));
        // Again through each: each keeps to its own account.
        assert_eq!(sub_through(&app, &client, "C01", "test").await, test);
        assert_eq!(sub_through(&app, &client, "C01", "vneid").await, real);
        // A citizen first seen at the gateway is not matched later by VNeID either: C02's real
        // login gets a real account, not the gateway's.
        let c02_test = sub_through(&app, &client, "C02", "test").await;
        let c02_real = sub_through(&app, &client, "C02", "vneid").await;
        assert_ne!(c02_test, c02_real);
    }
);

with_two_upstreams!(
    a_link_only_upstream_joins_accounts_and_creates_none,
    AccountPolicy::LinkOnly,
    |app: TestApp, _gateway: MockVneid| async move {
        let client = app.confidential_client().await;
        // Nobody to join: refused to the RP, nothing created.
        let cb = Browser::new()
            .login(&app, &client, "C01", &Pkce::new(), &[("idp_hint", "test")])
            .await;
        assert_eq!(cb.error(), Some("access_denied"));
        assert_eq!(app.count("accounts").await, 0);
        // Once VNeID made the account, the same person joins it.
        let real = sub_through(&app, &client, "C01", "vneid").await;
        assert_eq!(sub_through(&app, &client, "C01", "test").await, real);
        assert_eq!(app.count("accounts").await, 1);
    }
);
