//! Starting a mock on a random port and driving it the way an OIDC client would.

use std::net::TcpListener;

use aws_lc_rs::digest::{digest, SHA256};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use broker_devkit::mock_vneid::{serve, MockClient, MockVneid, MockVneidConfig};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, TokenData, Validation};
use serde_json::Value;
use url::Url;

pub const CLIENT_ID: &str = "broker-dev";
pub const CLIENT_SECRET: &str = "dev-secret:with/odd+chars";
pub const REDIRECT_URI: &str = "http://127.0.0.1:9/callback/vneid";
pub const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
pub const NONCE: &str = "n-0S6_WzA2Mj";

pub struct TestMock {
    pub mock: MockVneid,
    pub issuer: String,
    pub http: reqwest::Client,
}

/// Starts a mock on 127.0.0.1:0; `extra` clients are registered next to the default one.
pub fn spawn_mock(extra: Vec<MockClient>) -> TestMock {
    spawn_mock_at("", extra)
}

/// Like [`spawn_mock`], with the issuer at `path` on the server (Keycloak's `/realms/x` style).
pub fn spawn_mock_at(path: &str, extra: Vec<MockClient>) -> TestMock {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let mut clients = vec![MockClient {
        client_id: CLIENT_ID.into(),
        client_secret: CLIENT_SECRET.into(),
        redirect_uris: vec![REDIRECT_URI.into()],
    }];
    clients.extend(extra);
    let cfg = MockVneidConfig {
        issuer: Url::parse(&format!("http://{address}{path}")).unwrap(),
        clients,
    };
    let mock = MockVneid::new(cfg).unwrap();
    let issuer = mock.issuer().to_owned();
    actix_web::rt::spawn(serve(mock.clone(), listener).unwrap());
    TestMock {
        mock,
        issuer,
        http: no_redirect_client(),
    }
}

pub fn no_redirect_client() -> reqwest::Client {
    broker_devkit::install_rustls_provider();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

pub fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(digest(&SHA256, verifier.as_bytes()))
}

pub fn location(response: &reqwest::Response) -> Url {
    let value = response
        .headers()
        .get("location")
        .expect("a Location header");
    Url::parse(value.to_str().unwrap()).unwrap()
}

pub fn query(url: &Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

impl TestMock {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }

    /// `/authorize` with a login hint; returns the redirect back to the client.
    pub async fn authorize(&self, hint: &str, extra: &[(&str, &str)]) -> Url {
        let challenge = challenge(VERIFIER);
        let mut params = vec![
            ("response_type", "code"),
            ("client_id", CLIENT_ID),
            ("redirect_uri", REDIRECT_URI),
            ("scope", "openid profile"),
            ("state", "st-123"),
            ("nonce", NONCE),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
            ("login_hint", hint),
        ];
        params.extend_from_slice(extra);
        let response = self
            .http
            .get(self.url("/authorize"))
            .query(&params)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 303);
        location(&response)
    }

    /// Logs in as `hint` and returns a code for the default client.
    pub async fn code(&self, hint: &str) -> String {
        let back = self.authorize(hint, &[]).await;
        assert_eq!(query(&back, "state").as_deref(), Some("st-123"));
        query(&back, "code").expect("a code")
    }

    /// `/token` with client_secret_basic (form-urlencoded halves, RFC 6749 §2.3.1).
    pub async fn token(&self, code: &str, verifier: Option<&str>) -> reqwest::Response {
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT_URI),
        ];
        if let Some(verifier) = verifier {
            form.push(("code_verifier", verifier));
        }
        let user = url::form_urlencoded::byte_serialize(CLIENT_ID.as_bytes()).collect::<String>();
        let pass =
            url::form_urlencoded::byte_serialize(CLIENT_SECRET.as_bytes()).collect::<String>();
        self.http
            .post(self.url("/token"))
            .basic_auth(user, Some(pass))
            .form(&form)
            .send()
            .await
            .unwrap()
    }

    /// A full login as `hint`; returns the token response JSON.
    pub async fn login(&self, hint: &str) -> Value {
        let code = self.code(hint).await;
        let response = self.token(&code, Some(VERIFIER)).await;
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    pub async fn jwks(&self) -> JwkSet {
        let response = self.http.get(self.url("/jwks")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    /// Verifies an ID token the way the broker must: signature via JWKS, iss, aud, exp.
    pub async fn verify(&self, id_token: &str) -> jsonwebtoken::errors::Result<TokenData<Value>> {
        let header = jsonwebtoken::decode_header(id_token)?;
        let jwks = self.jwks().await;
        let jwk = jwks
            .find(header.kid.as_deref().unwrap())
            .expect("kid in JWKS");
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_audience(&[CLIENT_ID]);
        validation.set_issuer(&[&self.issuer]);
        jsonwebtoken::decode(id_token, &DecodingKey::from_jwk(jwk)?, &validation)
    }
}

/// A JWT's header and claims, without any verification.
pub fn unverified_parts(jwt: &str) -> (Value, Value, String) {
    let mut parts = jwt.split('.');
    let mut json =
        || serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts.next().unwrap()).unwrap()).unwrap();
    let header = json();
    let claims = json();
    (header, claims, parts.next().unwrap().to_owned())
}
