//! Time, real or virtual. A dry run uses the virtual clock: delays, implode
//! windows, throttles and retry back-offs complete at once, in order.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use futures_util::future::BoxFuture;

pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
    /// Waits until `at_ms` (a virtual clock jumps there).
    fn sleep_until(&self, at_ms: i64) -> BoxFuture<'_, ()>;
    fn is_virtual(&self) -> bool;
}

#[derive(Debug, Default)]
pub struct RealClock;

impl Clock for RealClock {
    fn now_ms(&self) -> i64 {
        super::event::now_millis()
    }
    fn sleep_until(&self, at_ms: i64) -> BoxFuture<'_, ()> {
        let wait = (at_ms - self.now_ms()).max(0) as u64;
        Box::pin(tokio::time::sleep(Duration::from_millis(wait)))
    }
    fn is_virtual(&self) -> bool {
        false
    }
}

/// Starts at a fixed instant and moves only when something sleeps.
#[derive(Debug)]
pub struct VirtualClock {
    now: AtomicI64,
}

impl VirtualClock {
    pub fn new(start_ms: i64) -> Self {
        Self {
            now: AtomicI64::new(start_ms),
        }
    }
}

impl Clock for VirtualClock {
    fn now_ms(&self) -> i64 {
        self.now.load(Ordering::SeqCst)
    }
    fn sleep_until(&self, at_ms: i64) -> BoxFuture<'_, ()> {
        self.now.fetch_max(at_ms, Ordering::SeqCst);
        Box::pin(std::future::ready(()))
    }
    fn is_virtual(&self) -> bool {
        true
    }
}

/// Moves only when told to (`advance`, `set`): tests of schedules and delays
/// under `tale serve`. Sleepers wake when the time reaches them.
#[derive(Debug)]
pub struct ManualClock {
    now: AtomicI64,
    moved: tokio::sync::watch::Sender<i64>,
}

impl ManualClock {
    pub fn new(start_ms: i64) -> Self {
        Self {
            now: AtomicI64::new(start_ms),
            moved: tokio::sync::watch::channel(start_ms).0,
        }
    }

    pub fn set(&self, ms: i64) {
        self.now.fetch_max(ms, Ordering::SeqCst);
        self.moved.send_replace(self.now.load(Ordering::SeqCst));
    }

    pub fn advance(&self, by: Duration) {
        self.set(self.now_ms() + by.as_millis() as i64);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.now.load(Ordering::SeqCst)
    }
    fn sleep_until(&self, at_ms: i64) -> BoxFuture<'_, ()> {
        let mut rx = self.moved.subscribe();
        Box::pin(async move {
            let _ = rx.wait_for(|now| *now >= at_ms).await;
        })
    }
    fn is_virtual(&self) -> bool {
        // Time passes as in production (from outside), not by jumping.
        false
    }
}
