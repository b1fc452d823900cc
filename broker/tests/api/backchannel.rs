//! OpenID Connect Back-Channel Logout 1.0 through the dispatcher: a test RP receives the logout
//! tokens and verifies them against the broker's JWKS. Covers who is told (every RP of the
//! ended session, no other), the token itself, retries and their record, an RP that is down,
//! the address policy, registration, the admin API, and two dispatchers on one database.

use std::time::{Duration, Instant};

use broker::clock::Clock;
use serde_json::{json, Value};

use crate::support::browser::{Browser, Pkce};
use crate::support::logout_rp::{misbehaving_rp, verify_logout_token, LogoutRp, Misbehaviour};
use crate::support::{jwt_parts, Client, TestApp};
use crate::{on_both_backends, on_both_backends_with};

const WAIT: Duration = Duration::from_secs(10);

async fn client_for(app: &TestApp, name: &str, backchannel: Option<&str>) -> Client {
    let mut body = json!({
        "client_name": name,
        "redirect_uris": [format!("https://{name}.example/cb")],
        "token_endpoint_auth_method": "client_secret_basic",
        "scope": "openid profile",
    });
    if let Some(uri) = backchannel {
        body["backchannel_logout_uri"] = json!(uri);
        body["backchannel_logout_session_required"] = json!(true);
    }
    app.client_with(body).await
}

/// Logs `hint` in to `client` in `browser` and exchanges the code: the token response.
async fn login(app: &TestApp, browser: &Browser, client: &Client, hint: &str) -> Value {
    let pkce = Pkce::new();
    let cb = browser.login(app, client, hint, &pkce, &[]).await;
    let (status, tokens) = app.exchange(client, cb.code(), &pkce.verifier).await;
    assert_eq!(status, 200, "{tokens}");
    tokens
}

fn id_claims(tokens: &Value) -> Value {
    jwt_parts(tokens["id_token"].as_str().expect("id_token")).1
}

/// RP-initiated logout with an ID token of the session as hint: logged out at once.
async fn logout(app: &TestApp, browser: &Browser, tokens: &Value) -> Duration {
    let url = url::Url::parse_with_params(
        &app.endpoint("/end_session"),
        &[("id_token_hint", tokens["id_token"].as_str().unwrap())],
    )
    .unwrap();
    let started = Instant::now();
    let out = browser.get(url.as_str()).await;
    assert_eq!(out.status(), 200, "signed out");
    started.elapsed()
}

async fn refresh(app: &TestApp, client: &Client, tokens: &Value) -> (u16, Value) {
    app.token(
        client,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
        ],
    )
    .await
}

