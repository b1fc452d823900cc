//! A DPoP client (RFC 9449) as a mobile app is one: a P-256 key made here with aws-lc-rs (in
//! the app, a non-exportable key in the Secure Enclave or StrongBox), proofs signed by it, and
//! its RFC 7638 thumbprint computed here, independently of the broker's.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use broker::clock::Clock;
use serde_json::{json, Value};

use super::{Client, TestApp};

pub struct DpopKey {
    pair: EcdsaKeyPair,
    pub jwk: Value,
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn sha256_b64(text: &str) -> String {
    b64(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes()).as_ref())
}

impl DpopKey {
    pub fn new() -> Self {
        let rng = SystemRandom::new();
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("key");
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
            .expect("key");
        let point = pair.public_key().as_ref().to_vec();
        let jwk =
            json!({"kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..])});
        Self { pair, jwk }
    }

    /// RFC 7638 §3: SHA-256 of the required members, in lexicographic order, no whitespace.
    pub fn jkt(&self) -> String {
        sha256_b64(&format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            self.jwk["x"].as_str().expect("x"),
            self.jwk["y"].as_str().expect("y")
        ))
    }

    pub fn header(&self) -> Value {
        json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": self.jwk})
    }

    /// The claims of a proof for `htm` `htu` at `iat`, with `ath` when a token goes along.
    pub fn claims(htm: &str, htu: &str, iat: i64, access_token: Option<&str>) -> Value {
        let mut claims = json!({
            "jti": broker::crypto::random_token(),
            "htm": htm,
            "htu": htu,
            "iat": iat,
        });
        if let Some(token) = access_token {
            claims["ath"] = json!(sha256_b64(token));
        }
        claims
    }

    /// A compact JWS of exactly this header and these claims.
    pub fn sign(&self, header: &Value, claims: &Value) -> String {
        let message = format!(
            "{}.{}",
            b64(&serde_json::to_vec(header).expect("header")),
            b64(&serde_json::to_vec(claims).expect("claims"))
        );
        let signature = self
            .pair
            .sign(&SystemRandom::new(), message.as_bytes())
            .expect("sign");
        format!("{message}.{}", b64(signature.as_ref()))
    }

    /// A good proof for a request to the broker's `path`, at the broker's current time.
    pub fn proof(
        &self,
        app: &TestApp,
        htm: &str,
        path: &str,
        access_token: Option<&str>,
    ) -> String {
        let claims = Self::claims(htm, &app.endpoint(path), app.clock.now(), access_token);
        self.sign(&self.header(), &claims)
    }
}

impl TestApp {
    /// POST /token like `token`, with these `DPoP` headers.
    pub async fn token_dpop(
        &self,
        client: &Client,
        form: &[(&str, &str)],
        proofs: &[&str],
    ) -> (u16, Value) {
        let mut request = self.http.post(self.endpoint("/token"));
        let mut form: Vec<(&str, &str)> = form.to_vec();
        match &client.secret {
            Some(secret) => request = request.basic_auth(&client.id, Some(secret)),
            None => form.push(("client_id", &client.id)),
        }
        for proof in proofs {
            request = request.header("DPoP", *proof);
        }
        let response = request.form(&form).send().await.expect("token request");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// GET /userinfo with `Authorization: {scheme} {token}` and an optional `DPoP` header;
    /// the status, the body and the `WWW-Authenticate` challenge.
    pub async fn userinfo_with(
        &self,
        scheme: &str,
        token: &str,
        proof: Option<&str>,
    ) -> (u16, Value, String) {
        let mut request = self
            .http
            .get(self.endpoint("/userinfo"))
            .header("Authorization", format!("{scheme} {token}"));
        if let Some(proof) = proof {
            request = request.header("DPoP", proof);
        }
        let response = request.send().await.expect("userinfo");
        let status = response.status().as_u16();
        let challenge = response
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        (
            status,
            response.json().await.unwrap_or(Value::Null),
            challenge,
        )
    }

    pub async fn introspect(&self, client: &Client, token: &str) -> Value {
        self.http
            .post(self.endpoint("/introspect"))
            .basic_auth(&client.id, client.secret.as_deref())
            .form(&[("token", token)])
            .send()
            .await
            .expect("introspect")
            .json()
            .await
            .expect("json")
    }
}
