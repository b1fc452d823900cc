//! One mobile device at a time: the newer mobile login pushes the older device out, at once,
//! every RP of the old device's session hears it (back-channel logout), and nothing brings the
//! old device back (its refresh, its access tokens, its SSO session, a later refresh).

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sqlx::Row;

use crate::on_both_backends;
use crate::support::browser::{code_request, location, query_of, Browser, Pkce};
use crate::support::logout_rp::{verify_logout_token, LogoutRp};
use crate::support::{jwt_parts, Client, TestApp};

const WAIT: Duration = Duration::from_secs(10);

async fn mobile_client(app: &TestApp, name: &str, backchannel: &str, slot: Option<&str>) -> Client {
    let mut body = json!({
        "client_name": name,
        "application_type": "native",
        "redirect_uris": [format!("vn.hue.{name}:/oauth")],
        "grant_types": ["authorization_code", "refresh_token"],
        "token_endpoint_auth_method": "none",
        "scope": "openid profile",
        "device_class": "mobile",
        "backchannel_logout_uri": backchannel,
    });
    if let Some(slot) = slot {
        body["device_slot"] = json!(slot);
    }
    app.client_with(body).await
}

async fn web_client(app: &TestApp, name: &str, backchannel: &str) -> Client {
    app.client_with(json!({
        "client_name": name,
        "redirect_uris": [format!("https://{name}.example/cb")],
        "grant_types": ["authorization_code", "refresh_token"],
        "token_endpoint_auth_method": "client_secret_basic",
        "scope": "openid profile",
        "backchannel_logout_uri": backchannel,
    }))
    .await
}

/// A code for `client` from `browser` (`device_id` when given); not yet exchanged.
async fn code(
    app: &TestApp,
    browser: &Browser,
    client: &Client,
    hint: &str,
    device: Option<&str>,
) -> (String, Pkce) {
    let pkce = Pkce::new();
    let extra: Vec<(&str, &str)> = device.map(|d| ("device_id", d)).into_iter().collect();
    let cb = browser.login(app, client, hint, &pkce, &extra).await;
    (cb.code().to_string(), pkce)
}

async fn login(
    app: &TestApp,
    browser: &Browser,
    client: &Client,
    hint: &str,
    device: Option<&str>,
) -> Value {
    let (code, pkce) = code(app, browser, client, hint, device).await;
    let (status, tokens) = app.exchange(client, &code, &pkce.verifier).await;
    assert_eq!(status, 200, "{tokens}");
    tokens
}

async fn refresh(app: &TestApp, client: &Client, tokens: &Value) -> u16 {
    refreshed(app, client, tokens).await.0
}

/// A refresh and its answer (the next tokens).
async fn refreshed(app: &TestApp, client: &Client, tokens: &Value) -> (u16, Value) {
    app.token(
        client,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
        ],
    )
    .await
}

/// A mobile app's silent request (`prompt=none`) from `browser` for `device`: the error, if any.
async fn silent(app: &TestApp, browser: &Browser, client: &Client, device: &str) -> Option<String> {
    let pkce = Pkce::new();
    let params = code_request(
        client,
        &pkce,
        &[("prompt", "none"), ("device_id", device), ("state", "s1")],
    );
    let answer = browser.authorize(app, &params).await;
    query_of(&location(&answer)).get("error").cloned()
}

fn claims(tokens: &Value) -> Value {
    jwt_parts(tokens["id_token"].as_str().unwrap()).1
}

/// Drives `who`'s request until it stops at the armed fault point.
async fn stops_at<F>(gate: &broker::faults::Gate, mut request: Pin<&mut F>, who: &str)
where
    F: Future,
    F::Output: Debug,
{
    tokio::select! {
        _ = gate.reached() => {}
        answer = &mut request => panic!("{who} finished without reaching the fault point: {answer:?}"),
    }
}

/// `who`'s request is still waiting after 300 ms: for the lock on the slot that `holder`'s
/// request, stopped at the fault point, holds.
async fn waits_behind<F>(mut request: Pin<&mut F>, who: &str, holder: &str)
where
    F: Future,
    F::Output: Debug,
{
    let early = tokio::time::timeout(Duration::from_millis(300), &mut request).await;
    assert!(
        early.is_err(),
        "{who} went past {holder}'s lock on the slot: {early:?}"
    );
}

