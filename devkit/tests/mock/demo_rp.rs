//! The demo RP renders its home page, and logs in end to end against the mock VNeID standing in
//! for the broker (both are plain OIDC providers to it).

use std::net::TcpListener;

use broker_devkit::demo_rp::{self, DemoRpConfig};
use broker_devkit::mock_vneid::{MockClient, Tamper};
use url::Url;

use crate::support::*;

const RP_ID: &str = "demo-rp";
const RP_SECRET: &str = "demo-rp-secret";

/// Starts a mock with the demo RP registered, and the demo RP pointing at it.
fn spawn_pair() -> (TestMock, String) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let t = spawn_mock(vec![MockClient {
        client_id: RP_ID.into(),
        client_secret: RP_SECRET.into(),
        redirect_uris: vec![format!("{base}/callback")],
    }]);
    let cfg = DemoRpConfig {
        broker_issuer: Url::parse(&t.issuer).unwrap(),
        client_id: RP_ID.into(),
        client_secret: RP_SECRET.into(),
        base_url: Url::parse(&base).unwrap(),
    };
    actix_web::rt::spawn(demo_rp::serve(cfg, listener).unwrap());
    (t, base)
}

#[actix_web::test]
async fn home_page_offers_vneid_login() {
    let (t, base) = spawn_pair();
    let page = t.http.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("Đăng nhập bằng VNeID") && html.contains("href=\"/login\""));
}

/// `/login` → provider (auto-login as C01) → `/callback`; returns the callback's status and page.
async fn login_through(t: &TestMock, base: &str) -> (u16, String) {
    let login = t.http.get(format!("{base}/login")).send().await.unwrap();
    assert_eq!(login.status(), 303);
    let cookie = login.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("demo_rp_tx=") && cookie.contains("HttpOnly"));
    assert!(cookie.contains("SameSite=Lax"));
    let mut authorize = location(&login);
    assert_eq!(
        query(&authorize, "code_challenge_method").as_deref(),
        Some("S256")
    );
    assert!(query(&authorize, "nonce").is_some());
    authorize.query_pairs_mut().append_pair("login_hint", "C01");
    let back = t.http.get(authorize).send().await.unwrap();
    assert_eq!(back.status(), 303);
    let callback = location(&back);
    assert!(callback.as_str().starts_with(&format!("{base}/callback?")));
    let tx = cookie.split(';').next().unwrap().to_owned();
    let page = t
        .http
        .get(callback)
        .header("cookie", tx)
        .send()
        .await
        .unwrap();
    (page.status().as_u16(), page.text().await.unwrap())
}

#[actix_web::test]
async fn logs_in_end_to_end_and_rejects_a_bad_id_token() {
    let (t, base) = spawn_pair();
    let (status, html) = login_through(&t, &base).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("046085690467") && html.contains("Đăng nhập lại"));

    t.mock.set_tamper(Tamper::WrongNonce);
    let (status, html) = login_through(&t, &base).await;
    assert_eq!(status, 400);
    assert!(
        html.contains("Đăng nhập không thành công") && html.contains("nonce"),
        "{html}"
    );

    // A callback without the transaction cookie is refused with a page, not a panic.
    let stray = t
        .http
        .get(format!("{base}/callback?code=x&state=y"))
        .send()
        .await
        .unwrap();
    assert_eq!(stray.status(), 400);
}
