//! HTTPS through rustls: with a certificate and key configured, the broker serves TLS and a
//! client that trusts the certificate completes discovery over it.

use std::net::TcpListener;

use broker::config::{Environment, KeyStoreKind, Secret, SessionBackend, Settings};
use broker::crypto::MasterKey;
use broker::startup::Application;

#[tokio::test]
async fn serves_https_with_the_configured_certificate() {
    broker::startup::install_crypto_provider();
    let dir = tempfile::tempdir().expect("tempdir");
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("certificate");
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).expect("write cert");
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).expect("write key");

    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let mut settings = Settings {
        environment: Environment::Development,
        issuer: format!("https://localhost:{port}").parse().expect("url"),
        ..Default::default()
    };
    settings.http.tls_cert_file = Some(cert_path);
    settings.http.tls_key_file = Some(key_path);
    settings.database.url =
        Secret::new(format!("sqlite://{}/tls.db?mode=rwc", dir.path().display()));
    settings.sessions.backend = SessionBackend::Memory;
    settings.keys.store = KeyStoreKind::File;
    settings.keys.dir = dir.path().join("keys");
    settings.keys.master_key = Some(Secret::new(MasterKey::generate_encoded()));
    let app = Application::build(settings, listener).await.expect("build");
    tokio::spawn(app.server());

    let trusted = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).expect("pem"),
        )
        .resolve("localhost", ([127, 0, 0, 1], port).into())
        .build()
        .expect("client");
    let discovery: serde_json::Value = trusted
        .get(format!(
            "https://localhost:{port}/.well-known/openid-configuration"
        ))
        .send()
        .await
        .expect("https request")
        .json()
        .await
        .expect("json");
    assert_eq!(discovery["issuer"], format!("https://localhost:{port}"));
    // A client that does not trust the certificate is refused by TLS itself.
    let untrusting = reqwest::Client::builder()
        .resolve("localhost", ([127, 0, 0, 1], port).into())
        .build()
        .expect("client");
    assert!(untrusting
        .get(format!("https://localhost:{port}/healthz"))
        .send()
        .await
        .is_err());
    // Plain HTTP on the TLS port gets no HTTP answer.
    let plain = reqwest::get(format!("http://127.0.0.1:{port}/healthz")).await;
    assert!(plain.is_err() || !plain.expect("response").status().is_success());
}
