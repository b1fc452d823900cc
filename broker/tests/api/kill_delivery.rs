//! A broker killed mid-delivery loses nothing (issue 8): one `broker serve` process on
//! PostgreSQL + Redis pushes dozens of role events to a subscriber that is slow and, at first,
//! failing; the process is killed with SIGKILL while SETs are in flight, a new process starts on
//! the same database, and every event reaches the subscriber: accepted (202) at least once, under
//! one `jti` per event whatever the retries and the restart, and in each subject's `seq` order.
//!
//! The new process takes the killed one's claims once their leases run out
//! (`dispatch.request_timeout_secs + connect_timeout_secs + 30` seconds), so the test takes
//! about a minute.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use broker::crypto::{random_token, MasterKey};
use broker_devkit::mock_vneid::{self, MockClient, MockVneid, MockVneidConfig};
use serde_json::{json, Value};

use crate::multi_instance::{broker_command, free_ports, spawn_instance, wait_ready, Instance};
use crate::support::browser::{code_request, location, query_of, Browser, Pkce};
use crate::support::set_receiver::{ReceivedSet, SetReceiver};
use crate::support::{fresh_postgres_database, jwt_parts, production_backends, Client};

const ORG_UNITS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/org-units.csv");
const LEGACY: &str = include_str!("../../../fixtures/legacy-accounts.csv");
const REQUESTED: &str = "urn:vn:hue:broker:event:role:requested";
/// Phòng Nghiệp vụ Y of Sở Y tế.
const UNIT: &str = "000.02.07.H57";
/// Test citizens who link to their legacy record by ID number (no phone step), with its id.
const PEOPLE: [(&str, &str); 5] = [
    ("C01", "HS1004606"),
    ("C02", "HS1004105"),
    ("C06", "HS1003593"),
    ("C07", "HS1003457"),
    ("C11", "HS1003711"),
];
/// Role requests per person (at most 10 may be pending): one event each.
const REQUESTS: usize = 8;
const RECEIVER: &str = "workplace";
const DELIVERED_WITHIN: Duration = Duration::from_secs(120);

/// What the processes share: their settings, ports, data directory and upstream.
struct Setup {
    shared: Vec<(&'static str, String)>,
    ports: Vec<u16>,
    http: reqwest::Client,
    dir: tempfile::TempDir,
    _mock: MockVneid,
}

impl Setup {
    fn logs(&self) -> String {
        (1..=2)
            .map(|i| {
                let log = std::fs::read_to_string(self.dir.path().join(format!("broker-{i}.log")))
                    .unwrap_or_default();
                format!("--- process {i}\n{log}")
            })
            .collect()
    }

    async fn start(&self, n: usize) -> Instance {
        let instance = spawn_instance(&self.shared, self.ports[n - 1], self.dir.path(), n);
        wait_ready(&self.http, &instance, self.dir.path(), n).await;
        instance
    }

    async fn operator_token(&self, at: &Instance) -> String {
        let bootstrap = &self
            .shared
            .iter()
            .find(|(k, _)| *k == "BROKER_ADMIN__TOKEN")
            .expect("bootstrap")
            .1;
        let created: Value = self
            .http
            .post(format!("{}/admin/operators", at.url))
            .bearer_auth(bootstrap)
            .json(&json!({"name": "tester"}))
            .send()
            .await
            .expect("create operator")
            .json()
            .await
            .expect("operator json");
        created["token"].as_str().expect("token").to_string()
    }