async fn admin_get(app: &TestApp, path: &str) -> (u16, Value) {
    let r = app
        .http
        .get(app.endpoint(path))
        .bearer_auth(&app.operator_token)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// Waits until there are `n` deliveries and none is pending any more; returns them.
async fn settled(app: &TestApp, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, list) = admin_get(app, "/admin/deliveries").await;
        let list = list.as_array().cloned().unwrap_or_default();
        if list.len() >= n && list.iter().all(|d| d["status"] != "pending") {
            return list;
        }
        assert!(
            Instant::now() < deadline,
            "deliveries still pending: {list:?}"
        );
        // Slower than the admin API's rate limit (10 requests/s).
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

on_both_backends!(
    logout_tells_every_rp_of_the_session_and_no_other,
    |app: TestApp| async move {
        let rp = LogoutRp::start();
        let a = client_for(&app, "a", Some(&rp.uri("a"))).await;
        let b = client_for(&app, "b", Some(&rp.uri("b"))).await;
        let silent = client_for(&app, "c", None).await;
        let other = client_for(&app, "d", Some(&rp.uri("d"))).await;

        let browser = Browser::new();
        let at_a = login(&app, &browser, &a, "C01").await;
        let at_b = login(&app, &browser, &b, "C01").await;
        let at_c = login(&app, &browser, &silent, "C01").await;
        // Another session (another browser), of the same person and of someone else.
        let elsewhere = Browser::new();
        let other_session = login(&app, &elsewhere, &other, "C01").await;
        let stranger = Browser::new();
        login(&app, &stranger, &a, "C02").await;

        let sid = id_claims(&at_a)["sid"].as_str().unwrap().to_string();
        assert_eq!(id_claims(&at_b)["sid"], sid.as_str(), "one SSO session");
        let started = Instant::now();
        let took = logout(&app, &browser, &at_a).await;
        assert!(took < Duration::from_secs(5), "logout waits for no RP");

        let received = rp.wait_for(2, WAIT).await;
        for r in &received {
            // Not a timed test (bench/loadgen measures it); shown for whoever reads the log.
            eprintln!("logout token at {} after {:?}", r.name, r.at - started);
        }
        for (client, tokens) in [(&a, &at_a), (&b, &at_b)] {
            let name = if client.id == a.id { "a" } else { "b" };
            let got = rp.received_by(name);
            assert_eq!(got.len(), 1, "one logout token for {name}");
            assert_eq!(got[0].content_type, "application/x-www-form-urlencoded");
            assert_eq!(got[0].fields.len(), 1, "only logout_token is posted");
            let claims = verify_logout_token(&app, got[0].logout_token(), &client.id).await;
            let id = id_claims(tokens);
            assert_eq!(claims["sid"], id["sid"], "the sid of the RP's ID token");
            assert_eq!(claims["sub"], id["sub"], "the sub the RP knows");
            assert_eq!(claims["aud"], json!(client.id));
            let (header, _) = jwt_parts(got[0].logout_token());
            let (id_header, _) = jwt_parts(tokens["id_token"].as_str().unwrap());
            assert_eq!(header["alg"], id_header["alg"], "signed like its ID tokens");
        }
        let (_, first) = jwt_parts(received[0].logout_token());
        let (_, second) = jwt_parts(received[1].logout_token());
        assert_ne!(first["jti"], second["jti"]);

        // Nothing for the RP without a URI, the other browser's session or the other person.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(rp.received().len(), 2, "{:?}", rp.received());
        assert!(rp.received_by("d").is_empty());
        let (status, _) = refresh(&app, &other, &other_session).await;
        assert_eq!(status, 200, "the other session lives on");
        let (status, body) = refresh(&app, &silent, &at_c).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_grant"))
        );

        // Recorded: the event (no personal data) and two deliveries.
        let account = id_claims(&at_a)["sub"].as_str().unwrap().to_string();
        let (_, events) = admin_get(&app, &format!("/admin/accounts/{account}/events")).await;
        let ended: Vec<&Value> = events
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["event_type"] == "urn:vn:hue:broker:event:session:ended")
            .collect();
        assert_eq!(ended.len(), 1);
        assert_eq!(
            ended[0]["payload"],
            json!({"sid": sid, "reason": "logged_out"})
        );
        let deliveries = settled(&app, 2).await;
        assert_eq!(deliveries.len(), 2);
        assert!(deliveries.iter().all(|d| d["status"] == "delivered"
            && d["attempts"] == 1
            && d["last_http_status"] == 200));
    }
);

on_both_backends!(
    a_failing_rp_is_retried_with_a_fresh_token_and_every_attempt_recorded,
    |app: TestApp| async move {
        let rp = LogoutRp::start();
        let a = client_for(&app, "a", Some(&rp.uri("a"))).await;
        rp.answer("a", &[500, 503]);
        let browser = Browser::new();
        let tokens = login(&app, &browser, &a, "C01").await;
        logout(&app, &browser, &tokens).await;
        rp.wait_for(1, WAIT).await;
        // Retries wait on the broker's clock (backoff with jitter, at most 2 s, then 4 s).
        app.clock.advance(3);
        rp.wait_for(2, WAIT).await;
        app.clock.advance(5);
        let received = rp.wait_for(3, WAIT).await;
        let mut jtis = Vec::new();
        for r in &received {
            let claims = verify_logout_token(&app, r.logout_token(), &a.id).await;
            assert_eq!(claims["sid"], id_claims(&tokens)["sid"]);
            jtis.push(claims["jti"].clone());
        }
        jtis.dedup();
        assert_eq!(jtis.len(), 3, "each attempt is a new token");
        let deliveries = settled(&app, 1).await;
        assert_eq!(deliveries.len(), 1);
        assert_eq!(deliveries[0]["status"], "delivered");
        assert_eq!(deliveries[0]["attempts"], 3);
        let id = deliveries[0]["id"].as_str().unwrap();
        let (_, attempts) = admin_get(&app, &format!("/admin/deliveries/{id}/attempts")).await;
        let summary: Vec<(Value, Value)> = attempts
            .as_array()
            .unwrap()
            .iter()
            .map(|a| (a["outcome"].clone(), a["http_status"].clone()))
            .collect();
        assert_eq!(
            summary,
            vec![
                (json!("retry"), json!(500)),
                (json!("retry"), json!(503)),
                (json!("delivered"), json!(200)),
            ]
        );
    }
);

