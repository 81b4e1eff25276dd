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

    /// What a session may always take while the budget has room: a
    /// quarter of the total (at least four default windows).
    pub fn per_session(&self) -> usize {
        (self.total / SESSION_PART)
            .max(4 * crate::frame::DEFAULT_WINDOW as usize)
            .min(self.total)
    }

    fn left(&self) -> usize {
        self.left.load(Ordering::Relaxed)
    }
}

/// The fraction of the process budget that is a session's own part, and
/// the fraction kept for sessions within theirs (1 / this each).
pub const SESSION_PART: usize = 4;

/// One session's part of the process budget. Beyond
/// [`MemoryBudget::per_session`] a session may take more only while more
/// than a quarter of the total is left: the last quarter is for sessions
/// within their part. So the users of one client (one that stalls, or one
/// that is merely busy) leave the others working, and a client alone on
/// its server still has three quarters of the budget.
#[derive(Debug)]
pub(crate) struct Share {
    budget: Arc<MemoryBudget>,
    used: AtomicUsize,
    part: usize,
    reserve: usize,
}

impl Share {
    pub fn new(budget: Arc<MemoryBudget>) -> Self {
        Share {
            part: budget.per_session(),
            reserve: budget.total / SESSION_PART,
            budget,
            used: AtomicUsize::new(0),
        }
    }

    /// Two takes racing may both pass the part check and exceed the part
    /// by a window; the process total itself is taken atomically.
    pub fn take(&self, n: usize) -> bool {
        let used = self.used.load(Ordering::Relaxed);
        let within_part = used.saturating_add(n) <= self.part;
        if !within_part && self.budget.left().saturating_sub(n) < self.reserve {
            return false;
        }
        if !self.budget.take(n) {
            return false;
        }
        self.used.fetch_add(n, Ordering::Relaxed);
        true
    }

    pub fn give(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::Relaxed);
        self.budget.give(n);
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
    fn a_session_holds_at_most_its_part() {
        let window = crate::frame::DEFAULT_WINDOW as usize;
        let b = MemoryBudget::new(64 * window);
        let (one, two) = (Share::new(b.clone()), Share::new(b.clone()));
        let took = (0..64).filter(|_| one.take(window)).count();
        assert_eq!(took, 48, "all but the reserved quarter");
        let took = (0..64).filter(|_| two.take(window)).count();
        assert_eq!(took, 16, "another session gets its part");
        assert!(!one.take(window));
        two.give(window);
        assert!(!one.take(window), "what is left is the reserve");
        assert!(two.take(window), "which a session within its part gets");
        assert_eq!(b.in_use(), 64 * window);
        // A small budget still lets a session have a few streams.
        let small = MemoryBudget::new(2 * window);
        assert_eq!(small.per_session(), 2 * window);
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
