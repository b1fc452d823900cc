//! Three `broker serve` processes on three ports over one PostgreSQL database and one Redis
//! prefix, with one issuer, one master key and the key ring in SQL, as a production deployment
//! behind a load balancer runs them: device A logs in through the first, refreshes through the
//! second, and device B's login through the third evicts A on every instance, with A's RP told
//! by whichever dispatcher got the event.
//!
//! The upstream's redirect URI is `{issuer}/callback/vneid`, so every callback comes back to
//! the issuer's port (the first instance); what runs where otherwise is the test's choice.

use std::fs::File;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use broker::crypto::{random_token, MasterKey};
use broker_devkit::mock_vneid::{self, MockClient, MockVneid, MockVneidConfig};
use serde_json::{json, Value};

use crate::support::browser::{code_request, location, query_of, Browser, Pkce};
use crate::support::logout_rp::{verify_logout_token_of, LogoutRp};
use crate::support::{
    fresh_postgres_database, jwt_parts, production_backends, Client, TestDatabase,
};

const READY_WITHIN: Duration = Duration::from_secs(20);

/// One `broker serve` child process, killed when dropped.
pub(crate) struct Instance {
    pub(crate) url: String,
    pub(crate) child: Child,
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The instances and what they share. Fields drop in order: the processes first, then
/// their database.
pub(crate) struct Cluster {
    pub(crate) instances: Vec<Instance>,
    pub(crate) issuer: String,
    pub(crate) operator_token: String,
    pub(crate) http: reqwest::Client,
    /// The Redis key prefix of this cluster alone.
    pub(crate) key_prefix: String,
    dir: tempfile::TempDir,
    _mock: MockVneid,
    pub(crate) database: TestDatabase,
}

/// `n` free loopback ports, all held until all are found so that none is handed out twice.
pub(crate) fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    held.iter()
        .map(|l| l.local_addr().expect("addr").port())
        .collect()
}

