//! Security Event Tokens (RFC 8417) pushed to subscribers (RFC 8935), as a dispatcher route.
//!
//! A client subscribes in its registration (`event_delivery_uri`, `event_types`). An event goes
//! to a subscriber only if the person it is about has, or had, a grant at that client: a system
//! with no business with a citizen learns nothing of them (the personal-data law). Who is told
//! is decided once, when the event is fanned out.
//!
//! One SET per subscriber and event, built when it is sent: header `typ: secevent+jwt` (§2.3),
//! signed with the client's ID-token algorithm and the broker's keys (verifiable through the
//! JWKS, as its ID tokens are); claims `iss`, `aud` (the client), `iat`, `jti`, `txn` (the
//! outbox event id), `toe` (when it happened), `sub_id` (RFC 9493 `opaque`, the `sub` of that
//! client's ID tokens, `issue::subject`) and `events: {type: {payload…, "seq": n}}`.
//!
//! - **`jti` is the delivery's id**, the same in every attempt (`iat` too: the SET is issued
//!   once, at fan-out), so a receiver that got an attempt whose answer was lost recognises the
//!   retry (RFC 8935 §2: the recipient deduplicates by `jti`). An operator's replay is a new
//!   delivery, hence a new `jti`, with the same `txn` and `seq`.
//! - **Order**: deliveries carry the subject and its `seq`, and the dispatcher sends one
//!   subject's events to one subscriber one after the other (`dispatch::Ordering`). A
//!   subscriber still drops any `seq` at or below what it has applied (a replay, or a delivery
//!   after a dead letter).
//! - **Answers** (RFC 8935 §2.2–2.4): 202 is success (200 and 204 are taken as success too:
//!   they also say the SET arrived, and retrying would only repeat it). 400 means the recipient
//!   refused this SET (its `err`: `invalid_request`, `invalid_key`, …); the same SET would be
//!   refused again, so the delivery fails at once, visible to operators with the `err` code.
//!   Anything else (401, 403, 404, 5xx, timeouts) is retried with backoff until
//!   `dispatch.max_attempts`.

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::clients::{Client, ClientDirectory};
use crate::dispatch::{Delivery, Ordering, OutboundRequest, Planned, Prepared, Route};
use crate::events::StoredEvent;
use crate::oidc::grant_types::issue::subject;
use crate::tokens::TokenSigner;

pub const ROUTE: &str = "security_event";
/// RFC 8417 §2.3.
pub const TYP: &str = "secevent+jwt";
/// RFC 8935 §2.
pub const CONTENT_TYPE: &str = "application/secevent+jwt";

/// The RFC 8935 §2.4 / §7.1 error codes; any other `err` is recorded as plain `refused`.
const ERROR_CODES: &[&str] = &[
    "invalid_request",
    "invalid_key",
    "invalid_issuer",
    "invalid_audience",
    "authentication_failed",
    "access_denied",
];

/// Which clients people have, or had, a grant at (SQL in `store/subscribers.rs`).
#[async_trait]
pub trait GrantedClients: Send + Sync {
    /// For several people in one read: account id → client ids (people with no grant may be
    /// absent).
    async fn clients_granted_to(
        &self,
        account_ids: &[&str],
    ) -> anyhow::Result<std::collections::HashMap<String, Vec<String>>>;
}

/// What a delivery of this route stores: the event as the outbox holds it (no personal data).
#[derive(Debug, Deserialize, Serialize)]
struct Payload {
    account_id: String,
    event_type: String,
    seq: i64,
    toe: i64,
    event: serde_json::Value,
}

/// The SET's claims (RFC 8417 §2.2, RFC 9493 `sub_id`).
#[derive(Debug, Serialize)]
pub struct SetClaims {
    pub iss: String,
    pub aud: String,
    pub iat: i64,
    pub jti: String,
    pub txn: String,
    pub toe: i64,
    pub sub_id: serde_json::Value,
    pub events: serde_json::Value,
}

#[derive(Clone)]
pub struct SecurityEvents {
    pub clients: ClientDirectory,
    pub grants: Arc<dyn GrantedClients>,
    pub signer: TokenSigner,
}

/// Whether `client` wants events of this type pushed.
fn subscribes(client: &Client, event_type: &str) -> bool {
    client.metadata.event_delivery_uri.is_some()
        && client.metadata.event_types.iter().any(|t| t == event_type)
}

