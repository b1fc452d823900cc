//! Keeping a request's I/O on the thread that serves it.
//!
//! actix-web runs each HTTP worker on a runtime of its own thread, while the pools and the
//! Redis connection opened at startup belong to the process's main runtime: a socket is driven
//! by the runtime that opened it. A request on a worker that used them woke a main-runtime
//! thread for every round trip (Redis: the connection's driver task; PostgreSQL: the reactor
//! the connection is registered with), and that thread woke the worker back: two context
//! switches per statement or command on two cores. Measured with `perf stat -e
//! context-switches` under `bench.sh` (docs/benchmarks.md): 24 per plain login, 50 per new
//! citizen's login.
//!
//! So each HTTP worker marks its thread when actix builds its `App` there, and the stores give
//! a marked thread connections of its own, opened on its first use there and driven by the
//! worker's own runtime. Everything else (the main runtime's background tasks, the CLI, tests
//! calling the stores directly) keeps the shared ones.

use std::cell::Cell;

thread_local! {
    static HTTP_WORKER: Cell<bool> = const { Cell::new(false) };
}

/// Marks the calling thread as an HTTP worker's (called from the `HttpServer` app factory, which
/// actix runs once on each worker thread).
pub fn mark_http_worker() {
    HTTP_WORKER.with(|w| w.set(true));
}

/// Whether the calling thread is an HTTP worker's.
pub fn on_http_worker() -> bool {
    HTTP_WORKER.with(Cell::get)
}

/// A small per-thread registry of values keyed by the id of the store that owns them (a
/// process may hold several stores: tests start many brokers in one process).
pub struct PerThread<T: Clone + 'static> {
    key: &'static std::thread::LocalKey<std::cell::RefCell<Vec<(u64, T)>>>,
}

impl<T: Clone + 'static> PerThread<T> {
    pub const fn new(
        key: &'static std::thread::LocalKey<std::cell::RefCell<Vec<(u64, T)>>>,
    ) -> Self {
        Self { key }
    }

    pub fn get(&self, id: u64) -> Option<T> {
        self.key.with(|v| {
            v.borrow()
                .iter()
                .find(|(k, _)| *k == id)
                .map(|(_, t)| t.clone())
        })
    }

    /// Keeps `value` for `id` unless another task of this thread got there first; returns the
    /// one kept.
    pub fn insert(&self, id: u64, value: T) -> T {
        self.key.with(|v| {
            let mut v = v.borrow_mut();
            if let Some((_, kept)) = v.iter().find(|(k, _)| *k == id) {
                return kept.clone();
            }
            v.push((id, value.clone()));
            value
        })
    }
}

/// A process-wide id for a store, so that its per-thread values are told apart.
pub fn next_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        static VALUES: std::cell::RefCell<Vec<(u64, u32)>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    static PER: PerThread<u32> = PerThread::new(&VALUES);

    #[test]
    fn each_thread_keeps_its_own_value_per_store_and_the_first_one_wins() {
        let (a, b) = (next_id(), next_id());
        assert_ne!(a, b);
        assert_eq!(PER.get(a), None);
        assert_eq!(PER.insert(a, 1), 1);
        assert_eq!(PER.insert(a, 2), 1, "a racing second value is not kept");
        assert_eq!(PER.insert(b, 3), 3);
        assert_eq!((PER.get(a), PER.get(b)), (Some(1), Some(3)));
        std::thread::spawn(move || {
            assert_eq!(PER.get(a), None, "another thread has its own");
            assert!(!on_http_worker());
            mark_http_worker();
            assert!(on_http_worker());
        })
        .join()
        .unwrap();
        assert!(!on_http_worker(), "only the marked thread is a worker's");
    }
}
