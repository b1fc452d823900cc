//! The `broker` binary: client and key commands on the embedded database, and the mock VNeID's
//! refusal to run in production.

use std::process::Command;

use broker::crypto::MasterKey;

struct Cli {
    dir: tempfile::TempDir,
    master: String,
}

impl Cli {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
            master: MasterKey::generate_encoded(),
        }
    }

    fn run(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_broker"))
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env(
                "BROKER_DATABASE__URL",
                format!("sqlite://{}/cli.db?mode=rwc", self.dir.path().display()),
            )
            .env("BROKER_KEYS__MASTER_KEY", &self.master)
            .env("BROKER_KEYS__STORE", "file")
            .env("BROKER_KEYS__DIR", self.dir.path().join("keys"))
            .output()
            .expect("run broker");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

#[test]
fn clients_and_keys_commands() {
    let cli = Cli::new();
    let (ok, out, err) = cli.run(&[
        "clients",
        "create",
        "--client-id",
        "portal",
        "--name",
        "Cổng dịch vụ công",
        "--redirect-uri",
        "https://dvc.example/cb",
    ]);
    assert!(ok, "{err}");
    let created: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(created["client_secret"].as_str().map(str::len), Some(43));
    let (ok, out, _) = cli.run(&["clients", "list"]);
    assert!(ok && out.contains("portal"));
    let (ok, out, _) = cli.run(&["clients", "show", "portal"]);
    assert!(
        ok && !out.contains("\"client_secret\""),
        "the secret is shown only once"
    );
    let (ok, _, err) = cli.run(&[
        "clients",
        "create",
        "--redirect-uri",
        "http://insecure.example/cb",
    ]);
    assert!(!ok && err.contains("https"), "{err}");
    // In production a web client cannot register a localhost redirect; a native app can.
    let (ok, _, err) = cli.run(&[
        "clients",
        "create",
        "--redirect-uri",
        "http://localhost:3000/cb",
    ]);
    assert!(!ok && err.contains("production"), "{err}");
    let (ok, _, err) = cli.run(&[
        "clients",
        "create",
        "--redirect-uri",
        "HTTP://localhost:3000/cb",
    ]);
    assert!(
        !ok && err.contains("production"),
        "an upper-case scheme is http too: {err}"
    );
    let (ok, _, err) = cli.run(&[
        "clients",
        "create",
        "--native",
        "--redirect-uri",
        "http://127.0.0.1/cb",
    ]);
    assert!(ok, "{err}");
    let (ok, _, _) = cli.run(&["clients", "delete", "portal"]);
    assert!(ok);
    let (ok, _, _) = cli.run(&["clients", "show", "portal"]);
    assert!(!ok);

    // Keys: there are none until the broker has run once; rotation needs an active key.
    let (ok, out, err) = cli.run(&["keys", "rotate", "--alg", "RS256"]);
    assert!(ok, "{err}");
    assert!(out.contains("published"), "{out}");
    let (ok, _, err) = cli.run(&["keys", "rotate", "--alg", "RS256"]);
    assert!(!ok && err.contains("already in progress"), "{err}");
    let (ok, out, _) = cli.run(&["keys", "rotate", "--alg", "RS256", "--emergency"]);
    assert!(ok && out.contains("EMERGENCY"));
    let (ok, out, _) = cli.run(&["keys", "list"]);
    assert!(ok && out.contains("Active"), "{out}");
    let (ok, _, err) = cli.run(&["keys", "rotate", "--alg", "HS256"]);
    assert!(!ok && err.contains("RS256"), "{err}");
}

#[test]
fn operators_commands() {
    let cli = Cli::new();
    let (ok, out, err) = cli.run(&["operators", "create", "an.nguyen"]);
    assert!(ok, "{err}");
    let token = out.trim().to_string();
    assert_eq!(token.len(), 43, "the token alone on stdout: {out}");
    assert!(err.contains("shown only now"), "{err}");
    let (ok, out, _) = cli.run(&["operators", "list"]);
    assert!(
        ok && out.contains("an.nguyen") && out.contains("active"),
        "{out}"
    );
    assert!(!out.contains(&token), "list never shows a token");
    let (ok, _, err) = cli.run(&["operators", "create", "an.nguyen"]);
    assert!(!ok && err.contains("exists"), "{err}");
    let (ok, _, _) = cli.run(&["operators", "create", "Not Valid"]);
    assert!(!ok);
    let (ok, out, err) = cli.run(&["operators", "revoke", "an.nguyen"]);
    assert!(ok && out.contains("revoked"), "{err}");
    let (ok, out, _) = cli.run(&["operators", "list"]);
    assert!(ok && out.contains("revoked_at="), "{out}");
    let (ok, _, _) = cli.run(&["operators", "revoke", "an.nguyen"]);
    assert!(!ok, "nothing left to revoke");
}

#[cfg(feature = "dev")]
#[test]
fn mock_vneid_is_refused_in_production() {
    let cli = Cli::new();
    let (ok, _, err) = cli.run(&["mock-vneid", "--port", "0", "--client-secret", "x"]);
    assert!(!ok);
    assert!(err.contains("refused in production"), "{err}");
}

/// Without the `dev` feature (the production image) the dev commands say they are missing.
#[cfg(not(feature = "dev"))]
#[test]
fn dev_commands_are_not_built_in() {
    let cli = Cli::new();
    for command in [&["dev"][..], &["mock-vneid", "--client-secret", "x"]] {
        let (ok, _, err) = cli.run(command);
        assert!(!ok);
        assert!(err.contains("is not built into this binary"), "{err}");
    }
}

#[test]
fn unknown_settings_are_rejected() {
    let out = Command::new(env!("CARGO_BIN_EXE_broker"))
        .args(["migrate"])
        .env_clear()
        .env("BROKER_DATABSE__URL", "sqlite::memory:")
        .output()
        .expect("run broker");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid configuration"));
}

#[test]
fn an_empty_admin_token_is_refused() {
    let cli = Cli::new();
    let out = Command::new(env!("CARGO_BIN_EXE_broker"))
        .args(["serve"])
        .env_clear()
        .env(
            "BROKER_DATABASE__URL",
            format!("sqlite://{}/s.db?mode=rwc", cli.dir.path().display()),
        )
        .env("BROKER_KEYS__MASTER_KEY", &cli.master)
        .env("BROKER_KEYS__STORE", "file")
        .env("BROKER_KEYS__DIR", cli.dir.path().join("keys"))
        .env("BROKER_HTTP__PORT", "0")
        .env("BROKER_UPSTREAM__ISSUER", "https://vneid.example")
        .env("BROKER_UPSTREAM__CLIENT_SECRET", "upstream-secret")
        .env("BROKER_ADMIN__TOKEN", "")
        .output()
        .expect("run broker");
    assert!(
        !out.status.success(),
        "an empty admin token must not start an open admin API"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("empty"));
}

/// Runs `broker serve` with `env` on top of a working embedded configuration; a start-up that
/// does not fail within 20 s is stopped and reported as `None`.
fn serve_exit(cli: &Cli, env: &[(&str, &str)]) -> Option<(bool, String)> {
    let mut command = Command::new(env!("CARGO_BIN_EXE_broker"));
    command
        .args(["serve"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env(
            "BROKER_DATABASE__URL",
            format!("sqlite://{}/s.db?mode=rwc", cli.dir.path().display()),
        )
        .env("BROKER_KEYS__MASTER_KEY", &cli.master)
        .env("BROKER_KEYS__STORE", "file")
        .env("BROKER_KEYS__DIR", cli.dir.path().join("keys"))
        .env("BROKER_HTTP__PORT", "0")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command.spawn().expect("run broker");
    for _ in 0..200 {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut err = String::new();
            use std::io::Read;
            if let Some(mut stderr) = child.stderr.take() {
                let _ = stderr.read_to_string(&mut err);
            }
            return Some((status.success(), err));
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

#[test]
fn production_needs_an_explicit_https_upstream_with_credentials() {
    let cli = Cli::new();
    let (ok, err) = serve_exit(&cli, &[]).expect("the start-up must stop");
    assert!(!ok && err.contains("upstream.issuer"), "{err}");
    let (ok, err) = serve_exit(
        &cli,
        &[("BROKER_UPSTREAM__ISSUER", "https://vneid.example")],
    )
    .expect("the start-up must stop");
    assert!(!ok && err.contains("upstream.client_secret"), "{err}");
    // The development upstream is fine in development.
    assert!(
        serve_exit(
            &cli,
            &[
                ("BROKER_ENVIRONMENT", "development"),
                ("BROKER_UPSTREAM__CLIENT_SECRET", "x")
            ]
        )
        .is_none(),
        "a development broker starts"
    );
}

#[test]
fn foreign_broker_variables_are_ignored_but_nested_typos_are_not() {
    let cli = Cli::new();
    let foreign = [
        ("BROKER_PORT", "tcp://10.0.0.12:8080"),
        ("BROKER_PORT_8080_TCP", "tcp://10.0.0.12:8080"),
        ("BROKER_PORT_8080_TCP_ADDR", "10.0.0.12"),
        ("BROKER_SERVICE_HOST", "10.0.0.12"),
        ("BROKER_SERVICE_PORT", "8080"),
        ("BROKER_BIN", "/usr/local/bin/broker"),
    ];
    let mut command = Command::new(env!("CARGO_BIN_EXE_broker"));
    command
        .args(["clients", "list"])
        .env_clear()
        .env(
            "BROKER_DATABASE__URL",
            format!("sqlite://{}/cli.db?mode=rwc", cli.dir.path().display()),
        )
        .env("BROKER_KEYS__MASTER_KEY", &cli.master);
    for (k, v) in foreign {
        command.env(k, v);
    }
    let out = command.output().expect("run broker");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "Kubernetes' variables must not stop the broker: {err}"
    );
    assert!(
        err.contains("BROKER_SERVICE_HOST"),
        "they are named in a warning: {err}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_broker"))
        .args(["clients", "list"])
        .env_clear()
        .env("BROKER_HTTP__PROT", "8080")
        .output()
        .expect("run broker");
    assert!(
        !out.status.success(),
        "a typo in a nested setting still stops it"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid configuration"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_commands_list_dead_letters_and_replay_them() {
    use broker::dispatch::{After, Attempt, DeliveryStatus, DeliveryStore, Planned};
    let cli = Cli::new();
    let (ok, _, err) = cli.run(&["migrate"]);
    assert!(ok, "{err}");
    let mut settings = broker::config::Settings::default();
    settings.database.url = broker::secret::Secret::new(format!(
        "sqlite://{}/cli.db?mode=rwc",
        cli.dir.path().display()
    ));
    let db = broker::startup::connect_db(&settings).await.expect("db");
    let planned = Planned {
        target: "portal".into(),
        payload: serde_json::json!({}),
        ordering: None,
    };
    db.fan_out(&[7], &[(7, "security_event", planned)], 100)
        .await
        .unwrap();
    let claimed = db.claim_due(100, 160, "cli-test", 10).await.unwrap();
    let attempt = Attempt {
        at: 100,
        outcome: "failed".into(),
        http_status: Some(400),
        error: Some("refused: invalid_key".into()),
        duration_ms: 1,
    };
    let done = After::Finished(DeliveryStatus::Failed);
    assert!(db
        .record_attempt(&claimed[0], &attempt, done)
        .await
        .unwrap());
    let id = claimed[0].id.clone();

    let (ok, out, err) = cli.run(&["deliveries", "list", "--status", "failed"]);
    assert!(ok, "{err}");
    assert!(
        out.starts_with(&id) && out.contains("refused: invalid_key"),
        "{out}"
    );
    let (ok, _, err) = cli.run(&["deliveries", "list", "--status", "bogus"]);
    assert!(!ok && err.contains("status must be"), "{err}");

    let (ok, out, err) = cli.run(&["deliveries", "replay", &id]);
    assert!(ok, "{err}");
    let replay = out.trim().to_string();
    assert_ne!(replay, id, "a new delivery");
    let view = db.find(&replay).await.unwrap().expect("the replay");
    assert_eq!(
        (view.status.as_str(), view.replay, view.event_id),
        ("pending", 1, 7)
    );
    let (ok, _, err) = cli.run(&["deliveries", "replay", &replay]);
    assert!(!ok && err.contains("still pending"), "{err}");
    let (ok, _, err) = cli.run(&["deliveries", "replay", "nope"]);
    assert!(!ok && err.contains("no such delivery"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvers_and_policy_commands() {
    let cli = Cli::new();
    // An unknown agency and an unknown account are refused by name, nothing written.
    let (ok, _, err) = cli.run(&["approvers", "grant", "someone", "000.00.07.H57"]);
    assert!(!ok && err.contains("no such agency"), "{err}");
    let units = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/org-units.csv");
    let (ok, _, err) = cli.run(&["import", "org-units", units]);
    assert!(ok, "{err}");
    let (ok, _, err) = cli.run(&["approvers", "grant", "someone", "000.00.07.H57"]);
    assert!(!ok && err.contains("no such account"), "{err}");

    let url = format!("sqlite://{}/cli.db", cli.dir.path().display());
    let db = broker::store::Db::connect(&url, 1).await.expect("db");
    sqlx::query(
        "INSERT INTO accounts (id, full_name, account_type, loa, created_at, updated_at) \
         VALUES ('a1', 'Trần Thị Hoài Châu', '1', 2, 0, 0)",
    )
    .execute(&db.pool())
    .await
    .expect("account");
    db.pool().close().await;
    let (ok, out, err) = cli.run(&["approvers", "grant", "a1", "000.00.07.H57"]);
    assert!(ok && out.contains("granted"), "{err}");
    let (ok, out, _) = cli.run(&["approvers", "grant", "a1", "000.00.07.H57"]);
    assert!(ok && out.contains("already granted"), "idempotent: {out}");
    let (ok, out, _) = cli.run(&["approvers", "list"]);
    assert!(
        ok && out.contains("a1\t000.00.07.H57\tby=operator:cli"),
        "{out}"
    );
    let (ok, out, err) = cli.run(&[
        "org-units",
        "policy",
        "000.00.07.H57",
        "--auto-approve",
        "true",
    ]);
    assert!(ok && out.contains("auto_approve=true"), "{err}");
    let (ok, _, err) = cli.run(&["org-units", "policy", "nowhere", "--auto-approve", "true"]);
    assert!(!ok && err.contains("no such agency"), "{err}");
    let (ok, _, _) = cli.run(&["approvers", "revoke", "a1", "000.00.07.H57"]);
    assert!(ok);
    let (ok, _, err) = cli.run(&["approvers", "revoke", "a1", "000.00.07.H57"]);
    assert!(!ok && err.contains("no such approver grant"), "{err}");
}
