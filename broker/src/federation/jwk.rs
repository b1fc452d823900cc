//! The upstream's signing keys as the `openidconnect` crate sees them, with RSA signatures
//! verified by aws-lc-rs.
//!
//! The crate's own key type (`CoreJsonWebKey`) verifies RSA with the pure-Rust `rsa` crate: about
//! a quarter of a millisecond of CPU per ID token, an eighth of a whole federated login's broker
//! CPU (docs/benchmarks.md, "Login CPU"). This type wraps it and changes only that: the RSA
//! algorithms (RS256/384/512, PS256/384/512) go to aws-lc-rs, with the same checks before (key
//! type, `use`, `alg`); everything else (key selection by `kid`, the other algorithms, claims
//! checks) stays the crate's. aws-lc-rs refuses RSA keys under 2048 bits, as RFC 7518 §3.3
//! requires of RS256 keys.

use aws_lc_rs::signature::{self, RsaParameters, RsaPublicKeyComponents};
use openidconnect::core::{
    CoreJsonWebKey, CoreJsonWebKeyType, CoreJsonWebKeyUse, CoreJwsSigningAlgorithm,
};
use openidconnect::{JsonWebKey, JsonWebKeyAlgorithm, JsonWebKeyId, SignatureVerificationError};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use base64::Engine as _;

/// A key of the upstream's JWKS.
#[derive(Clone, Debug)]
pub struct UpstreamJwk {
    core: CoreJsonWebKey,
    /// The RSA modulus and exponent, decoded once when the key set is read.
    rsa: Option<RsaPublicKeyComponents<Vec<u8>>>,
}

/// The upstream's key set.
pub type UpstreamJwks = openidconnect::JsonWebKeySet<UpstreamJwk>;

/// `CoreClient` with [`UpstreamJwk`] keys.
pub type UpstreamClient<
    HasAuthUrl = openidconnect::EndpointNotSet,
    HasDeviceAuthUrl = openidconnect::EndpointNotSet,
    HasIntrospectionUrl = openidconnect::EndpointNotSet,
    HasRevocationUrl = openidconnect::EndpointNotSet,
    HasTokenUrl = openidconnect::EndpointNotSet,
    HasUserInfoUrl = openidconnect::EndpointNotSet,
> = openidconnect::Client<
    openidconnect::EmptyAdditionalClaims,
    openidconnect::core::CoreAuthDisplay,
    openidconnect::core::CoreGenderClaim,
    openidconnect::core::CoreJweContentEncryptionAlgorithm,
    UpstreamJwk,
    openidconnect::core::CoreAuthPrompt,
    openidconnect::StandardErrorResponse<openidconnect::core::CoreErrorResponseType>,
    openidconnect::core::CoreTokenResponse,
    openidconnect::core::CoreTokenIntrospectionResponse,
    openidconnect::core::CoreRevocableToken,
    openidconnect::core::CoreRevocationErrorResponse,
    HasAuthUrl,
    HasDeviceAuthUrl,
    HasIntrospectionUrl,
    HasRevocationUrl,
    HasTokenUrl,
    HasUserInfoUrl,
>;

impl<'de> Deserialize<'de> for UpstreamJwk {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        let core = CoreJsonWebKey::deserialize(&value).map_err(serde::de::Error::custom)?;
        // Decoded as the crate decodes them (unpadded base64url, trailing bits allowed), and
        // without the leading zero bytes some key sets carry, which aws-lc-rs would refuse
        // where the crate's big integers ignore them.
        let member = |name: &str| {
            let text = value.get(name)?.as_str()?;
            let bytes = lenient_b64url().decode(text).ok()?;
            let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
            Some(bytes[start..].to_vec())
        };
        let rsa = match (
            value.get("kty").and_then(|v| v.as_str()),
            member("n"),
            member("e"),
        ) {
            (Some("RSA"), Some(n), Some(e)) => Some(RsaPublicKeyComponents { n, e }),
            _ => None,
        };
        Ok(Self { core, rsa })
    }
}

