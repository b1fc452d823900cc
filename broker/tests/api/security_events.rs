//! Security Event Tokens pushed to subscribers (RFC 8417, RFC 8935) through the dispatcher: a
//! test receiver verifies them against the broker's JWKS. Covers who is told (a subscriber with
//! a grant for the person, of a type it subscribed to; no other), the SET itself, one subject's
//! events in order while an earlier one is retried, exactly once by `jti`, a refusal
//! dead-lettered at once, the replay (new `jti`, same `txn`), registration, and the ordering
//! rule of the claim itself.

use std::time::{Duration, Instant};

use broker::clock::Clock;
use serde_json::{json, Value};

use crate::support::browser::{Browser, Pkce};
use crate::support::set_receiver::{event_of, verify_set, SetReceiver};
use crate::support::{jwt_parts, Client, TestApp};
use crate::{on_both_backends, on_both_backends_with};

const WAIT: Duration = Duration::from_secs(10);
const SESSION_ENDED: &str = "urn:vn:hue:broker:event:session:ended";
const ACCOUNT_UPDATED: &str = "urn:vn:hue:broker:event:account:updated";

async fn subscriber(app: &TestApp, name: &str, uri: &str, types: &[&str]) -> Client {
    app.client_with(json!({
        "client_name": name,
        "redirect_uris": [format!("https://{name}.example/cb")],
        "token_endpoint_auth_method": "client_secret_basic",
        "scope": "openid profile",
        "event_delivery_uri": uri,
        "event_types": types,
    }))
    .await
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

/// RP-initiated logout: the session ends and `session:ended` is written.
async fn logout(app: &TestApp, browser: &Browser, tokens: &Value) {
    let url = url::Url::parse_with_params(
        &app.endpoint("/end_session"),
        &[("id_token_hint", tokens["id_token"].as_str().unwrap())],
    )
    .unwrap();
    assert_eq!(browser.get(url.as_str()).await.status(), 200);
}

async fn admin(app: &TestApp, method: reqwest::Method, path: &str) -> (u16, Value) {
    let r = app
        .http
        .request(method, app.endpoint(path))
        .bearer_auth(&app.operator_token)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn admin_get(app: &TestApp, path: &str) -> (u16, Value) {
    admin(app, reqwest::Method::GET, path).await
}

/// The SET deliveries once none is pending any more (at least `n` of them).
async fn settled(app: &TestApp, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, list) = admin_get(app, "/admin/deliveries").await;
        let list: Vec<Value> = list
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|d| d["route"] == "security_event")
            .collect();
        if list.len() >= n && list.iter().all(|d| d["status"] != "pending") {
            return list;
        }
        assert!(Instant::now() < deadline, "still pending: {list:?}");
        // Slower than the admin API's rate limit (10 requests/s).
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

/// The person's `session:ended` events as the outbox numbered them: (id, seq) in order.
async fn session_events(app: &TestApp, account: &str) -> Vec<(i64, i64)> {
    let (_, events) = admin_get(app, &format!("/admin/accounts/{account}/events")).await;
    events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event_type"] == SESSION_ENDED)
        .map(|e| (e["id"].as_i64().unwrap(), e["seq"].as_i64().unwrap()))
        .collect()
}

on_both_backends!(
    a_subscriber_with_a_grant_receives_signed_sets_and_no_other_does,
    |app: TestApp| async move {
        let rx = SetReceiver::start();
        let a = subscriber(&app, "a", &rx.uri("a"), &[SESSION_ENDED]).await;
        let b = subscriber(&app, "b", &rx.uri("b"), &[SESSION_ENDED]).await;
        let c = subscriber(&app, "c", &rx.uri("c"), &[ACCOUNT_UPDATED]).await;

        let browser = Browser::new();
        let at_a = login(&app, &browser, &a, "C01").await;
        login(&app, &browser, &c, "C01").await;
        let other = Browser::new();
        let at_b = login(&app, &other, &b, "C02").await;

        logout(&app, &browser, &at_a).await;
        let got = rx.wait_for("a", 1, WAIT).await;
        settled(&app, 1).await;
        assert_eq!(got.len(), 1, "one SET for the one event");
        assert_eq!(
            got[0].content_type, "application/secevent+jwt",
            "RFC 8935 §2"
        );
        assert_eq!(got[0].accept, "application/json");
        let claims = verify_set(&app, &got[0].token, &a.id).await;
        let id = id_claims(&at_a);
        assert_eq!(claims["aud"], json!(a.id));
        assert_eq!(
            claims["sub_id"]["id"], id["sub"],
            "the sub a's ID tokens carry"
        );
        let (kind, event) = event_of(&claims);
        assert_eq!(kind, SESSION_ENDED);
        assert_eq!(event["sid"], id["sid"]);
        assert_eq!(event["reason"], "logged_out");
        let account = id["sub"].as_str().unwrap();
        let events = session_events(&app, account).await;
        assert_eq!(events.len(), 1);
        assert_eq!(event["seq"], json!(events[0].1), "the subject's number");
        assert_eq!(
            claims["txn"],
            json!(events[0].0.to_string()),
            "the event id"
        );
        // b has no grant for C01; c has one but did not subscribe to this type.
        assert!(rx.received_by("b").is_empty(), "no grant, no data");
        assert!(
            rx.received_by("c").is_empty(),
            "not subscribed to session:ended"
        );

        logout(&app, &other, &at_b).await;
        let got = rx.wait_for("b", 1, WAIT).await;
        let claims = verify_set(&app, &got[0].token, &b.id).await;
        assert_eq!(claims["sub_id"]["id"], id_claims(&at_b)["sub"]);
        let deliveries = settled(&app, 2).await;
        assert_eq!(deliveries.len(), 2, "{deliveries:?}");
        assert!(deliveries.iter().all(|d| d["status"] == "delivered"));
        assert_eq!(rx.received_by("a").len(), 1);
        assert!(rx.received_by("c").is_empty());
    }
);

on_both_backends!(
    a_subscriber_that_is_down_gets_every_event_once_and_in_order,
    |app: TestApp| async move {
        let rx = SetReceiver::start();
        let a = subscriber(&app, "a", &rx.uri("a"), &[SESSION_ENDED]).await;
        // Three sessions of C01 at a, and one of C02.
        let mut sessions = Vec::new();
        for _ in 0..3 {
            let browser = Browser::new();
            let tokens = login(&app, &browser, &a, "C01").await;
            sessions.push((browser, tokens));
        }
        let c02 = Browser::new();
        let c02_tokens = login(&app, &c02, &a, "C02").await;
        let c01 = id_claims(&sessions[0].1)["sub"]
            .as_str()
            .unwrap()
            .to_string();

        rx.answer("a", &[503]);
        for (browser, tokens) in &sessions {
            logout(&app, browser, tokens).await;
        }
        rx.wait_for("a", 1, WAIT).await;
        // Another person's event is not held up by C01's.
        logout(&app, &c02, &c02_tokens).await;
        rx.wait_for("a", 2, WAIT).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let so_far = rx.received_by("a");
        assert_eq!(so_far.len(), 2, "C01's later events wait for the first");
        assert_eq!(
            so_far[1].claims()["sub_id"]["id"],
            id_claims(&c02_tokens)["sub"]
        );

        // Retries wait on the broker's clock (backoff with jitter, at most 2 s, then 4 s).
        rx.answer("a", &[503]);
        app.clock.advance(3);
        rx.wait_for("a", 3, WAIT).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            rx.received_by("a").len(),
            3,
            "still waiting behind the retry"
        );
        app.clock.advance(5);
        let received = rx.wait_for("a", 6, WAIT).await;
        settled(&app, 4).await;

        let mine: Vec<Value> = received
            .iter()
            .filter(|r| r.claims()["sub_id"]["id"] == json!(c01))
            .map(|r| r.claims())
            .collect();
        let seqs: Vec<i64> = mine
            .iter()
            .map(|c| event_of(c).1["seq"].as_i64().unwrap())
            .collect();
        let expected: Vec<i64> = session_events(&app, &c01)
            .await
            .iter()
            .map(|e| e.1)
            .collect();
        assert_eq!(expected.len(), 3);
        assert_eq!(
            seqs,
            vec![
                expected[0],
                expected[0],
                expected[0],
                expected[1],
                expected[2]
            ],
            "the first event three times (503, 503, 202), then the others in order"
        );
        let jtis: Vec<&Value> = mine.iter().map(|c| &c["jti"]).collect();
        assert!(
            jtis[0] == jtis[1] && jtis[1] == jtis[2],
            "a retry is the same SET"
        );
        let accepted: Vec<String> = received
            .iter()
            .filter(|r| r.status == 202)
            .map(|r| r.claims()["jti"].as_str().unwrap().to_string())
            .collect();
        let mut unique = accepted.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(accepted.len(), 4, "each event accepted once");
        assert_eq!(unique.len(), 4, "by jti");
        for r in &received {
            verify_set(&app, &r.token, &a.id).await;
        }
    }
);

