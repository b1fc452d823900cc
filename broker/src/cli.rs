//! The `broker` command line: serve, dev, migrate, keys, clients, operators, deliveries, import,
//! mock-vneid.

mod import;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::clients::registration::{ClientRequest, Registrar};
use crate::clients::view::client_view;
use crate::clients::{AuthMethod, ClientDirectory, GrantType};
use crate::clock::{Clock, SystemClock};
use crate::config::{Environment, Settings};
use crate::operators::{Operators, CLI_ACTOR};
use crate::startup::{
    connect_db, install_crypto_provider, key_store, master_key, rotation_timings, Application,
};
use crate::tokens::keys::keyring::KeyRing;
use crate::tokens::keys::rotation::rotate;
use crate::tokens::keys::Alg;

#[derive(Parser, Debug)]
#[command(
    name = "broker",
    version,
    about = "OpenID Connect identity broker for the province, in front of VNeID"
)]
pub struct Cli {
    /// TOML configuration file (settings can also come from BROKER_* variables).
    #[arg(long, global = true, env = "BROKER_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log as JSON lines.
    #[arg(long, global = true)]
    pub log_json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the broker.
    Serve,
    /// Run the embedded default with the mock VNeID and a demo app (development only).
    Dev(crate::dev::DevArgs),
    /// Apply database migrations.
    Migrate,
    /// Signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Relying-party registrations.
    #[command(subcommand)]
    Clients(ClientsCommand),
    /// Operators of the admin API and their tokens.
    #[command(subcommand)]
    Operators(OperatorsCommand),
    /// The dispatcher's deliveries: list them, replay a finished one.
    #[command(subcommand)]
    Deliveries(DeliveriesCommand),
    /// Approvers of civil servants' roles: who decides the requests of which agency subtree.
    #[command(subcommand)]
    Approvers(ApproversCommand),
    /// Agencies' role policies.
    #[command(subcommand)]
    OrgUnits(OrgUnitsCommand),
    /// Run only the mock VNeID (refused in production).
    MockVneid(crate::dev::MockArgs),
    /// Load data from the province's older systems.
    #[command(subcommand)]
    Import(import::ImportCommand),
}

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// List keys with their states.
    List,
    /// Start a rotation: publish a new key now, sign with it after the JWKS cache lifetime.
    Rotate {
        #[arg(long, default_value = "ES256")]
        alg: String,
        /// Sign with the new key at once and remove the old key from the JWKS at once. Tokens
        /// signed by the old key stop verifying and RPs with a cached JWKS meet an unknown kid
        /// until they refetch: only for a compromised key.
        #[arg(long)]
        emergency: bool,
    },
    /// Print a new random master key (base64): store it in a file readable only by the broker.
    GenerateMaster,
}

#[derive(Subcommand, Debug)]
pub enum ClientsCommand {
    /// Register a client; prints it with its secret (shown only this once).
    Create(ClientArgs),
    /// One line per client.
    List,
    /// A client's registration (never its secret).
    Show { client_id: String },
    /// Replace a client's registration; --rotate-secret issues a new secret.
    Update {
        client_id: String,
        #[command(flatten)]
        args: ClientArgs,
        #[arg(long)]
        rotate_secret: bool,
    },
    /// Delete a client.
    Delete { client_id: String },
}

#[derive(Subcommand, Debug)]
pub enum OperatorsCommand {
    /// Add an operator; prints their admin token (shown only this once).
    Create { name: String },
    /// One line per operator (never a token).
    List,
    /// Revoke an operator's token at once.
    Revoke { name: String },
}

