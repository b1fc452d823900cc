//! Test harness: a broker on a random port with its own database, session-store prefix,
//! master key and mock VNeID; a browser-like HTTP client; helpers for common steps.

pub mod browser;
pub mod dpop;
pub mod logout_rp;
pub mod set_receiver;

use std::net::TcpListener;
use std::sync::Arc;

use broker::clock::{Clock, ManualClock, SystemClock};
use broker::config::{Environment, KeyStoreKind, Secret, SessionBackend, Settings};
use broker::crypto::{random_token, MasterKey};
use broker::startup::Application;
use broker_devkit::mock_vneid::{self, MockClient, MockVneid, MockVneidConfig};
use serde_json::{json, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backends {
    SqliteMemory,
    PostgresRedis,
}

pub struct TestApp {
    pub url: String,
    /// The bootstrap token: it only creates and lists operators.
    pub admin_token: String,
    /// The broker's master key (to seal what a test writes, like imported legacy records).
    pub master: MasterKey,
    /// The token of operator `tester`, for everything else in the admin API.
    pub operator_token: String,
    pub mock: MockVneid,
    pub clock: Arc<ManualClock>,
    pub app_db: broker::store::Db,
    pub broker: actix_web::web::Data<broker::http::Broker>,
    pub http: reqwest::Client,
    /// The Redis key prefix of this app's session store (PostgreSQL + Redis only).
    pub redis_prefix: Option<String>,
    dir: Arc<tempfile::TempDir>,
    database: Option<Arc<TestDatabase>>,
}

/// What a test holds until its very end: the data directory and the PostgreSQL database.
pub struct Guard {
    _dir: Arc<tempfile::TempDir>,
    _database: Option<Arc<TestDatabase>>,
}

/// A PostgreSQL database made for one test, dropped when the last holder lets go.
pub struct TestDatabase {
    admin_url: String,
    name: String,
}

impl Drop for TestDatabase {
    /// Runs on its own thread and runtime: the test's runtime may be shutting down, and blocking
    /// one of its workers on itself would hang. `WITH (FORCE)` ends the broker's pooled
    /// connections, which may still be open.
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        let dropped = std::thread::spawn(move || {
            use sqlx::Connection;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let mut conn = sqlx::PgConnection::connect(&admin_url).await.ok()?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut conn)
                    .await
                    .ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(_))) {
            eprintln!("could not drop the test database {}", self.name);
        }
    }
}

/// Runs `body` against a fresh app on the given backends. PostgreSQL + Redis are skipped (with
/// a message) only outside CI when their URLs are not set.
#[macro_export]
macro_rules! on_both_backends {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite_memory() {
                let app =
                    $crate::support::TestApp::spawn($crate::support::Backends::SqliteMemory).await;
                let _dir = app.guard();
                ($body)(app).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres_redis() {
                let Some(app) = $crate::support::TestApp::spawn_production().await else {
                    return;
                };
                let _dir = app.guard();
                ($body)(app).await;
            }
        }
    };
}

/// Like `on_both_backends!`, with a last word on the settings of both apps.
#[macro_export]
macro_rules! on_both_backends_with {
    ($name:ident, $adjust:expr, $body:expr) => {
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite_memory() {
                let app = $crate::support::TestApp::spawn_with(
                    $crate::support::Backends::SqliteMemory,
                    $adjust,
                )
                .await;
                let _dir = app.guard();
                ($body)(app).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres_redis() {
                let Some(app) = $crate::support::TestApp::spawn_production_with($adjust).await
                else {
                    return;
                };
                let _dir = app.guard();
                ($body)(app).await;
            }
        }
    };
}

pub struct Client {
    pub id: String,
    pub secret: Option<String>,
    pub redirect_uri: String,
}

impl TestApp {
    pub async fn spawn_production() -> Option<TestApp> {
        Self::spawn_production_with(|_| {}).await
    }

    pub async fn spawn_production_with(adjust: impl FnOnce(&mut Settings)) -> Option<TestApp> {
        production_backends()?;
        Some(Self::spawn_with(Backends::PostgresRedis, adjust).await)
    }

    pub async fn spawn(backends: Backends) -> TestApp {
        Self::spawn_with(backends, |_| {}).await
    }

