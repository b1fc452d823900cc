//! The dev servers: the broker with the devkit's mock VNeID and demo app (feature `dev`).

use std::net::TcpListener;
use std::path::PathBuf;

use anyhow::Context;
use broker_devkit::demo_rp::{self, DemoRpConfig};
use broker_devkit::mock_vneid::synthetic::{self, LegacyKind};
use broker_devkit::mock_vneid::{self, MockClient, MockVneid, MockVneidConfig};
use url::Url;

use super::{DevArgs, MockArgs};
use crate::clients::registration::ClientRequest;
use crate::clients::{AuthMethod, GrantType};
use crate::config::{
    AdminSettings, DatabaseSettings, Environment, KeySettings, KeyStoreKind, SessionBackend,
    SessionSettings, Settings,
};
use crate::crypto::{random_token, MasterKey};
use crate::federation::profile::UpstreamProfile;
use crate::operators::CLI_ACTOR;
use crate::otp::settings::{GatewayKind, SmsSettings};
use crate::secret::Secret;
use crate::startup::Application;

fn listen(port: u16) -> anyhow::Result<TcpListener> {
    TcpListener::bind(("127.0.0.1", port)).with_context(|| {
        format!("port {port} is busy; choose another with the flags of `broker dev`")
    })
}

pub async fn run_mock(args: MockArgs) -> anyhow::Result<()> {
    if let Some(spec) = &args.emit_legacy {
        let (kind, range) = parse_legacy_spec(spec)?;
        print!("{}", synthetic::legacy_csv(kind, range));
        return Ok(());
    }
    let client_secret = args
        .client_secret
        .context("--client-secret (or MOCK_VNEID_CLIENT_SECRET) is required")?;
    let issuer = Url::parse(&format!("http://127.0.0.1:{}", args.port))?;
    let mock = MockVneid::new(MockVneidConfig {
        issuer,
        clients: vec![MockClient {
            client_id: args.client_id,
            client_secret,
            redirect_uris: args.redirect_uris,
        }],
    })?;
    let variant = args
        .variant
        .parse::<broker_devkit::mock_vneid::Variant>()
        .map_err(|e| anyhow::anyhow!("--variant: {e}"))?;
    mock.set_variant(variant);
    if let Some(file) = &args.seal_to {
        mock.set_encryption(Some(mock_vneid::MockEncryption {
            rp_public_key_der: read_public_key(file)?,
            cbc: args.seal_mode == "cbc",
        }));
    }
    mock.set_hang_one_in(args.hang_one_in);
    let hangs = match args.hang_one_in {
        0 => String::new(),
        n => format!(", one token call in {n} hangs"),
    };
    println!(
        "mock VNeID (variant {variant:?}{hangs}) on http://127.0.0.1:{}",
        args.port
    );
    mock_vneid::serve(mock, listen(args.port)?)?.await?;
    Ok(())
}

/// An RSA public key as X.509 SubjectPublicKeyInfo: DER, or PEM (`-----BEGIN PUBLIC KEY-----`).
fn read_public_key(file: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    let bytes =
        std::fs::read(file).with_context(|| format!("--seal-to {}: unreadable", file.display()))?;
    crate::crypto::pem_or_der(&bytes, "PUBLIC KEY")
        .with_context(|| format!("--seal-to {}", file.display()))
}

/// `id:FROM-TO` or `phone:FROM-TO`, TO excluded and at most `synthetic::MAX_N`.
fn parse_legacy_spec(spec: &str) -> anyhow::Result<(LegacyKind, std::ops::Range<u64>)> {
    let bad = || anyhow::anyhow!("--emit-legacy {spec}: expected id:FROM-TO or phone:FROM-TO");
    let (kind, range) = spec.split_once(':').ok_or_else(bad)?;
    let kind = match kind {
        "id" => LegacyKind::Id,
        "phone" => LegacyKind::Phone,
        _ => return Err(bad()),
    };
    let (from, to) = range.split_once('-').ok_or_else(bad)?;
    let (from, to) = (
        from.parse::<u64>().map_err(|_| bad())?,
        to.parse::<u64>().map_err(|_| bad())?,
    );
    anyhow::ensure!(from <= to && to <= synthetic::MAX_N, bad());
    Ok((kind, from..to))
}