#[derive(Subcommand, Debug)]
pub enum DeliveriesCommand {
    /// One line per delivery, newest first.
    List {
        /// pending, delivered, failed (dead letters) or cancelled.
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// Send a finished delivery again as a new delivery (a new jti, the same txn and seq).
    Replay { id: String },
}

#[derive(Subcommand, Debug)]
pub enum ApproversCommand {
    /// Make an account an approver of an agency and every agency below it.
    Grant {
        account_id: String,
        org_code: String,
    },
    /// Take an approver grant back.
    Revoke {
        account_id: String,
        org_code: String,
    },
    /// One line per grant.
    List {
        #[arg(long)]
        account: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum OrgUnitsCommand {
    /// Set whether requests matching the staff roster exactly are approved at once, in this
    /// agency and the agencies below it that have no policy of their own.
    Policy {
        org_code: String,
        #[arg(long, action = clap::ArgAction::Set)]
        auto_approve: bool,
    },
}

#[derive(Args, Debug)]
pub struct ClientArgs {
    /// Full registration as JSON (RFC 7591 names); other flags are ignored when given.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Choose the client id (letters, digits, -._~); a UUID otherwise.
    #[arg(long)]
    pub client_id: Option<String>,
    /// Display name of the application.
    #[arg(long)]
    pub name: Option<String>,
    /// A redirect URI, matched exactly (repeat for several).
    #[arg(long = "redirect-uri")]
    pub redirect_uris: Vec<String>,
    /// authorization_code, refresh_token or client_credentials (repeat; default: the first two).
    #[arg(long = "grant-type", value_parser = parse_grant)]
    pub grant_types: Vec<GrantType>,
    /// client_secret_basic (default for web apps), client_secret_post, private_key_jwt or none.
    #[arg(long, value_parser = parse_method)]
    pub auth_method: Option<AuthMethod>,
    /// Space-separated scopes the client may ask for (default "openid profile").
    #[arg(long)]
    pub scope: Option<String>,
    /// A native (mobile or desktop) app: public, PKCE, private-use or loopback redirects.
    #[arg(long)]
    pub native: bool,
    /// The source code of the app's legacy accounts (e.g. hue-s): lets it send `legacy_account`
    /// through /par.
    #[arg(long)]
    pub legacy_source: Option<String>,
    /// Accept the client's authorization requests only through /par (RFC 9126).
    #[arg(long)]
    pub require_par: bool,
}

fn parse_grant(s: &str) -> Result<GrantType, String> {
    serde_json::from_value(serde_json::Value::String(s.to_string()))
        .map_err(|_| format!("unknown grant type {s}"))
}

fn parse_method(s: &str) -> Result<AuthMethod, String> {
    serde_json::from_value(serde_json::Value::String(s.to_string()))
        .map_err(|_| format!("unknown auth method {s}"))
}

impl ClientArgs {
    fn request(&self) -> anyhow::Result<ClientRequest> {
        if let Some(path) = &self.json {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            return serde_json::from_str(&text).context("invalid client JSON");
        }
        Ok(ClientRequest {
            client_id: self.client_id.clone(),
            client_name: self.name.clone(),
            redirect_uris: self.redirect_uris.clone(),
            grant_types: (!self.grant_types.is_empty()).then(|| self.grant_types.clone()),
            token_endpoint_auth_method: self.auth_method,
            application_type: self
                .native
                .then_some(crate::clients::ApplicationType::Native),
            scope: self.scope.clone(),
            legacy_source: self.legacy_source.clone(),
            require_pushed_authorization_requests: self.require_par,
            ..Default::default()
        })
    }
}

/// Runs a command; the exit status is 0 but for an import that rejected rows
/// (`import::ROWS_REJECTED`).
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Command::Import(command) = cli.command {
        install_crypto_provider();
        let settings = Settings::load(cli.config.as_deref())?;
        return import::run(command, &settings).await;
    }
    run_command(cli).await.map(|()| ExitCode::SUCCESS)
}

async fn run_command(cli: Cli) -> anyhow::Result<()> {
    install_crypto_provider();
    match cli.command {
        Command::Dev(args) => crate::dev::run(args).await,
        Command::MockVneid(args) => {
            crate::dev::ensure_built_in("mock-vneid")?;
            let settings = Settings::load(cli.config.as_deref())?;
            anyhow::ensure!(
                settings.environment != Environment::Production,
                "the mock VNeID is refused in production (set environment = \"development\")"
            );
            crate::dev::run_mock(args).await
        }
        command => {
            let settings = Settings::load(cli.config.as_deref())?;
            run_with_settings(command, settings).await
        }
    }
}

async fn run_with_settings(command: Command, settings: Settings) -> anyhow::Result<()> {
    let clock = SystemClock;
    match command {
        Command::Serve => {
            let listener = TcpListener::bind((settings.http.host.as_str(), settings.http.port))
                .with_context(|| {
                    format!(
                        "cannot listen on {}:{}",
                        settings.http.host, settings.http.port
                    )
                })?;
            let app = Application::build(settings, listener).await?;
            tracing::info!(port = app.port(), "broker listening");
            app.server().await?;
            Ok(())
        }
        Command::Migrate => {
            connect_db(&settings).await?;
            println!("migrations applied");
            Ok(())
        }
        Command::Keys(KeysCommand::GenerateMaster) => {
            println!("{}", crate::crypto::MasterKey::generate_encoded());
            Ok(())
        }
        Command::Keys(keys) => {
            let db = connect_db(&settings).await?;
            let ring = KeyRing::new(key_store(&settings, &db)?, master_key(&settings)?);
            ring.reload().await?;
            let now = clock.now();
            match keys {
                KeysCommand::List => {
                    for key in ring.all() {
                        println!(
                            "{}\t{}\t{:?}\tactivates_at={}\tretires_at={:?}\tremoves_at={:?}",
                            key.kid,
                            key.alg.as_str(),
                            key.state(now),
                            key.activates_at,
                            key.retires_at,
                            key.removes_at
                        );
                    }
                }
                KeysCommand::Rotate { alg, emergency } => {
                    let alg = Alg::parse(&alg).context("alg must be RS256, ES256 or EdDSA")?;
                    let timings = rotation_timings(&settings);
                    let plan = rotate(&ring, alg, now, &timings, emergency).await?;
                    println!(
                        "new key {} published; signs from {} (in {} s)",
                        plan.new_kid,
                        plan.activates_at,
                        plan.activates_at - now
                    );
                    println!(
                        "old keys {:?} verify only until {}",
                        plan.old_kids, plan.old_removed_at
                    );
                    if emergency {
                        println!("EMERGENCY: tokens signed by the old keys no longer verify; RPs must refetch the JWKS.");
                    }
                }
                KeysCommand::GenerateMaster => {}
            }
            Ok(())
        }
        Command::Clients(cmd) => {
            let db = connect_db(&settings).await?;
            let registrar = Registrar {
                directory: ClientDirectory::new(Arc::new(db.clone()), 0, Arc::new(SystemClock)),
                master: master_key(&settings)?,
                grants: Arc::new(db.clone()),
                audit: Arc::new(db.clone()),
                transactions: Arc::new(db.clone()),
                issuer: settings.issuer_str(),
                production: settings.environment == crate::config::Environment::Production,
            };
            clients_command(&registrar, cmd, clock.now()).await
        }
        Command::Operators(cmd) => {
            let db = connect_db(&settings).await?;
            let operators = crate::startup::operators(&db, master_key(&settings)?);
            operators_command(&operators, cmd, clock.now()).await
        }
        Command::Deliveries(cmd) => {
            let db = connect_db(&settings).await?;
            deliveries_command(&db, cmd, clock.now()).await
        }
        Command::Approvers(cmd) => {
            let db = connect_db(&settings).await?;
            let roles = cli_roles(&db, &settings)?;
            approvers_command(&db, &roles, cmd, clock.now()).await
        }
        Command::OrgUnits(OrgUnitsCommand::Policy {
            org_code,
            auto_approve,
        }) => {
            let db = connect_db(&settings).await?;
            let roles = cli_roles(&db, &settings)?;
            roles
                .set_policy(CLI_ACTOR, &org_code, auto_approve, clock.now())
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("{org_code}\tauto_approve={auto_approve}");
            Ok(())
        }
        Command::Dev(_) | Command::MockVneid(_) | Command::Import(_) => Ok(()),
    }
}

fn cli_roles(db: &crate::store::Db, settings: &Settings) -> anyhow::Result<crate::roles::Roles> {
    Ok(crate::startup::roles(
        db,
        ClientDirectory::new(Arc::new(db.clone()), 0, Arc::new(SystemClock)),
        master_key(settings)?,
    ))
}

async fn approvers_command(
    db: &crate::store::Db,
    roles: &crate::roles::Roles,
    cmd: ApproversCommand,
    now: i64,
) -> anyhow::Result<()> {
    use crate::accounts::AccountStore;
    use crate::roles::Actor;
    let operator = Actor::Operator(CLI_ACTOR);
    let refused = |e: crate::roles::RoleError| anyhow::anyhow!("{e}");
    match cmd {
        ApproversCommand::Grant {
            account_id,
            org_code,
        } => {
            let exists = AccountStore::find(db, &account_id).await?.is_some();
            let added = roles
                .grant_approver(&operator, &account_id, &org_code, exists, now)
                .await
                .map_err(refused)?;
            println!(
                "{account_id}\t{org_code}\t{}",
                if added { "granted" } else { "already granted" }
            );
        }
        ApproversCommand::Revoke {
            account_id,
            org_code,
        } => {
            if !roles
                .revoke_approver(&operator, &account_id, &org_code, now)
                .await
                .map_err(refused)?
            {
                anyhow::bail!("no such approver grant");
            }
            println!("{account_id}\t{org_code}\trevoked");
        }
        ApproversCommand::List { account } => {
            for g in roles.approvers(account.as_deref()).await? {
                println!(
                    "{}\t{}\tby={}\tat={}",
                    g.account_id, g.org_code, g.granted_by, g.granted_at
                );
            }
        }
    }
    Ok(())
}

async fn deliveries_command(
    db: &crate::store::Db,
    cmd: DeliveriesCommand,
    now: i64,
) -> anyhow::Result<()> {
    use crate::dispatch::replay::{ReplayOutcome, Replayer};
    use crate::dispatch::{DeliveryStatus, DeliveryStore};
    match cmd {
        DeliveriesCommand::List { status, limit } => {
            let status = status
                .map(|s| {
                    DeliveryStatus::parse(&s)
                        .context("status must be pending, delivered, failed or cancelled")
                })
                .transpose()?;
            for d in db.list(status, limit.clamp(1, 10_000)).await? {
                println!(
                    "{}\t{}\t{}\t{}\tevent={}\treplay={}\tattempts={}\thttp={}\t{}",
                    d.id,
                    d.status,
                    d.route,
                    d.target,
                    d.event_id,
                    d.replay,
                    d.attempts,
                    d.last_http_status.map_or("-".into(), |s| s.to_string()),
                    d.last_error.as_deref().unwrap_or("-")
                );
            }
            Ok(())
        }
        DeliveriesCommand::Replay { id } => {
            let replayer = Replayer {
                store: db,
                transactions: db,
                audit: db,
            };
            match replayer.replay(&id, CLI_ACTOR, now).await? {
                ReplayOutcome::Replayed(new_id) => {
                    println!("{new_id}");
                    eprintln!("replay of {id} queued; a running broker sends it");
                    Ok(())
                }
                ReplayOutcome::NotFound => anyhow::bail!("no such delivery"),
                ReplayOutcome::StillPending => {
                    anyhow::bail!("the delivery is still pending; it will be sent")
                }
            }
        }
    }
}

async fn clients_command(
    registrar: &Registrar,
    cmd: ClientsCommand,
    now: i64,
) -> anyhow::Result<()> {
    let print = |client: &crate::clients::Client, secret: Option<&str>| -> anyhow::Result<()> {
        println!(
            "{}",
            serde_json::to_string_pretty(&client_view(client, secret))?
        );
        Ok(())
    };
    match cmd {
        ClientsCommand::Create(args) => {
            let (client, secret) = registrar.create(&args.request()?, CLI_ACTOR, now).await?;
            print(&client, secret.as_deref())?;
            if secret.is_some() {
                eprintln!("The client_secret is shown only now; store it safely.");
            }
        }
        ClientsCommand::List => {
            for client in registrar.directory.store().list().await? {
                println!(
                    "{}\t{}\t{}",
                    client.client_id,
                    client.metadata.token_endpoint_auth_method.as_str(),
                    client.metadata.client_name
                );
            }
        }
        ClientsCommand::Show { client_id } => {
            let client = registrar
                .directory
                .store()
                .find(&client_id)
                .await?
                .context("no such client")?;
            print(&client, None)?;
        }
        ClientsCommand::Update {
            client_id,
            args,
            rotate_secret,
        } => {
            let (client, secret) = registrar
                .update(&client_id, &args.request()?, rotate_secret, CLI_ACTOR, now)
                .await?;
            print(&client, secret.as_deref())?;
        }
        ClientsCommand::Delete { client_id } => {
            registrar.delete(&client_id, CLI_ACTOR, now).await?;
            println!("deleted {client_id}");
        }
    }
    Ok(())
}

async fn operators_command(
    operators: &Operators,
    cmd: OperatorsCommand,
    now: i64,
) -> anyhow::Result<()> {
    match cmd {
        OperatorsCommand::Create { name } => {
            let (operator, token) = operators.create(&name, CLI_ACTOR, now).await?;
            println!("{token}");
            eprintln!(
                "Operator {} created. The token above is shown only now: hand it to them safely \
                 (Authorization: Bearer … on /admin/…).",
                operator.name
            );
        }
        OperatorsCommand::List => {
            for operator in operators.list().await? {
                let state = match operator.revoked_at {
                    Some(at) => format!("revoked_at={at}"),
                    None => "active".to_string(),
                };
                println!(
                    "{}\t{}\tcreated_at={}\t{state}",
                    operator.name, operator.id, operator.created_at
                );
            }
        }
        OperatorsCommand::Revoke { name } => {
            operators.revoke(&name, CLI_ACTOR, now).await?;
            println!("revoked {name}");
        }
    }
    Ok(())
}
