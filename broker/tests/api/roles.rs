//! Civil servants' roles end to end over HTTP, on both storage pairs: a person registers a
//! role through the JSON API, an approver of the agency's subtree approves it, the next token
//! carries it, a change of agency supersedes it, and the digital-workplace platform receives
//! every event once and in order (even after being down). Then the refusals: outside the
//! subtree, one's own request, a level-1 login, a decided request, bad forms, wrong scopes; the
//! approver grants; and auto-approval by the staff roster.

use std::path::Path;
use std::time::Duration;

use broker::clock::Clock;
use serde_json::{json, Value};

use crate::on_both_backends;
use crate::support::browser::{form_value, Browser, Pkce};
use crate::support::set_receiver::{event_of, verify_set, SetReceiver};
use crate::support::{jwt_parts, Client, TestApp};

const ORG_UNITS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/org-units.csv");
const STAFF: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/staff.csv");
const WAIT: Duration = Duration::from_secs(20);

/// fixtures: C06 is a level-1 Chuyên viên of Phòng Nghiệp vụ Y (Sở Y tế); C07 a level-2
/// Phó Giám đốc of Sở Thông tin và Truyền thông.
const SO_Y_TE: &str = "000.00.07.H57";
const PHONG_NGHIEP_VU_Y: &str = "000.02.07.H57";
const SO_TTTT: &str = "000.00.06.H57";
const EVENT: &str = "urn:vn:hue:broker:event:role:";

async fn load_directory(app: &TestApp) {
    let now = app.clock.now();
    let report = broker::directory::import::org_units(&app.app_db, Path::new(ORG_UNITS), now)
        .await
        .expect("org units");
    assert!(report.rejected.is_empty());
    let sealer = broker::directory::import::PostSealer::new(app.master.clone());
    let report =
        broker::directory::import::staff(&app.app_db, &sealer, Path::new(STAFF), false, now)
            .await
            .expect("staff");
    assert!(report.rejected.is_empty());
}

/// The digital-workplace platform: declares app roles and subscribes to the role events.
async fn workplace(app: &TestApp, events: &str) -> Client {
    app.client_with(json!({
        "client_id": "workplace",
        "client_name": "Nền tảng làm việc số",
        "redirect_uris": ["https://cqs.example/cb"],
        "token_endpoint_auth_method": "client_secret_basic",
        "grant_types": ["authorization_code", "refresh_token"],
        "scope": "openid profile roles role_request role_approval",
        "roles": [
            {"code": "editor", "name": "Biên tập viên", "name#en": "Editor"},
            {"code": "reviewer", "name": "Người duyệt", "name#en": "Reviewer"},
        ],
        "event_delivery_uri": events,
        "event_types": [
            format!("{EVENT}requested"), format!("{EVENT}approved"),
            format!("{EVENT}rejected"), format!("{EVENT}changed"), format!("{EVENT}revoked"),
        ],
    }))
    .await
}

/// A person's tokens at `client` with `scope`.
async fn login(app: &TestApp, client: &Client, hint: &str, scope: &str) -> Value {
    let browser = Browser::new();
    let pkce = Pkce::new();
    let cb = browser
        .login(app, client, hint, &pkce, &[("scope", scope)])
        .await;
    let (status, tokens) = app.exchange(client, cb.code(), &pkce.verifier).await;
    assert_eq!(status, 200, "{tokens}");
    tokens
}

fn sub_of(tokens: &Value) -> String {
    jwt_parts(tokens["id_token"].as_str().unwrap()).1["sub"]
        .as_str()
        .unwrap()
        .to_string()
}

fn bearer(tokens: &Value) -> String {
    tokens["access_token"].as_str().unwrap().to_string()
}

