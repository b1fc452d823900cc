//! OpenID Connect Back-Channel Logout 1.0 as a dispatcher route: when a session ends
//! (`session:ended`), every client that was issued a grant in it and registered a
//! `backchannel_logout_uri` gets a logout token, POSTed form-encoded as `logout_token` (§2.5).
//!
//! The token (§2.4) is built and signed when each attempt is sent, so a retry carries fresh
//! `iat`, `exp` and `jti`: `iss`, `aud` (the client id), `iat`, `exp` (two minutes), `jti`,
//! `sub` as that client sees the person (`issue::subject`), the `sid` its ID tokens carried, and
//! the back-channel logout event; never a `nonce`. Header `typ: logout+jwt` (§2.4, RFC 8725
//! §3.11), signed with the client's ID-token algorithm and key ring, so the RP verifies it as it
//! verifies ID tokens. `sid` is always sent, which satisfies `backchannel_logout_session_required`.
//! 200 and 204 are success (§2.8); anything else is retried.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;

use crate::clients::ClientDirectory;
use crate::crypto::random_token;
use crate::dispatch::{Delivery, OutboundRequest, Planned, Prepared, Route};
use crate::events::{types, StoredEvent};
use crate::oidc::grant_types::issue::subject;
use crate::tokens::refresh_families::GrantStore;
use crate::tokens::TokenSigner;

pub const ROUTE: &str = "backchannel_logout";
pub const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
pub const TYP: &str = "logout+jwt";
/// A logout token is used at once; two minutes cover clock skew.
pub const LIFETIME_SECS: i64 = 120;

/// The logout token's claims (§2.4).
#[derive(Debug, Serialize)]
pub struct LogoutClaims {
    pub iss: String,
    pub aud: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
    pub sub: String,
    pub sid: String,
    pub events: serde_json::Value,
}

/// What a delivery of this route stores: the session and whose it was (the account id, not
/// personal data).
#[derive(Debug, serde::Deserialize, Serialize)]
struct Payload {
    sid: String,
    account_id: String,
}

#[derive(Clone)]
pub struct BackchannelLogout {
    pub clients: ClientDirectory,
    pub grants: Arc<dyn GrantStore>,
    pub signer: TokenSigner,
}

impl BackchannelLogout {
    pub fn of(provider: &crate::oidc::Provider) -> Self {
        Self {
            clients: provider.clients.clone(),
            grants: provider.grants.clone(),
            signer: provider.signer.clone(),
        }
    }
}

#[async_trait]
impl Route for BackchannelLogout {
    fn name(&self) -> &'static str {
        ROUTE
    }

    /// One read of the grants for every ended session of the batch, and one of each client
    /// they name.
    async fn plan_many(&self, events: &[StoredEvent]) -> anyhow::Result<Vec<Vec<Planned>>> {
        let sids: Vec<Option<&str>> = events
            .iter()
            .map(|event| {
                if event.event_type != types::SESSION_ENDED {
                    return None;
                }
                let sid = event.payload.get("sid").and_then(|s| s.as_str());
                if sid.is_none() {
                    tracing::warn!(
                        event = event.id,
                        "session:ended event without sid; nothing to send"
                    );
                }
                sid
            })
            .collect();
        let wanted: Vec<&str> = sids.iter().flatten().copied().collect();
        if wanted.is_empty() {
            return Ok(vec![Vec::new(); events.len()]);
        }
        let parts = self.grants.clients_of_sessions(&wanted).await?;
        // Whether each client named registered a back-channel logout URI, read once.
        let mut registered: HashMap<&str, bool> = HashMap::new();
        for (_, _, client_id) in &parts {
            if !registered.contains_key(client_id.as_str()) {
                let has_uri = self
                    .clients
                    .store()
                    .find(client_id)
                    .await?
                    .is_some_and(|c| c.metadata.backchannel_logout_uri.is_some());
                registered.insert(client_id, has_uri);
            }
        }
        let mut planned = Vec::with_capacity(events.len());
        for (event, sid) in events.iter().zip(sids) {
            let Some(sid) = sid else {
                planned.push(Vec::new());
                continue;
            };
            // The clients that had a grant of this person in this session, each once.
            let targets: BTreeSet<&str> = parts
                .iter()
                .filter(|(s, account, client)| {
                    s == sid
                        && account.as_deref() == Some(event.subject.as_str())
                        && registered.get(client.as_str()) == Some(&true)
                })
                .map(|(_, _, client)| client.as_str())
                .collect();
            let mut deliveries = Vec::with_capacity(targets.len());
            for client_id in targets {
                let payload = Payload {
                    sid: sid.to_string(),
                    account_id: event.subject.clone(),
                };
                deliveries.push(Planned {
                    target: client_id.to_string(),
                    payload: serde_json::to_value(payload)?,
                    ordering: None,
                });
            }
            planned.push(deliveries);
        }
        Ok(planned)
    }

    async fn prepare(&self, delivery: &Delivery, now: i64) -> anyhow::Result<Prepared> {
        let payload: Payload = serde_json::from_value(delivery.payload.clone())?;
        let Some(client) = self.clients.get(&delivery.target).await? else {
            return Ok(Prepared::Cancel("client deleted or disabled"));
        };
        let Some(uri) = client.metadata.backchannel_logout_uri.clone() else {
            return Ok(Prepared::Cancel("client has no backchannel_logout_uri"));
        };
        let claims = LogoutClaims {
            iss: self.signer.issuer().to_string(),
            aud: client.client_id.clone(),
            iat: now,
            exp: now + LIFETIME_SECS,
            jti: random_token(),
            sub: subject(&client, &payload.account_id),
            sid: payload.sid,
            events: serde_json::json!({ EVENT: {} }),
        };
        let token = self.signer.sign(
            client.metadata.id_token_signed_response_alg,
            TYP,
            &claims,
            now,
        )?;
        let body = serde_urlencoded::to_string([("logout_token", token.as_str())])?;
        Ok(Prepared::Send(OutboundRequest {
            url: uri,
            content_type: "application/x-www-form-urlencoded",
            accept: None,
            body: body.into_bytes(),
            success: &[200, 204],
            refused: &[],
            explain: None,
        }))
    }
}
