//! A mock of VNeID as a standard OIDC upstream (docs/vneid.md variant A: discovery, code flow,
//! RS256 ID token, client secret). It signs in whichever test citizen a tester picks, and can be
//! told to break its ID tokens in specific ways so the broker's verification can be tested.

mod authorize;
mod citizens;
mod envelope;
mod grants;
mod http;
mod id_token;
mod keys;
mod pages;
pub mod synthetic;
mod token;

use std::fmt;
use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use actix_web::{web, App, HttpServer};

pub use citizens::Citizen;
pub use envelope::MockEncryption;
pub use id_token::Tamper;

/// Which VNeID integration the mock plays (docs/vneid.md, "Upstream variants").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Variant {
    /// The ministry's SSO: discovery, an ID token with every claim, client_secret_basic.
    #[default]
    A,
    /// The national public-service portal: `client_secret_post` only, `acr_values` (`LoA1` or
    /// `LoA2`) required at `/authorize`, an ID token with only `sub`, `acr` and the protocol
    /// claims, the identity from userinfo.
    B,
    /// Direct VNeID for third parties: `client_secret_post` only, no ID token relied on (the
    /// identity from userinfo), token and userinfo answers encrypted as `{"data", "key"}` when
    /// the RP registered a key ([`MockVneid::set_encryption`]).
    C,
}

impl std::str::FromStr for Variant {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "a" | "A" => Ok(Self::A),
            "b" | "B" => Ok(Self::B),
            "c" | "C" => Ok(Self::C),
            other => Err(format!("unknown variant {other}: a, b or c")),
        }
    }
}

use grants::Grants;
use keys::SigningKey;

use crate::util::lock;

/// Where the mock lives and which clients (the broker, test drivers) may use it.
#[derive(Clone, Debug)]
pub struct MockVneidConfig {
    /// Public base URL, e.g. `http://127.0.0.1:8081`. A path (`/realms/vneid`) is allowed:
    /// [`serve`] mounts the routes under it; [`MockVneid::configure`] callers must do the same.
    pub issuer: url::Url,
    pub clients: Vec<MockClient>,
}

#[derive(Clone)]
pub struct MockClient {
    pub client_id: String,
    pub client_secret: String,
    /// Compared exactly, as a real upstream does.
    pub redirect_uris: Vec<String>,
}

impl fmt::Debug for MockClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockClient")
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("redirect_uris", &self.redirect_uris)
            .finish()
    }
}

/// The mock server's state; cheap to clone (all clones share one state).
#[derive(Clone)]
pub struct MockVneid {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    /// The issuer exactly as it appears in discovery and `iss`: no trailing slash.
    pub(crate) issuer: String,
    pub(crate) clients: Vec<MockClient>,
    pub(crate) citizens: Vec<Citizen>,
    pub(crate) grants: Grants,
    key: RwLock<Arc<SigningKey>>,
    tamper: Mutex<Tamper>,
    variant: Mutex<Variant>,
    encryption: Mutex<Option<MockEncryption>>,
    /// Every n-th token call hangs (0: none), and how many token calls came so far.
    hang_one_in: AtomicU64,
    token_calls: AtomicU64,
}

impl MockVneid {
    pub fn new(cfg: MockVneidConfig) -> anyhow::Result<Self> {
        let issuer = cfg.issuer.as_str().trim_end_matches('/').to_owned();
        if cfg.issuer.query().is_some() || cfg.issuer.fragment().is_some() {
            anyhow::bail!("mock VNeID issuer {issuer} must not have a query or fragment");
        }
        Ok(Self {
            inner: Arc::new(Inner {
                issuer,
                clients: cfg.clients,
                citizens: citizens::load()?,
                grants: Grants::default(),
                key: RwLock::new(Arc::new(SigningKey::generate()?)),
                tamper: Mutex::new(Tamper::None),
                variant: Mutex::new(Variant::A),
                encryption: Mutex::new(None),
                hang_one_in: AtomicU64::new(0),
                token_calls: AtomicU64::new(0),
            }),
        })
    }