on_both_backends!(
    a_refused_set_is_dead_lettered_at_once_and_a_replay_has_a_new_jti,
    |app: TestApp| async move {
        let rx = SetReceiver::start();
        let a = subscriber(&app, "a", &rx.uri("a"), &[SESSION_ENDED]).await;
        let first = Browser::new();
        let first_tokens = login(&app, &first, &a, "C01").await;
        let second = Browser::new();
        let second_tokens = login(&app, &second, &a, "C01").await;
        rx.answer("a", &[400]);
        logout(&app, &first, &first_tokens).await;
        logout(&app, &second, &second_tokens).await;
        // The refusal does not hold the next event up for retries.
        let got = rx.wait_for("a", 2, WAIT).await;
        assert_eq!(got[0].status, 400);
        assert_eq!(got[1].status, 202);
        let refused = got[0].claims();
        let (_, failed) = admin_get(&app, "/admin/deliveries?status=failed").await;
        let failed = failed.as_array().unwrap();
        assert_eq!(failed.len(), 1, "{failed:?}");
        assert_eq!(
            failed[0]["attempts"], 1,
            "not retried: the same SET would be refused"
        );
        assert_eq!(failed[0]["last_http_status"], 400);
        assert_eq!(failed[0]["last_error"], "refused: invalid_key");
        assert_eq!(failed[0]["id"], refused["jti"], "jti is the delivery id");
        let id = failed[0]["id"].as_str().unwrap();

        let (status, replay) = admin(
            &app,
            reqwest::Method::POST,
            &format!("/admin/deliveries/{id}/replay"),
        )
        .await;
        assert_eq!(status, 201, "{replay}");
        assert_eq!(replay["replay_of"], id);
        let got = rx.wait_for("a", 3, WAIT).await;
        let again = verify_set(&app, &got[2].token, &a.id).await;
        assert_eq!(again["jti"], replay["id"], "a new jti");
        assert_ne!(again["jti"], refused["jti"]);
        assert_eq!(again["txn"], refused["txn"], "the original txn");
        assert_eq!(event_of(&again).1["seq"], event_of(&refused).1["seq"]);
        settled(&app, 3).await;
        let (_, view) = admin_get(
            &app,
            &format!("/admin/deliveries/{}", replay["id"].as_str().unwrap()),
        )
        .await;
        assert_eq!(view["status"], "delivered");
        assert_eq!(view["replay"], 1);

        let (status, _) = admin(
            &app,
            reqwest::Method::POST,
            "/admin/deliveries/0190c8f2-0000-7000-8000-000000000000/replay",
        )
        .await;
        assert_eq!(status, 404);
        let anonymous = app
            .http
            .post(app.endpoint(&format!("/admin/deliveries/{id}/replay")))
            .send()
            .await
            .unwrap();
        assert_eq!(anonymous.status(), 401);
    }
);