impl Cluster {
    /// `n` instances on a fresh database on the test server; `redis_url` with a prefix of its
    /// own; `extra` settings for every instance.
    pub(crate) async fn start(redis_url: &str, n: usize, extra: &[(&str, String)]) -> Cluster {
        broker::startup::install_crypto_provider();
        let dir = tempfile::tempdir().expect("tempdir");
        let ports = free_ports(n);
        let issuer = format!("http://127.0.0.1:{}", ports[0]);

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
                redirect_uris: vec![format!("{issuer}/callback/vneid")],
            }],
        })
        .expect("mock");
        tokio::spawn(mock_vneid::serve(mock.clone(), mock_listener).expect("mock server"));

        let database = fresh_postgres_database().await;
        let master_file = dir.path().join("master.key");
        std::fs::write(&master_file, MasterKey::generate_encoded()).expect("master key");
        let bootstrap = random_token();
        let key_prefix = format!("test:{}:", uuid::Uuid::new_v4());
        let mut shared: Vec<(&str, String)> = vec![
            ("BROKER_ENVIRONMENT", "development".into()),
            ("BROKER_ISSUER", issuer.clone()),
            ("BROKER_HTTP__WORKERS", "2".into()),
            ("BROKER_DATABASE__URL", database.url()),
            ("BROKER_DATABASE__MAX_CONNECTIONS", "5".into()),
            ("BROKER_SESSIONS__BACKEND", "redis".into()),
            ("BROKER_SESSIONS__REDIS_URL", redis_url.into()),
            ("BROKER_SESSIONS__KEY_PREFIX", key_prefix.clone()),
            ("BROKER_KEYS__STORE", "sql".into()),
            (
                "BROKER_KEYS__MASTER_KEY_FILE",
                master_file.display().to_string(),
            ),
            ("BROKER_ADMIN__TOKEN", bootstrap.clone()),
            ("BROKER_UPSTREAM__ISSUER", mock_url),
            ("BROKER_UPSTREAM__CLIENT_SECRET", upstream_secret),
            ("BROKER_LOG", "warn".into()),
        ];
        shared.extend(extra.iter().cloned());

        // C01's legacy record, so that her first login links by ID number without the phone
        // and SMS steps (whose codes only the process's dev gateway sees).
        let csv = dir.path().join("c01.csv");
        let fixture = include_str!("../../../fixtures/legacy-accounts.csv");
        let mut lines = fixture.lines();
        let header = lines.next().expect("header");
        let c01 = lines
            .find(|l| l.split(',').nth(1) == Some("HS1004606"))
            .expect("C01's record");
        std::fs::write(&csv, format!("{header}\n{c01}\n")).expect("csv");
        let imported = broker_command(&shared)
            .args(["import", "legacy-accounts"])
            .arg(&csv)
            .output()
            .expect("run broker import");
        assert!(
            imported.status.success(),
            "import: {}",
            String::from_utf8_lossy(&imported.stderr)
        );

        // All three start at once on an empty key table: the key bootstrap runs under an
        // advisory lock, so they share the first signing keys and trust each other's tokens at
        // once (without it, each made keys of its own and refused the others' tokens until its
        // next key reload).
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        let instances: Vec<_> = ports
            .iter()
            .enumerate()
            .map(|(i, port)| spawn_instance(&shared, *port, dir.path(), i + 1))
            .collect();
        for (i, instance) in instances.iter().enumerate() {
            wait_ready(&http, instance, dir.path(), i + 1).await;
        }

        let created: Value = http
            .post(format!("{issuer}/admin/operators"))
            .bearer_auth(&bootstrap)
            .json(&json!({"name": "tester"}))
            .send()
            .await
            .expect("create operator")
            .json()
            .await
            .expect("operator json");
        let operator_token = created["token"].as_str().expect("token").to_string();
        Cluster {
            instances,
            issuer,
            operator_token,
            http,
            key_prefix,
            dir,
            _mock: mock,
            database,
        }
    }

    pub(crate) fn url(&self, instance: usize, path: &str) -> String {
        format!("{}{path}", self.instances[instance].url)
    }

    /// Every instance's log, for a failure message.
    pub(crate) fn logs(&self) -> String {
        (1..=self.instances.len())
            .map(|i| {
                let log = std::fs::read_to_string(self.dir.path().join(format!("broker-{i}.log")))
                    .unwrap_or_default();
                format!("--- instance {i}\n{log}")
            })
            .collect()
    }

    pub(crate) async fn token(
        &self,
        instance: usize,
        client: &Client,
        form: &[(&str, &str)],
    ) -> (u16, Value) {
        let mut form = form.to_vec();
        form.push(("client_id", &client.id));
        if let Some(secret) = &client.secret {
            form.push(("client_secret", secret));
        }
        let response = self
            .http
            .post(self.url(instance, "/token"))
            .form(&form)
            .send()
            .await
            .expect("token request");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub(crate) async fn refresh(
        &self,
        instance: usize,
        client: &Client,
        refresh_token: &str,
    ) -> (u16, Value) {
        self.token(
            instance,
            client,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
            ],
        )
        .await
    }

    pub(crate) async fn userinfo(&self, instance: usize, access_token: &str) -> u16 {
        self.http
            .get(self.url(instance, "/userinfo"))
            .bearer_auth(access_token)
            .send()
            .await
            .expect("userinfo")
            .status()
            .as_u16()
    }

    /// A mobile login of C01 on `device`: `/authorize` at `authorize_at`, VNeID, the callback at
    /// the issuer, the code exchange at `exchange_at`.
    async fn login(
        &self,
        client: &Client,
        device: &str,
        authorize_at: usize,
        exchange_at: usize,
    ) -> Value {
        self.login_with(client, device, "openid profile", authorize_at, exchange_at)
            .await
    }

    /// The same with the `scope` asked for.
    pub(crate) async fn login_with(
        &self,
        client: &Client,
        device: &str,
        scope: &str,
        authorize_at: usize,
        exchange_at: usize,
    ) -> Value {
        let browser = Browser::new();
        let pkce = Pkce::new();
        let state = random_token();
        let params = code_request(
            client,
            &pkce,
            &[
                ("scope", scope),
                ("state", &state),
                ("nonce", "n-0S6_WzA2Mj"),
                ("login_hint", "C01"),
                ("device_id", device),
            ],
        );
        let url = url::Url::parse_with_params(&self.url(authorize_at, "/authorize"), &params)
            .expect("url");
        let first = browser.get(url.as_str()).await;
        let back = browser.through_upstream(first).await;
        let target = location(&back);
        assert!(
            target.starts_with(&client.redirect_uri),
            "back to {target}\n{}",
            self.logs()
        );
        let answer = query_of(&target);
        assert_eq!(answer.get("state"), Some(&state));
        assert_eq!(answer.get("iss"), Some(&self.issuer));
        let (status, tokens) = self
            .token(
                exchange_at,
                client,
                &[
                    ("grant_type", "authorization_code"),
                    ("code", &answer["code"]),
                    ("redirect_uri", &client.redirect_uri),
                    ("code_verifier", &pkce.verifier),
                ],
            )
            .await;
        assert_eq!(status, 200, "{tokens}\n{}", self.logs());
        tokens
    }
}