async fn holder(app: &TestApp, account: &str) -> Option<String> {
    sqlx::query("SELECT device_id FROM mobile_slots WHERE account_id = $1")
        .bind(account)
        .fetch_optional(&app.app_db.pool())
        .await
        .unwrap()
        .map(|row| row.get::<String, _>("device_id"))
}

on_both_backends!(
    a_newer_mobile_login_pushes_the_older_device_out_and_every_rp_of_its_session_hears_it,
    |app: TestApp| async move {
        let rp = LogoutRp::start();
        let mobile = mobile_client(&app, "s", &rp.uri("mobile"), None).await;
        let web = web_client(&app, "portal", &rp.uri("web")).await;

        // Device A: the app, and a web portal in the same phone browser (one session).
        let phone_a = Browser::new();
        let at_a = login(&app, &phone_a, &mobile, "C01", Some("device-a")).await;
        let web_a = login(&app, &phone_a, &web, "C01", None).await;
        let account = claims(&at_a)["sub"].as_str().unwrap().to_string();
        let sid_a = claims(&at_a)["sid"].as_str().unwrap().to_string();
        assert_eq!(claims(&web_a)["sid"], sid_a.as_str());
        assert_eq!(holder(&app, &account).await.as_deref(), Some("device-a"));

        // A web login elsewhere never takes the slot.
        let laptop = Browser::new();
        let at_laptop = login(&app, &laptop, &web, "C01", None).await;
        assert_eq!(holder(&app, &account).await.as_deref(), Some("device-a"));
        assert_eq!(refresh(&app, &mobile, &at_a).await, 200, "A still holds it");

        // Device B logs in: from its token response on, A is out.
        let phone_b = Browser::new();
        let at_b = login(&app, &phone_b, &mobile, "C01", Some("device-b")).await;
        let evicted_at = Instant::now();
        assert_eq!(holder(&app, &account).await.as_deref(), Some("device-b"));
        let (status, body) = app
            .token(
                &mobile,
                &[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", at_a["refresh_token"].as_str().unwrap()),
                ],
            )
            .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_grant"))
        );
        let (status, _) = app.userinfo(at_a["access_token"].as_str().unwrap()).await;
        assert_eq!(status, 401, "A's access token is dead");
        assert_eq!(
            refresh(&app, &web, &web_a).await,
            400,
            "the web app of A's session is out too"
        );
        let (status, at_b) = refreshed(&app, &mobile, &at_b).await;
        assert_eq!(status, 200);
        assert_eq!(
            refresh(&app, &web, &at_laptop).await,
            200,
            "the laptop stays"
        );

        // Every RP of A's session is told, with A's sid.
        let received = rp.wait_for(2, WAIT).await;
        eprintln!("logout tokens after {:?}", evicted_at.elapsed());
        for (name, client) in [("mobile", &mobile), ("web", &web)] {
            let got = rp.received_by(name);
            assert_eq!(got.len(), 1, "{name}: {received:?}");
            let token = verify_logout_token(&app, got[0].logout_token(), &client.id).await;
            assert_eq!(token["sid"], sid_a.as_str());
            assert_eq!(token["sub"], account.as_str());
        }

        // A's browser session is over too: no silent login brings A back.
        let pkce = Pkce::new();
        let params = code_request(
            &mobile,
            &pkce,
            &[
                ("prompt", "none"),
                ("device_id", "device-a"),
                ("state", "s1"),
            ],
        );
        let answer = phone_a.authorize(&app, &params).await;
        let back = query_of(&location(&answer));
        assert_eq!(
            back.get("error").map(String::as_str),
            Some("login_required")
        );
        let ended: Option<String> = sqlx::query("SELECT end_reason FROM sessions WHERE sid = $1")
            .bind(&sid_a)
            .fetch_one(&app.app_db.pool())
            .await
            .unwrap()
            .get("end_reason");
        assert_eq!(ended.as_deref(), Some("device_evicted"));

        // The same device logging in again keeps the slot, and its earlier tokens.
        let again = Browser::new();
        let at_b2 = login(&app, &again, &mobile, "C01", Some("device-b")).await;
        assert_eq!(refresh(&app, &mobile, &at_b2).await, 200);
        let (status, at_b) = refreshed(&app, &mobile, &at_b).await;
        assert_eq!(status, 200, "B's earlier family lives on: {at_b}");
        let (status, _) = app.userinfo(at_b["access_token"].as_str().unwrap()).await;
        assert_eq!(status, 200);
        assert_eq!(holder(&app, &account).await.as_deref(), Some("device-b"));

        // A web login in a phone's browser never answers a mobile app's silent request: the
        // app's own device must have started the session (an evicted phone could otherwise
        // take the slot back without VNeID).
        let shared = Browser::new();
        login(&app, &shared, &web, "C01", None).await;
        assert_eq!(
            silent(&app, &shared, &mobile, "device-a").await.as_deref(),
            Some("login_required")
        );

        // A refresh rotates only while the grant's device holds the slot, revoked or not.
        sqlx::query("UPDATE mobile_slots SET device_id = 'someone-else' WHERE account_id = $1")
            .bind(&account)
            .execute(&app.app_db.pool())
            .await
            .unwrap();
        assert_eq!(refresh(&app, &mobile, &at_b).await, 400);
    }
);

