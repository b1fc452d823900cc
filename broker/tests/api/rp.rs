//! A relying party none of us wrote — the `openidconnect` crate — logs in through the broker:
//! discovery, code + PKCE, ID token validation against the JWKS, userinfo, refresh.

use openidconnect::core::{CoreClient, CoreProviderMetadata, CoreUserInfoClaims};
use openidconnect::{
    AuthenticationFlow, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce,
    OAuth2TokenResponse, PkceCodeChallenge, RedirectUrl, Scope, TokenResponse,
};

use crate::on_both_backends;
use crate::support::browser::{location, query_of, Browser};
use crate::support::TestApp;

on_both_backends!(openidconnect_crate_logs_in, |app: TestApp| async move {
    let client = app.confidential_client().await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("http");
    let metadata = CoreProviderMetadata::discover_async(
        IssuerUrl::new(app.url.clone()).expect("issuer"),
        &http,
    )
    .await
    .expect("discovery through openidconnect");
    let rp = CoreClient::from_provider_metadata(
        metadata,
        ClientId::new(client.id.clone()),
        client.secret.clone().map(ClientSecret::new),
    )
    .set_redirect_uri(RedirectUrl::new(client.redirect_uri.clone()).expect("redirect"));
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (auth_url, csrf, nonce) = rp
        .authorize_url(
            AuthenticationFlow::<openidconnect::core::CoreResponseType>::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("profile".into()))
        .add_extra_param("login_hint", "C01")
        .set_pkce_challenge(challenge)
        .url();

    let browser = Browser::new();
    let back = browser
        .through_upstream(browser.get(auth_url.as_str()).await)
        .await;
    let params = query_of(&location(&back));
    assert_eq!(
        params.get("state").map(String::as_str),
        Some(csrf.secret().as_str())
    );
    assert_eq!(
        params.get("iss").map(String::as_str),
        Some(app.url.as_str())
    );

    let tokens = rp
        .exchange_code(AuthorizationCode::new(params["code"].clone()))
        .expect("token endpoint")
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .expect("code exchange");
    let id_token = tokens.id_token().expect("an ID token");
    let claims = id_token
        .claims(&rp.id_token_verifier(), &nonce)
        .expect("ID token verifies (RS256 via JWKS)");
    assert_eq!(claims.issuer().as_str(), app.url);
    assert_eq!(
        claims.auth_context_ref().map(|a| a.as_str()),
        Some("urn:vn:hue:broker:loa:2")
    );
    let name = claims
        .name()
        .and_then(|n| n.get(None))
        .map(|n| n.as_str().to_string());
    assert_eq!(name.as_deref(), Some("Võ Hữu Tài"));
    assert_eq!(claims.birthdate().map(|b| b.as_str()), Some("1985-03-12"));

    let userinfo: CoreUserInfoClaims = rp
        .user_info(tokens.access_token().clone(), None)
        .expect("userinfo endpoint")
        .request_async(&http)
        .await
        .expect("userinfo");
    assert_eq!(userinfo.subject(), claims.subject());

    let refreshed = rp
        .exchange_refresh_token(tokens.refresh_token().expect("a refresh token"))
        .expect("token endpoint")
        .request_async(&http)
        .await
        .expect("refresh");
    assert_ne!(
        refreshed.refresh_token().map(|t| t.secret()),
        tokens.refresh_token().map(|t| t.secret()),
        "refresh tokens rotate"
    );
    assert!(!refreshed.access_token().secret().is_empty());
});
