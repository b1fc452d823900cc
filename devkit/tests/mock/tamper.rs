//! Each tamper mode puts exactly its defect into the ID token; key rotation changes the kid.

use broker_devkit::mock_vneid::Tamper;
use jsonwebtoken::errors::ErrorKind;
use serde_json::Value;

use crate::support::*;

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

#[actix_web::test]
async fn every_tamper_mode_produces_its_defect() {
    let t = spawn_mock(vec![]);
    let modes = [
        Tamper::BadSignature,
        Tamper::WrongNonce,
        Tamper::WrongAudience,
        Tamper::WrongIssuer,
        Tamper::Expired,
        Tamper::AlgNone,
        Tamper::MissingNonce,
        Tamper::NoAuthTime,
        Tamper::StaleAuthTime,
    ];
    for mode in modes {
        t.mock.set_tamper(mode);
        // The mode applies to this and every following token response.
        for _ in 0..2 {
            let tokens = t.login("C01").await;
            let id_token = tokens["id_token"].as_str().unwrap();
            check_defect(&t, mode, id_token).await;
        }
    }
    t.mock.set_tamper(Tamper::None);
    let tokens = t.login("C01").await;
    let claims = t
        .verify(tokens["id_token"].as_str().unwrap())
        .await
        .unwrap()
        .claims;
    assert_eq!(claims["nonce"], NONCE);
}

async fn check_defect(t: &TestMock, mode: Tamper, id_token: &str) {
    let (header, claims, signature) = unverified_parts(id_token);
    let verified = t.verify(id_token).await;
    let rejected_as = |kind: fn(&ErrorKind) -> bool| match &verified {
        Err(e) => kind(e.kind()),
        Ok(_) => false,
    };
    match mode {
        Tamper::BadSignature => {
            assert!(
                rejected_as(|k| matches!(k, ErrorKind::InvalidSignature)),
                "{verified:?}"
            );
            assert_eq!(claims["nonce"], NONCE);
        }
        Tamper::WrongNonce => {
            assert!(verified.is_ok());
            assert!(claims["nonce"].is_string() && claims["nonce"] != NONCE);
        }
        Tamper::WrongAudience => {
            assert!(
                rejected_as(|k| matches!(k, ErrorKind::InvalidAudience)),
                "{verified:?}"
            );
            assert_ne!(claims["aud"], CLIENT_ID);
        }
        Tamper::WrongIssuer => {
            assert!(
                rejected_as(|k| matches!(k, ErrorKind::InvalidIssuer)),
                "{verified:?}"
            );
            assert_ne!(claims["iss"], t.issuer.as_str());
        }
        Tamper::Expired => {
            assert!(
                rejected_as(|k| matches!(k, ErrorKind::ExpiredSignature)),
                "{verified:?}"
            );
            assert!(claims["exp"].as_u64().unwrap() < now());
            assert!(claims["iat"].as_u64().unwrap() + 3600 < now());
        }
        Tamper::AlgNone => {
            assert!(verified.is_err());
            assert_eq!(header, serde_json::json!({"alg": "none"}));
            assert!(signature.is_empty());
            assert_eq!(claims["nonce"], NONCE);
        }
        Tamper::MissingNonce => {
            assert!(verified.is_ok());
            assert!(claims.get("nonce").is_none());
        }
        Tamper::NoAuthTime => {
            assert!(verified.is_ok());
            assert!(claims.get("auth_time").is_none());
        }
        Tamper::StaleAuthTime => {
            assert!(verified.is_ok());
            assert!(claims["auth_time"].as_u64().unwrap() + 3600 < now());
        }
        // These change the authorization response, not the ID token.
        Tamper::CallbackNoIss | Tamper::CallbackWrongIss => {
            assert!(verified.is_ok());
        }
        // These change the token endpoint's availability, userinfo or variant C's envelopes
        // (tested through the broker: tests/api/federation.rs), never the ID token.
        Tamper::TokenHangs
        | Tamper::TokenFails
        | Tamper::TokenRefusesPlainly
        | Tamper::UserinfoOtherSub
        | Tamper::EnvelopeBadKey
        | Tamper::EnvelopeBadData => {
            assert!(verified.is_ok());
        }
        Tamper::None => unreachable!(),
    }
    // Every defect leaves the identity claims intact, so only the defect trips the broker.
    assert_eq!(claims["SoDinhDanh"], "046085690467");
}

#[actix_web::test]
async fn rotation_publishes_only_the_new_key() {
    let t = spawn_mock(vec![]);
    let old = t.jwks().await.keys[0].common.key_id.clone().unwrap();
    t.mock.rotate_key().unwrap();
    let jwks = t.jwks().await;
    assert_eq!(jwks.keys.len(), 1);
    let new = jwks.keys[0].common.key_id.clone().unwrap();
    assert_ne!(old, new);
    let tokens: Value = t.login("C05").await;
    let token = t
        .verify(tokens["id_token"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(token.header.kid.as_deref(), Some(new.as_str()));
}

/// `--hang-one-in 3`: the third token call (and the sixth) gets no answer, the others answer
/// at once; a caller's timeout sees the hang.
#[actix_web::test]
async fn one_token_call_in_n_hangs() {
    let t = spawn_mock(vec![]);
    t.mock.set_hang_one_in(3);
    let mut answered = Vec::new();
    for _ in 0..6 {
        let code = t.code("C01").await;
        let call = t.token(&code, Some(VERIFIER));
        let within = tokio::time::timeout(std::time::Duration::from_millis(1500), call).await;
        answered.push(within.is_ok_and(|r| r.status() == 200));
    }
    assert_eq!(answered, [true, true, false, true, true, false]);
    t.mock.set_hang_one_in(0);
    t.login("C01").await;
}