on_both_backends!(
    a_mobile_client_must_name_its_device_and_sibling_apps_share_one,
    |app: TestApp| async move {
        let rp = LogoutRp::start();
        let hue_s = mobile_client(&app, "s", &rp.uri("s"), Some("vn.hue")).await;
        let sibling = mobile_client(&app, "dvc", &rp.uri("dvc"), Some("vn.hue")).await;
        let stranger = mobile_client(&app, "other", &rp.uri("other"), None).await;

        // No device_id: refused, back to the app.
        let pkce = Pkce::new();
        let params = code_request(&hue_s, &pkce, &[("state", "s1")]);
        let answer = Browser::new().authorize(&app, &params).await;
        let back = query_of(&location(&answer));
        assert_eq!(
            back.get("error").map(String::as_str),
            Some("invalid_request")
        );
        assert!(back["error_description"].contains("device_id"), "{back:?}");
        let params = code_request(&hue_s, &pkce, &[("state", "s1"), ("device_id", "a b")]);
        let answer = Browser::new().authorize(&app, &params).await;
        assert_eq!(
            query_of(&location(&answer))
                .get("error")
                .map(String::as_str),
            Some("invalid_request"),
            "a malformed device_id"
        );

        // Two apps of one group on one phone (one vendor id): one device, both stay.
        let phone = Browser::new();
        let first = login(&app, &phone, &hue_s, "C02", Some("ifv-1")).await;
        let phone2 = Browser::new();
        let second = login(&app, &phone2, &sibling, "C02", Some("ifv-1")).await;
        assert_eq!(refresh(&app, &hue_s, &first).await, 200);
        assert_eq!(refresh(&app, &sibling, &second).await, 200);
        // An app of another group cannot tell it is the same phone: it is another device.
        let phone3 = Browser::new();
        let third = login(&app, &phone3, &stranger, "C02", Some("ifv-1")).await;
        assert_eq!(refresh(&app, &hue_s, &first).await, 400);
        assert_eq!(refresh(&app, &sibling, &second).await, 400);
        assert_eq!(refresh(&app, &stranger, &third).await, 200);

        // Registration: device_slot only for mobile clients, and well formed.
        for body in [
            json!({"client_name": "x", "redirect_uris": ["https://x.example/cb"], "device_slot": "vn.hue"}),
            json!({"client_name": "x", "redirect_uris": ["vn.x:/cb"], "application_type": "native",
                   "token_endpoint_auth_method": "none", "device_class": "mobile", "device_slot": "VN HUE"}),
        ] {
            let response = app.admin_create(body).await;
            assert_eq!(response.status(), 400);
            let error: Value = response.json().await.unwrap();
            assert_eq!(error["error"], "invalid_client_metadata");
        }
    }
);

