//! The last step of every login: an authorization code for the request, from the SSO session.

use super::{LoginFlow, Next};
use crate::oidc::authorize::AuthorizeRequest;
use crate::oidc::codes::CodeRecord;
use crate::oidc::error::OAuthError;
use crate::sessions::sso::SsoSession;

impl<'a> LoginFlow<'a> {
    /// A code for `request` in `session`, or `temporarily_unavailable` for the client when the
    /// session store fails (the request is known good, so the error goes back to it).
    pub async fn issue_code(
        &self,
        request: &AuthorizeRequest,
        session: &SsoSession,
        now: i64,
    ) -> Next {
        let p = self.provider;
        let record = CodeRecord {
            client_id: request.client_id.clone(),
            redirect_uri: request.redirect_uri.clone(),
            code_challenge: request.code_challenge.clone(),
            nonce: request.nonce.clone(),
            scope: request.scope.clone(),
            resource: request.resource.clone(),
            account_id: session.account_id.clone(),
            sid: session.sid.clone(),
            auth_time: session.auth_time,
            loa: session.loa,
            amr: session.amr.clone(),
            id_token_claims: request.id_token_claims.clone(),
            dpop_jkt: request.dpop_jkt.clone(),
            grant_id: uuid::Uuid::now_v7().to_string(),
            device_id: request.device_id.clone(),
            expires_at: now + p.tokens.code_ttl_secs as i64,
        };
        let result = p
            .codes
            .issue(record)
            .await
            .map_err(|e| OAuthError::unavailable(&e));
        self.to_client(&request.redirect_uri, request.state.as_deref(), result)
    }
}
