//! Typed, layered configuration: built-in defaults → TOML file → `BROKER_*` environment
//! (nested keys with `__`, e.g. `BROKER_DATABASE__URL`). Unknown keys are rejected; secrets can
//! be read from files and never appear in `Debug` output.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use figment::providers::{Env, Format, Toml};
use figment::Figment;
use serde::Deserialize;
use url::Url;

use crate::federation::profile::UpstreamProfile;
use crate::otp::settings::{OtpSettings, SmsSettings};
// Kept reachable here for the settings' users; the type lives in `secret`.
pub use crate::secret::{read_secret, Secret};
use crate::tokens::keys::Alg;

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    Development,
    #[default]
    Production,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub environment: Environment,
    /// The issuer identifier: the public base URL of the broker, without a trailing slash.
    pub issuer: Url,
    pub http: HttpSettings,
    pub database: DatabaseSettings,
    pub sessions: SessionSettings,
    pub keys: KeySettings,
    pub tokens: TokenSettings,
    pub admin: AdminSettings,
    /// The first upstream (`[upstream]`, named `vneid` unless it says otherwise).
    pub upstream: UpstreamProfile,
    /// More upstreams, each under its name (`[upstreams.NAME]`): see
    /// `federation::upstreams::profiles` for the rules.
    pub upstreams: BTreeMap<String, UpstreamProfile>,
    pub acr: AcrSettings,
    pub login: LoginSettings,
    pub rate_limit: RateLimitSettings,
    pub sms: SmsSettings,
    pub otp: OtpSettings,
    pub dispatch: DispatchSettings,
    pub devices: DeviceSettings,
}

/// The one-mobile-device rule (`crate::devices`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeviceSettings {
    /// One mobile device per account at a time (the province's rule). Off only to measure
    /// what the rule costs: mobile clients still must send `device_id`.
    pub one_mobile_device: bool,
}

impl Default for DeviceSettings {
    fn default() -> Self {
        Self {
            one_mobile_device: true,
        }
    }
}