on_both_backends!(
    two_devices_racing_for_the_slot_end_with_exactly_one_owner,
    |app: TestApp| async move {
        let rp = LogoutRp::start();
        let mobile = mobile_client(&app, "s", &rp.uri("s"), None).await;
        let (code_a, pkce_a) = code(&app, &Browser::new(), &mobile, "C06", Some("device-a")).await;
        let (code_b, pkce_b) = code(&app, &Browser::new(), &mobile, "C06", Some("device-b")).await;
        let account = {
            let browser = Browser::new();
            let web = web_client(&app, "portal", &rp.uri("web")).await;
            claims(&login(&app, &browser, &web, "C06", None).await)["sub"]
                .as_str()
                .unwrap()
                .to_string()
        };

        // A's token request stops inside its transaction, holding the slot, before it commits.
        let gate = broker::faults::arm("slot:before-commit", &account);
        let a = app.exchange(&mobile, &code_a, &pkce_a.verifier);
        tokio::pin!(a);
        stops_at(&gate, a.as_mut(), "A").await;
        // B's request while A holds the slot: it waits for A's lock, deciding nothing yet.
        let b = app.exchange(&mobile, &code_b, &pkce_b.verifier);
        tokio::pin!(b);
        waits_behind(b.as_mut(), "B", "A").await;
        gate.release();
        let ((status_a, at_a), (status_b, at_b)) = tokio::join!(a, b);
        broker::faults::disarm("slot:before-commit", &account);
        assert_eq!(status_b, 200, "{at_b}");
        // A committed first. B's eviction may end A's session before A has answered, and A
        // then answers `invalid_grant` (its check of the session after the commit): either
        // way A's tokens are dead.
        assert!(
            status_a == 200 || (status_a == 400 && at_a["error"] == "invalid_grant"),
            "{at_a}"
        );

        // B came second and saw A: B holds the slot, A's fresh tokens are dead.
        assert_eq!(holder(&app, &account).await.as_deref(), Some("device-b"));
        if status_a == 200 {
            assert_eq!(refresh(&app, &mobile, &at_a).await, 400);
        }
        assert_eq!(refresh(&app, &mobile, &at_b).await, 200);
        let live: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM grants WHERE account_id = $1 AND device_id IS NOT NULL \
             AND revoked_at IS NULL",
        )
        .bind(&account)
        .fetch_one(&app.app_db.pool())
        .await
        .unwrap()
        .get("n");
        assert_eq!(live, 1, "one device's grant lives");
    }
);

/// The slot's holder logging in again takes the short way on PostgreSQL (one statement, no
/// transaction: `SlotStore::take_if_held`). While another device's token request is taking the
/// slot, that way must wait for it and then see that the holder changed. (SQLite has no short
/// way: every token request of a mobile app takes the database's write lock, as the race above
/// shows; and a login there would wait for the held lock too.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_holder_logging_in_again_waits_for_a_device_taking_the_slot_then_takes_it_back() {
    let Some(app) = TestApp::spawn_production().await else {
        return;
    };
    let _dir = app.guard();
    let rp = LogoutRp::start();
    let mobile = mobile_client(&app, "s", &rp.uri("s"), None).await;
    let first = login(&app, &Browser::new(), &mobile, "C06", Some("device-a")).await;
    let account = claims(&first)["sub"].as_str().unwrap().to_string();
    assert_eq!(holder(&app, &account).await.as_deref(), Some("device-a"));
    let (code_b, pkce_b) = code(&app, &Browser::new(), &mobile, "C06", Some("device-b")).await;

    // B's token request stops inside its transaction, about to take the slot from A.
    let gate = broker::faults::arm("slot:before-commit", &account);
    let b = app.exchange(&mobile, &code_b, &pkce_b.verifier);
    tokio::pin!(b);
    stops_at(&gate, b.as_mut(), "B").await;
    // A logs in again meanwhile (a session B's eviction did not see). A still holds the slot
    // as committed, but must not decide on that before B's transaction ends.
    let (code_a, pkce_a) = code(&app, &Browser::new(), &mobile, "C06", Some("device-a")).await;
    let a = app.exchange(&mobile, &code_a, &pkce_a.verifier);
    tokio::pin!(a);
    waits_behind(a.as_mut(), "A", "B").await;
    gate.release();
    let ((status_b, at_b), (status_a, at_a)) = tokio::join!(b, a);
    broker::faults::disarm("slot:before-commit", &account);
    assert_eq!((status_a, status_b), (200, 200), "{at_a} {at_b}");

    // A came second and saw B holding the slot: A took it back, and B's tokens are dead, as
    // are A's first ones (B evicted them).
    assert_eq!(holder(&app, &account).await.as_deref(), Some("device-a"));
    assert_eq!(refresh(&app, &mobile, &at_b).await, 400);
    assert_eq!(refresh(&app, &mobile, &first).await, 400);
    assert_eq!(refresh(&app, &mobile, &at_a).await, 200);
}

