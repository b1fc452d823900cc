//! Building the RS256 ID token the mock returns, and the defects a tester can ask for.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, Header};
use serde_json::{json, Value};

use super::citizens::Citizen;
use super::keys::SigningKey;

const ID_TOKEN_TTL_SECS: u64 = 300;
/// Values used by the tamper modes; chosen so they can never be right.
const WRONG_ISSUER: &str = "http://wrong-issuer.invalid";
const WRONG_AUDIENCE: &str = "some-other-client";
const WRONG_NONCE: &str = "mock-vneid-wrong-nonce";

/// A defect to put into every ID token issued from now on, so the broker's verification can be
/// tested. [`Tamper::None`] restores well-formed tokens.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Tamper {
    #[default]
    None,
    /// One byte of the RS256 signature flipped.
    BadSignature,
    /// `nonce` differs from the one sent to `/authorize`.
    WrongNonce,
    /// `aud` names another client.
    WrongAudience,
    /// `iss` names another issuer.
    WrongIssuer,
    /// `iat` two hours ago, `exp` one hour ago.
    Expired,
    /// Header `{"alg":"none"}` and an empty signature.
    AlgNone,
    /// No `nonce` claim although one was sent.
    MissingNonce,
    /// No `auth_time` claim (some VNeID variants never send it).
    NoAuthTime,
    /// `auth_time` two hours ago: VNeID answered from its own, older session.
    StaleAuthTime,
    /// The authorization response carries no `iss` (RFC 9207) although discovery promises it.
    CallbackNoIss,
    /// The authorization response's `iss` names another issuer (a mix-up).
    CallbackWrongIss,
    /// The token endpoint never answers (it waits a minute): an outage that hangs.
    TokenHangs,
    /// The token endpoint answers 502 with a proxy's HTML page: an outage that fails fast.
    TokenFails,
    /// The token endpoint refuses with a 400 HTML page, not OAuth's JSON error: an answer all
    /// the same (what a made-up code may get from a gateway).
    TokenRefusesPlainly,
    /// Variant B: userinfo names another `sub` than the ID token.
    UserinfoOtherSub,
    /// Variant C: the envelope's encrypted AES key is spoilt (one byte flipped).
    EnvelopeBadKey,
    /// Variant C: the envelope's encrypted data is spoilt (its last byte flipped).
    EnvelopeBadData,
}

/// What the ID token says, before any tampering.
pub(crate) struct IdTokenFacts<'a> {
    pub(crate) issuer: &'a str,
    pub(crate) client_id: &'a str,
    pub(crate) citizen: &'a Citizen,
    pub(crate) nonce: Option<&'a str>,
    pub(crate) auth_time: u64,
    pub(crate) now: u64,
    /// Variant B: only `sub` and `acr` (as `LoA1`/`LoA2`) besides the protocol claims; the
    /// rest comes from userinfo.
    pub(crate) minimal: bool,
}

pub(crate) fn issue(
    facts: &IdTokenFacts<'_>,
    key: &SigningKey,
    tamper: Tamper,
) -> anyhow::Result<String> {
    let claims = claims(facts, tamper);
    if tamper == Tamper::AlgNone {
        return Ok(unsigned(&claims)?);
    }
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(key.kid.clone());
    let token = jsonwebtoken::encode(&header, &claims, &key.encoding)?;
    if tamper == Tamper::BadSignature {
        return flip_signature_byte(&token);
    }
    Ok(token)
}

fn claims(facts: &IdTokenFacts<'_>, tamper: Tamper) -> Value {
    // The citizen's VNeID claims go in verbatim (sub, acr, SoDinhDanh, HoVaTen, ...); the
    // protocol claims are written after them so a data file can never override them.
    let mut claims = if facts.minimal {
        let mut only = serde_json::Map::new();
        if let Some(sub) = facts.citizen.claims.get("sub") {
            only.insert("sub".into(), sub.clone());
        }
        only.insert("acr".into(), json!(format!("LoA{}", facts.citizen.level())));
        only
    } else {
        facts.citizen.claims.clone()
    };
    let (iat, exp, auth_time) = if tamper == Tamper::Expired {
        let iat = facts.now.saturating_sub(7200);
        (
            iat,
            facts.now.saturating_sub(3600),
            facts.auth_time.min(iat),
        )
    } else {
        (facts.now, facts.now + ID_TOKEN_TTL_SECS, facts.auth_time)
    };
    let issuer = match tamper {
        Tamper::WrongIssuer => WRONG_ISSUER,
        _ => facts.issuer,
    };
    let audience = match tamper {
        Tamper::WrongAudience => WRONG_AUDIENCE,
        _ => facts.client_id,
    };
    let nonce = match tamper {
        Tamper::MissingNonce => None,
        Tamper::WrongNonce => Some(WRONG_NONCE),
        _ => facts.nonce,
    };
    claims.insert("iss".into(), json!(issuer));
    claims.insert("aud".into(), json!(audience));
    claims.insert("iat".into(), json!(iat));
    claims.insert("exp".into(), json!(exp));
    match tamper {
        Tamper::NoAuthTime => {}
        Tamper::StaleAuthTime => {
            claims.insert("auth_time".into(), json!(auth_time.saturating_sub(7200)));
        }
        _ => {
            claims.insert("auth_time".into(), json!(auth_time));
        }
    }
    match nonce {
        Some(nonce) => claims.insert("nonce".into(), json!(nonce)),
        None => claims.remove("nonce"),
    };
    Value::Object(claims)
}

fn unsigned(claims: &Value) -> serde_json::Result<String> {
    let header = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&json!({"alg": "none"}))?);
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims)?);
    Ok(format!("{header}.{payload}."))
}

fn flip_signature_byte(token: &str) -> anyhow::Result<String> {
    let (signed_part, signature) = token
        .rsplit_once('.')
        .ok_or_else(|| anyhow::anyhow!("encoded JWT has no signature part"))?;
    let mut signature = URL_SAFE_NO_PAD.decode(signature)?;
    let middle = signature.len() / 2;
    let byte = signature
        .get_mut(middle)
        .ok_or_else(|| anyhow::anyhow!("encoded JWT has an empty signature"))?;
    *byte ^= 0xff;
    Ok(format!(
        "{signed_part}.{}",
        URL_SAFE_NO_PAD.encode(signature)
    ))
}
