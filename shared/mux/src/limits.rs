//! What a peer can make a session hold: a process-wide budget for receive
//! windows, and a rate limit on the pings it may make us answer. No I/O.
//!
//! The bounds these enforce are written down in `docs/bounds.md`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

/// Receive memory shared by every session of a process. Each stream holds
/// its whole receive window here for as long as it lives: the window is
/// what the peer may send without our reader taking anything, so the sum
/// of the windows is the most that stalled readers can make us buffer. A
/// stream that does not fit is refused (reset), which costs that one user
/// connection and nothing else.
#[derive(Debug)]
pub struct MemoryBudget {
    left: AtomicUsize,
    total: usize,
}

impl MemoryBudget {
    pub fn new(bytes: usize) -> Arc<Self> {
        Arc::new(MemoryBudget {
            left: AtomicUsize::new(bytes),
            total: bytes,
        })
    }

    /// No process-wide limit (tests, tools); per-session limits still apply.
    pub fn unlimited() -> Arc<Self> {
        Self::new(usize::MAX)
    }

    pub fn total(&self) -> usize {
        self.total
    }

    /// Bytes currently held by live streams.
    pub fn in_use(&self) -> usize {
        self.total - self.left.load(Ordering::Relaxed)
    }

    pub(crate) fn take(&self, n: usize) -> bool {
        self.left
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                left.checked_sub(n)
            })
            .is_ok()
    }

    pub(crate) fn give(&self, n: usize) {
        self.left.fetch_add(n, Ordering::Relaxed);
    }
}

/// Pings answered in a burst before the rate limit applies.
pub const PING_BURST: u32 = 32;
/// Pings answered per second once the burst is spent. Peers ping to measure
/// the round trip or keep a NAT entry open: a few per minute. Replies to
/// pings beyond this are dropped, so a flood cannot make us queue replies.
pub const PING_RATE: u32 = 16;

/// A token bucket for ping replies.
#[derive(Debug)]
pub(crate) struct PingLimiter {
    tokens: u32,
    last: Instant,
}

impl PingLimiter {
    pub fn new(now: Instant) -> Self {
        PingLimiter {
            tokens: PING_BURST,
            last: now,
        }
    }

    /// Whether a ping arriving at `now` may be answered.
    pub fn allow(&mut self, now: Instant) -> bool {
        let step = Duration::from_secs(1) / PING_RATE;
        let earned = (now.saturating_duration_since(self.last).as_nanos() / step.as_nanos())
            .min(u128::from(PING_BURST)) as u32;
        if earned > 0 {
            self.tokens = (self.tokens + earned).min(PING_BURST);
            self.last += step * earned;
            if self.tokens == PING_BURST {
                self.last = now;
            }
        }
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_takes_and_gives() {
        let b = MemoryBudget::new(100);
        assert!(b.take(60));
        assert!(!b.take(41));
        assert!(b.take(40));
        assert_eq!(b.in_use(), 100);
        b.give(60);
        assert_eq!(b.in_use(), 40);
    }

    #[test]
    fn pings_are_limited_to_burst_then_rate() {
        let t0 = Instant::now();
        let mut l = PingLimiter::new(t0);
        let burst = (0..1000).filter(|_| l.allow(t0)).count();
        assert_eq!(burst, PING_BURST as usize);
        // Ten seconds of flooding at 1000 pings per second.
        let mut answered = 0;
        for ms in 1..=10_000u64 {
            if l.allow(t0 + Duration::from_millis(ms)) {
                answered += 1;
            }
        }
        assert_eq!(answered, 10 * PING_RATE as usize);
        // After a quiet minute the burst is back, not more.
        let later = t0 + Duration::from_secs(70);
        let again = (0..1000).filter(|_| l.allow(later)).count();
        assert_eq!(again, PING_BURST as usize);
    }
}
