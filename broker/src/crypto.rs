//! Small cryptographic helpers over aws-lc-rs (the one crypto provider of the build):
//! random tokens, digests, keyed hashes and the master-key envelope for data at rest.

use anyhow::Context;
use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::{digest, hmac};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;

use crate::secret::Secret;

pub fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn b64url_decode(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).ok()
}

/// The DER inside a PEM file whose block is `-----BEGIN {label}-----`, or the file itself when it
/// is not PEM (DER already). A PEM of another label is refused.
pub fn pem_or_der(raw: &[u8], label: &str) -> anyhow::Result<Vec<u8>> {
    let Some(text) = std::str::from_utf8(raw)
        .ok()
        .filter(|t| t.contains("-----BEGIN"))
    else {
        return Ok(raw.to_vec());
    };
    anyhow::ensure!(
        text.contains(&format!("-----BEGIN {label}-----")),
        "expected a PEM of `BEGIN {label}`"
    );
    let body: String = text
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .map(str::trim)
        .collect();
    STANDARD.decode(body).context("the PEM is not base64")
}

pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    // SystemRandom only fails when the OS has no entropy source; nothing sensible can go on then.
    if SystemRandom::new().fill(&mut out).is_err() {
        std::process::abort();
    }
    out
}

/// The length of every [`random_token`]: 32 bytes in unpadded base64url. A presented value of
/// another length is not one of ours and is refused before any lookup.
pub const TOKEN_LEN: usize = 43;