impl Default for Settings {
    // The literal URL is valid; `expect` cannot fire.
    #[allow(clippy::expect_used)]
    fn default() -> Self {
        Self {
            environment: Environment::Production,
            issuer: Url::parse("http://127.0.0.1:8080").expect("static URL"),
            http: HttpSettings::default(),
            database: DatabaseSettings::default(),
            sessions: SessionSettings::default(),
            keys: KeySettings::default(),
            tokens: TokenSettings::default(),
            admin: AdminSettings::default(),
            upstream: UpstreamProfile::default(),
            upstreams: BTreeMap::new(),
            acr: AcrSettings::default(),
            login: LoginSettings::default(),
            rate_limit: RateLimitSettings::default(),
            sms: SmsSettings::default(),
            otp: OtpSettings::default(),
            dispatch: DispatchSettings::default(),
            devices: DeviceSettings::default(),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    pub host: String,
    pub port: u16,
    /// Worker threads; 0 means one per core.
    pub workers: usize,
    /// PEM certificate chain and key: when both are set the broker serves HTTPS (rustls).
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 8080,
            workers: 0,
            tls_cert_file: None,
            tls_key_file: None,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSettings {
    /// `sqlite://path?mode=rwc` or `postgres://user@host/db`.
    pub url: Secret,
    pub url_file: Option<PathBuf>,
    /// The shared pool's connections (background tasks); on PostgreSQL the HTTP workers also
    /// share this number between pools of their own (at least 2 each): see `affinity.rs`.
    pub max_connections: u32,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: Secret::new("sqlite://data/broker.db?mode=rwc"),
            url_file: None,
            max_connections: 16,
        }
    }
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SessionBackend {
    Memory,
    Redis,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionSettings {
    pub backend: SessionBackend,
    pub redis_url: Option<Secret>,
    pub redis_url_file: Option<PathBuf>,
    /// Prefix of every Redis key, so that several brokers (or tests) can share one Redis.
    pub key_prefix: String,
    /// Lifetime of a browser SSO session at the broker, seconds.
    pub sso_ttl_secs: u64,
    /// Lifetime of a pending upstream login, seconds.
    pub pending_login_ttl_secs: u64,
}

impl Default for SessionSettings {
    fn default() -> Self {
        Self {
            backend: SessionBackend::Memory,
            redis_url: None,
            redis_url_file: None,
            key_prefix: "broker:".into(),
            sso_ttl_secs: 8 * 3600,
            pending_login_ttl_secs: 600,
        }
    }
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum KeyStoreKind {
    /// Encrypted key files in `keys.dir` (the embedded default).
    File,
    /// Encrypted keys in the SQL database (production: shared by every instance).
    Sql,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeySettings {
    pub store: KeyStoreKind,
    pub dir: PathBuf,
    /// 32 random bytes, base64: encrypts private keys and personal ID numbers at rest.
    pub master_key: Option<Secret>,
    pub master_key_file: Option<PathBuf>,
    /// `Cache-Control: max-age` of the JWKS; a new key signs only after this long in the JWKS.
    pub jwks_max_age_secs: u64,
    /// Rotate each algorithm's key automatically after this many days (0: never).
    pub rotate_after_days: u64,
    /// How often an instance re-reads the key ring (other instances may have rotated).
    pub reload_secs: u64,
}

impl Default for KeySettings {
    fn default() -> Self {
        Self {
            store: KeyStoreKind::Sql,
            dir: PathBuf::from("keys"),
            master_key: None,
            master_key_file: None,
            jwks_max_age_secs: 3600,
            rotate_after_days: 90,
            reload_secs: 30,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenSettings {
    pub access_token_ttl_secs: i64,
    pub id_token_ttl_secs: i64,
    pub refresh_token_ttl_secs: i64,
    pub code_ttl_secs: u64,
    /// How long a client registration may be served from the in-process cache.
    pub client_cache_secs: u64,
    /// Signing algorithm of access tokens (RFC 9068 §2.1; RS256 is always available).
    pub access_token_alg: Alg,
    /// How often each instance re-reads recent revocations from SQL, whatever its listener
    /// says: the bound on a notification lost without the connection noticing.
    pub revocation_sweep_secs: u64,
}

impl Default for TokenSettings {
    fn default() -> Self {
        Self {
            access_token_ttl_secs: 300,
            id_token_ttl_secs: 300,
            refresh_token_ttl_secs: 30 * 24 * 3600,
            code_ttl_secs: 60,
            client_cache_secs: 5,
            access_token_alg: Alg::ES256,
            revocation_sweep_secs: 10,
        }
    }
}

impl TokenSettings {
    /// The longest time a token signed by a key stays valid: how long a retired key stays published.
    pub fn longest_signed_token_secs(&self) -> i64 {
        self.access_token_ttl_secs.max(self.id_token_ttl_secs)
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminSettings {
    /// Bearer token of the admin REST API; the API is off when none is set.
    pub token: Option<Secret>,
    pub token_file: Option<PathBuf>,
}

/// The broker's `acr` values, one per VNeID assurance level (Decree 69/2024).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AcrSettings {
    pub level1: String,
    pub level2: String,
}

impl Default for AcrSettings {
    fn default() -> Self {
        Self {
            level1: "urn:vn:hue:broker:loa:1".into(),
            level2: "urn:vn:hue:broker:loa:2".into(),
        }
    }
}

/// Per-address limits on `/authorize`, `/callback/…`, `/end_session` and the admin API, and
/// the budgets of pending logins and failed upstream exchanges.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitSettings {
    /// Per-address limits on or off (the per-instance pending-login cap always applies).
    pub enabled: bool,
    /// Sustained requests per second per client address.
    pub per_second: u32,
    /// Requests allowed at once before the sustained rate applies.
    pub burst: u32,
    /// Behind a reverse proxy: the header that carries the client address (its first entry),
    /// e.g. `x-forwarded-for`. Only set it when the proxy overwrites that header, or clients can
    /// choose their own address.
    pub client_ip_header: Option<String>,
    /// Pending logins one address (one IPv6 /64) may start per pending-login lifetime; generous,
    /// because carrier-grade NAT puts many citizens behind one address. 0: no cap.
    pub pending_logins_per_address: u32,
    /// Pending logins one instance holds at once (about 3 KB each). 0: no cap.
    pub pending_logins_per_instance: u32,
    /// Failed upstream code exchanges one address may cause per pending-login lifetime before
    /// its callbacks stop reaching VNeID. 0: no cap.
    pub upstream_failures_per_address: u32,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            per_second: 10,
            burst: 60,
            client_ip_header: None,
            pending_logins_per_address: 600,
            pending_logins_per_instance: 20_000,
            upstream_failures_per_address: 30,
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoginSettings {
    /// Skip the broker's login page and send the browser straight to the upstream.
    pub auto_redirect: bool,
    /// Accept authorization requests only through `/par` (RFC 9126), for every client; a
    /// client can also require it for itself (`require_pushed_authorization_requests`).
    pub require_pushed_authorization_requests: bool,
}

/// The dispatcher of outbox events (back-channel logout today): where it may connect, how it
/// retries. See `dispatch::address` for the addresses refused.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DispatchSettings {
    /// Run the dispatcher on this instance (any number of instances may).
    pub enabled: bool,
    /// CIDRs that deliveries may reach although they are private (the province's intranet),
    /// e.g. `["10.20.0.0/16"]`.
    pub allow_networks: Vec<String>,
    /// Loopback receivers (and plain http to them); unset: only in development.
    pub allow_loopback: Option<bool>,
    /// How often to look for events of other instances and for due retries, milliseconds.
    pub poll_interval_ms: u64,
    /// Deliveries in flight at once per instance.
    pub concurrency: usize,
    /// Attempts before a delivery is marked failed.
    pub max_attempts: i64,
    /// A delivery older than this is marked failed at its next failure, seconds.
    pub max_age_secs: i64,
    /// The longest wait between two attempts, seconds.
    pub max_backoff_secs: i64,
    pub connect_timeout_secs: u64,
    /// The whole request, answer included.
    pub request_timeout_secs: u64,
}

impl Default for DispatchSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            allow_networks: Vec::new(),
            allow_loopback: None,
            poll_interval_ms: 1000,
            concurrency: 32,
            max_attempts: 10,
            max_age_secs: 24 * 3600,
            max_backoff_secs: 600,
            connect_timeout_secs: 3,
            request_timeout_secs: 10,
        }
    }
}

impl DispatchSettings {
    /// Whether loopback receivers are allowed in `environment`.
    pub fn loopback_allowed(&self, environment: Environment) -> bool {
        self.allow_loopback
            .unwrap_or(environment == Environment::Development)
    }
}

/// Environment variables with the `BROKER_` prefix that are not settings, and are known so.
const NOT_SETTINGS: &[&str] = &["log", "test_database_url", "test_redis_url", "config"];

/// Top-level settings that take a plain value (the rest are sections, set as `BROKER_X__Y`).
const TOP_LEVEL_VALUES: &[&str] = &["environment", "issuer"];

/// Whether a `BROKER_*` variable (name without the prefix, lower case) is meant as a setting.
/// Nested names (`http__port`) and the top-level values are: a typo there stops the start-up.
/// Anything else is someone else's variable: Kubernetes gives every pod of a namespace with a
/// Service named `broker` `BROKER_PORT`, `BROKER_SERVICE_HOST`, `BROKER_PORT_8080_TCP…`, and
/// scripts set `BROKER_BIN`. Those are ignored with a warning.
fn is_setting_variable(name: &str) -> bool {
    name.contains("__") || TOP_LEVEL_VALUES.contains(&name)
}

impl Settings {
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        let mut figment = Figment::new();
        if let Some(path) = file {
            anyhow::ensure!(
                path.exists(),
                "config file {} does not exist",
                path.display()
            );
            figment = figment.merge(Toml::file(path));
        }
        let env = Env::prefixed("BROKER_").ignore(NOT_SETTINGS);
        let ignored: Vec<String> = env
            .iter()
            .map(|(name, _)| name.as_str().to_ascii_lowercase())
            .filter(|name| !is_setting_variable(name))
            .collect();
        for name in &ignored {
            tracing::warn!(
                variable = format!("BROKER_{}", name.to_ascii_uppercase()),
                "environment variable is not a setting; ignored"
            );
        }
        figment = figment.merge(
            Env::prefixed("BROKER_")
                .ignore(NOT_SETTINGS)
                .filter(|name| is_setting_variable(&name.as_str().to_ascii_lowercase()))
                .split("__"),
        );
        let mut settings: Settings = figment.extract().context("invalid configuration")?;
        for name in settings.upstreams.keys() {
            anyhow::ensure!(
                figment
                    .find_value(&format!("upstreams.{name}.name"))
                    .is_err(),
                "upstreams.{name}.name: the name of an [upstreams.NAME] table is its key; \
                 remove `name`"
            );
        }
        // Without an `[upstream]` table (nor BROKER_UPSTREAM__*), the `[upstreams.NAME]`
        // tables are the whole list: the built-in default upstream is not added to them.
        if !settings.upstreams.is_empty() && figment.find_value("upstream").is_err() {
            settings.upstream.enabled = false;
        }
        settings.validate()?;
        Ok(settings)
    }

    /// What serving in production needs beyond `validate`: an explicit upstream over https,
    /// with credentials. Only `serve` checks it; the CLI's client and key commands need no
    /// upstream.
    pub fn check_upstream_for_production(&self) -> anyhow::Result<()> {
        if self.environment != Environment::Production {
            return Ok(());
        }
        for upstream in self.upstream_profiles()? {
            let table = if self.upstreams.contains_key(&upstream.name) {
                format!("upstreams.{}", upstream.name)
            } else {
                "upstream".to_string()
            };
            let env = table.replace('.', "__").to_ascii_uppercase();
            anyhow::ensure!(
                upstream.issuer.scheme() == "https",
                "in production {table}.issuer must be the identity provider's https issuer \
                 (set it in [{table}], or BROKER_{env}__ISSUER); it is {}",
                upstream.issuer
            );
            anyhow::ensure!(
                upstream.client_secret.is_some() || upstream.client_secret_file.is_some(),
                "in production the upstream needs credentials: set {table}.client_secret_file \
                 (or BROKER_{env}__CLIENT_SECRET)"
            );
            anyhow::ensure!(
                !upstream.client_id.trim().is_empty(),
                "in production {table}.client_id must be set"
            );
        }
        Ok(())
    }

    /// The upstreams to build, in the login page's order (`federation::upstreams::profiles`).
    pub fn upstream_profiles(&self) -> anyhow::Result<Vec<UpstreamProfile>> {
        crate::federation::upstreams::profiles(&self.upstream, &self.upstreams)
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.issuer.query().is_none() && self.issuer.fragment().is_none(),
            "issuer must not have a query or fragment"
        );
        if self.environment == Environment::Production {
            anyhow::ensure!(
                self.issuer.scheme() == "https" || is_loopback(&self.issuer),
                "in production the issuer must be https"
            );
        }
        anyhow::ensure!(
            self.tokens.access_token_ttl_secs > 0,
            "access token lifetime must be positive"
        );
        self.upstream_profiles()?;
        self.sms.validate(self.environment)?;
        self.otp.validate()?;
        crate::dispatch::address::AddressPolicy::new(
            self.dispatch.loopback_allowed(self.environment),
            &self.dispatch.allow_networks,
        )?;
        anyhow::ensure!(
            self.dispatch.concurrency > 0
                && self.dispatch.max_attempts > 0
                && self.dispatch.request_timeout_secs > 0,
            "dispatch.concurrency, max_attempts and request_timeout_secs must be positive"
        );
        Ok(())
    }

    /// The issuer as a string without a trailing slash, as it appears in `iss`.
    pub fn issuer_str(&self) -> String {
        self.issuer.as_str().trim_end_matches('/').to_string()
    }
}

pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    }
}