on_both_backends_with!(
    an_rp_that_is_down_blocks_no_logout_and_fails_visibly_in_the_end,
    |s: &mut broker::config::Settings| {
        s.dispatch.max_attempts = 2;
    },
    |app: TestApp| async move {
        // A port nobody listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let down = client_for(&app, "down", Some(&format!("http://127.0.0.1:{port}/bcl"))).await;
        let browser = Browser::new();
        let tokens = login(&app, &browser, &down, "C01").await;
        let took = logout(&app, &browser, &tokens).await;
        assert!(took < Duration::from_secs(5));
        let (status, _) = refresh(&app, &down, &tokens).await;
        assert_eq!(status, 400, "logged out although the RP is down");
        // First attempt fails, the second (after the backoff) fails for good.
        let deadline = Instant::now() + WAIT;
        let failed = loop {
            app.clock.advance(3);
            let (_, failed) = admin_get(&app, "/admin/deliveries?status=failed").await;
            if failed.as_array().is_some_and(|f| !f.is_empty()) {
                break failed;
            }
            assert!(Instant::now() < deadline, "the delivery never failed");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert_eq!(failed[0]["attempts"], 2);
        assert_eq!(failed[0]["last_error"], "connection failed");
        let (status, _) = admin_get(&app, "/admin/deliveries?status=bogus").await;
        assert_eq!(status, 400);
    }
);

on_both_backends_with!(
    loopback_and_private_receivers_are_refused_unless_allowed,
    |s: &mut broker::config::Settings| {
        // Production's address policy in a development broker (which lets the test register
        // loopback URIs at all).
        s.dispatch.allow_loopback = Some(false);
    },
    |app: TestApp| async move {
        let rp = LogoutRp::start();
        let port = rp.base.rsplit(':').next().unwrap().to_string();
        let literal = client_for(
            &app,
            "lit",
            Some(&format!("https://127.0.0.1:{port}/bcl/lit")),
        )
        .await;
        let named = client_for(
            &app,
            "named",
            Some(&format!("https://localhost:{port}/bcl/named")),
        )
        .await;
        let plain = client_for(&app, "plain", Some(&rp.uri("plain"))).await;
        let browser = Browser::new();
        let tokens = login(&app, &browser, &literal, "C01").await;
        login(&app, &browser, &named, "C01").await;
        login(&app, &browser, &plain, "C01").await;
        logout(&app, &browser, &tokens).await;
        let deliveries = settled(&app, 3).await;
        assert_eq!(deliveries.len(), 3);
        let error_of = |id: &str| {
            deliveries
                .iter()
                .find(|d| d["target"] == id)
                .map(|d| (d["status"].clone(), d["last_error"].clone()))
                .unwrap()
        };
        assert_eq!(
            error_of(&literal.id),
            (json!("failed"), json!("address not allowed"))
        );
        assert_eq!(
            error_of(&named.id),
            (json!("failed"), json!("address not allowed"))
        );
        assert_eq!(
            error_of(&plain.id),
            (json!("failed"), json!("only https URLs are allowed"))
        );
        assert!(rp.received().is_empty(), "nothing reached the loopback RP");
    }
);

on_both_backends!(
    registration_takes_https_backchannel_uris_only,
    |app: TestApp| async move {
        let (_, discovery) = {
            let r = app
                .http
                .get(app.endpoint("/.well-known/openid-configuration"))
                .send()
                .await
                .unwrap();
            (r.status(), r.json::<Value>().await.unwrap())
        };
        assert_eq!(discovery["backchannel_logout_supported"], true);
        assert_eq!(discovery["backchannel_logout_session_supported"], true);

        let base = json!({
            "client_name": "rp",
            "redirect_uris": ["https://rp.example/cb"],
        });
        let with = |field: &str, value: Value| {
            let mut body = base.clone();
            body[field] = value;
            body
        };
        for bad in [
            with("backchannel_logout_uri", json!("http://rp.example/logout")),
            with(
                "backchannel_logout_uri",
                json!("https://rp.example/logout#x"),
            ),
            with(
                "backchannel_logout_uri",
                json!("https://u:p@rp.example/logout"),
            ),
            with("backchannel_logout_uri", json!("rp.example/logout")),
            with("backchannel_logout_uri", json!(42)),
            with("backchannel_logout_session_required", json!(true)),
        ] {
            let r = app.admin_create(bad.clone()).await;
            assert_eq!(r.status(), 400, "{bad}");
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["error"], "invalid_client_metadata", "{bad}");
        }
        let mut good = with(
            "backchannel_logout_uri",
            json!("https://rp.example/logout?x=1"),
        );
        good["backchannel_logout_session_required"] = json!(true);
        let r = app.admin_create(good).await;
        assert_eq!(r.status(), 201);
        let view: Value = r.json().await.unwrap();
        assert_eq!(
            view["backchannel_logout_uri"],
            "https://rp.example/logout?x=1"
        );
        assert_eq!(view["backchannel_logout_session_required"], true);
    }
);

