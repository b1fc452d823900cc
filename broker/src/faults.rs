//! Fault points: places where a test can stop one request and let another run, to force an
//! interleaving that two cores would rarely produce by chance (two logins of one account racing
//! for the mobile slot). Unarmed, a point costs one atomic load. Points are armed only through
//! [`arm`], a Rust function no HTTP request or setting reaches: only a test that runs the broker
//! in its own process can use them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use tokio::sync::Semaphore;

static ARMED: AtomicBool = AtomicBool::new(false);
/// The armed gates, by point and key.
type Gates = HashMap<(String, String), Arc<Gate>>;

static GATES: LazyLock<Mutex<Gates>> = LazyLock::new(|| Mutex::new(HashMap::new()));

/// Holds the first request that reaches a point (for one key) until the test releases it.
pub struct Gate {
    /// How many arrivals are still to be held (1: the first only).
    hold: AtomicUsize,
    reached: Semaphore,
    released: Semaphore,
}

impl Gate {
    /// Waits until a request stands at the point.
    pub async fn reached(&self) {
        if let Ok(permit) = self.reached.acquire().await {
            permit.forget();
        }
    }

    /// Lets the held request go on.
    pub fn release(&self) {
        self.released.add_permits(1);
    }
}

/// Arms `point` for `key` (an account id, say): the first request to reach it waits there.
pub fn arm(point: &str, key: &str) -> Arc<Gate> {
    let gate = Arc::new(Gate {
        hold: AtomicUsize::new(1),
        reached: Semaphore::new(0),
        released: Semaphore::new(0),
    });
    if let Ok(mut gates) = GATES.lock() {
        gates.insert((point.to_string(), key.to_string()), gate.clone());
    }
    ARMED.store(true, Ordering::SeqCst);
    gate
}

/// Disarms `point` for `key`.
pub fn disarm(point: &str, key: &str) {
    if let Ok(mut gates) = GATES.lock() {
        gates.remove(&(point.to_string(), key.to_string()));
    }
}

/// A fault point: waits here if a test armed it for `key`.
pub async fn reach(point: &str, key: &str) {
    if !ARMED.load(Ordering::Relaxed) {
        return;
    }
    let gate = GATES
        .lock()
        .ok()
        .and_then(|gates| gates.get(&(point.to_string(), key.to_string())).cloned());
    let Some(gate) = gate else {
        return;
    };
    let held = gate
        .hold
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if held {
        gate.reached.add_permits(1);
        if let Ok(permit) = gate.released.acquire().await {
            permit.forget();
        }
    }
}
