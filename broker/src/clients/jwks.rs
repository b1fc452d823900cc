//! The JWK Set a client registers for `private_key_jwt`: public keys only. It is stored in clear
//! and shown back by the admin API, so a private member would leak the client's key, and a
//! symmetric key would let anyone who reads it sign as the client.

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JwksError {
    #[error("jwks must be a JWK Set with a keys array")]
    NotASet,
    #[error("every key in jwks must be a JSON object")]
    NotAKey,
    #[error("jwks must not contain symmetric (oct) keys")]
    Symmetric,
    #[error("jwks must contain public keys only")]
    Private,
}

/// JWK members that hold private or symmetric key material (RFC 7518 §6.2.2, §6.3.2, §6.4.1).
pub(crate) const PRIVATE_MEMBERS: &[&str] = &["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

pub fn check_public_jwks(jwks: &serde_json::Value) -> Result<(), JwksError> {
    let keys = jwks
        .get("keys")
        .and_then(|k| k.as_array())
        .ok_or(JwksError::NotASet)?;
    for key in keys {
        let key = key.as_object().ok_or(JwksError::NotAKey)?;
        if key.get("kty").and_then(|k| k.as_str()) == Some("oct") {
            return Err(JwksError::Symmetric);
        }
        if PRIVATE_MEMBERS.iter().any(|m| key.contains_key(*m)) {
            return Err(JwksError::Private);
        }
    }
    Ok(())
}