on_both_backends!(
    an_operator_ends_a_session_and_its_rps_are_told,
    |app: TestApp| async move {
        let rp = LogoutRp::start();
        let a = client_for(&app, "a", Some(&rp.uri("a"))).await;
        let browser = Browser::new();
        let tokens = login(&app, &browser, &a, "C01").await;
        let id = id_claims(&tokens);
        let (account, sid) = (id["sub"].as_str().unwrap(), id["sid"].as_str().unwrap());
        let path = |account: &str, sid: &str| {
            app.endpoint(&format!("/admin/accounts/{account}/sessions/{sid}"))
        };
        let anonymous = app.http.delete(path(account, sid)).send().await.unwrap();
        assert_eq!(anonymous.status(), 401);
        let delete = |account: String, sid: String| {
            let request = app
                .http
                .delete(path(&account, &sid))
                .bearer_auth(&app.operator_token);
            async move { request.send().await.unwrap().status().as_u16() }
        };
        assert_eq!(delete(account.into(), "no-such-sid".into()).await, 404);
        assert_eq!(delete("someone-else".into(), sid.into()).await, 404);
        assert_eq!(delete(account.into(), sid.into()).await, 204);
        let received = rp.wait_for(1, WAIT).await;
        let claims = verify_logout_token(&app, received[0].logout_token(), &a.id).await;
        assert_eq!(claims["sid"], sid);
        let (status, _) = refresh(&app, &a, &tokens).await;
        assert_eq!(status, 400);
        let (_, events) = admin_get(&app, &format!("/admin/accounts/{account}/events")).await;
        assert!(events
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["payload"]["reason"] == "administrator"));
    }
);

on_both_backends_with!(
    two_claimers_never_hold_one_delivery_at_once,
    |s: &mut broker::config::Settings| {
        s.dispatch.enabled = false;
    },
    |app: TestApp| async move {
        use broker::dispatch::{After, Attempt, DeliveryStatus, DeliveryStore, Planned};
        let store: &dyn DeliveryStore = &app.app_db;
        let now = app.clock.now();
        let planned: Vec<(i64, &'static str, Planned)> = (0..30)
            .map(|i| {
                (
                    1_000_000,
                    "test",
                    Planned {
                        target: format!("t{i}"),
                        payload: json!({}),
                        ordering: None,
                    },
                )
            })
            .collect();
        store.fan_out(&[1_000_000], &planned, now).await.unwrap();
        // The same fan-out again (another instance) adds nothing.
        store.fan_out(&[1_000_000], &planned, now).await.unwrap();
        let (one, two) = tokio::join!(
            store.claim_due(now, now + 60, "one", 30),
            store.claim_due(now, now + 60, "two", 30)
        );
        let (one, two) = (one.unwrap(), two.unwrap());
        let mut ids: Vec<&String> = one.iter().chain(&two).map(|d| &d.id).collect();
        assert_eq!(ids.len(), 30, "every delivery claimed once");
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 30, "no delivery claimed twice");
        assert!(store
            .claim_due(now, now + 60, "three", 30)
            .await
            .unwrap()
            .is_empty());
        // A crashed claimer's lease runs out; the next claim takes over, and the first one can
        // no longer record anything.
        let later = now + 61;
        let taken = store
            .claim_due(later, later + 60, "four", 100)
            .await
            .unwrap();
        assert_eq!(taken.len(), 30);
        let attempt = Attempt {
            at: later,
            outcome: "delivered".into(),
            http_status: Some(200),
            error: None,
            duration_ms: 1,
        };
        let stale = one.first().or(two.first()).unwrap();
        let done = After::Finished(DeliveryStatus::Delivered);
        assert!(!store.record_attempt(stale, &attempt, done).await.unwrap());
        let fresh = taken.iter().find(|d| d.id == stale.id).unwrap();
        assert!(store.record_attempt(fresh, &attempt, done).await.unwrap());
        assert!(
            !store.record_attempt(fresh, &attempt, done).await.unwrap(),
            "once"
        );
        assert_eq!(store.attempts(&fresh.id).await.unwrap().len(), 1);
        // Finished deliveries are purged with their attempts; pending ones never.
        assert_eq!(
            store.purge_finished(later, later).await.unwrap(),
            0,
            "not yet old"
        );
        assert_eq!(store.purge_finished(later + 1, 0).await.unwrap(), 1);
        assert!(store.attempts(&fresh.id).await.unwrap().is_empty());
        assert_eq!(store.list(None, 100).await.unwrap().len(), 29);
    }
);

