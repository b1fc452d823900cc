//! Account events for the systems that depend on the broker. Each change writes its event into
//! the outbox in the same transaction as the change itself, so that no committed change lacks
//! its event and no event describes a change that rolled back. Events are numbered per subject
//! (`seq`), so a subscriber can apply them in order and notice a gap. The dispatcher
//! (`crate::dispatch`) reads the outbox and asks its routes what each event delivers:
//! back-channel logout tokens for `session:ended`, and Security Event Tokens for the clients
//! that subscribed (`delivery.rs`). SQL in `store/events.rs`.

pub mod delivery;

use async_trait::async_trait;

use crate::transaction::Transaction;

/// The event types, URIs under the broker's namespace (RFC 8417 §2.2).
pub mod types {
    /// Every event type starts with this; subscribers register types under it.
    pub const NAMESPACE: &str = "urn:vn:hue:broker:event:";
    pub const ACCOUNT_CREATED: &str = "urn:vn:hue:broker:event:account:created";
    pub const ACCOUNT_LINKED: &str = "urn:vn:hue:broker:event:account:linked";
    pub const ACCOUNT_UNLINKED: &str = "urn:vn:hue:broker:event:account:unlinked";
    pub const ACCOUNT_UPDATED: &str = "urn:vn:hue:broker:event:account:updated";
    /// A broker session ended (logout, eviction, an administrator); payload `{sid, reason}`.
    pub const SESSION_ENDED: &str = "urn:vn:hue:broker:event:session:ended";
    /// A civil servant's role (`crate::roles`); payload `{role_id, state, org_unit, category,
    /// position, app_roles[, replaces]}`, `app_roles` narrowed to the subscriber's own codes.
    pub const ROLE_REQUESTED: &str = "urn:vn:hue:broker:event:role:requested";
    pub const ROLE_APPROVED: &str = "urn:vn:hue:broker:event:role:approved";
    pub const ROLE_REJECTED: &str = "urn:vn:hue:broker:event:role:rejected";
    /// A change request was approved: this role replaces the one named by `replaces`.
    pub const ROLE_CHANGED: &str = "urn:vn:hue:broker:event:role:changed";
    pub const ROLE_REVOKED: &str = "urn:vn:hue:broker:event:role:revoked";
    pub const ROLE_WITHDRAWN: &str = "urn:vn:hue:broker:event:role:withdrawn";

    /// The types a client may subscribe to (`event_types`); a new type is added here too.
    pub const ALL: &[&str] = &[
        ACCOUNT_CREATED,
        ACCOUNT_LINKED,
        ACCOUNT_UNLINKED,
        ACCOUNT_UPDATED,
        SESSION_ENDED,
        ROLE_REQUESTED,
        ROLE_APPROVED,
        ROLE_REJECTED,
        ROLE_CHANGED,
        ROLE_REVOKED,
        ROLE_WITHDRAWN,
    ];

    pub fn is_known(event_type: &str) -> bool {
        ALL.contains(&event_type)
    }
}

/// One event as written.
#[derive(Debug)]
pub struct Event<'a> {
    /// Whom it is about: an account id.
    pub subject: &'a str,
    pub event_type: &'static str,
    /// What changed, without personal data (subscribers read that through their own grants).
    pub payload: serde_json::Value,
    pub at: i64,
}

/// An event as stored, with its number.
#[derive(Clone, Debug, serde::Serialize)]
pub struct StoredEvent {
    pub id: i64,
    pub subject: String,
    pub seq: i64,
    pub event_type: String,
    pub payload: serde_json::Value,
    pub created_at: i64,
}

#[async_trait]
pub trait Outbox: Send + Sync {
    /// Appends within the caller's transaction and returns the event's number for its subject.
    async fn append(&self, tx: &mut Transaction, event: &Event<'_>) -> anyhow::Result<i64>;
    /// A subject's events in order (for the admin API and the tests).
    async fn of_subject(&self, subject: &str) -> anyhow::Result<Vec<StoredEvent>>;
}