/// Reads the dev master key, creating it on first run (owner-only permissions).
fn dev_master_key(dir: &std::path::Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join("master.key");
    if !path.exists() {
        std::fs::write(&path, MasterKey::generate_encoded())?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        }
    }
    Ok(path)
}

pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    let upstream_secret = random_token();
    let admin_token = random_token();
    let broker_url = format!("http://127.0.0.1:{}", args.port);
    let mock_url = format!("http://127.0.0.1:{}", args.mock_port);
    let demo_url = format!("http://127.0.0.1:{}", args.demo_port);

    let settings = Settings {
        environment: Environment::Development,
        issuer: Url::parse(&broker_url)?,
        database: DatabaseSettings {
            url: Secret::new(format!(
                "sqlite://{}/broker.db?mode=rwc",
                args.data_dir.display()
            )),
            ..Default::default()
        },
        sessions: SessionSettings {
            backend: SessionBackend::Memory,
            ..Default::default()
        },
        keys: KeySettings {
            store: KeyStoreKind::File,
            dir: args.data_dir.join("keys"),
            master_key_file: Some(dev_master_key(&args.data_dir)?),
            ..Default::default()
        },
        admin: AdminSettings {
            token: Some(Secret::new(admin_token.clone())),
            token_file: None,
        },
        upstream: UpstreamProfile {
            issuer: Url::parse(&mock_url)?,
            client_secret: Some(Secret::new(upstream_secret.clone())),
            ..Default::default()
        },
        sms: SmsSettings {
            gateway: GatewayKind::Dev,
            ..Default::default()
        },
        ..Default::default()
    };

    let mock = MockVneid::new(MockVneidConfig {
        issuer: Url::parse(&mock_url)?,
        clients: vec![MockClient {
            client_id: "broker".into(),
            client_secret: upstream_secret,
            redirect_uris: vec![format!("{broker_url}/callback/vneid")],
        }],
    })?;
    let mock_server = mock_vneid::serve(mock, listen(args.mock_port)?)?;
    let app = Application::build(settings, listen(args.port)?).await?;

    // The demo app's registration is refreshed on every start with a new secret.
    let demo = ClientRequest {
        client_id: Some("demo-rp".into()),
        client_name: Some("Ứng dụng mẫu / Demo app".into()),
        redirect_uris: vec![format!("{demo_url}/callback")],
        post_logout_redirect_uris: vec![format!("{demo_url}/")],
        grant_types: Some(vec![GrantType::AuthorizationCode, GrantType::RefreshToken]),
        token_endpoint_auth_method: Some(AuthMethod::ClientSecretBasic),
        scope: Some("openid profile phone personal_id roles role_approval".into()),
        roles: serde_json::from_value(serde_json::json!([
            {"code": "editor", "name": "Biên tập viên", "name#en": "Editor"},
            {"code": "reviewer", "name": "Người duyệt", "name#en": "Reviewer"},
        ]))?,
        ..Default::default()
    };
    let registrar = &app.broker.registrar;
    let now = app.broker.provider.now();
    let (_, secret) = match registrar
        .update("demo-rp", &demo, true, CLI_ACTOR, now)
        .await
    {
        Ok(done) => done,
        Err(_) => registrar.create(&demo, CLI_ACTOR, now).await?,
    };
    let legacy = import_demo_legacy_accounts(&app, &args.data_dir, now).await?;
    let units = import_demo_directory(&app, &args.data_dir, now).await?;
    // An operator for this run, as a fresh admin token: names are never reused, so each run
    // adds one (`dev-` and the time), and the previous run's stays valid in its database.
    let (operator, operator_token) = app
        .broker
        .operators
        .create(&format!("dev-{now}"), CLI_ACTOR, now)
        .await?;
    let demo_server = demo_rp::serve(
        DemoRpConfig {
            broker_issuer: Url::parse(&broker_url)?,
            client_id: "demo-rp".into(),
            client_secret: secret.unwrap_or_default(),
            base_url: Url::parse(&demo_url)?,
        },
        listen(args.demo_port)?,
    )?;

    println!(
        "Broker (embedded: SQLite, master key and keys/ in {}, in-process sessions):",
        args.data_dir.display()
    );
    println!(
        "  issuer      {broker_url}  (discovery: {broker_url}/.well-known/openid-configuration)"
    );
    println!("  mock VNeID  {mock_url}");
    println!(
        "  legacy      {legacy} accounts of fixtures/legacy-accounts.csv (C01 links by ID, C03 meets the failure page, C04 gives a phone)"
    );
    println!(
        "  directory   {units} agencies and the staff roster of fixtures/ (C06 and C07 are on it; roles: {broker_url}/account/roles)"
    );
    println!("  SMS codes   {broker_url}/dev/sms  (the dev SMS gateway sends nothing)");
    println!("  account     {broker_url}/account");
    println!("  demo app    {demo_url}   ← open this and choose \"Đăng nhập bằng VNeID\"");
    println!(
        "  admin token {operator_token}  (operator {}; Authorization: Bearer … on {broker_url}/admin/clients)",
        operator.name
    );
    println!(
        "  bootstrap   {admin_token}  (only creates operators: POST {broker_url}/admin/operators)"
    );
    let broker_server = app.server();
    tokio::select! {
        r = broker_server => r?,
        r = mock_server => r?,
        r = demo_server => r?,
    }
    Ok(())
}

