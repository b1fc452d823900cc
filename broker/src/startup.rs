//! Builds the application once, for production and for tests alike: storage, session store,
//! keys, the provider, the upstream, and the HTTP server on a given listener.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, App, HttpServer};
use anyhow::Context;

use crate::abuse::{Budgets, LoginBudget};
use crate::accounts::login::{AccountResolver, AccountStores};
use crate::clients::auth::ClientAuthenticator;
use crate::clients::registration::Registrar;
use crate::clients::ClientDirectory;
use crate::clock::{SharedClock, SystemClock};
use crate::config::{KeyStoreKind, RateLimitSettings, SessionBackend, Settings};
use crate::crypto::MasterKey;
use crate::devices::MobileSlots;
use crate::dispatch::address::AddressPolicy;
use crate::dispatch::backoff::Backoff;
use crate::dispatch::outbound::{Outbound, Timeouts};
use crate::dispatch::{DispatchPlan, Dispatcher};
use crate::events::delivery::SecurityEvents;
use crate::federation::pending::PendingLogins;
use crate::federation::upstreams::Upstreams;
use crate::http::{Broker, Readiness};
use crate::jobs;
use crate::oidc::acr::AcrPolicy;
use crate::oidc::backchannel_logout::BackchannelLogout;
use crate::oidc::codes::Codes;
use crate::oidc::dpop::DpopVerifier;
use crate::oidc::par::PushedRequests;
use crate::oidc::{Provider, TokenLifetimes};
use crate::operators::Operators;
use crate::otp::settings::GatewayKind;
use crate::otp::Otp;
use crate::secret::{read_secret, Secret};
use crate::session_end::SessionEnds;
use crate::sessions::ended::EndedSessions;
use crate::sessions::memory::MemoryStore;
use crate::sessions::redis::RedisStore;
use crate::sessions::sso::SsoSessions;
use crate::sessions::SessionStore;
use crate::store::{ChangeFeed, Db, FeedPlan};
use crate::tokens::keys::file_store::FileKeyStore;
use crate::tokens::keys::keyring::KeyRing;
use crate::tokens::keys::rotation::RotationTimings;
use crate::tokens::keys::KeyStore;
use crate::tokens::refresh_families::RefreshTokens;
use crate::tokens::verified::VerifiedTokens;
use crate::tokens::TokenSigner;

/// Installs aws-lc-rs as the process-wide rustls provider (the only one in the build).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

pub fn master_key(settings: &Settings) -> anyhow::Result<MasterKey> {
    let secret = read_secret(&settings.keys.master_key, &settings.keys.master_key_file)?
        .context("no master key: set keys.master_key_file (or BROKER_KEYS__MASTER_KEY); `broker keys generate-master` makes one")?;
    MasterKey::from_secret(&secret)
}

/// The admin API's bearer token: absent turns the API off; a short one is refused.
fn admin_token(settings: &Settings) -> anyhow::Result<Option<Secret>> {
    let token = read_secret(&settings.admin.token, &settings.admin.token_file)?;
    if let Some(t) = &token {
        anyhow::ensure!(
            t.expose().len() >= 32,
            "admin.token must be at least 32 characters (use a random value)"
        );
    }
    Ok(token)
}

/// The operators of the admin API, in the database.
/// The role workflow over the database (`crate::roles`).
pub fn roles(db: &Db, clients: ClientDirectory, master: MasterKey) -> crate::roles::Roles {
    crate::roles::Roles {
        store: Arc::new(db.clone()),
        directory: Arc::new(db.clone()),
        outbox: Arc::new(db.clone()),
        audit: Arc::new(db.clone()),
        transactions: Arc::new(db.clone()),
        clients,
        sealer: crate::directory::import::PostSealer::new(master),
    }
}

pub fn operators(db: &Db, master: MasterKey) -> Operators {
    Operators::new(
        Arc::new(db.clone()),
        Arc::new(db.clone()),
        Arc::new(db.clone()),
        master,
    )
}

pub async fn connect_db(settings: &Settings) -> anyhow::Result<Db> {
    let url = read_secret(
        &Some(settings.database.url.clone()),
        &settings.database.url_file,
    )?
    .context("no database URL")?;
    let db = Db::connect(url.expose(), settings.database.max_connections).await?;
    Ok(db)
}

