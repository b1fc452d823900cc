//! Variant C's encrypted answers, as the mock sends them: `{"data": b64, "key": b64}`, the AES
//! key encrypted to the relying party's RSA public key (PKCS#1 v1.5), the JSON encrypted with
//! AES-128 in ECB or CBC mode (IV first), PKCS#7 padding. Tamper modes spoil the key or the data.

use aws_lc_rs::cipher::{PaddedBlockEncryptingKey, UnboundCipherKey, AES_128};
use aws_lc_rs::rsa::{Pkcs1PublicEncryptingKey, PublicEncryptingKey};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use super::Tamper;

/// The relying party's encryption key, as registered with the mock.
#[derive(Clone, Debug)]
pub struct MockEncryption {
    /// X.509 SubjectPublicKeyInfo DER of the RP's RSA key.
    pub rp_public_key_der: Vec<u8>,
    /// CBC with the IV first; ECB otherwise.
    pub cbc: bool,
}

pub(crate) fn seal(
    encryption: &MockEncryption,
    json: &[u8],
    tamper: Tamper,
) -> anyhow::Result<Vec<u8>> {
    let public = PublicEncryptingKey::from_der(&encryption.rp_public_key_der)
        .map_err(|e| anyhow::anyhow!("bad RP public key: {e}"))?;
    let public = Pkcs1PublicEncryptingKey::new(public)
        .map_err(|_| anyhow::anyhow!("unusable RP public key"))?;
    let mut aes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut aes).map_err(|_| anyhow::anyhow!("no randomness"))?;
    let mut wrapped = vec![0u8; public.ciphertext_size()];
    let mut wrapped = public
        .encrypt(&aes, &mut wrapped)
        .map_err(|_| anyhow::anyhow!("RSA encryption failed"))?
        .to_vec();
    let key = UnboundCipherKey::new(&AES_128, &aes).map_err(|_| anyhow::anyhow!("AES key"))?;
    let mut data = json.to_vec();
    let mut data = if encryption.cbc {
        let context = PaddedBlockEncryptingKey::cbc_pkcs7(key)
            .and_then(|k| k.encrypt(&mut data))
            .map_err(|_| anyhow::anyhow!("AES failed"))?;
        let iv: &[u8] = (&context)
            .try_into()
            .map_err(|_| anyhow::anyhow!("no IV"))?;
        [iv, &data].concat()
    } else {
        PaddedBlockEncryptingKey::ecb_pkcs7(key)
            .and_then(|k| k.encrypt(&mut data))
            .map_err(|_| anyhow::anyhow!("AES failed"))?;
        data
    };
    match tamper {
        Tamper::EnvelopeBadKey => {
            if let Some(b) = wrapped.get_mut(10) {
                *b ^= 0x55;
            }
        }
        Tamper::EnvelopeBadData => {
            if let Some(b) = data.last_mut() {
                *b ^= 0x01;
            }
        }
        _ => {}
    }
    Ok(serde_json::to_vec(&serde_json::json!({
        "data": STANDARD.encode(data),
        "key": STANDARD.encode(wrapped),
    }))?)
}
