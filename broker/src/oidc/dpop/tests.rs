//! The proof checks of §4.3, one rule per test, with keys made here.

use jsonwebtoken::signature::Signer;
use serde_json::{json, Value};

use super::*;
use crate::crypto::b64url;
use crate::sessions::memory::MemoryStore;
use crate::tokens::keys::generate::generate;
use crate::tokens::keys::signer::PreparedKey;
use crate::tokens::keys::Alg;

const NOW: i64 = 1_700_000_000;
const URL: &str = "https://id.example.vn/token";

struct TestKey {
    alg: Alg,
    signer: PreparedKey,
    jwk: Value,
}

fn key(alg: Alg) -> TestKey {
    let generated = generate(alg, "k").unwrap();
    let mut jwk = generated.public_jwk;
    for member in ["kid", "use", "alg"] {
        jwk.as_object_mut().unwrap().remove(member);
    }
    TestKey {
        alg,
        signer: PreparedKey::from_pkcs8(alg, &generated.pkcs8).unwrap(),
        jwk,
    }
}

fn sign(key: &TestKey, header: &Value, claims: &Value) -> String {
    let message = format!(
        "{}.{}",
        b64url(&serde_json::to_vec(header).unwrap()),
        b64url(&serde_json::to_vec(claims).unwrap())
    );
    let signature: Vec<u8> = key.signer.try_sign(message.as_bytes()).unwrap();
    format!("{message}.{}", b64url(&signature))
}

fn header(key: &TestKey) -> Value {
    json!({"typ": "dpop+jwt", "alg": key.alg.as_str(), "jwk": key.jwk})
}

fn claims() -> Value {
    json!({"jti": crate::crypto::random_token(), "htm": "POST", "htu": URL, "iat": NOW})
}

fn target() -> ProofTarget<'static> {
    ProofTarget {
        method: "POST",
        url: URL,
        access_token: None,
    }
}