pub fn key_store(settings: &Settings, db: &Db) -> anyhow::Result<Arc<dyn KeyStore>> {
    Ok(match settings.keys.store {
        KeyStoreKind::Sql => Arc::new(db.clone()),
        KeyStoreKind::File => Arc::new(FileKeyStore::new(settings.keys.dir.clone())?),
    })
}

pub async fn session_store(settings: &Settings) -> anyhow::Result<Arc<dyn SessionStore>> {
    Ok(match settings.sessions.backend {
        SessionBackend::Memory => Arc::new(MemoryStore::new()),
        SessionBackend::Redis => {
            let url = read_secret(
                &settings.sessions.redis_url,
                &settings.sessions.redis_url_file,
            )?
            .context("sessions.backend = redis needs sessions.redis_url")?;
            Arc::new(RedisStore::connect(url.expose(), &settings.sessions.key_prefix).await?)
        }
    })
}

struct BackendsReady {
    db: Db,
    sessions: Arc<dyn SessionStore>,
}

#[async_trait::async_trait]
impl Readiness for BackendsReady {
    async fn check(&self) -> anyhow::Result<()> {
        sqlx::query("SELECT 1").execute(&self.db.pool()).await?;
        self.sessions.ping().await
    }
}

pub struct Application {
    port: u16,
    server: actix_web::dev::Server,
    pub db: Db,
    pub broker: web::Data<Broker>,
    /// The master key (what `broker dev` imports is sealed under it).
    pub master: MasterKey,
}

impl Application {
    pub async fn build(settings: Settings, listener: TcpListener) -> anyhow::Result<Self> {
        Self::build_with_clock(settings, listener, Arc::new(SystemClock)).await
    }

