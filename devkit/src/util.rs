//! Small helpers shared by both servers: randomness, the wall clock, and poison-tolerant locks.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

/// A random 256-bit value, base64url without padding: codes, tokens, state keys.
pub(crate) fn random_token() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| anyhow::anyhow!("system randomness failed"))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// Seconds since the Unix epoch; a clock before 1970 is treated as the epoch itself.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The maps behind these mutexes stay consistent even if a holder panicked (every update is a
/// single insert or remove), so a poisoned lock is simply taken over rather than propagated.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
