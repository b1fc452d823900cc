//! Rotation: publish the next key first, promote it only after it has been in the JWKS for the
//! advertised cache lifetime, keep the old key published (verify only) for the longest token
//! lifetime after that. The emergency variant skips both waits.

use super::generate::new_stored_key;
use super::keyring::KeyRing;
use super::{Alg, KeyState};

#[derive(Debug)]
pub struct RotationPlan {
    pub new_kid: String,
    pub activates_at: i64,
    pub old_kids: Vec<String>,
    pub old_removed_at: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    #[error("a rotation of {0} is already in progress (key {1} is waiting to sign); use --emergency to force")]
    InProgress(&'static str, String),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

pub struct RotationTimings {
    /// How long a new key is published before it signs.
    pub jwks_max_age: i64,
    pub longest_token: i64,
}

impl RotationTimings {
    /// `jwks_max_age_secs` is the advertised JWKS cache lifetime: a new key waits that long
    /// plus one ring reload interval, since another instance may start publishing it up to one
    /// reload later than the one that rotated. `longest_token_secs`: the longest lifetime of a
    /// token a key signs.
    pub fn new(jwks_max_age_secs: u64, reload_secs: u64, longest_token_secs: i64) -> Self {
        Self {
            jwks_max_age: (jwks_max_age_secs + reload_secs) as i64,
            longest_token: longest_token_secs,
        }
    }
}

pub async fn rotate(
    ring: &KeyRing,
    alg: Alg,
    now: i64,
    timings: &RotationTimings,
    emergency: bool,
) -> Result<RotationPlan, RotationError> {
    let keys = ring.store().list().await?;
    let mine: Vec<_> = keys.iter().filter(|k| k.alg == alg).collect();
    if let Some(pending) = mine.iter().find(|k| k.state(now) == KeyState::Next) {
        if !emergency {
            return Err(RotationError::InProgress(alg.as_str(), pending.kid.clone()));
        }
    }
    let activates_at = if emergency {
        now
    } else {
        now + timings.jwks_max_age
    };
    let removes_at = if emergency {
        now
    } else {
        activates_at + timings.longest_token
    };
    let key = new_stored_key(alg, ring.master(), now, activates_at)?;
    ring.store().insert(&key).await?;
    let mut old_kids = Vec::new();
    for old in mine.iter().filter(|k| {
        matches!(
            k.state(now),
            KeyState::Active | KeyState::Next | KeyState::Retired
        )
    }) {
        let retires = old.retires_at.map_or(activates_at, |t| t.min(activates_at));
        let removes = old.removes_at.map_or(removes_at, |t| t.min(removes_at));
        ring.store()
            .set_schedule(&old.kid, Some(retires), Some(removes))
            .await?;
        old_kids.push(old.kid.clone());
    }
    ring.reload().await?;
    Ok(RotationPlan {
        new_kid: key.kid,
        activates_at,
        old_kids,
        old_removed_at: removes_at,
    })
}

/// The scheduled rotation: rotate every algorithm whose active key is older than `max_age`.
pub async fn rotate_due(
    ring: &KeyRing,
    now: i64,
    max_age: i64,
    timings: &RotationTimings,
) -> anyhow::Result<()> {
    if max_age <= 0 {
        return Ok(());
    }
    for alg in Alg::ALL {
        let keys = ring.all();
        let pending = keys
            .iter()
            .any(|k| k.alg == alg && k.state(now) == KeyState::Next);
        let due = ring
            .signing_key(alg, now)
            .is_some_and(|k| now - k.meta.activates_at >= max_age);
        if due && !pending {
            match rotate(ring, alg, now, timings, false).await {
                Ok(plan) => {
                    tracing::info!(alg = alg.as_str(), kid = %plan.new_kid, "scheduled key rotation started")
                }
                Err(RotationError::InProgress(..)) => {}
                Err(RotationError::Other(e)) => return Err(e),
            }
        }
    }
    Ok(())
}