/// A random 256-bit token, base64url: codes, refresh tokens, secrets, session cookies.
pub fn random_token() -> String {
    b64url(&random_bytes::<32>())
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

pub fn sha256_b64url(data: &str) -> String {
    b64url(&sha256(data.as_bytes()))
}

/// Constant-time equality of two byte strings.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// Keys derived from the master key, one per purpose, so that no key serves two ends.
#[derive(Clone)]
pub struct MasterKey {
    envelope: std::sync::Arc<LessSafeKey>,
    lookup: hmac::Key,
    secrets: hmac::Key,
    refresh: hmac::Key,
    otp: hmac::Key,
    operators: hmac::Key,
}

impl MasterKey {
    pub fn from_secret(secret: &Secret) -> anyhow::Result<Self> {
        let raw = STANDARD
            .decode(secret.expose().trim())
            .context("master key is not base64")?;
        anyhow::ensure!(
            raw.len() == 32,
            "master key must be 32 bytes (base64 of 32 random bytes)"
        );
        let root = hmac::Key::new(hmac::HMAC_SHA256, &raw);
        let derive = |label: &str| hmac::sign(&root, label.as_bytes());
        let enc = derive("broker/envelope/v1");
        let unbound = UnboundKey::new(&AES_256_GCM, enc.as_ref())
            .map_err(|_| anyhow::anyhow!("cannot build the envelope key"))?;
        Ok(Self {
            envelope: std::sync::Arc::new(LessSafeKey::new(unbound)),
            lookup: hmac::Key::new(hmac::HMAC_SHA256, derive("broker/lookup/v1").as_ref()),
            secrets: hmac::Key::new(
                hmac::HMAC_SHA256,
                derive("broker/client-secret/v1").as_ref(),
            ),
            refresh: hmac::Key::new(
                hmac::HMAC_SHA256,
                derive("broker/refresh-token/v1").as_ref(),
            ),
            otp: hmac::Key::new(hmac::HMAC_SHA256, derive("broker/otp/v1").as_ref()),
            operators: hmac::Key::new(
                hmac::HMAC_SHA256,
                derive("broker/operator-token/v1").as_ref(),
            ),
        })
    }

    /// A fresh master key, base64, for `broker dev` and `broker keys generate-master`.
    pub fn generate_encoded() -> String {
        STANDARD.encode(random_bytes::<32>())
    }

    /// AES-256-GCM with a random nonce; `purpose` is bound as associated data.
    pub fn seal(&self, purpose: &str, plaintext: &[u8]) -> String {
        let nonce_bytes = random_bytes::<NONCE_LEN>();
        let mut buffer = plaintext.to_vec();
        let nonce = Nonce::assume_unique_for_key(nonce_bytes);
        if self
            .envelope
            .seal_in_place_append_tag(nonce, Aad::from(purpose.as_bytes()), &mut buffer)
            .is_err()
        {
            std::process::abort();
        }
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&buffer);
        b64url(&out)
    }

    pub fn open(&self, purpose: &str, sealed: &str) -> anyhow::Result<Vec<u8>> {
        let raw = b64url_decode(sealed).context("sealed value is not base64url")?;
        anyhow::ensure!(raw.len() > NONCE_LEN, "sealed value too short");
        let (nonce, body) = raw.split_at(NONCE_LEN);
        let nonce =
            Nonce::try_assume_unique_for_key(nonce).map_err(|_| anyhow::anyhow!("bad nonce"))?;
        let mut body = body.to_vec();
        let plain = self
            .envelope
            .open_in_place(nonce, Aad::from(purpose.as_bytes()), &mut body)
            .map_err(|_| anyhow::anyhow!("cannot decrypt: wrong master key or corrupted data"))?;
        Ok(plain.to_vec())
    }

    /// A deterministic keyed hash for looking up encrypted values (e.g. personal ID numbers).
    pub fn lookup_hash(&self, value: &str) -> String {
        b64url(hmac::sign(&self.lookup, value.as_bytes()).as_ref())
    }

    /// The keyed fast hash under which client secrets are stored: secrets have 256 bits of
    /// entropy, so a slow password hash would only throttle the token endpoint.
    pub fn secret_hash(&self, secret: &str) -> String {
        b64url(hmac::sign(&self.secrets, secret.as_bytes()).as_ref())
    }

    /// The keyed hash under which operators' admin tokens are stored (256-bit random, like
    /// client secrets): a copy of the table alone does not let anyone test a token.
    pub fn operator_token_hash(&self, token: &str) -> String {
        b64url(hmac::sign(&self.operators, token.as_bytes()).as_ref())
    }

    /// The MAC that makes a refresh token authentic (see `tokens::refresh_families`).
    pub fn refresh_mac(&self, data: &str) -> String {
        b64url(hmac::sign(&self.refresh, data.as_bytes()).as_ref())
    }

    /// The MAC under which one-time codes (and the names of their counters) are stored: six
    /// digits under a plain hash would be brute-forced from a copy of the session store at once.
    pub fn otp_mac(&self, data: &[u8]) -> Vec<u8> {
        hmac::sign(&self.otp, data).as_ref().to_vec()
    }

    /// Whether `mac` is the OTP MAC of `data`, compared in constant time.
    pub fn otp_mac_matches(&self, data: &[u8], mac: &[u8]) -> bool {
        hmac::verify(&self.otp, data, mac).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_round_trips_and_binds_purpose() {
        let key = MasterKey::from_secret(&Secret::new(MasterKey::generate_encoded())).unwrap();
        let sealed = key.seal("a", b"hello");
        assert_eq!(key.open("a", &sealed).unwrap(), b"hello");
        assert!(key.open("b", &sealed).is_err());
        let other = MasterKey::from_secret(&Secret::new(MasterKey::generate_encoded())).unwrap();
        assert!(other.open("a", &sealed).is_err());
    }

    #[test]
    fn otp_macs_verify_only_whole_and_unchanged() {
        let key = MasterKey::from_secret(&Secret::new(MasterKey::generate_encoded())).unwrap();
        let mac = key.otp_mac(b"challenge|phone|123456");
        assert!(key.otp_mac_matches(b"challenge|phone|123456", &mac));
        assert!(!key.otp_mac_matches(b"challenge|phone|123457", &mac));
        assert!(!key.otp_mac_matches(b"challenge|phone|123456", &mac[..31]));
        let mut flipped = mac.clone();
        flipped[0] ^= 1;
        assert!(!key.otp_mac_matches(b"challenge|phone|123456", &flipped));
        // Not the refresh-token or lookup key under another name.
        assert_ne!(b64url(&mac), key.refresh_mac("challenge|phone|123456"));
        assert_ne!(b64url(&mac), key.lookup_hash("challenge|phone|123456"));
    }

    #[test]
    fn short_master_key_is_refused() {
        assert!(MasterKey::from_secret(&Secret::new(STANDARD.encode([1u8; 16]))).is_err());
    }
}