    pub async fn build_with_clock(
        settings: Settings,
        listener: TcpListener,
        clock: SharedClock,
    ) -> anyhow::Result<Self> {
        install_crypto_provider();
        settings.check_upstream_for_production()?;
        let master = master_key(&settings)?;
        let master_for_app = master.clone();
        // Each HTTP worker gets its share of the connections in a pool of its own (see
        // `crate::affinity`); the shared pool keeps `max_connections` for the background tasks.
        let workers = match settings.http.workers {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        };
        let per_worker = settings
            .database
            .max_connections
            .div_ceil(u32::try_from(workers).unwrap_or(u32::MAX))
            .max(2);
        let db = connect_db(&settings).await?.with_worker_pools(per_worker);
        let sessions = session_store(&settings).await?;
        let ring = KeyRing::new(key_store(&settings, &db)?, master.clone());
        db.exclusively("broker/key-bootstrap", ring.bootstrap(clock.now()))
            .await?;
        jobs::spawn_key_maintenance(
            ring.clone(),
            jobs::KeyMaintenance {
                every: Duration::from_secs(settings.keys.reload_secs.max(1)),
                max_age_secs: settings.keys.rotate_after_days as i64 * 86_400,
                timings: rotation_timings(&settings),
            },
            clock.clone(),
        );
        jobs::spawn_purge(Arc::new(db.clone()), clock.clone());
        ChangeFeed::new(
            db.clone(),
            clock.clone(),
            FeedPlan {
                // A token issued just before its grant's revocation lives this long at most;
                // the margin covers clocks that disagree.
                grant_window_secs: settings.tokens.access_token_ttl_secs + 300,
                sweep: Duration::from_secs(settings.tokens.revocation_sweep_secs.max(1)),
            },
        )
        .start()
        .await?;

        let issuer = settings.issuer_str();
        let directory = ClientDirectory::new(
            Arc::new(db.clone()),
            settings.tokens.client_cache_secs,
            clock.clone(),
        );
        let ended = EndedSessions::new(
            sessions.clone(),
            Duration::from_secs(settings.tokens.code_ttl_secs),
        );
        let session_ends = SessionEnds::new(
            Arc::new(db.clone()),
            Arc::new(db.clone()),
            Arc::new(db.clone()),
        );
        // Each upstream with its own HTTP client, circuit breaker and metadata cache.
        let upstreams = Arc::new(Upstreams::build(settings.upstream_profiles()?, &issuer)?);
        let provider = Provider {
            issuer: issuer.as_str().into(),
            clients: directory.clone(),
            client_auth: ClientAuthenticator {
                directory: directory.clone(),
                master: master.clone(),
                replay: sessions.clone(),
                audience: issuer.clone(),
            },
            signer: TokenSigner::new(ring, &issuer, settings.tokens.access_token_alg),
            grants: Arc::new(db.clone()),
            refresh: RefreshTokens::new(master.clone()),
            codes: Codes::new(
                sessions.clone(),
                Duration::from_secs(settings.tokens.code_ttl_secs),
            ),
            ended: ended.clone(),
            sso: SsoSessions::new(
                sessions.clone(),
                Duration::from_secs(settings.sessions.sso_ttl_secs),
            ),
            accounts: AccountResolver::new(AccountStores::of(&db), master.clone()),
            acr: AcrPolicy::new(&settings.acr.level1, &settings.acr.level2),
            tokens: TokenLifetimes {
                access_token_ttl_secs: settings.tokens.access_token_ttl_secs,
                id_token_ttl_secs: settings.tokens.id_token_ttl_secs,
                refresh_token_ttl_secs: settings.tokens.refresh_token_ttl_secs,
                code_ttl_secs: settings.tokens.code_ttl_secs,
            },
            jwks_max_age: settings.keys.jwks_max_age_secs,
            clock: clock.clone(),
            pushed: PushedRequests::new(sessions.clone()),
            require_pushed_requests: settings.login.require_pushed_authorization_requests,
            session_ends: session_ends.clone(),
            transactions: Arc::new(db.clone()),
            session_records: Arc::new(db.clone()),
            devices: MobileSlots::new(
                Arc::new(db.clone()),
                Arc::new(db.clone()),
                session_ends,
                Arc::new(db.clone()),
                ended.clone(),
                settings.devices.one_mobile_device,
            ),
            dpop: DpopVerifier::new(sessions.clone()),
            roles: roles(&db, directory.clone(), master.clone()),
            verified: VerifiedTokens::new(crate::tokens::verified::CAPACITY),
            revocations: db.changes().revocations.clone(),
            released: db.changes().released.clone(),
            discovery: Default::default(),
            upstream_names: upstreams.names(),
        };
        if settings.dispatch.enabled {
            dispatcher(&settings, &db, &provider, clock.clone())?.spawn();
        }
        let limits = crate::http::limits::Limits::new(&settings.rate_limit)?;
        limits.spawn_cleanup();
        let budget = LoginBudget::new(
            login_budgets(&settings.rate_limit),
            Duration::from_secs(settings.sessions.pending_login_ttl_secs),
        );
        budget.spawn_cleanup(clock.clone());
        let (sms, dev_sms) =
            crate::otp::gateway::build(&settings.sms, settings.environment, clock.clone())?;
        if settings.sms.gateway == GatewayKind::None
            && settings.environment == crate::config::Environment::Production
        {
            tracing::warn!(
                "no SMS gateway (sms.gateway = \"none\"): citizens cannot confirm a phone by \
                 one-time code"
            );
        }
        let otp = Otp::new(&settings.otp, sessions.clone(), sms, master.clone())?;
        let broker = web::Data::new(Broker {
            provider,
            upstreams: upstreams.clone(),
            pending: PendingLogins::new(
                sessions.clone(),
                Duration::from_secs(settings.sessions.pending_login_ttl_secs),
                master.clone(),
            ),
            budget: budget.clone(),
            otp,
            dev_sms,
            sessions: sessions.clone(),
            limits: limits.clone(),
            registrar: Registrar {
                directory,
                master: master.clone(),
                grants: Arc::new(db.clone()),
                audit: Arc::new(db.clone()),
                transactions: Arc::new(db.clone()),
                issuer: issuer.clone(),
                production: settings.environment == crate::config::Environment::Production,
            },
            operators: operators(&db, master.clone()),
            deliveries: Arc::new(db.clone()),
            admin_token: admin_token(&settings)?,
            auto_redirect: settings.login.auto_redirect,
            secure_cookies: settings.issuer.scheme() == "https",
            readiness: Arc::new(BackendsReady {
                db: db.clone(),
                sessions,
            }),
        });

        let port = listener.local_addr()?.port();
        let data = broker.clone();
        let https_issuer = settings.issuer.scheme() == "https";
        let dev_sms_page = broker.dev_sms.is_some();
        let mut server = HttpServer::new(move || {
            // actix runs this factory once on each worker's thread.
            crate::affinity::mark_http_worker();
            // The last `wrap` is the outermost: requests meet the logger first, then the
            // default headers. Rate limits sit on the limited resources themselves.
            let mut headers = actix_web::middleware::DefaultHeaders::new()
                .add(("X-Content-Type-Options", "nosniff"))
                .add(("Referrer-Policy", "no-referrer"));
            if https_issuer {
                // RFC 6797: browsers that once reached the broker over https never try http.
                headers = headers.add(("Strict-Transport-Security", "max-age=31536000"));
            }
            App::new()
                .wrap(actix_web::middleware::from_fn(
                    crate::http::host::require_valid_host,
                ))
                .wrap(headers)
                .wrap(tracing_actix_web::TracingLogger::<
                    crate::http::logging::RequestSpan,
                >::new())
                .app_data(data.clone())
                .configure(crate::http::configure)
                .configure(|cfg| {
                    if dev_sms_page {
                        crate::http::dev_sms::configure(cfg);
                    }
                })
        });
        if settings.http.workers > 0 {
            server = server.workers(settings.http.workers);
        }
        let server = match (&settings.http.tls_cert_file, &settings.http.tls_key_file) {
            (Some(cert), Some(key)) => {
                server.listen_rustls_0_23(listener, tls_config(cert, key)?)?
            }
            _ => server.listen(listener)?,
        };
        Ok(Self {
            port,
            server: server.run(),
            db,
            broker,
            master: master_for_app,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn server(self) -> actix_web::dev::Server {
        self.server
    }
}

fn tls_config(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> anyhow::Result<rustls::ServerConfig> {
    let certs = rustls_pemfile::certs(&mut std::io::BufReader::new(std::fs::File::open(cert)?))
        .collect::<Result<Vec<_>, _>>()?;
    let key = rustls_pemfile::private_key(&mut std::io::BufReader::new(std::fs::File::open(key)?))?
        .context("no private key in the TLS key file")?;
    Ok(rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)?)
}

/// The dispatcher of outbox events with its routes (back-channel logout, Security Event Tokens
/// for subscribers), woken by this instance's outbox commits. Tests build a second one on the
/// same database this way.
pub fn dispatcher(
    settings: &Settings,
    db: &Db,
    provider: &Provider,
    clock: SharedClock,
) -> anyhow::Result<Dispatcher> {
    let d = &settings.dispatch;
    let policy = AddressPolicy::new(d.loopback_allowed(settings.environment), &d.allow_networks)?;
    let outbound = Outbound::new(
        policy,
        Timeouts {
            connect: Duration::from_secs(d.connect_timeout_secs.max(1)),
            total: Duration::from_secs(d.request_timeout_secs.max(1)),
        },
    )?;
    let plan = DispatchPlan {
        poll: Duration::from_millis(d.poll_interval_ms.max(10)),
        concurrency: d.concurrency.max(1),
        // A claim outlives the longest request by a margin.
        lease_secs: d.request_timeout_secs as i64 + d.connect_timeout_secs as i64 + 30,
        backoff: Backoff {
            max_attempts: d.max_attempts,
            max_age_secs: d.max_age_secs,
            cap_secs: d.max_backoff_secs.max(1),
            ..Backoff::default()
        },
    };
    Ok(Dispatcher::new(
        Arc::new(db.for_bookkeeping(d.concurrency.max(1) as u32 + 2)),
        outbound,
        clock,
        plan,
        db.outbox_signal(),
    )
    .with_route(Arc::new(BackchannelLogout::of(provider)))
    .with_route(Arc::new(SecurityEvents {
        clients: provider.clients.clone(),
        grants: Arc::new(db.clone()),
        signer: provider.signer.clone(),
    })))
}

pub fn rotation_timings(settings: &Settings) -> RotationTimings {
    RotationTimings::new(
        settings.keys.jwks_max_age_secs,
        settings.keys.reload_secs,
        settings.tokens.longest_signed_token_secs(),
    )
}

/// The login budgets; `rate_limit.enabled = false` turns off the per-address ones only.
fn login_budgets(settings: &RateLimitSettings) -> Budgets {
    let per_address = |n: u32| if settings.enabled { n } else { 0 };
    Budgets {
        pending_logins_per_address: per_address(settings.pending_logins_per_address),
        pending_logins_per_instance: settings.pending_logins_per_instance,
        upstream_failures_per_address: per_address(settings.upstream_failures_per_address),
    }
}