impl Serialize for UpstreamJwk {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.core.serialize(serializer)
    }
}

/// The `openidconnect` crate's base64url for key members.
fn lenient_b64url() -> base64::engine::GeneralPurpose {
    base64::engine::GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        base64::engine::general_purpose::NO_PAD.with_decode_allow_trailing_bits(true),
    )
}

/// aws-lc-rs's parameters for a JWS RSA algorithm; `None` for the others.
fn rsa_parameters(alg: &CoreJwsSigningAlgorithm) -> Option<&'static RsaParameters> {
    Some(match alg {
        CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256 => &signature::RSA_PKCS1_2048_8192_SHA256,
        CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384 => &signature::RSA_PKCS1_2048_8192_SHA384,
        CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512 => &signature::RSA_PKCS1_2048_8192_SHA512,
        CoreJwsSigningAlgorithm::RsaSsaPssSha256 => &signature::RSA_PSS_2048_8192_SHA256,
        CoreJwsSigningAlgorithm::RsaSsaPssSha384 => &signature::RSA_PSS_2048_8192_SHA384,
        CoreJwsSigningAlgorithm::RsaSsaPssSha512 => &signature::RSA_PSS_2048_8192_SHA512,
        _ => return None,
    })
}

impl JsonWebKey for UpstreamJwk {
    type KeyUse = CoreJsonWebKeyUse;
    type SigningAlgorithm = CoreJwsSigningAlgorithm;

    fn key_id(&self) -> Option<&JsonWebKeyId> {
        self.core.key_id()
    }

    fn key_type(&self) -> &CoreJsonWebKeyType {
        self.core.key_type()
    }

    fn key_use(&self) -> Option<&CoreJsonWebKeyUse> {
        self.core.key_use()
    }

    fn signing_alg(&self) -> JsonWebKeyAlgorithm<&CoreJwsSigningAlgorithm> {
        self.core.signing_alg()
    }

    fn new_symmetric(key: Vec<u8>) -> Self {
        Self {
            core: CoreJsonWebKey::new_symmetric(key),
            rsa: None,
        }
    }

    fn verify_signature(
        &self,
        signature_alg: &CoreJwsSigningAlgorithm,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), SignatureVerificationError> {
        let Some(parameters) = rsa_parameters(signature_alg) else {
            return self
                .core
                .verify_signature(signature_alg, message, signature);
        };
        // The checks the crate makes before it verifies (its `check_key_compatibility`).
        let invalid = |why: &str| Err(SignatureVerificationError::InvalidKey(why.to_string()));
        if *self.core.key_type() != CoreJsonWebKeyType::RSA {
            return invalid("key type does not match signature algorithm");
        }
        match self.core.key_use() {
            None | Some(CoreJsonWebKeyUse::Signature) => {}
            Some(_) => return invalid("key usage not permitted for digital signatures"),
        }
        match self.core.signing_alg() {
            JsonWebKeyAlgorithm::Unspecified => {}
            JsonWebKeyAlgorithm::Algorithm(alg) if alg == signature_alg => {}
            _ => return invalid("key algorithm does not match signature algorithm"),
        }
        let Some(components) = &self.rsa else {
            return invalid("RSA key is missing its modulus or exponent");
        };
        // Said as what it is, not as a bad signature: the operator must ask for a new key.
        if components.n.len() < 256 {
            return invalid("RSA key under 2048 bits");
        }
        components
            .verify(parameters, message, signature)
            .map_err(|_| SignatureVerificationError::CryptoError("bad signature".into()))
    }