pub(crate) fn broker_command(env: &[(&str, String)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_broker"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (k, v)));
    command
}

pub(crate) fn spawn_instance(
    shared: &[(&str, String)],
    port: u16,
    dir: &Path,
    n: usize,
) -> Instance {
    let log = File::create(dir.join(format!("broker-{n}.log"))).expect("log file");
    let child = broker_command(shared)
        .env("BROKER_HTTP__PORT", port.to_string())
        .arg("serve")
        .stdout(Stdio::from(log.try_clone().expect("log")))
        .stderr(Stdio::from(log))
        .spawn()
        .expect("spawn broker serve");
    Instance {
        url: format!("http://127.0.0.1:{port}"),
        child,
    }
}

pub(crate) async fn wait_ready(http: &reqwest::Client, instance: &Instance, dir: &Path, n: usize) {
    let deadline = Instant::now() + READY_WITHIN;
    while Instant::now() < deadline {
        let ready = http.get(format!("{}/readyz", instance.url)).send().await;
        if ready.is_ok_and(|r| r.status() == 200) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = std::fs::read_to_string(dir.join(format!("broker-{n}.log"))).unwrap_or_default();
    panic!("instance {n} not ready within {READY_WITHIN:?}:\n{log}");
}

/// How long a revocation committed on one instance may take to reach another in these tests:
/// the bound is 100 ms at p99 (docs/architecture.md); a loaded two-core test machine gets more
/// slack, still well below the catch-up sweep the tests set to an hour.
pub(crate) const NOTIFIED_WITHIN: Duration = Duration::from_secs(2);

impl Cluster {
    /// Polls userinfo at `instance` until the token is refused; fails after `within` (one try
    /// when zero).
    pub(crate) async fn refused_within(
        &self,
        instance: usize,
        access_token: &str,
        within: Duration,
    ) {
        let deadline = Instant::now() + within;
        loop {
            let status = self.userinfo(instance, access_token).await;
            if status == 401 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "instance {} still answers {status} after {within:?}\n{}",
                instance + 1,
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

pub(crate) fn claims(tokens: &Value) -> Value {
    jwt_parts(tokens["id_token"].as_str().expect("id_token")).1
}

pub(crate) fn field<'a>(tokens: &'a Value, name: &str) -> &'a str {
    tokens[name]
        .as_str()
        .unwrap_or_else(|| panic!("no {name} in {tokens}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_log_in_refresh_and_evict_through_different_processes() {
    let Some((_, redis_url)) = production_backends() else {
        return;
    };
    let cluster = Cluster::start(&redis_url, 3, &[]).await;
    let rp = LogoutRp::start();
    let client: Value = cluster
        .http
        .post(cluster.url(0, "/admin/clients"))
        .bearer_auth(&cluster.operator_token)
        .json(&json!({
            "client_name": "Hue-S",
            "application_type": "native",
            "redirect_uris": ["vn.hue.s:/oauth"],
            "grant_types": ["authorization_code", "refresh_token"],
            "token_endpoint_auth_method": "none",
            "scope": "openid profile",
            "device_class": "mobile",
            "backchannel_logout_uri": rp.uri("s"),
        }))
        .send()
        .await
        .expect("register")
        .json()
        .await
        .expect("client json");
    let mobile = Client {
        id: field(&client, "client_id").to_string(),
        secret: None,
        redirect_uri: "vn.hue.s:/oauth".into(),
    };
    let all = 0..cluster.instances.len();

    // Device A logs in through the first instance; its token works on every instance (one key
    // ring in SQL), and it refreshes through the second.
    let at_a = cluster.login(&mobile, "device-a", 0, 0).await;
    let account = claims(&at_a)["sub"].as_str().expect("sub").to_string();
    let sid_a = claims(&at_a)["sid"].as_str().expect("sid").to_string();
    for i in all.clone() {
        assert_eq!(
            cluster.userinfo(i, field(&at_a, "access_token")).await,
            200,
            "A's token at instance {}\n{}",
            i + 1,
            cluster.logs()
        );
    }
    let (status, at_a2) = cluster
        .refresh(1, &mobile, field(&at_a, "refresh_token"))
        .await;
    assert_eq!(status, 200, "A refreshes through instance 2: {at_a2}");

    // Device B: /authorize at the third instance, the code exchange there too.
    let at_b = cluster.login(&mobile, "device-b", 2, 2).await;
    let sid_b = claims(&at_b)["sid"].as_str().expect("sid").to_string();
    assert_ne!(sid_a, sid_b, "two devices, two sessions");

    // A is out on every instance: its refresh and its access tokens, old and new.
    for i in all.clone() {
        let (status, body) = cluster
            .refresh(i, &mobile, field(&at_a2, "refresh_token"))
            .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_grant")),
            "A's refresh at instance {}",
            i + 1
        );
        // The instance that committed the eviction refuses at once; the others within the
        // revocation set's bound (a notification away).
        for tokens in [&at_a, &at_a2] {
            let within = if i == 2 {
                Duration::ZERO
            } else {
                NOTIFIED_WITHIN
            };
            cluster
                .refused_within(i, field(tokens, "access_token"), within)
                .await;
        }
    }
    // B refreshes through each instance in turn, carrying the rotated token along.
    let mut refresh_b = field(&at_b, "refresh_token").to_string();
    for i in all.clone() {
        let (status, next) = cluster.refresh(i, &mobile, &refresh_b).await;
        assert_eq!(status, 200, "B's refresh at instance {}: {next}", i + 1);
        assert_eq!(cluster.userinfo(i, field(&next, "access_token")).await, 200);
        refresh_b = field(&next, "refresh_token").to_string();
    }
    // Every instance reads the same slot holder.
    for i in all.clone() {
        let sessions: Value = cluster
            .http
            .get(cluster.url(i, &format!("/admin/accounts/{account}/sessions")))
            .bearer_auth(&cluster.operator_token)
            .send()
            .await
            .expect("sessions")
            .json()
            .await
            .expect("sessions json");
        assert_eq!(
            sessions["mobile_slot"]["device"]["id"], "device-b",
            "{sessions}"
        );
    }

    // A's RP hears it once, from whichever dispatcher claimed the event, and hears nothing
    // of B; the logout token verifies against the shared JWKS with the shared issuer.
    let received = rp.wait_for(1, Duration::from_secs(10)).await;
    let token = verify_logout_token_of(
        &cluster.http,
        &cluster.issuer,
        received[0].logout_token(),
        &mobile.id,
    )
    .await;
    assert_eq!(token["sid"], sid_a.as_str());
    assert_eq!(token["sub"], account.as_str());
    // Three dispatchers poll every second: none of the others delivers it again.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(rp.received().len(), 1, "{:?}", rp.received());
}