on_both_backends!(
    event_subscriptions_are_checked_at_registration,
    |app: TestApp| async move {
        let base = json!({
            "client_name": "rp",
            "redirect_uris": ["https://rp.example/cb"],
            "event_delivery_uri": "https://rp.example/events",
            "event_types": [SESSION_ENDED],
        });
        let with = |field: &str, value: Value| {
            let mut body = base.clone();
            body[field] = value;
            body
        };
        let without = |field: &str| {
            let mut body = base.clone();
            body.as_object_mut().unwrap().remove(field);
            body
        };
        for bad in [
            with("event_delivery_uri", json!("http://rp.example/events")),
            with("event_delivery_uri", json!("https://rp.example/events#x")),
            with("event_delivery_uri", json!("https://u:p@rp.example/events")),
            with("event_delivery_uri", json!("rp.example/events")),
            with("event_types", json!([])),
            with(
                "event_types",
                json!(["urn:vn:hue:broker:event:role:invented"]),
            ),
            with("event_types", json!(["https://schemas.example/event"])),
            with("event_types", json!([SESSION_ENDED, SESSION_ENDED])),
            with("event_types", json!(SESSION_ENDED)),
            without("event_delivery_uri"),
        ] {
            let r = app.admin_create(bad.clone()).await;
            assert_eq!(r.status(), 400, "{bad}");
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["error"], "invalid_client_metadata", "{bad}");
        }
        let r = app.admin_create(base.clone()).await;
        assert_eq!(r.status(), 201);
        let view: Value = r.json().await.unwrap();
        assert_eq!(view["event_delivery_uri"], "https://rp.example/events");
        assert_eq!(view["event_types"], json!([SESSION_ENDED]));
        // Plain http to a loopback host is for development (this app).
        let local = with("event_delivery_uri", json!("http://127.0.0.1:9/events"));
        assert_eq!(app.admin_create(local).await.status(), 201);
    }
);

