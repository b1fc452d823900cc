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
fn mock_vneid_is_refused_in_production() {
    let cli = Cli::new();
    let (ok, _, err) = cli.run(&["mock-vneid", "--port", "0", "--client-secret", "x"]);
    assert!(!ok);
    assert!(err.contains("refused in production"), "{err}");
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
        .env("BROKER_ADMIN__TOKEN", "")
        .output()
        .expect("run broker");
    assert!(
        !out.status.success(),
        "an empty admin token must not start an open admin API"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("empty"));
}
