//! Background jobs of every instance: key-ring reload and scheduled rotation, and the hourly
//! purge of expired tokens. (The limiters' and budgets' own clean-ups live with them.)

use std::sync::Arc;
use std::time::Duration;

use crate::clock::SharedClock;
use crate::tokens::keys::keyring::KeyRing;
use crate::tokens::keys::rotation::{rotate_due, RotationTimings};
use crate::tokens::refresh_families::GrantStore;

/// When the key ring is re-read and when a key is old enough to rotate.
pub struct KeyMaintenance {
    pub every: Duration,
    /// Rotate a key this old (0: never).
    pub max_age_secs: i64,
    pub timings: RotationTimings,
}

/// Re-reads the key ring now and then (another instance may have rotated) and starts the
/// scheduled rotation when a key is due.
pub fn spawn_key_maintenance(ring: KeyRing, plan: KeyMaintenance, clock: SharedClock) {
    let KeyMaintenance {
        every,
        max_age_secs,
        timings,
    } = plan;
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(every);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            if let Err(e) = rotate_due(&ring, clock.now(), max_age_secs, &timings).await {
                tracing::error!(error = format!("{e:#}"), "scheduled key rotation failed");
            }
            if let Err(e) = ring.reload().await {
                tracing::error!(error = format!("{e:#}"), "key ring reload failed");
            }
        }
    });
}

/// Deletes expired refresh tokens and access-token revocations once an hour. Grants stay: they
/// are the record of what was authorised.
pub fn spawn_purge(grants: Arc<dyn GrantStore>, clock: SharedClock) {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(Duration::from_secs(3600));
        ticker.tick().await;
        loop {
            ticker.tick().await;
            match grants.purge_expired(clock.now()).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(rows = n, "purged expired tokens"),
                Err(e) => {
                    tracing::error!(error = format!("{e:#}"), "purging expired tokens failed")
                }
            }
        }
    });
}