on_both_backends!(
    two_dispatchers_on_one_database_send_each_logout_once,
    |app: TestApp| async move {
        // A second dispatcher next to the app's own, as another instance would run.
        let mut settings = broker::config::Settings {
            environment: broker::config::Environment::Development,
            ..Default::default()
        };
        settings.dispatch.poll_interval_ms = 20;
        broker::startup::dispatcher(
            &settings,
            &app.app_db,
            &app.broker.provider,
            app.clock.clone(),
        )
        .unwrap()
        .spawn();
        let rp = LogoutRp::start();
        let a = client_for(&app, "a", Some(&rp.uri("a"))).await;
        let mut sessions = Vec::new();
        for hint in ["C01", "C02", "C06", "C07", "C08"] {
            let browser = Browser::new();
            let tokens = login(&app, &browser, &a, hint).await;
            sessions.push((browser, tokens));
        }
        for (browser, tokens) in &sessions {
            logout(&app, browser, tokens).await;
        }
        rp.wait_for(5, WAIT).await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let mut sids: Vec<String> = rp
            .received()
            .iter()
            .map(|r| {
                jwt_parts(r.logout_token()).1["sid"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(sids.len(), 5, "one logout token per session");
        sids.sort();
        sids.dedup();
        assert_eq!(sids.len(), 5);
    }
);

on_both_backends_with!(
    redirects_are_not_followed_and_slow_receivers_hold_up_no_one,
    |s: &mut broker::config::Settings| {
        s.dispatch.request_timeout_secs = 2;
        s.dispatch.max_attempts = 1;
    },
    |app: TestApp| async move {
        let rp = LogoutRp::start();
        rp.answer("moved", &[302]);
        let moved = client_for(&app, "moved", Some(&rp.uri("moved"))).await;
        let hang = misbehaving_rp(Misbehaviour::Hang).await;
        let hanging = client_for(&app, "hanging", Some(&format!("{hang}/bcl"))).await;
        let endless = misbehaving_rp(Misbehaviour::Endless).await;
        let streaming = client_for(&app, "streaming", Some(&format!("{endless}/bcl"))).await;
        let fine = client_for(&app, "fine", Some(&rp.uri("fine"))).await;
        let browser = Browser::new();
        let tokens = login(&app, &browser, &hanging, "C01").await;
        for client in [&moved, &streaming, &fine] {
            login(&app, &browser, client, "C01").await;
        }
        let started = Instant::now();
        logout(&app, &browser, &tokens).await;
        // The good receiver is not held up by the one that never answers.
        rp.wait_for(2, WAIT).await;
        assert!(!rp.received_by("fine").is_empty());
        assert!(
            started.elapsed() < Duration::from_millis(1500),
            "{:?}",
            started.elapsed()
        );
        let deliveries = settled(&app, 4).await;
        let of = |client: &Client| {
            deliveries
                .iter()
                .find(|d| d["target"] == client.id.as_str())
                .map(|d| {
                    (
                        d["status"].clone(),
                        d["last_http_status"].clone(),
                        d["last_error"].clone(),
                    )
                })
                .unwrap()
        };
        assert_eq!(of(&fine), (json!("delivered"), json!(200), Value::Null));
        assert_eq!(
            of(&moved),
            (json!("failed"), json!(302), json!("unexpected status")),
            "a redirect is a failed attempt"
        );
        assert!(
            rp.received_by("redirected").is_empty(),
            "and is never followed"
        );
        assert_eq!(
            of(&hanging),
            (json!("failed"), Value::Null, json!("timeout"))
        );
        // An answer that never ends is read only so far: delivered long before the timeout.
        assert_eq!(
            of(&streaming),
            (json!("delivered"), json!(200), Value::Null)
        );
        let id = deliveries
            .iter()
            .find(|d| d["target"] == streaming.id.as_str())
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
        let (_, attempts) = admin_get(&app, &format!("/admin/deliveries/{id}/attempts")).await;
        let took = attempts[0]["duration_ms"]
            .as_i64()
            .unwrap_or_else(|| panic!("{attempts}"));
        assert!(took < 1500, "the endless answer was read for {took} ms");
    }
);