/// Redis is only the fast path: with every key of this app gone, SQL still says who holds the
/// slot, which sessions ended and which grants are revoked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_device_rule_survives_losing_redis() {
    let Some(app) = TestApp::spawn_production().await else {
        return;
    };
    let _dir = app.guard();
    let rp = LogoutRp::start();
    let mobile = mobile_client(&app, "s", &rp.uri("s"), None).await;
    let phone_a = Browser::new();
    let at_a = login(&app, &phone_a, &mobile, "C07", Some("device-a")).await;
    let phone_b = Browser::new();
    let at_b = login(&app, &phone_b, &mobile, "C07", Some("device-b")).await;
    let account = claims(&at_b)["sub"].as_str().unwrap().to_string();
    assert_eq!(refresh(&app, &mobile, &at_a).await, 400);

    // The ended-session markers gone (they live twice a code's lifetime; the browser session
    // lives hours): SQL alone keeps A's browser session from answering.
    assert!(app.lose_redis_keys_matching("ended-sid:*").await > 0);
    assert_eq!(
        silent(&app, &phone_a, &mobile, "device-a").await.as_deref(),
        Some("login_required")
    );

    let lost = app.lose_redis_keys().await;
    assert!(lost > 0, "the test's own keys existed");

    // No revoked token comes back.
    assert_eq!(refresh(&app, &mobile, &at_a).await, 400);
    let (status, _) = app.userinfo(at_a["access_token"].as_str().unwrap()).await;
    assert_eq!(status, 401);
    // A token whose session Redis no longer knows is checked against SQL: B's lives.
    let (status, _) = app.userinfo(at_b["access_token"].as_str().unwrap()).await;
    assert_eq!(status, 200);
    // A third device still evicts the second.
    let at_c = login(&app, &Browser::new(), &mobile, "C07", Some("device-c")).await;
    assert_eq!(holder(&app, &account).await.as_deref(), Some("device-c"));
    assert_eq!(refresh(&app, &mobile, &at_b).await, 400);
    let (status, _) = app.userinfo(at_b["access_token"].as_str().unwrap()).await;
    assert_eq!(status, 401);
    assert_eq!(refresh(&app, &mobile, &at_c).await, 200);
    // B's session ended in SQL; its browser (whose cookie Redis forgot) logs in afresh.
    let sid_b = claims(&at_b)["sid"].as_str().unwrap().to_string();
    let reason: Option<String> = sqlx::query("SELECT end_reason FROM sessions WHERE sid = $1")
        .bind(&sid_b)
        .fetch_one(&app.app_db.pool())
        .await
        .unwrap()
        .get("end_reason");
    assert_eq!(reason.as_deref(), Some("device_evicted"));
    let received = rp.wait_for(2, WAIT).await;
    assert!(
        received
            .iter()
            .any(|r| jwt_parts(r.logout_token()).1["sid"] == sid_b.as_str()),
        "B's RP is told although Redis forgot B"
    );
}