    /// `hint`'s login to `client` through `at` (the issuer's process): the token response.
    async fn login(&self, at: &Instance, client: &Client, hint: &str) -> Value {
        let browser = Browser::new();
        let pkce = Pkce::new();
        let state = random_token();
        let params = code_request(
            client,
            &pkce,
            &[
                ("scope", "openid profile roles role_request"),
                ("state", &state),
                ("nonce", "n-0S6_WzA2Mj"),
                ("login_hint", hint),
            ],
        );
        let url =
            url::Url::parse_with_params(&format!("{}/authorize", at.url), &params).expect("url");
        let back = browser
            .through_upstream(browser.get(url.as_str()).await)
            .await;
        let target = location(&back);
        assert!(
            target.starts_with(&client.redirect_uri),
            "{hint} back to {target}\n{}",
            self.logs()
        );
        let answer = query_of(&target);
        let response = self
            .http
            .post(format!("{}/token", at.url))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", &answer["code"]),
                ("redirect_uri", &client.redirect_uri),
                ("code_verifier", &pkce.verifier),
                ("client_id", &client.id),
            ])
            .send()
            .await
            .expect("token request");
        assert_eq!(response.status(), 200, "{hint}'s code exchange");
        response.json().await.expect("tokens")
    }

    /// Runs a `broker` command on the shared settings; it must succeed.
    fn run(&self, args: &[&str], file: &Path) {
        let out = broker_command(&self.shared)
            .args(args)
            .arg(file)
            .output()
            .expect("run broker");
        assert!(
            out.status.success(),
            "broker {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The mock VNeID, the shared settings, and the database loaded with the people's legacy
/// records and the agency tree (by the `broker import` commands).
async fn setup(redis_url: &str, database_url: String) -> Setup {
    broker::startup::install_crypto_provider();
    let dir = tempfile::tempdir().expect("tempdir");
    // The first process's port names the issuer; the second process listens on another.
    let ports = free_ports(2);
    let issuer = format!("http://127.0.0.1:{}", ports[0]);
    let mock_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind mock");
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
    let master_file = dir.path().join("master.key");
    std::fs::write(&master_file, MasterKey::generate_encoded()).expect("master key");
    let shared: Vec<(&str, String)> = vec![
        ("BROKER_ENVIRONMENT", "development".into()),
        ("BROKER_ISSUER", issuer.clone()),
        ("BROKER_HTTP__WORKERS", "2".into()),
        ("BROKER_DATABASE__URL", database_url),
        ("BROKER_DATABASE__MAX_CONNECTIONS", "5".into()),
        ("BROKER_SESSIONS__BACKEND", "redis".into()),
        ("BROKER_SESSIONS__REDIS_URL", redis_url.into()),
        (
            "BROKER_SESSIONS__KEY_PREFIX",
            format!("test:{}:", uuid::Uuid::new_v4()),
        ),
        ("BROKER_KEYS__STORE", "sql".into()),
        (
            "BROKER_KEYS__MASTER_KEY_FILE",
            master_file.display().to_string(),
        ),
        ("BROKER_ADMIN__TOKEN", random_token()),
        ("BROKER_UPSTREAM__ISSUER", mock_url),
        ("BROKER_UPSTREAM__CLIENT_SECRET", upstream_secret),
        // The receiver is on loopback over http (allowed outside production, said here too).
        ("BROKER_DISPATCH__ALLOW_LOOPBACK", "true".into()),
        ("BROKER_DISPATCH__POLL_INTERVAL_MS", "100".into()),
        // Retries a second apart; the leases of the killed process last 2 + 1 + 30 seconds.
        ("BROKER_DISPATCH__MAX_BACKOFF_SECS", "1".into()),
        ("BROKER_DISPATCH__MAX_ATTEMPTS", "100".into()),
        ("BROKER_DISPATCH__REQUEST_TIMEOUT_SECS", "2".into()),
        ("BROKER_DISPATCH__CONNECT_TIMEOUT_SECS", "1".into()),
        ("BROKER_LOG", "warn".into()),
    ];
    let setup = Setup {
        shared,
        ports,
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client"),
        dir,
        _mock: mock,
    };
    let mut lines = LEGACY.lines();
    let mut csv = format!("{}\n", lines.next().expect("header"));
    for line in lines.filter(|l| {
        PEOPLE
            .iter()
            .any(|(_, id)| l.split(',').nth(1) == Some(*id))
    }) {
        csv.push_str(line);
        csv.push('\n');
    }
    let legacy = setup.dir.path().join("legacy.csv");
    std::fs::write(&legacy, csv).expect("csv");
    setup.run(&["import", "legacy-accounts"], &legacy);
    setup.run(&["import", "org-units"], Path::new(ORG_UNITS));
    setup
}

fn claims_of(set: &ReceivedSet) -> (String, String, String, i64) {
    let claims = set.claims();
    let seq = claims["events"][REQUESTED]["seq"]
        .as_i64()
        .unwrap_or_else(|| panic!("a role:requested SET with seq: {claims}"));
    (
        claims["txn"].as_str().expect("txn").to_string(),
        claims["jti"].as_str().expect("jti").to_string(),
        claims["sub_id"]["id"].as_str().expect("sub_id").to_string(),
        seq,
    )
}

/// The events' ids (`txn`) that the receiver accepted at least once.
fn accepted_txns(rx: &SetReceiver) -> BTreeSet<String> {
    rx.received_by(RECEIVER)
        .iter()
        .filter(|r| r.status == 202)
        .map(|r| claims_of(r).0)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_killed_mid_delivery_loses_no_event() {
    let Some((_, redis_url)) = production_backends() else {
        return;
    };
    // Dropped last, after the processes.
    let database = fresh_postgres_database().await;
    let setup = setup(&redis_url, database.url()).await;
    let mut first = setup.start(1).await;
    let operator = setup.operator_token(&first).await;
    let rx = SetReceiver::start();
    let registered: Value = setup
        .http
        .post(format!("{}/admin/clients", first.url))
        .bearer_auth(&operator)
        .json(&json!({
            "client_name": "Nền tảng làm việc số",
            "application_type": "native",
            "redirect_uris": ["vn.hue.cqs:/oauth"],
            "grant_types": ["authorization_code"],
            "token_endpoint_auth_method": "none",
            "scope": "openid profile roles role_request",
            "roles": [{"code": "editor", "name": "Biên tập viên", "name#en": "Editor"}],
            "event_delivery_uri": rx.uri(RECEIVER),
            "event_types": [REQUESTED],
        }))
        .send()
        .await
        .expect("register")
        .json()
        .await
        .expect("client json");
    let client = Client {
        id: registered["client_id"]
            .as_str()
            .unwrap_or_else(|| panic!("registered: {registered}"))
            .to_string(),
        secret: None,
        redirect_uri: "vn.hue.cqs:/oauth".into(),
    };
    let mut people = Vec::new();
    for (hint, _) in PEOPLE {
        let tokens = setup.login(&first, &client, hint).await;
        let account = jwt_parts(tokens["id_token"].as_str().expect("id_token")).1["sub"]
            .as_str()
            .expect("sub")
            .to_string();
        people.push((
            account,
            tokens["access_token"].as_str().unwrap().to_string(),
        ));
    }

    // The subscriber is slow throughout, and down (503: retried) until every event is written,
    // so that however slow this machine the kill below finds deliveries accepted, in flight,
    // retried and waiting behind their subject's earlier ones.
    rx.slow(RECEIVER, Duration::from_millis(400));
    rx.answer(RECEIVER, &[503; 10_000]);
    for n in 0..REQUESTS {
        for (_, token) in &people {
            let response = setup
                .http
                .post(format!("{}/api/roles", first.url))
                .bearer_auth(token)
                .json(&json!({
                    "category": "cong_chuc",
                    "org_code": UNIT,
                    "position": format!("Chuyên viên {n}"),
                    "app_roles": {client.id.clone(): ["editor"]},
                }))
                .send()
                .await
                .expect("role request");
            assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
        }
    }
    let total = PEOPLE.len() * REQUESTS;
    rx.forget_answers(RECEIVER);

    // Kill the process while SETs are in flight, some accepted and most not yet sent.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let accepted = accepted_txns(&rx).len();
        if accepted >= PEOPLE.len() && rx.in_flight() > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no deliveries in flight: {accepted} accepted\n{}",
            setup.logs()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    first.child.kill().expect("SIGKILL");
    first.child.wait().expect("reap");
    let before = accepted_txns(&rx).len();
    assert!(
        before < total,
        "the kill came too late to prove anything: all {total} accepted before it"
    );
    eprintln!(
        "killed with {} received, {before} of {total} events accepted",
        rx.received_by(RECEIVER).len()
    );

    // A new process on the same database finishes the work.
    let second = setup.start(2).await;
    let deadline = Instant::now() + DELIVERED_WITHIN;
    while accepted_txns(&rx).len() < total {
        assert!(
            Instant::now() < deadline,
            "{} of {total} events accepted after the restart\n{}",
            accepted_txns(&rx).len(),
            setup.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Anything sent twice arrives now rather than after the assertions.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // The outbox's events: per person, their ids and seq.
    let mut outbox: BTreeMap<String, (String, i64)> = BTreeMap::new();
    for (account, _) in &people {
        let events: Value = setup
            .http
            .get(format!("{}/admin/accounts/{account}/events", second.url))
            .bearer_auth(&operator)
            .send()
            .await
            .expect("events")
            .json()
            .await
            .expect("events json");
        for event in events.as_array().expect("events").iter() {
            if event["event_type"] == REQUESTED {
                let id = event["id"].as_i64().expect("id").to_string();
                outbox.insert(id, (account.clone(), event["seq"].as_i64().expect("seq")));
            }
        }
    }
    assert_eq!(outbox.len(), total, "one role:requested event per request");

    let received = rx.received_by(RECEIVER);
    // Every event accepted at least once ...
    let accepted = accepted_txns(&rx);
    assert_eq!(
        accepted,
        outbox.keys().cloned().collect::<BTreeSet<_>>(),
        "every event of the outbox accepted"
    );
    // ... under one jti, whatever the retries and the restart (one delivery per event) ...
    let mut jtis: HashMap<String, BTreeSet<String>> = HashMap::new();
    for set in &received {
        let (txn, jti, _, seq) = claims_of(set);
        assert_eq!(seq, outbox[&txn].1, "the SET carries its event's seq");
        jtis.entry(txn).or_default().insert(jti);
    }
    for (txn, ids) in &jtis {
        assert_eq!(
            ids.len(),
            1,
            "event {txn} went out under several jti: {ids:?}"
        );
    }
    // ... and each subject's accepted SETs in seq order: a repeat of the last one (its answer
    // lost to the kill) at most, never an earlier one after a later.
    let mut per_subject: HashMap<String, Vec<i64>> = HashMap::new();
    for set in received.iter().filter(|r| r.status == 202) {
        let (_, _, subject, seq) = claims_of(set);
        per_subject.entry(subject).or_default().push(seq);
    }
    assert_eq!(per_subject.len(), PEOPLE.len(), "one subject per person");
    for (subject, seqs) in &per_subject {
        assert!(
            seqs.windows(2).all(|w| w[0] <= w[1]),
            "{subject}'s accepted SETs out of order: {seqs:?}"
        );
        let mut distinct = seqs.clone();
        distinct.dedup();
        assert_eq!(distinct.len(), REQUESTS, "{subject}: {seqs:?}");
    }
    // The dispatcher agrees: one delivery per event, every one delivered, none failed.
    let deliveries: Value = setup
        .http
        .get(format!("{}/admin/deliveries?limit=1000", second.url))
        .bearer_auth(&operator)
        .send()
        .await
        .expect("deliveries")
        .json()
        .await
        .expect("deliveries json");
    let statuses: Vec<&str> = deliveries
        .as_array()
        .expect("deliveries")
        .iter()
        .filter(|d| d["route"] == "security_event")
        .map(|d| d["status"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(statuses, vec!["delivered"; total], "{deliveries}");
    let repeats = received.iter().filter(|r| r.status == 202).count() - total;
    eprintln!(
        "{} SETs received, {repeats} accepted repeats of a jti (answers lost to the kill)",
        received.len()
    );
}