    fn hash_bytes(&self, bytes: &[u8], alg: &CoreJwsSigningAlgorithm) -> Result<Vec<u8>, String> {
        self.core.hash_bytes(bytes, alg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::rsa::{KeyPair, KeySize};
    use aws_lc_rs::signature::KeyPair as _;

    fn b64(bytes: &[u8]) -> String {
        crate::crypto::b64url(bytes)
    }

    /// A JWK of `pair`'s public key with the given extra members.
    fn jwk(pair: &KeyPair, extra: serde_json::Value) -> UpstreamJwk {
        let public = pair.public_key();
        let n = public.modulus().big_endian_without_leading_zero().to_vec();
        let e = public.exponent().big_endian_without_leading_zero().to_vec();
        let mut value = serde_json::json!({"kty": "RSA", "n": b64(&n), "e": b64(&e)});
        for (k, v) in extra.as_object().unwrap() {
            value[k] = v.clone();
        }
        serde_json::from_value(value).unwrap()
    }

    fn signed(pair: &KeyPair, message: &[u8]) -> Vec<u8> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let mut sig = vec![0; pair.public_modulus_len()];
        pair.sign(&signature::RSA_PKCS1_SHA256, &rng, message, &mut sig)
            .unwrap();
        sig
    }

    #[test]
    fn rs256_verifies_with_aws_lc_and_refuses_what_the_crate_refuses() {
        let pair = KeyPair::generate(KeySize::Rsa2048).unwrap();
        let rs256 = CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256;
        let sig = signed(&pair, b"header.payload");
        let key = jwk(&pair, serde_json::json!({"kid": "k1"}));
        assert_eq!(key.key_id().map(|k| k.as_str()), Some("k1"));
        key.verify_signature(&rs256, b"header.payload", &sig)
            .expect("a good signature");
        assert!(key
            .verify_signature(&rs256, b"header.payloaD", &sig)
            .is_err());
        let mut spoilt = sig.clone();
        spoilt[10] ^= 1;
        assert!(key
            .verify_signature(&rs256, b"header.payload", &spoilt)
            .is_err());
        // A key for encryption, or bound to another algorithm, signs nothing.
        let enc = jwk(&pair, serde_json::json!({"use": "enc"}));
        assert!(enc
            .verify_signature(&rs256, b"header.payload", &sig)
            .is_err());
        let other = jwk(&pair, serde_json::json!({"alg": "RS512"}));
        assert!(other
            .verify_signature(&rs256, b"header.payload", &sig)
            .is_err());
        // An EC key never verifies an RSA signature.
        let ec: UpstreamJwk = serde_json::from_value(serde_json::json!({
            "kty": "EC", "crv": "P-256",
            "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
            "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"
        }))
        .unwrap();
        assert!(ec
            .verify_signature(&rs256, b"header.payload", &sig)
            .is_err());
        // A modulus written with a leading zero byte is the same key.
        let public = pair.public_key();
        let mut n = vec![0u8];
        n.extend_from_slice(public.modulus().big_endian_without_leading_zero());
        let e = public.exponent().big_endian_without_leading_zero().to_vec();
        let padded: UpstreamJwk =
            serde_json::from_value(serde_json::json!({"kty": "RSA", "n": b64(&n), "e": b64(&e)}))
                .unwrap();
        padded
            .verify_signature(&rs256, b"header.payload", &sig)
            .expect("a leading zero changes nothing");
        // A 1024-bit key is refused as a key, whatever the signature.
        let short: UpstreamJwk = serde_json::from_value(
            serde_json::json!({"kty": "RSA", "n": b64(&[0xC5; 128]), "e": "AQAB"}),
        )
        .unwrap();
        assert!(matches!(
            short.verify_signature(&rs256, b"header.payload", &[1; 128]),
            Err(SignatureVerificationError::InvalidKey(why)) if why.contains("2048")
        ));
        // The key set reads back what it was given.
        let back: serde_json::Value = serde_json::to_value(&key).unwrap();
        assert_eq!(back["kid"], "k1");
        assert_eq!(back["kty"], "RSA");
    }
}