fn refused(proof: &str, target: ProofTarget<'_>) -> &'static str {
    match check(proof, target, NOW) {
        Err(DpopError::Invalid(why)) => why,
        other => panic!("accepted or failed otherwise: {other:?}"),
    }
}

#[test]
fn a_good_proof_of_every_supported_alg_gives_the_rfc_7638_thumbprint() {
    for alg in [Alg::ES256, Alg::RS256, Alg::EdDSA] {
        let k = key(alg);
        let (proof, _) = check(&sign(&k, &header(&k), &claims()), target(), NOW).unwrap();
        let jwk: Jwk = serde_json::from_value(k.jwk.clone()).unwrap();
        assert_eq!(proof.jkt, jwk.thumbprint(ThumbprintHash::SHA256).unwrap());
        assert!(valid_jkt(&proof.jkt), "{alg:?}");
    }
}

/// RFC 7638 §3.1's example key and thumbprint.
#[test]
fn thumbprint_matches_the_rfc_example() {
    let jwk: Jwk = serde_json::from_value(json!({
        "kty": "RSA",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29"
    }))
    .unwrap();
    assert_eq!(
        jwk.thumbprint(ThumbprintHash::SHA256).unwrap(),
        "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    );
}

#[test]
fn typ_must_be_dpop_jwt() {
    let k = key(Alg::ES256);
    for typ in [json!("JWT"), json!("at+jwt"), Value::Null] {
        let mut h = header(&k);
        h["typ"] = typ;
        assert!(refused(&sign(&k, &h, &claims()), target()).contains("typ"));
    }
}

#[test]
fn alg_none_and_hmac_are_refused() {
    let k = key(Alg::ES256);
    let mut h = header(&k);
    h["alg"] = json!("none");
    let unsigned = format!(
        "{}.{}.",
        b64url(&serde_json::to_vec(&h).unwrap()),
        b64url(&serde_json::to_vec(&claims()).unwrap())
    );
    assert!(refused(&unsigned, target()).contains("alg"));
    h["alg"] = json!("HS256");
    assert!(refused(&sign(&k, &h, &claims()), target()).contains("alg"));
}

#[test]
fn a_private_or_symmetric_jwk_is_refused() {
    let k = key(Alg::ES256);
    let mut h = header(&k);
    h["jwk"]["d"] = json!("c2VjcmV0");
    assert!(refused(&sign(&k, &h, &claims()), target()).contains("public key"));
    let mut h = header(&k);
    h["jwk"] = json!({"kty": "oct", "k": "c2VjcmV0"});
    assert!(check(&sign(&k, &h, &claims()), target(), NOW).is_err());
}

#[test]
fn the_key_must_suit_the_alg_and_have_signed() {
    let k = key(Alg::ES256);
    let other = key(Alg::ES256);
    let mut h = header(&k);
    h["jwk"] = other.jwk.clone();
    assert!(refused(&sign(&k, &h, &claims()), target()).contains("signature"));
    let rsa = key(Alg::RS256);
    let mut h = header(&k);
    h["jwk"] = rsa.jwk.clone();
    assert!(refused(&sign(&k, &h, &claims()), target()).contains("suit"));
    let mut h = header(&k);
    h.as_object_mut().unwrap().remove("jwk");
    assert!(refused(&sign(&k, &h, &claims()), target()).contains("jwk"));
}

#[test]
fn a_non_base64url_key_member_is_refused() {
    let k = key(Alg::ES256);
    let mut h = header(&k);
    let x = h["jwk"]["x"].as_str().unwrap().to_string();
    h["jwk"]["x"] = json!(format!("{x}\",\"y\":\""));
    assert!(refused(&sign(&k, &h, &claims()), target()).contains("malformed"));
}

#[test]
fn htm_and_htu_must_name_this_request() {
    let k = key(Alg::ES256);
    let mut c = claims();
    c["htm"] = json!("GET");
    assert!(refused(&sign(&k, &header(&k), &c), target()).contains("htm"));
    for htu in [
        "https://id.example.vn/userinfo",
        "https://other.example.vn/token",
        "http://id.example.vn/token",
        "https://user@id.example.vn/token",
        "/token",
    ] {
        let mut c = claims();
        c["htu"] = json!(htu);
        assert!(
            refused(&sign(&k, &header(&k), &c), target()).contains("htu"),
            "{htu}"
        );
    }
    // Query and fragment are ignored (§4.3 point 9); the host's case and a default port are
    // normalised.
    for htu in [
        "https://id.example.vn/token?x=1#f",
        "https://ID.example.vn:443/token",
    ] {
        let mut c = claims();
        c["htu"] = json!(htu);
        assert!(
            check(&sign(&k, &header(&k), &c), target(), NOW).is_ok(),
            "{htu}"
        );
    }
}

#[test]
fn iat_must_be_recent() {
    let k = key(Alg::ES256);
    for (iat, ok) in [
        (NOW - 60, true),
        (NOW - 61, false),
        (NOW + 5, true),
        (NOW + 6, false),
    ] {
        let mut c = claims();
        c["iat"] = json!(iat);
        assert_eq!(
            check(&sign(&k, &header(&k), &c), target(), NOW).is_ok(),
            ok,
            "iat {iat}"
        );
    }
    let mut c = claims();
    c.as_object_mut().unwrap().remove("iat");
    assert!(check(&sign(&k, &header(&k), &c), target(), NOW).is_err());
}

#[test]
fn jti_is_required() {
    let k = key(Alg::ES256);
    let mut c = claims();
    c["jti"] = json!("");
    assert!(refused(&sign(&k, &header(&k), &c), target()).contains("jti"));
    c.as_object_mut().unwrap().remove("jti");
    assert!(check(&sign(&k, &header(&k), &c), target(), NOW).is_err());
}

#[test]
fn ath_must_hash_the_presented_access_token() {
    let k = key(Alg::ES256);
    let with_token = ProofTarget {
        access_token: Some("the-token"),
        ..target()
    };
    assert!(refused(&sign(&k, &header(&k), &claims()), with_token).contains("ath"));
    let mut c = claims();
    c["ath"] = json!(access_token_hash("another-token"));
    assert!(refused(&sign(&k, &header(&k), &c), with_token).contains("ath"));
    c["ath"] = json!(access_token_hash("the-token"));
    assert!(check(&sign(&k, &header(&k), &c), with_token, NOW).is_ok());
}

#[test]
fn oversized_and_malformed_proofs_are_refused() {
    assert!(check("", target(), NOW).is_err());
    assert!(check("a.b", target(), NOW).is_err());
    assert!(check("a.b.c.d", target(), NOW).is_err());
    assert!(check(&"a".repeat(MAX_PROOF_LEN + 1), target(), NOW).is_err());
}

#[tokio::test]
async fn a_proof_is_accepted_once() {
    let verifier = DpopVerifier::new(Arc::new(MemoryStore::new()));
    let k = key(Alg::ES256);
    let proof = sign(&k, &header(&k), &claims());
    assert!(verifier.verify(&proof, target(), NOW).await.is_ok());
    match verifier.verify(&proof, target(), NOW).await {
        Err(DpopError::Invalid(why)) => assert!(why.contains("already used")),
        other => panic!("a replay was not refused: {other:?}"),
    }
    // A refused proof spends nothing: its jti stays usable once it is right.
    let mut c = claims();
    c["htm"] = json!("GET");
    let wrong = sign(&k, &header(&k), &c);
    assert!(verifier.verify(&wrong, target(), NOW).await.is_err());
    c["htm"] = json!("POST");
    assert!(verifier
        .verify(&sign(&k, &header(&k), &c), target(), NOW)
        .await
        .is_ok());
}