async fn api(
    app: &TestApp,
    method: reqwest::Method,
    token: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = app
        .http
        .request(method, app.endpoint(path))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let r = request.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn get(app: &TestApp, token: &str, path: &str) -> (u16, Value) {
    api(app, reqwest::Method::GET, token, path, None).await
}

async fn post(app: &TestApp, token: &str, path: &str, body: Value) -> (u16, Value) {
    api(app, reqwest::Method::POST, token, path, Some(body)).await
}

async fn admin(app: &TestApp, method: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
    let r = app
        .http
        .request(method, app.endpoint(path))
        .bearer_auth(&app.operator_token)
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn make_approver(app: &TestApp, account: &str, org: &str) {
    let (status, body) = admin(
        app,
        reqwest::Method::POST,
        "/admin/approvers",
        json!({"account_id": account, "org_code": org}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
}

async fn refresh(app: &TestApp, client: &Client, tokens: &Value) -> Value {
    let (status, fresh) = app
        .token(
            client,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
            ],
        )
        .await;
    assert_eq!(status, 200, "{fresh}");
    fresh
}

fn roles_claim(token: &str) -> Value {
    jwt_parts(token).1["roles"].clone()
}

on_both_backends!(
    register_approve_change_and_every_event_in_order,
    |app: TestApp| async move {
        load_directory(&app).await;
        let rx = SetReceiver::start();
        let client = workplace(&app, &rx.uri("cqs")).await;
        // An app that declares roles of its own hears of no post that gives it none.
        let finance = app
            .client_with(json!({
                "client_name": "Tài chính",
                "redirect_uris": ["https://finance.example/cb"],
                "token_endpoint_auth_method": "client_secret_basic",
                "scope": "openid roles",
                "roles": [{"code": "audit", "name": "Kiểm toán"}],
                "event_delivery_uri": rx.uri("finance"),
                "event_types": [format!("{EVENT}requested"), format!("{EVENT}approved"),
                                format!("{EVENT}changed")],
            }))
            .await;
        login(&app, &finance, "C06", "openid roles").await;
        let person = login(&app, &client, "C06", "openid profile roles role_request").await;
        let approver = login(&app, &client, "C07", "openid role_approval").await;
        let person_id = sub_of(&person);
        make_approver(&app, &sub_of(&approver), SO_Y_TE).await;
        // The platform is down for a while: every event must still arrive, once, in order.
        rx.answer("cqs", &[503, 503]);

        // Nothing yet: the scope asks, the claim is an empty list.
        assert_eq!(
            roles_claim(person["access_token"].as_str().unwrap()),
            json!([])
        );
        let (status, options) = get(&app, &bearer(&person), "/api/roles/options").await;
        assert_eq!(status, 200, "{options}");
        assert_eq!(
            options["roster"],
            json!([{"category": "cong_chuc", "org_code": PHONG_NGHIEP_VU_Y,
                    "org_name": "Phòng Nghiệp vụ Y", "position": "Chuyên viên"}]),
            "the roster pre-fills the person's post"
        );
        assert!(options["applications"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["client_id"] == "workplace" && a["roles"][0]["code"] == "editor"));

        let (status, role) = post(
            &app,
            &bearer(&person),
            "/api/roles",
            json!({"category": "cong_chuc", "org_code": PHONG_NGHIEP_VU_Y,
                   "position": "  Chuyên  viên ", "app_roles": {"workplace": ["editor"]}}),
        )
        .await;
        assert_eq!(status, 201, "{role}");
        assert_eq!(role["state"], "pending");
        assert_eq!(role["position"], "Chuyên viên", "tidied");
        let first = role["id"].as_str().unwrap().to_string();

        let (status, queue) = get(&app, &bearer(&approver), "/api/approvals").await;
        assert_eq!(status, 200, "{queue}");
        let ids: Vec<&str> = queue["requests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap())
            .collect();
        assert_eq!(
            ids,
            vec![first.as_str()],
            "the subtree's request, nothing else"
        );
        let (status, approved) = post(
            &app,
            &bearer(&approver),
            &format!("/api/approvals/{first}/approve"),
            json!({"reason": "Đúng danh sách cán bộ"}),
        )
        .await;
        assert_eq!(status, 200, "{approved}");
        assert_eq!(approved["state"], "approved");

        // The next issuance carries it: the refresh's access token and userinfo.
        let person = refresh(&app, &client, &person).await;
        let expected = json!([{
            "org_unit": {"code": PHONG_NGHIEP_VU_Y, "name": "Phòng Nghiệp vụ Y"},
            "category": "cong_chuc", "position": "Chuyên viên", "app_roles": ["editor"],
        }]);
        assert_eq!(
            roles_claim(person["access_token"].as_str().unwrap()),
            expected
        );
        let (status, info) = app.userinfo(&bearer(&person)).await;
        assert_eq!(status, 200);
        assert_eq!(info["roles"], expected);
        // A new login's ID token too.
        let again = login(&app, &client, "C06", "openid roles").await;
        assert_eq!(roles_claim(again["id_token"].as_str().unwrap()), expected);

        // Transfer: "Sửa" to the Sở itself, as reviewer.
        let (status, change) = post(
            &app,
            &bearer(&person),
            "/api/roles",
            json!({"category": "cong_chuc", "org_code": SO_Y_TE, "position": "Chuyên viên",
                   "app_roles": {"workplace": ["reviewer"]}, "replaces": first}),
        )
        .await;
        assert_eq!(status, 201, "{change}");
        let second = change["id"].as_str().unwrap().to_string();
        // One open change per role.
        let (status, _) = post(
            &app,
            &bearer(&person),
            "/api/roles",
            json!({"category": "cong_chuc", "org_code": SO_Y_TE, "position": "Chuyên viên chính",
                   "replaces": first}),
        )
        .await;
        assert_eq!(status, 409);
        let (status, _) = post(
            &app,
            &bearer(&approver),
            &format!("/api/approvals/{second}/approve"),
            json!({}),
        )
        .await;
        assert_eq!(status, 200);
        let (_, mine) = get(&app, &bearer(&person), "/api/roles").await;
        let state_of = |id: &str| {
            mine["roles"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["id"] == id)
                .unwrap()["state"]
                .clone()
        };
        assert_eq!(state_of(&first), "superseded");
        assert_eq!(state_of(&second), "approved");
        let person = refresh(&app, &client, &person).await;
        assert_eq!(
            roles_claim(person["access_token"].as_str().unwrap()),
            json!([{"org_unit": {"code": SO_Y_TE, "name": "Sở Y tế"}, "category": "cong_chuc",
                    "position": "Chuyên viên", "app_roles": ["reviewer"]}])
        );
        let (_, detail) = get(&app, &bearer(&person), &format!("/api/roles/{first}")).await;
        let actions: Vec<&str> = detail["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["action"].as_str().unwrap())
            .collect();
        assert_eq!(actions, ["requested", "approved", "superseded"]);
        let (status, listed) = admin(
            &app,
            reqwest::Method::GET,
            &format!("/admin/accounts/{person_id}/roles"),
            json!(null),
        )
        .await;
        assert_eq!(status, 200, "{listed}");
        assert_eq!(listed["roles"].as_array().unwrap().len(), 2);
        let (status, seen) = admin(
            &app,
            reqwest::Method::GET,
            &format!("/admin/roles/{second}"),
            json!(null),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(
            seen["history"][1]["actor"],
            json!(format!("account:{}", sub_of(&approver)))
        );
        assert_eq!(detail["history"][1]["reason"], "Đúng danh sách cán bộ");

        // Every event of the person, once each by jti, in the subject's order, verified.
        let wanted = ["requested", "approved", "requested", "changed"];
        let deadline = std::time::Instant::now() + WAIT;
        let delivered = loop {
            let mut ok: Vec<_> = rx
                .received_by("cqs")
                .into_iter()
                .filter(|s| s.status == 202)
                .collect();
            ok.retain(|s| s.claims()["sub_id"]["id"] == json!(person_id));
            if ok.len() >= wanted.len() {
                break ok;
            }
            assert!(std::time::Instant::now() < deadline, "only {ok:?}");
            // Retries wait on the broker's clock (backoff with jitter).
            app.clock.advance(3);
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let mut jtis = std::collections::HashSet::new();
        let mut last_seq = 0;
        for (set, kind) in delivered.iter().zip(wanted) {
            let claims = verify_set(&app, &set.token, "workplace").await;
            assert!(jtis.insert(claims["jti"].clone()), "exactly once by jti");
            let (event_type, event) = event_of(&claims);
            assert_eq!(event_type, format!("{EVENT}{kind}"));
            let seq = event["seq"].as_i64().unwrap();
            assert!(seq > last_seq, "in order: {seq} after {last_seq}");
            last_seq = seq;
            assert!(event["app_roles"].is_array(), "narrowed to this client");
        }
        assert_eq!(delivered.len(), wanted.len(), "nothing twice");
        let (_, changed) = event_of(&verify_set(&app, &delivered[3].token, "workplace").await);
        assert_eq!(changed["replaces"], json!(first));
        assert_eq!(changed["app_roles"], json!(["reviewer"]));
        assert_eq!(changed["org_unit"]["code"], SO_Y_TE);
        assert!(
            rx.received_by("cqs").iter().any(|s| s.status == 503),
            "the platform was down at first"
        );
        assert!(
            rx.received_by("finance").is_empty(),
            "no post of C06 gives the finance app a role"
        );

        // A change waiting for the role goes with it when the role is revoked.
        let (status, waiting) = post(
            &app,
            &bearer(&person),
            "/api/roles",
            json!({"category": "cong_chuc", "org_code": SO_Y_TE, "position": "Chuyên viên chính",
                   "replaces": second}),
        )
        .await;
        assert_eq!(status, 201, "{waiting}");
        // Revocation ends it: the next refresh has no role.
        let (status, revoked) = post(
            &app,
            &bearer(&approver),
            &format!("/api/approvals/{second}/revoke"),
            json!({"reason": "Nghỉ hưu"}),
        )
        .await;
        assert_eq!(status, 200, "{revoked}");
        let (_, gone) = get(
            &app,
            &bearer(&person),
            &format!("/api/roles/{}", waiting["id"].as_str().unwrap()),
        )
        .await;
        assert_eq!(gone["role"]["state"], "rejected", "{gone}");
        let person = refresh(&app, &client, &person).await;
        assert_eq!(
            roles_claim(person["access_token"].as_str().unwrap()),
            json!([])
        );
        assert_eq!(person_id, sub_of(&again));
    }
);

on_both_backends!(
    approvers_see_and_decide_only_what_is_theirs,
    |app: TestApp| async move {
        load_directory(&app).await;
        let rx = SetReceiver::start();
        let client = workplace(&app, &rx.uri("cqs")).await;
        let c06 = login(
            &app,
            &client,
            "C06",
            "openid roles role_request role_approval",
        )
        .await;
        let c07 = login(
            &app,
            &client,
            "C07",
            "openid roles role_request role_approval",
        )
        .await;
        let c01 = login(
            &app,
            &client,
            "C01",
            "openid roles role_request role_approval",
        )
        .await;
        let (c06_id, c07_id, c01_id) = (sub_of(&c06), sub_of(&c07), sub_of(&c01));

        // No token, a token without the scope, garbage.
        let r = app
            .http
            .get(app.endpoint("/api/approvals"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        assert!(r.headers().contains_key("www-authenticate"));
        let plain = login(&app, &client, "C06", "openid").await;
        assert_eq!(get(&app, &bearer(&plain), "/api/roles").await.0, 403);
        assert_eq!(get(&app, "not-a-token", "/api/roles").await.0, 401);

        // Bad forms change nothing.
        for bad in [
            json!({"category": "vua", "org_code": SO_Y_TE, "position": "x"}),
            json!({"category": "cong_chuc", "org_code": "nowhere", "position": "x"}),
            json!({"category": "cong_chuc", "org_code": SO_Y_TE, "position": "   "}),
            json!({"category": "cong_chuc", "org_code": SO_Y_TE, "position": "x",
                   "app_roles": {"workplace": ["root"]}}),
            json!({"category": "cong_chuc", "org_code": SO_Y_TE, "position": "x",
                   "app_roles": {"elsewhere": ["editor"]}}),
            json!({"category": "cong_chuc", "org_code": SO_Y_TE, "position": "x", "admin": true}),
        ] {
            let (status, body) = post(&app, &bearer(&c06), "/api/roles", bad.clone()).await;
            assert_eq!(status, 400, "{bad} → {body}");
            assert_eq!(body["error"], "invalid_request");
        }
        let r = app
            .http
            .post(app.endpoint("/api/roles"))
            .bearer_auth(bearer(&c06))
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        assert_eq!(app.count("roles").await, 0);

        // C07 approves Sở Y tế; C01 approves Sở TT&TT only.
        make_approver(&app, &c07_id, SO_Y_TE).await;
        make_approver(&app, &c01_id, SO_TTTT).await;
        let (_, request) = post(
            &app,
            &bearer(&c06),
            "/api/roles",
            json!({"category": "cong_chuc", "org_code": PHONG_NGHIEP_VU_Y, "position": "Chuyên viên"}),
        )
        .await;
        let id = request["id"].as_str().unwrap().to_string();
        // A token that reads roles neither files requests nor reads others' roles; a token that
        // also names another API is refused here altogether (that API could replay it).
        let reader = login(&app, &client, "C06", "openid roles").await;
        let (status, body) = post(
            &app,
            &bearer(&reader),
            "/api/roles",
            json!({"category": "cong_chuc", "org_code": SO_Y_TE, "position": "x"}),
        )
        .await;
        assert_eq!(status, 403, "{body}");
        let c07_reader = login(&app, &client, "C07", "openid roles").await;
        assert_eq!(
            get(&app, &bearer(&c07_reader), &format!("/api/roles/{id}"))
                .await
                .0,
            404,
            "the roles scope shows one's own roles only"
        );
        assert_eq!(
            get(&app, &bearer(&c07), &format!("/api/roles/{id}"))
                .await
                .0,
            200
        );
        let api_client = app
            .client_with(json!({
                "client_name": "api",
                "redirect_uris": ["https://api-rp.example/cb"],
                "token_endpoint_auth_method": "client_secret_basic",
                "scope": "openid roles role_approval",
                "audience": "https://api.example",
            }))
            .await;
        let two_audiences = login(&app, &api_client, "C07", "openid roles role_approval").await;
        assert_eq!(
            get(&app, &bearer(&two_audiences), "/api/approvals").await.0,
            401
        );
        // The same post twice is refused.
        let (status, _) = post(
            &app,
            &bearer(&c06),
            "/api/roles",
            json!({"category": "cong_chuc", "org_code": PHONG_NGHIEP_VU_Y, "position": "Chuyên viên"}),
        )
        .await;
        assert_eq!(status, 409);

        // Outside the subtree: not even visible.
        let (_, queue) = get(&app, &bearer(&c01), "/api/approvals").await;
        assert_eq!(queue["requests"], json!([]));
        let approve = format!("/api/approvals/{id}/approve");
        assert_eq!(post(&app, &bearer(&c01), &approve, json!({})).await.0, 404);
        assert_eq!(
            get(&app, &bearer(&c01), &format!("/api/roles/{id}"))
                .await
                .0,
            404
        );
        // A level-1 approver of the subtree may not decide.
        make_approver(&app, &c06_id, SO_Y_TE).await;
        let (_, c07_request) = post(
            &app,
            &bearer(&c07),
            "/api/roles",
            json!({"category": "cong_chuc", "org_code": SO_Y_TE, "position": "Thanh tra viên"}),
        )
        .await;
        let c07_role = c07_request["id"].as_str().unwrap().to_string();
        let (status, body) = post(
            &app,
            &bearer(&c06),
            &format!("/api/approvals/{c07_role}/approve"),
            json!({}),
        )
        .await;
        assert_eq!(status, 403, "level 1: {body}");
        // Nobody approves their own.
        let (status, _) = post(
            &app,
            &bearer(&c07),
            &format!("/api/approvals/{c07_role}/approve"),
            json!({}),
        )
        .await;
        assert_eq!(status, 403, "self-approval");
        // A rejection needs a reason; the person reads it.
        let reject = format!("/api/approvals/{id}/reject");
        assert_eq!(post(&app, &bearer(&c07), &reject, json!({})).await.0, 400);
        let (status, rejected) = post(
            &app,
            &bearer(&c07),
            &reject,
            json!({"reason": "Sai chức vụ"}),
        )
        .await;
        assert_eq!(status, 200, "{rejected}");
        let (_, mine) = get(&app, &bearer(&c06), &format!("/api/roles/{id}")).await;
        assert_eq!(mine["role"]["state"], "rejected");
        assert_eq!(mine["role"]["reason"], "Sai chức vụ");
        // Decided is decided.
        assert_eq!(post(&app, &bearer(&c07), &approve, json!({})).await.0, 409);
        assert_eq!(
            get(&app, &bearer(&c07), "/api/approvals").await.1["requests"]
                .as_array()
                .unwrap()
                .len(),
            1,
            "its own request stays listed"
        );

        // Approver grants: strictly below one's own unit, never to oneself.
        let (status, _) = post(
            &app,
            &bearer(&c07),
            "/api/approvers",
            json!({"account_id": c01_id, "org_code": SO_Y_TE}),
        )
        .await;
        assert_eq!(status, 403, "not below C07's unit");
        let (status, _) = post(
            &app,
            &bearer(&c07),
            "/api/approvers",
            json!({"account_id": c07_id, "org_code": PHONG_NGHIEP_VU_Y}),
        )
        .await;
        assert_eq!(status, 403, "not to oneself");
        let (status, _) = post(
            &app,
            &bearer(&c07),
            "/api/approvers",
            json!({"account_id": c01_id, "org_code": PHONG_NGHIEP_VU_Y}),
        )
        .await;
        assert_eq!(status, 201);
        let (status, _) = post(
            &app,
            &bearer(&c06),
            "/api/approvers",
            json!({"account_id": c01_id, "org_code": PHONG_NGHIEP_VU_Y}),
        )
        .await;
        assert_eq!(status, 403, "a level-1 approver grants nothing");
        // Five identical requests at once: one waits, the others are repeats.
        let c06_token = bearer(&c06);
        let same = json!({"category": "cong_chuc", "org_code": SO_Y_TE, "position": "Kế toán"});
        let answers = futures_util::future::join_all(
            (0..5).map(|_| post(&app, &c06_token, "/api/roles", same.clone())),
        )
        .await;
        let created = answers.iter().filter(|(s, _)| *s == 201).count();
        assert_eq!(created, 1, "{answers:?}");
        assert!(
            answers.iter().all(|(s, _)| *s == 201 || *s == 409),
            "{answers:?}"
        );
        // Operators read and revoke; they do not approve.
        let (status, all) = admin(&app, reqwest::Method::GET, "/admin/approvers", json!({})).await;
        assert_eq!(status, 200);
        assert_eq!(all["approvers"].as_array().unwrap().len(), 4);
    }
);

on_both_backends!(
    a_request_matching_the_roster_is_approved_where_the_policy_says_so,
    |app: TestApp| async move {
        load_directory(&app).await;
        let rx = SetReceiver::start();
        let client = workplace(&app, &rx.uri("cqs")).await;
        let c06 = login(&app, &client, "C06", "openid roles role_request").await;
        let (status, _) = admin(
            &app,
            reqwest::Method::PUT,
            &format!("/admin/org-units/{SO_Y_TE}/policy"),
            json!({"auto_approve": true}),
        )
        .await;
        assert_eq!(status, 200);
        // Not on the roster as such: waits for an approver.
        let (_, other) = post(
            &app,
            &bearer(&c06),
            "/api/roles",
            json!({"category": "cong_chuc", "org_code": PHONG_NGHIEP_VU_Y, "position": "Trưởng phòng"}),
        )
        .await;
        assert_eq!(other["state"], "pending");
        // Exactly the roster's post: approved at once, by the roster.
        let (status, role) = post(
            &app,
            &bearer(&c06),
            "/api/roles",
            json!({"category": "cong_chuc", "org_code": PHONG_NGHIEP_VU_Y, "position": "Chuyên viên",
                   "app_roles": {"workplace": ["editor"]}}),
        )
        .await;
        assert_eq!(status, 201, "{role}");
        assert_eq!(role["state"], "approved");
        assert_eq!(role["decided_by"], "roster");
        // The unit below may say otherwise.
        let (status, _) = admin(
            &app,
            reqwest::Method::PUT,
            &format!("/admin/org-units/{PHONG_NGHIEP_VU_Y}/policy"),
            json!({"auto_approve": false}),
        )
        .await;
        assert_eq!(status, 200);
        let c07 = login(&app, &client, "C07", "openid roles role_request").await;
        let (_, c07_role) = post(
            &app,
            &bearer(&c07),
            "/api/roles",
            json!({"category": "cong_chuc", "org_code": SO_TTTT, "position": "Phó Giám đốc"}),
        )
        .await;
        assert_eq!(c07_role["state"], "pending", "Sở TT&TT has no policy");
        let (status, body) = admin(
            &app,
            reqwest::Method::PUT,
            "/admin/org-units/nowhere/policy",
            json!({"auto_approve": true}),
        )
        .await;
        assert_eq!(status, 400, "{body}");
    }
);

/// A form post of the account pages in `browser`.
async fn form(
    browser: &Browser,
    app: &TestApp,
    path: &str,
    fields: &[(&str, &str)],
) -> (u16, String) {
    let r = browser
        .http
        .post(app.endpoint(path))
        .form(fields)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

on_both_backends!(
    the_role_pages_register_decide_and_refuse_forged_forms,
    |app: TestApp| async move {
        load_directory(&app).await;
        let rx = SetReceiver::start();
        let client = workplace(&app, &rx.uri("cqs")).await;
        let c06 = Browser::new();
        let html = c06.account_page(&app, "C06").await;
        assert!(html.contains("href=\"/account/roles?lang=vi\""), "{html}");
        // Choosing đối tượng pre-fills the rest from the roster.
        let html = c06
            .get(&app.endpoint("/account/roles?category=cong_chuc"))
            .await
            .text()
            .await
            .unwrap();
        assert!(html.contains("id=\"prefilled\""), "{html}");
        assert_eq!(
            form_value(&html, "org_code").as_deref(),
            Some(PHONG_NGHIEP_VU_Y)
        );
        assert_eq!(
            form_value(&html, "position").as_deref(),
            Some("Chuyên viên")
        );
        assert!(
            html.contains("value=\"workplace editor\""),
            "the app roles offered"
        );
        let csrf = form_value(&html, "csrf").unwrap();
        let fields = [
            ("action", "register"),
            ("category", "cong_chuc"),
            ("org_code", PHONG_NGHIEP_VU_Y),
            ("position", "Chuyên viên"),
            ("app_role", "workplace editor"),
        ];
        // A forged form (no token, or another's) changes nothing.
        let (status, _) = form(&c06, &app, "/account/roles", &fields).await;
        assert_eq!(status, 400);
        let mut forged = fields.to_vec();
        forged.push(("csrf", "forged"));
        assert_eq!(form(&c06, &app, "/account/roles", &forged).await.0, 400);
        assert_eq!(app.count("roles").await, 0);
        let mut real = fields.to_vec();
        real.push(("csrf", &csrf));
        let (status, html) = form(&c06, &app, "/account/roles", &real).await;
        assert_eq!(status, 200, "{html}");
        assert!(
            html.contains("Đã gửi yêu cầu") && html.contains("Chờ phê duyệt"),
            "{html}"
        );
        let role_id = form_value(&html, "role_id").expect("the withdraw form names the role");
        // A bad form is shown again with the reason, nothing written.
        let mut bad = real.clone();
        bad[2] = ("org_code", "nowhere");
        let (status, html) = form(&c06, &app, "/account/roles", &bad).await;
        assert_eq!(status, 400);
        assert!(
            html.contains("Vui lòng chọn đơn vị trong danh sách"),
            "{html}"
        );
        assert_eq!(app.count("roles").await, 1);

        // The approver's queue, the detail, a forged decision, the real one.
        let c07 = Browser::new();
        c07.account_page(&app, "C07").await;
        let c07_id = sub_of(&login(&app, &client, "C07", "openid").await);
        make_approver(&app, &c07_id, SO_Y_TE).await;
        let html = c07
            .get(&app.endpoint("/account/approvals"))
            .await
            .text()
            .await
            .unwrap();
        assert!(
            html.contains("Phan Quang Huy"),
            "C06's request is listed: {html}"
        );
        let detail = format!("/account/approvals/{role_id}");
        let html = c07.get(&app.endpoint(&detail)).await.text().await.unwrap();
        assert!(html.contains("Khớp danh sách cán bộ"), "{html}");
        assert!(html.contains("id=\"approve\""), "{html}");
        let csrf7 = form_value(&html, "csrf").unwrap();
        let (status, _) = form(
            &c07,
            &app,
            &detail,
            &[("csrf", &csrf), ("action", "approve")],
        )
        .await;
        assert_eq!(status, 400, "C06's token is not C07's");
        let (status, html) = form(
            &c07,
            &app,
            &detail,
            &[("csrf", &csrf7), ("action", "approve"), ("reason", "Đúng")],
        )
        .await;
        assert_eq!(status, 200, "{html}");
        assert!(html.contains("Đã phê duyệt."), "{html}");
        let html = c06
            .get(&app.endpoint("/account/roles"))
            .await
            .text()
            .await
            .unwrap();
        assert!(
            html.contains("Đã phê duyệt") && html.contains("Sửa"),
            "{html}"
        );

        // A level-1 approver sees the request but cannot decide it.
        let c06_id = sub_of(&login(&app, &client, "C06", "openid").await);
        make_approver(&app, &c06_id, SO_Y_TE).await;
        let mut c07_form = vec![
            ("action", "register"),
            ("category", "cong_chuc"),
            ("org_code", SO_Y_TE),
            ("position", "Thanh tra viên"),
        ];
        c07_form.push(("csrf", &csrf7));
        let (status, html) = form(&c07, &app, "/account/roles", &c07_form).await;
        assert_eq!(status, 200, "{html}");
        let c07_role = form_value(&html, "role_id").unwrap();
        let detail = format!("/account/approvals/{c07_role}");
        let html = c06.get(&app.endpoint(&detail)).await.text().await.unwrap();
        assert!(html.contains("id=\"level-note\""), "{html}");
        assert!(!html.contains("id=\"approve\""), "{html}");
        let (status, html) = form(
            &c06,
            &app,
            &detail,
            &[("csrf", &csrf), ("action", "approve")],
        )
        .await;
        assert_eq!(status, 400);
        assert!(html.contains("mức độ 2"), "{html}");
        // Nor may C07 decide their own.
        let html = c07.get(&app.endpoint(&detail)).await.text().await.unwrap();
        assert!(!html.contains("id=\"approve\""), "{html}");
        let (status, _) = form(
            &c07,
            &app,
            &detail,
            &[("csrf", &csrf7), ("action", "approve")],
        )
        .await;
        assert_eq!(status, 400);
        let (_, mine) = admin(
            &app,
            reqwest::Method::GET,
            &format!("/admin/roles/{c07_role}"),
            json!(null),
        )
        .await;
        assert_eq!(mine["role"]["state"], "pending");
    }
);