on_both_backends!(
    the_citizen_sees_their_devices_and_signs_a_lost_phone_out,
    |app: TestApp| async move {
        let rp = LogoutRp::start();
        let mobile = mobile_client(&app, "s", &rp.uri("s"), None).await;
        let phone = Browser::new();
        let on_phone = login(&app, &phone, &mobile, "C01", Some("device-a")).await;
        let sid_phone = claims(&on_phone)["sid"].as_str().unwrap().to_string();

        let laptop = Browser::new();
        let html = laptop.account_page(&app, "C01").await;
        assert!(html.contains("Thiết bị và phiên đăng nhập"), "{html}");
        assert!(
            html.contains("Điện thoại di động") && html.contains("Trình duyệt web"),
            "both sessions, by kind: {html}"
        );
        assert!(html.contains("(thiết bị này)"));
        assert!(
            html.contains(&format!("name=\"sid\" value=\"{sid_phone}\"")),
            "the phone can be signed out: {html}"
        );

        // Support sees the same, and who holds the mobile slot.
        let account = claims(&on_phone)["sub"].as_str().unwrap().to_string();
        let listed: Value = app
            .http
            .get(app.endpoint(&format!("/admin/accounts/{account}/sessions")))
            .bearer_auth(&app.operator_token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            listed["sessions"].as_array().map(Vec::len),
            Some(2),
            "{listed}"
        );
        assert_eq!(listed["mobile_slot"]["device"]["id"], "device-a");

        // A forged form changes nothing; the real one signs the phone out.
        let csrf = crate::support::browser::form_value(&html, "csrf").unwrap();
        let forged = laptop
            .http
            .post(app.endpoint("/account/sessions"))
            .form(&[("csrf", "forged"), ("sid", sid_phone.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(forged.status(), 400);
        assert_eq!(refresh(&app, &mobile, &on_phone).await, 200);
        let ended = laptop
            .http
            .post(app.endpoint("/account/sessions"))
            .form(&[("csrf", csrf.as_str()), ("sid", sid_phone.as_str())])
            .send()
            .await
            .unwrap();
        let html = ended.text().await.unwrap();
        assert!(html.contains("Đã đăng xuất phiên đăng nhập đó"), "{html}");
        assert!(!html.contains(&sid_phone), "no longer listed");
        assert_eq!(refresh(&app, &mobile, &on_phone).await, 400);
        let told = rp.wait_for(1, WAIT).await;
        assert_eq!(
            jwt_parts(told[0].logout_token()).1["sid"],
            sid_phone.as_str()
        );

        // Someone else's session id changes nothing.
        let other = login(&app, &Browser::new(), &mobile, "C02", Some("device-z")).await;
        let sid_other = claims(&other)["sid"].as_str().unwrap().to_string();
        let html = laptop
            .http
            .post(app.endpoint("/account/sessions"))
            .form(&[("csrf", csrf.as_str()), ("sid", sid_other.as_str())])
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            html.contains("Không tìm thấy phiên đăng nhập này"),
            "{html}"
        );
        assert_eq!(refresh(&app, &mobile, &other).await, 200);
    }
);

on_both_backends!(
    a_client_that_becomes_a_mobile_app_keeps_no_family_outside_the_rule,
    |app: TestApp| async move {
        let mut body = json!({
            "client_name": "became-mobile",
            "application_type": "native",
            "redirect_uris": ["vn.hue.became:/oauth"],
            "grant_types": ["authorization_code", "refresh_token"],
            "token_endpoint_auth_method": "none",
            "scope": "openid profile",
        });
        let client = app.client_with(body.clone()).await;
        let tokens = login(&app, &Browser::new(), &client, "C08", None).await;
        let (status, tokens) = refreshed(&app, &client, &tokens).await;
        assert_eq!(status, 200);
        body["device_class"] = json!("mobile");
        let updated = app
            .http
            .put(app.endpoint(&format!("/admin/clients/{}", client.id)))
            .bearer_auth(&app.operator_token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(updated.status(), 200, "{}", updated.text().await.unwrap());
        assert_eq!(
            refresh(&app, &client, &tokens).await,
            400,
            "a family without a device does not outlive the client's move to mobile"
        );
    }
);