/// A role's app roles (client id → codes) as `client` sees them: its own codes that it still
/// declares, as its `roles` claim shows them.
fn own_app_roles(event: &serde_json::Value, member: &str, client: &Client) -> Vec<String> {
    event
        .get(member)
        .and_then(|per_client| per_client.get(&client.client_id))
        .and_then(serde_json::Value::as_array)
        .map(|codes| {
            codes
                .iter()
                .filter_map(serde_json::Value::as_str)
                .filter(|code| client.metadata.declared_role(code).is_some())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Whether a role event concerns `client`: a client that declares app roles hears only of the
/// roles that give it some (now or, for a change, before), as its `roles` claim shows only
/// those; a client that declares none hears of every role of its people.
fn concerns(client: &Client, event_type: &str, event: &serde_json::Value) -> bool {
    if !event_type.starts_with(ROLE_EVENTS) || client.metadata.roles.is_empty() {
        return true;
    }
    !own_app_roles(event, "app_roles", client).is_empty()
        || !own_app_roles(event, "replaced_app_roles", client).is_empty()
}

const ROLE_EVENTS: &str = "urn:vn:hue:broker:event:role:";

/// The event's claim value: its payload with the subject's `seq` added, and a role's
/// `app_roles` (and a change's `replaced_app_roles`) narrowed to the receiving client's codes.
fn event_value(payload: &Payload, client: &Client) -> serde_json::Value {
    let mut value = match &payload.event {
        serde_json::Value::Object(map) => map.clone(),
        _ => serde_json::Map::new(),
    };
    for member in ["app_roles", "replaced_app_roles"] {
        if value.contains_key(member) {
            let own = own_app_roles(&payload.event, member, client);
            value.insert(member.into(), own.into());
        }
    }
    value.insert("seq".into(), payload.seq.into());
    serde_json::Value::Object(value)
}

/// A 400's RFC 8935 error as the fixed summary operators see.
fn explain_refusal(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct SetError {
        err: String,
    }
    match serde_json::from_slice::<SetError>(body) {
        Ok(e) if ERROR_CODES.contains(&e.err.as_str()) => format!("refused: {}", e.err),
        _ => "refused".to_string(),
    }
}

#[async_trait]
impl Route for SecurityEvents {
    fn name(&self) -> &'static str {
        ROUTE
    }

    /// One read of the grants for the whole batch, instead of one per event.
    async fn plan_many(&self, events: &[StoredEvent]) -> anyhow::Result<Vec<Vec<Planned>>> {
        let mut subjects: Vec<&str> = events.iter().map(|e| e.subject.as_str()).collect();
        subjects.sort_unstable();
        subjects.dedup();
        let granted = self.grants.clients_granted_to(&subjects).await?;
        let mut planned = Vec::with_capacity(events.len());
        for event in events {
            let targets = granted.get(&event.subject).cloned().unwrap_or_default();
            planned.push(self.plan_for(event, targets).await?);
        }
        Ok(planned)
    }

    async fn prepare(&self, delivery: &Delivery, now: i64) -> anyhow::Result<Prepared> {
        self.prepare_delivery(delivery, now).await
    }
}

impl SecurityEvents {
    /// The deliveries of `event` to the clients among `targets` that want it.
    async fn plan_for(
        &self,
        event: &StoredEvent,
        mut targets: Vec<String>,
    ) -> anyhow::Result<Vec<Planned>> {
        targets.sort_unstable();
        targets.dedup();
        let mut planned = Vec::new();
        for client_id in targets {
            let wanted = self.clients.get(&client_id).await?.is_some_and(|c| {
                subscribes(&c, &event.event_type) && concerns(&c, &event.event_type, &event.payload)
            });
            if !wanted {
                continue;
            }
            let payload = Payload {
                account_id: event.subject.clone(),
                event_type: event.event_type.clone(),
                seq: event.seq,
                toe: event.created_at,
                event: event.payload.clone(),
            };
            planned.push(Planned {
                target: client_id,
                payload: serde_json::to_value(payload)?,
                ordering: Some(Ordering {
                    subject: event.subject.clone(),
                    seq: event.seq,
                }),
            });
        }
        Ok(planned)
    }

    async fn prepare_delivery(&self, delivery: &Delivery, now: i64) -> anyhow::Result<Prepared> {
        let payload: Payload = serde_json::from_value(delivery.payload.clone())?;
        let Some(client) = self.clients.get(&delivery.target).await? else {
            return Ok(Prepared::Cancel("client deleted or disabled"));
        };
        if !subscribes(&client, &payload.event_type) {
            return Ok(Prepared::Cancel(
                "client no longer subscribes to this event",
            ));
        }
        let Some(uri) = client.metadata.event_delivery_uri.clone() else {
            return Ok(Prepared::Cancel("client has no event_delivery_uri"));
        };
        let claims = SetClaims {
            iss: self.signer.issuer().to_string(),
            aud: client.client_id.clone(),
            iat: delivery.created_at,
            jti: delivery.id.clone(),
            txn: delivery.event_id.to_string(),
            toe: payload.toe,
            sub_id: serde_json::json!({
                "format": "opaque",
                "id": subject(&client, &payload.account_id),
            }),
            events: serde_json::json!({
                payload.event_type.clone(): event_value(&payload, &client)
            }),
        };
        let token = self.signer.sign(
            client.metadata.id_token_signed_response_alg,
            TYP,
            &claims,
            now,
        )?;
        Ok(Prepared::Send(OutboundRequest {
            url: uri,
            content_type: CONTENT_TYPE,
            accept: Some("application/json"),
            body: token.into_bytes(),
            success: &[202, 200, 204],
            refused: &[400],
            explain: Some(explain_refusal),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(id: &str, roles: &[&str]) -> Client {
        let mut metadata: crate::clients::ClientMetadata =
            serde_json::from_value(serde_json::json!({
                "client_name": id, "redirect_uris": [], "grant_types": [],
                "token_endpoint_auth_method": "none", "scope": "openid",
            }))
            .unwrap();
        metadata.roles = roles
            .iter()
            .map(|code| crate::clients::DeclaredRole {
                code: code.to_string(),
                name: code.to_string(),
                name_en: None,
            })
            .collect();
        Client {
            client_id: id.into(),
            secret_hash: None,
            metadata,
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn refusals_keep_only_registered_error_codes() {
        let known = br#"{"err":"invalid_key","description":"Nguyen Van A's key is unknown"}"#;
        assert_eq!(explain_refusal(known), "refused: invalid_key");
        assert_eq!(explain_refusal(br#"{"err":"whatever"}"#), "refused");
        assert_eq!(explain_refusal(b"<html>"), "refused");
    }

    #[test]
    fn the_event_value_carries_seq() {
        let payload = Payload {
            account_id: "a".into(),
            event_type: "t".into(),
            seq: 7,
            toe: 1,
            event: serde_json::json!({"fields": ["phone"]}),
        };
        assert_eq!(
            event_value(&payload, &client("c", &[])),
            serde_json::json!({"fields": ["phone"], "seq": 7})
        );
    }

    #[test]
    fn a_subscriber_sees_only_its_own_declared_app_roles_and_only_roles_that_concern_it() {
        let event = serde_json::json!({
            "app_roles": {"c1": ["editor", "gone"], "c2": ["admin"]},
            "replaced_app_roles": {"c3": ["viewer"]},
        });
        let payload = Payload {
            account_id: "a".into(),
            event_type: "urn:vn:hue:broker:event:role:changed".into(),
            seq: 3,
            toe: 1,
            event: event.clone(),
        };
        let c1 = client("c1", &["editor"]);
        assert_eq!(
            event_value(&payload, &c1),
            serde_json::json!({"app_roles": ["editor"], "replaced_app_roles": [], "seq": 3}),
            "a code c1 no longer declares is dropped"
        );
        let kind = "urn:vn:hue:broker:event:role:changed";
        assert!(concerns(&c1, kind, &event));
        assert!(
            concerns(&client("c3", &["viewer"]), kind, &event),
            "it loses its role"
        );
        assert!(
            !concerns(&client("c4", &["editor"]), kind, &event),
            "nothing of c4's"
        );
        assert!(
            concerns(&client("c5", &[]), kind, &event),
            "declares none: every post"
        );
        assert!(concerns(
            &client("c4", &["editor"]),
            "urn:vn:hue:broker:event:session:ended",
            &event
        ));
    }
}