on_both_backends_with!(
    one_subjects_deliveries_are_claimed_one_after_the_other,
    |s: &mut broker::config::Settings| {
        s.dispatch.enabled = false;
    },
    |app: TestApp| async move {
        use broker::dispatch::{
            After, Attempt, Delivery, DeliveryStatus, DeliveryStore, Ordering, Planned,
        };
        let store: &dyn DeliveryStore = &app.app_db;
        let now = app.clock.now();
        let plan = |event: i64, target: &str, subject: &str, seq: i64| {
            (
                event,
                "ordered",
                Planned {
                    target: target.into(),
                    payload: json!({}),
                    ordering: Some(Ordering {
                        subject: subject.into(),
                        seq,
                    }),
                },
            )
        };
        let planned = vec![
            plan(2_000_003, "t", "s", 3),
            plan(2_000_001, "t", "s", 1),
            plan(2_000_002, "t", "s", 2),
            plan(2_000_001, "u", "s", 1),
            plan(2_000_004, "t", "other", 1),
        ];
        store
            .fan_out(&[2_000_001, 2_000_002, 2_000_003, 2_000_004], &planned, now)
            .await
            .unwrap();
        let key = |d: &Delivery| (d.event_id, d.target.clone());
        let claim = |token: &'static str| async move {
            let mut claimed: Vec<Delivery> =
                store.claim_due(now, now + 60, token, 100).await.unwrap();
            claimed.sort_by_key(key);
            claimed
        };
        let first = claim("one").await;
        assert_eq!(
            first.iter().map(key).collect::<Vec<_>>(),
            vec![
                (2_000_001, "t".to_string()),
                (2_000_001, "u".to_string()),
                (2_000_004, "t".to_string())
            ],
            "the first of each (target, subject)"
        );
        let done = |d: &Delivery, status: DeliveryStatus| {
            let attempt = Attempt {
                at: now,
                outcome: status.as_str().into(),
                http_status: Some(202),
                error: None,
                duration_ms: 1,
            };
            let d = d.clone();
            async move {
                assert!(store
                    .record_attempt(&d, &attempt, After::Finished(status))
                    .await
                    .unwrap());
            }
        };
        // A retry keeps it pending: the next still waits.
        let retry = Attempt {
            at: now,
            outcome: "retry".into(),
            http_status: Some(503),
            error: None,
            duration_ms: 1,
        };
        assert!(store
            .record_attempt(&first[0], &retry, After::Retry { at: now })
            .await
            .unwrap());
        let again = claim("two").await;
        assert_eq!(
            again.iter().map(key).collect::<Vec<_>>(),
            vec![(2_000_001, "t".to_string())]
        );
        done(&again[0], DeliveryStatus::Delivered).await;
        let next = claim("three").await;
        assert_eq!(
            next.iter().map(key).collect::<Vec<_>>(),
            vec![(2_000_002, "t".to_string())]
        );
        // A dead letter lets the sequence go on.
        done(&next[0], DeliveryStatus::Failed).await;
        let last = claim("four").await;
        assert_eq!(
            last.iter().map(key).collect::<Vec<_>>(),
            vec![(2_000_003, "t".to_string())]
        );
    }
);

on_both_backends!(
    events_nobody_receives_are_fanned_out_without_a_delivery,
    |app: TestApp| async move {
        // A login's events (the account created, its session) for clients none of which
        // subscribes: the dispatcher marks them fanned out (its shortcut without a
        // transaction) and makes no delivery, and a later event with a subscriber still goes.
        let client = app
            .client_with(json!({
                "client_name": "plain",
                "redirect_uris": ["https://plain.example/cb"],
                "token_endpoint_auth_method": "client_secret_basic",
                "scope": "openid profile",
            }))
            .await;
        let browser = Browser::new();
        let tokens = login(&app, &browser, &client, "C01").await;
        assert!(app.count("outbox").await > 0, "the login wrote events");
        let deadline = Instant::now() + WAIT;
        loop {
            let pending: i64 = {
                use sqlx::Row;
                sqlx::query("SELECT COUNT(*) AS n FROM outbox WHERE dispatched_at IS NULL")
                    .fetch_one(&app.app_db.pool())
                    .await
                    .expect("count")
                    .get("n")
            };
            if pending == 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{pending} events never fanned out"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(app.count("deliveries").await, 0, "nobody receives them");
        // A subscriber's session ends afterwards: its SET still goes out at once.
        let rx = SetReceiver::start();
        let a = subscriber(&app, "a", &rx.uri("a"), &[SESSION_ENDED]).await;
        let at_a = login(&app, &browser, &a, "C01").await;
        logout(&app, &browser, &at_a).await;
        assert_eq!(rx.wait_for("a", 1, WAIT).await.len(), 1);
        drop(tokens);
    }
);