    /// Like `spawn`, with a last word on the settings.
    pub async fn spawn_with(backends: Backends, adjust: impl FnOnce(&mut Settings)) -> TestApp {
        broker::startup::install_crypto_provider();
        let dir = tempfile::tempdir().expect("tempdir");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind broker");
        let port = listener.local_addr().expect("addr").port();
        let url = format!("http://127.0.0.1:{port}");
        let mock_listener = TcpListener::bind("127.0.0.1:0").expect("bind mock");
        let mock_url = format!(
            "http://127.0.0.1:{}",
            mock_listener.local_addr().expect("addr").port()
        );
        let upstream_secret = random_token();
        let mock = MockVneid::new(MockVneidConfig {
            issuer: mock_url.parse().expect("url"),
            clients: vec![MockClient {
                client_id: "broker".into(),
                client_secret: upstream_secret.clone(),
                redirect_uris: vec![format!("{url}/callback/vneid")],
            }],
        })
        .expect("mock");
        tokio::spawn(mock_vneid::serve(mock.clone(), mock_listener).expect("mock server"));

        let database = match backends {
            Backends::PostgresRedis => Some(Arc::new(fresh_postgres_database().await)),
            Backends::SqliteMemory => None,
        };
        let admin_token = random_token();
        let mut settings = Settings {
            environment: Environment::Development,
            issuer: url.parse().expect("url"),
            ..Default::default()
        };
        let master_encoded = MasterKey::generate_encoded();
        let master = MasterKey::from_secret(&Secret::new(master_encoded.clone())).expect("master");
        settings.keys.master_key = Some(Secret::new(master_encoded));
        settings.keys.jwks_max_age_secs = 60;
        settings.admin.token = Some(Secret::new(admin_token.clone()));
        settings.upstream.issuer = mock_url.parse().expect("url");
        settings.upstream.client_secret = Some(Secret::new(upstream_secret));
        settings.database.max_connections = 5;
        // Codes go to the dev gateway's outbox, where the tests read them.
        settings.sms.gateway = broker::otp::settings::GatewayKind::Dev;
        match backends {
            Backends::SqliteMemory => {
                settings.database.url = Secret::new(format!(
                    "sqlite://{}/broker.db?mode=rwc",
                    dir.path().display()
                ));
                settings.sessions.backend = SessionBackend::Memory;
                settings.keys.store = KeyStoreKind::File;
                settings.keys.dir = dir.path().join("keys");
            }
            Backends::PostgresRedis => {
                let database = database.as_ref().expect("a database for PostgreSQL");
                settings.database.url = Secret::new(database.url());
                settings.sessions.backend = SessionBackend::Redis;
                settings.sessions.redis_url = Some(Secret::new(
                    std::env::var("BROKER_TEST_REDIS_URL").expect("redis url"),
                ));
                settings.sessions.key_prefix = format!("test:{}:", uuid::Uuid::new_v4());
                settings.keys.store = KeyStoreKind::Sql;
            }
        }
        adjust(&mut settings);
        let redis_prefix = (settings.sessions.backend == SessionBackend::Redis)
            .then(|| settings.sessions.key_prefix.clone());
        let clock = Arc::new(ManualClock::new(SystemClock.now()));
        let app = Application::build_with_clock(settings, listener, clock.clone())
            .await
            .expect("build app");
        let app_db = app.db.clone();
        seed_legacy_accounts(&app_db, &master, clock.now(), &SEEDED_LEGACY).await;
        let broker = app.broker.clone();
        tokio::spawn(app.server());
        let (_, operator_token) = broker
            .operators
            .create("tester", "bootstrap", clock.now())
            .await
            .expect("operator");
        TestApp {
            url,
            admin_token,
            master,
            operator_token,
            mock,
            clock,
            app_db,
            broker,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            dir: Arc::new(dir),
            database,
            redis_prefix,
        }
    }

    /// Keeps the data directory alive for as long as the caller holds it. A test body that only
    /// touches some fields of `TestApp` captures just those fields, which would otherwise drop
    /// (and delete) the directory while the test still runs.
    pub fn guard(&self) -> Guard {
        Guard {
            _dir: self.dir.clone(),
            _database: self.database.clone(),
        }
    }