    /// Variant C: encrypt token and userinfo answers to this RP key from now on (`None`: plain).
    pub fn set_encryption(&self, encryption: Option<MockEncryption>) {
        *lock(&self.inner.encryption) = encryption;
    }

    /// Plays `variant` from now on.
    pub fn set_variant(&self, variant: Variant) {
        *lock(&self.inner.variant) = variant;
    }

    /// One token call in `n` hangs (for a minute, as [`Tamper::TokenHangs`]), the others answer
    /// at once: the benchmark of a VNeID that sometimes does not answer. 0 (the default) turns
    /// it off; the count starts again with every call to this.
    pub fn set_hang_one_in(&self, n: u64) {
        self.inner.token_calls.store(0, Ordering::SeqCst);
        self.inner.hang_one_in.store(n, Ordering::SeqCst);
    }

    /// Applies `t` to the ID token of every token response from now on.
    pub fn set_tamper(&self, t: Tamper) {
        *lock(&self.inner.tamper) = t;
    }

    /// Replaces the signing key with a fresh one under a new `kid`. Unlike a real provider the
    /// old key is dropped from the JWKS at once, so a broker that caches JWKS meets an unknown
    /// `kid` and must refetch.
    pub fn rotate_key(&self) -> anyhow::Result<()> {
        let key = Arc::new(SigningKey::generate()?);
        *self
            .inner
            .key
            .write()
            .unwrap_or_else(PoisonError::into_inner) = key;
        Ok(())
    }

    pub fn citizens(&self) -> &[Citizen] {
        &self.inner.citizens
    }

    /// The issuer as published (no trailing slash).
    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    /// Registers the mock's routes relative to wherever the caller mounts this config, so the
    /// mock can share an `HttpServer` with other services.
    pub fn configure(&self, cfg: &mut web::ServiceConfig) {
        http::configure(self.clone(), cfg);
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }
}

impl Inner {
    pub(crate) fn signing_key(&self) -> Arc<SigningKey> {
        Arc::clone(&self.key.read().unwrap_or_else(PoisonError::into_inner))
    }

    pub(crate) fn variant(&self) -> Variant {
        *lock(&self.variant)
    }

    /// The answer's body: sealed in variant C when the RP registered a key.
    pub(crate) fn seal(&self, json: Vec<u8>) -> anyhow::Result<Vec<u8>> {
        match (self.variant(), lock(&self.encryption).as_ref()) {
            (Variant::C, Some(encryption)) => envelope::seal(encryption, &json, self.tamper()),
            _ => Ok(json),
        }
    }

    pub(crate) fn tamper(&self) -> Tamper {
        *lock(&self.tamper)
    }

    /// Whether this token call is the one in n that hangs (`set_hang_one_in`).
    pub(crate) fn token_call_hangs(&self) -> bool {
        let n = self.hang_one_in.load(Ordering::SeqCst);
        n > 0 && self.token_calls.fetch_add(1, Ordering::SeqCst) % n == n - 1
    }

    pub(crate) fn client(&self, client_id: &str) -> Option<&MockClient> {
        self.clients.iter().find(|c| c.client_id == client_id)
    }

    pub(crate) fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }
}

/// Runs the mock on its own server, mounted under the issuer's path.
pub fn serve(mock: MockVneid, listener: TcpListener) -> std::io::Result<actix_web::dev::Server> {
    let prefix = url::Url::parse(mock.issuer())
        .map(|u| u.path().trim_end_matches('/').to_owned())
        .unwrap_or_default();
    let server = HttpServer::new(move || {
        let mock = mock.clone();
        let app = App::new();
        if prefix.is_empty() {
            app.configure(move |cfg| mock.configure(cfg))
        } else {
            app.service(web::scope(&prefix).configure(move |cfg| mock.configure(cfg)))
        }
    })
    .listen(listener)?
    .run();
    Ok(server)
}