/// The synthetic agency tree and staff roster, so that the demo can register and approve
/// civil servants' roles. Imported on every start; unchanged files change nothing.
async fn import_demo_directory(
    app: &Application,
    data_dir: &std::path::Path,
    now: i64,
) -> anyhow::Result<u64> {
    use crate::directory::import::{org_units, staff, PostSealer};
    let units = data_dir.join("org-units.csv");
    std::fs::write(&units, include_bytes!("../../../fixtures/org-units.csv"))?;
    let roster = data_dir.join("staff.csv");
    std::fs::write(&roster, include_bytes!("../../../fixtures/staff.csv"))?;
    let report = org_units(&app.db, &units, now).await?;
    staff(
        &app.db,
        &PostSealer::new(app.master.clone()),
        &roster,
        false,
        now,
    )
    .await?;
    Ok(report.read)
}

/// The synthetic legacy accounts, so that the demo meets every standardisation case (linking by
/// ID, the failure page, the phone step). Imported on every start; an unchanged file changes
/// nothing.
async fn import_demo_legacy_accounts(
    app: &Application,
    data_dir: &std::path::Path,
    now: i64,
) -> anyhow::Result<u64> {
    use crate::accounts::import::{Format, Importer, Observer, Rejection, Summary};
    struct Quiet;
    impl Observer for Quiet {
        fn rejected(&mut self, _: &Rejection) {}
        fn progress(&mut self, _: u64, _: &Summary) {}
    }
    let path = data_dir.join("legacy-accounts.csv");
    std::fs::write(
        &path,
        include_bytes!("../../../fixtures/legacy-accounts.csv"),
    )?;
    let importer = Importer::new(
        std::sync::Arc::new(app.db.clone()),
        crate::accounts::legacy::LegacySealer::new(app.master.clone()),
    );
    let summary = importer.run(&path, Format::Csv, now, &mut Quiet).await?;
    Ok(summary.inserted + summary.updated + summary.unchanged)
}