    pub fn endpoint(&self, path: &str) -> String {
        format!("{}{}", self.url, path)
    }

    pub async fn admin_create(&self, body: Value) -> reqwest::Response {
        self.http
            .post(self.endpoint("/admin/clients"))
            .bearer_auth(&self.operator_token)
            .json(&body)
            .send()
            .await
            .expect("admin request")
    }

    /// A confidential web client with all three grants.
    pub async fn confidential_client(&self) -> Client {
        self.client_with(json!({
            "client_name": "test app",
            "redirect_uris": ["https://app.example/cb"],
            "grant_types": ["authorization_code", "refresh_token", "client_credentials"],
            "token_endpoint_auth_method": "client_secret_basic",
            "scope": "openid profile personal_id api.read",
            "audience": "https://api.example",
            "resources": ["https://other-api.example"]
        }))
        .await
    }

    pub async fn public_client(&self) -> Client {
        self.client_with(json!({
            "client_name": "mobile app",
            "application_type": "native",
            "redirect_uris": ["vn.hue.s:/oauth", "http://127.0.0.1/cb"],
            "grant_types": ["authorization_code", "refresh_token"],
            "token_endpoint_auth_method": "none",
            "scope": "openid profile"
        }))
        .await
    }

    pub async fn client_with(&self, body: Value) -> Client {
        let response = self.admin_create(body).await;
        assert_eq!(response.status(), 201, "client registration failed");
        let v: Value = response.json().await.expect("json");
        Client {
            id: v["client_id"].as_str().expect("client_id").to_string(),
            secret: v["client_secret"].as_str().map(str::to_string),
            redirect_uri: v["redirect_uris"][0]
                .as_str()
                .expect("redirect")
                .to_string(),
        }
    }

    /// POST /token with client_secret_basic (or client_id only for public clients).
    pub async fn token(&self, client: &Client, form: &[(&str, &str)]) -> (u16, Value) {
        let mut request = self.http.post(self.endpoint("/token"));
        let mut form: Vec<(&str, &str)> = form.to_vec();
        match &client.secret {
            Some(secret) => request = request.basic_auth(&client.id, Some(secret)),
            None => form.push(("client_id", &client.id)),
        }
        let response = request.form(&form).send().await.expect("token request");
        let status = response.status().as_u16();
        assert_eq!(
            response
                .headers()
                .get("cache-control")
                .and_then(|v| v.to_str().ok()),
            Some("no-store"),
            "token responses must not be cached"
        );
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// The code exchange of `client` (authorization_code with PKCE).
    pub async fn exchange(&self, client: &Client, code: &str, verifier: &str) -> (u16, Value) {
        self.token(
            client,
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", &client.redirect_uri),
                ("code_verifier", verifier),
            ],
        )
        .await
    }

    pub async fn userinfo(&self, access_token: &str) -> (u16, Value) {
        let response = self
            .http
            .get(self.endpoint("/userinfo"))
            .bearer_auth(access_token)
            .send()
            .await
            .expect("userinfo");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Deletes every key of this app's session store in Redis (never `FLUSHALL`: other tests
    /// share the server), as a Redis that lost its data would look. Returns how many.
    pub async fn lose_redis_keys(&self) -> usize {
        self.lose_redis_keys_matching("*").await
    }

    /// Deletes this app's Redis keys whose name (after the prefix) matches `pattern`.
    pub async fn lose_redis_keys_matching(&self, pattern: &str) -> usize {
        let prefix = self.redis_prefix.as_ref().expect("a Redis-backed app");
        let url = std::env::var("BROKER_TEST_REDIS_URL").expect("redis url");
        let client = redis::Client::open(url).expect("redis client");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("redis connection");
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}{pattern}"))
            .query_async(&mut conn)
            .await
            .expect("KEYS");
        for key in &keys {
            let _: () = redis::cmd("DEL")
                .arg(key)
                .query_async(&mut conn)
                .await
                .expect("DEL");
        }
        keys.len()
    }

