//! What every instance must learn as soon as it is committed anywhere: revocations (the
//! revocation set, `revocations.rs`) and changes to what userinfo releases about an account
//! (the released-claims cache, `released.rs`). SQL stays the truth; these are per-instance
//! copies, kept current by the store (`store/changes.rs`): at commit on the instance that made
//! the change, and on PostgreSQL by `LISTEN/NOTIFY` on every other one, with a catch-up read
//! after any reconnect and every few seconds. While an instance cannot vouch for its copy (its
//! listener is down), both say so and callers read SQL.

pub mod released;
pub mod revocations;

pub use released::{Released, ReleasedCache};
pub use revocations::{Revocations, Revoked, Standing};

/// The notification channel of revocations: `g {revoked_at} {grant id}` or
/// `a {expires_at} {jti hash}` (written by the triggers of migration 0014).
pub const REVOCATIONS_CHANNEL: &str = "broker_revocations";
/// The notification channel of account changes: an account id, or `*` for every account.
pub const ACCOUNTS_CHANNEL: &str = "broker_accounts";

/// The per-instance copies, shared by the store (which keeps them current) and the provider
/// (which reads them).
#[derive(Clone)]
pub struct Changes {
    pub revocations: Revocations,
    pub released: ReleasedCache,
}

impl Changes {
    /// `vouched`: whether the copies are trustworthy from the start (SQLite, one process, every
    /// write through this one); on PostgreSQL the listener vouches once it has caught up.
    pub fn new(vouched: bool) -> Self {
        Self {
            revocations: Revocations::new(vouched),
            released: ReleasedCache::new(released::CAPACITY, vouched),
        }
    }

    /// Applies one notification; an unknown one is ignored (and logged).
    pub fn apply_notification(&self, channel: &str, payload: &str) {
        match channel {
            REVOCATIONS_CHANNEL => match Revoked::parse(payload) {
                Some(revoked) => self.revocations.apply(revoked),
                None => tracing::warn!("unreadable revocation notification"),
            },
            ACCOUNTS_CHANNEL if payload == "*" => self.released.invalidate_all(),
            ACCOUNTS_CHANNEL => self.released.invalidate(payload),
            _ => {}
        }
    }

    /// Whether both copies may be trusted (the listener is connected and caught up).
    pub fn set_vouched(&self, vouched: bool) {
        self.revocations.set_vouched(vouched);
        self.released.set_vouched(vouched);
    }
}
