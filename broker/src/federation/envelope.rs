//! VNeID variant C's encrypted answers (docs/vneid.md): a token or userinfo response may be
//! `{"data": b64, "key": b64}`, where `key` is an AES key encrypted with the broker's RSA public
//! key (PKCS#1 v1.5) and `data` the AES-encrypted JSON: ECB with PKCS#7 padding, or CBC with the
//! IV in the first 16 bytes, as the profile says (`upstream.encryption.mode`).
//!
//! RSA and AES through aws-lc-rs (not the `rsa` crate: RUSTSEC-2023-0071). The answer of a
//! callback can be replayed by the browser with values of its own choosing, so opening must be
//! no padding oracle: whatever fails — the key's base64, its RSA padding, its length, the data's
//! base64, the AES padding, the JSON — fails with the one error [`Unreadable`], after the same
//! steps. An RSA failure does not end early: a random AES key takes the decrypted key's place
//! (implicit rejection, as TLS does against Bleichenbacher's attack), and the AES step then fails
//! as it would for any wrong key.

use std::path::PathBuf;

use anyhow::Context;
use aws_lc_rs::cipher::{
    DecryptionContext, PaddedBlockDecryptingKey, UnboundCipherKey, AES_128, AES_192, AES_256,
};
use aws_lc_rs::iv::FixedLength;
use aws_lc_rs::rsa::{Pkcs1PrivateDecryptingKey, PrivateDecryptingKey};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde::Deserialize;

/// How `data` is encrypted.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AesMode {
    /// ECB with PKCS#7 padding (the one public implementation).
    #[default]
    Ecb,
    /// CBC with PKCS#7 padding, the IV in the first 16 bytes of `data`.
    Cbc,
}

/// `[upstream.encryption]`: the broker's RSA private key (PKCS#8, PEM or DER) whose public key
/// VNeID encrypts to, and the AES mode.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct EncryptionSettings {
    pub private_key_file: PathBuf,
    #[serde(default)]
    pub mode: AesMode,
}

/// An envelope that does not open. Says nothing of why, on purpose.
#[derive(Debug, PartialEq, Eq)]
pub struct Unreadable;

pub struct Envelopes {
    key: Pkcs1PrivateDecryptingKey,
    mode: AesMode,
}

impl std::fmt::Debug for Envelopes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Envelopes")
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct Envelope {
    data: String,
    key: String,
}