    pub async fn count(&self, table: &str) -> i64 {
        use sqlx::Row;
        let row = sqlx::query(&format!("SELECT COUNT(*) AS n FROM {table}"))
            .fetch_one(&self.app_db.pool())
            .await
            .expect("count");
        row.try_get::<i64, _>("n").expect("n")
    }
}

/// The PostgreSQL server URL and the Redis URL of the production pair, or `None` (with a
/// message) outside CI when they are not set; under CI their absence fails the test.
pub fn production_backends() -> Option<(String, String)> {
    let db = std::env::var("BROKER_TEST_DATABASE_URL").ok();
    let redis = std::env::var("BROKER_TEST_REDIS_URL").ok();
    if let (Some(db), Some(redis)) = (db, redis) {
        return Some((db, redis));
    }
    assert!(
        std::env::var("CI").is_err(),
        "CI must test PostgreSQL + Redis: set BROKER_TEST_DATABASE_URL and BROKER_TEST_REDIS_URL"
    );
    eprintln!(
        "NOT RUN: PostgreSQL + Redis (set BROKER_TEST_DATABASE_URL and BROKER_TEST_REDIS_URL)"
    );
    None
}

pub async fn fresh_postgres_database() -> TestDatabase {
    use sqlx::Connection;
    let base = std::env::var("BROKER_TEST_DATABASE_URL").expect("db url");
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(&base)
        .await
        .expect("PostgreSQL must answer at BROKER_TEST_DATABASE_URL");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("create database");
    TestDatabase {
        admin_url: base,
        name,
    }
}

impl TestDatabase {
    pub fn url(&self) -> String {
        let mut url = url::Url::parse(&self.admin_url).expect("db url");
        url.set_path(&format!("/{}", self.name));
        url.to_string()
    }
}

/// Decodes a JWT's header and claims without verifying (to inspect what was issued).
pub fn jwt_parts(token: &str) -> (Value, Value) {
    use base64::Engine;
    let mut parts = token.split('.');
    let decode = |p: Option<&str>| -> Value {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(p.expect("part"))
            .expect("b64");
        serde_json::from_slice(&bytes).expect("json")
    };
    (decode(parts.next()), decode(parts.next()))
}

/// The legacy records of the test citizens who link by ID number (C01, C02, C06, C07, C08, C11,
/// C12), from fixtures/legacy-accounts.csv: their logins go straight back to the client, as
/// most tests expect. Citizens without such a record (C03's record disagrees; C04, C05, C09,
/// C10) meet the standardisation steps, which `Browser::login` goes through.
const SEEDED_LEGACY: [&str; 8] = [
    "HS1004606",
    "HS1004105",
    "HS1003593",
    "HS1003457",
    "EDU101500",
    "HS1003711",
    "HS1003700",
    "DVC-2024-000003",
];

impl TestApp {
    /// Imports more records of fixtures/legacy-accounts.csv, by legacy id.
    pub async fn seed_legacy(&self, ids: &[&str]) {
        seed_legacy_accounts(&self.app_db, &self.master, self.clock.now(), ids).await;
    }
}

async fn seed_legacy_accounts(db: &broker::store::Db, master: &MasterKey, now: i64, ids: &[&str]) {
    use broker::accounts::import::{Format, Importer, Observer, Rejection, Summary};
    struct Quiet;
    impl Observer for Quiet {
        fn rejected(&mut self, rejection: &Rejection) {
            panic!("a seeded legacy record was refused: {rejection:?}");
        }
        fn progress(&mut self, _: u64, _: &Summary) {}
    }
    let fixture = include_str!("../../../../fixtures/legacy-accounts.csv");
    let mut lines = fixture.lines();
    let mut csv = format!("{}\n", lines.next().expect("header"));
    for line in lines.filter(|l| ids.iter().any(|id| l.split(',').nth(1) == Some(*id))) {
        csv.push_str(line);
        csv.push('\n');
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("seed.csv");
    std::fs::write(&path, csv).expect("seed file");
    let summary = Importer::new(
        Arc::new(db.clone()),
        broker::accounts::legacy::LegacySealer::new(master.clone()),
    )
    .run(&path, Format::Csv, now, &mut Quiet)
    .await
    .expect("seed legacy accounts");
    assert_eq!(summary.inserted, ids.len() as u64, "{summary:?}");
}