fn decode_b64(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    STANDARD
        .decode(text)
        .or_else(|_| URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')))
        .ok()
}

impl Envelopes {
    pub fn load(settings: &EncryptionSettings) -> anyhow::Result<Self> {
        let raw = std::fs::read(&settings.private_key_file).with_context(|| {
            format!(
                "cannot read upstream.encryption.private_key_file {}",
                settings.private_key_file.display()
            )
        })?;
        Self::from_pkcs8(&pkcs8_der(&raw)?, settings.mode)
    }

    pub fn from_pkcs8(der: &[u8], mode: AesMode) -> anyhow::Result<Self> {
        let private = PrivateDecryptingKey::from_pkcs8(der).map_err(|e| {
            anyhow::anyhow!("the upstream encryption key is not an RSA PKCS#8 key: {e}")
        })?;
        anyhow::ensure!(
            private.key_size_bits() >= 2048,
            "the upstream encryption key must have at least 2048 bits"
        );
        let key = Pkcs1PrivateDecryptingKey::new(private)
            .map_err(|_| anyhow::anyhow!("cannot use the upstream encryption key"))?;
        Ok(Self { key, mode })
    }

    /// `None`: the body is not an envelope (a plain answer, or an OAuth error). `Some`: the
    /// envelope's JSON, or [`Unreadable`].
    pub fn open(&self, body: &[u8]) -> Option<Result<Vec<u8>, Unreadable>> {
        let envelope: Envelope = serde_json::from_slice(body).ok()?;
        Some(self.open_envelope(&envelope))
    }

    fn open_envelope(&self, envelope: &Envelope) -> Result<Vec<u8>, Unreadable> {
        let wrapped = decode_b64(&envelope.key).unwrap_or_default();
        let mut buffer = vec![0u8; self.key.min_output_size()];
        // Implicit rejection: the same steps whether the RSA step worked or not.
        let mut fallback = [0u8; 32];
        let _ = aws_lc_rs::rand::fill(&mut fallback);
        let aes_key: Vec<u8> = match self.key.decrypt(&wrapped, &mut buffer) {
            Ok(plain) if matches!(plain.len(), 16 | 24 | 32) => plain.to_vec(),
            _ => fallback.to_vec(),
        };
        let data = decode_b64(&envelope.data).unwrap_or_default();
        let plain = self.aes_decrypt(&aes_key, data);
        match plain {
            Some(json)
                if json.first() == Some(&b'{')
                    && serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(
                        &json,
                    )
                    .is_ok() =>
            {
                Ok(json)
            }
            _ => Err(Unreadable),
        }
    }

    fn aes_decrypt(&self, key: &[u8], data: Vec<u8>) -> Option<Vec<u8>> {
        let algorithm = match key.len() {
            16 => &AES_128,
            24 => &AES_192,
            _ => &AES_256,
        };
        let key = UnboundCipherKey::new(algorithm, key).ok()?;
        let (mut body, context, decrypting) = match self.mode {
            AesMode::Ecb => (
                data,
                DecryptionContext::None,
                PaddedBlockDecryptingKey::ecb_pkcs7(key).ok()?,
            ),
            AesMode::Cbc => {
                if data.len() < 32 {
                    return None;
                }
                let iv: [u8; 16] = data[..16].try_into().ok()?;
                (
                    data[16..].to_vec(),
                    DecryptionContext::Iv128(FixedLength::from(iv)),
                    PaddedBlockDecryptingKey::cbc_pkcs7(key).ok()?,
                )
            }
        };
        if body.is_empty() || body.len() % 16 != 0 {
            return None;
        }
        let plain = decrypting.decrypt(&mut body, context).ok()?;
        Some(plain.to_vec())
    }
}

/// PKCS#8 DER from a PEM (`-----BEGIN PRIVATE KEY-----`) or DER file.
fn pkcs8_der(raw: &[u8]) -> anyhow::Result<Vec<u8>> {
    crate::crypto::pem_or_der(raw, "PRIVATE KEY")
        .context("the upstream encryption key must be PKCS#8, DER or PEM (BEGIN PRIVATE KEY)")
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::cipher::PaddedBlockEncryptingKey;
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::rsa::{KeySize, Pkcs1PublicEncryptingKey};

    fn seal(public: &Pkcs1PublicEncryptingKey, mode: AesMode, json: &[u8]) -> Vec<u8> {
        let aes = [7u8; 16];
        let mut wrapped = vec![0u8; public.ciphertext_size()];
        let wrapped = public.encrypt(&aes, &mut wrapped).unwrap().to_vec();
        let key = UnboundCipherKey::new(&AES_128, &aes).unwrap();
        let mut data = json.to_vec();
        let data = match mode {
            AesMode::Ecb => {
                PaddedBlockEncryptingKey::ecb_pkcs7(key)
                    .unwrap()
                    .encrypt(&mut data)
                    .unwrap();
                data
            }
            AesMode::Cbc => {
                let context = PaddedBlockEncryptingKey::cbc_pkcs7(key)
                    .unwrap()
                    .encrypt(&mut data)
                    .unwrap();
                let iv: &[u8] = (&context).try_into().unwrap();
                [iv, &data].concat()
            }
        };
        serde_json::to_vec(&serde_json::json!({
            "data": STANDARD.encode(data),
            "key": STANDARD.encode(wrapped),
        }))
        .unwrap()
    }

    #[test]
    fn opens_both_modes_and_every_failure_is_the_same() {
        let private = PrivateDecryptingKey::generate(KeySize::Rsa2048).unwrap();
        let public = Pkcs1PublicEncryptingKey::new(private.public_key()).unwrap();
        let der = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&private).unwrap();
        let json = r#"{"sub":"abc","fullName":"Nguyễn Văn A"}"#.as_bytes();
        for mode in [AesMode::Ecb, AesMode::Cbc] {
            let envelopes = Envelopes::from_pkcs8(der.as_ref(), mode).unwrap();
            let sealed = seal(&public, mode, json);
            assert_eq!(envelopes.open(&sealed), Some(Ok(json.to_vec())));
            // Not an envelope: passed through.
            assert_eq!(envelopes.open(br#"{"access_token":"x"}"#), None);
            // A wrong key, a flipped byte of the data, garbage: the one error.
            let mut v: serde_json::Value = serde_json::from_slice(&sealed).unwrap();
            let good_key = v["key"].as_str().unwrap().to_string();
            v["key"] = STANDARD.encode([1u8; 256]).into();
            let bad_key = serde_json::to_vec(&v).unwrap();
            assert_eq!(envelopes.open(&bad_key), Some(Err(Unreadable)));
            v["key"] = good_key.into();
            let mut data = STANDARD.decode(v["data"].as_str().unwrap()).unwrap();
            let last = data.len() - 1;
            data[last] ^= 1;
            v["data"] = STANDARD.encode(&data).into();
            assert_eq!(
                envelopes.open(&serde_json::to_vec(&v).unwrap()),
                Some(Err(Unreadable))
            );
            let garbage = br#"{"data":"!!!","key":"???"}"#;
            assert_eq!(envelopes.open(garbage), Some(Err(Unreadable)));
        }
        // The other mode's envelope does not open.
        let ecb = Envelopes::from_pkcs8(der.as_ref(), AesMode::Ecb).unwrap();
        let cbc_sealed = seal(&public, AesMode::Cbc, json);
        assert_eq!(ecb.open(&cbc_sealed), Some(Err(Unreadable)));
    }
}
