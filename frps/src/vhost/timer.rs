//! The timers of one user connection on one tokio timer entry.
//!
//! Every request on a vhost connection starts two timers: hyper's header
//! read timeout (a new one per request head) and the response-head timeout
//! (`vhostHTTPTimeout`, 504). A tokio timer costs a registration and a
//! removal in the runtime's shared timer wheel, under its lock, and the
//! two took about 7 % of the CPU frps and frpc spend per small request
//! (docs/performance.md). Their deadlines only move later (30 and 60
//! seconds from now), so here they share one tokio `Sleep` per connection,
//! armed at the earliest deadline anyone waits for and moved only when it
//! fires early or a sooner deadline comes: a request costs a clock read.
//!
//! Every [`Deadline`] of one [`ConnTimer`] must be polled from the same
//! task (the connection's: hyper's server polls its request handlers
//! itself): the shared entry wakes the last task that polled it.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::time::Sleep;

/// The timer source of one connection (cheap to clone).
#[derive(Clone)]
pub struct ConnTimer(Arc<Mutex<Shared>>);

struct Shared {
    sleep: Pin<Box<Sleep>>,
    /// When `sleep` fires, if it has been armed.
    armed: Option<Instant>,
}

impl Default for ConnTimer {
    fn default() -> Self {
        Self::new()
    }
}

impl ConnTimer {
    pub fn new() -> ConnTimer {
        ConnTimer(Arc::new(Mutex::new(Shared {
            // Not registered with the runtime until first polled.
            sleep: Box::pin(tokio::time::sleep_until(tokio::time::Instant::now())),
            armed: None,
        })))
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A future that completes at `at`.
    pub(crate) fn at(&self, at: Instant) -> Deadline {
        Deadline {
            timer: self.clone(),
            at,
        }
    }

    /// A future that completes `after` from now.
    pub(crate) fn after(&self, after: Duration) -> Deadline {
        self.at(now() + after)
    }
}

/// The runtime's clock (so tests can pause it) as a std `Instant`, the
/// type hyper's timer speaks.
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Completes at its instant; see the module comment.
pub(crate) struct Deadline {
    timer: ConnTimer,
    at: Instant,
}

impl Future for Deadline {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let at = self.at;
        let mut shared = self.timer.lock();
        loop {
            if now() >= at {
                return Poll::Ready(());
            }
            // Armed later than we need (or not at all): bring it forward.
            // Armed sooner: it wakes us early and we look again.
            if shared.armed.is_none_or(|armed| armed > at) {
                shared.sleep.as_mut().reset(at.into());
                shared.armed = Some(at);
            }
            if shared.sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            // It fired for an earlier deadline than ours.
            shared.armed = None;
        }
    }
}

impl hyper::rt::Sleep for Deadline {}

impl hyper::rt::Timer for ConnTimer {
    fn now(&self) -> Instant {
        now()
    }

    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(self.after(duration))
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(self.at(deadline))
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn hyper::rt::Sleep>>, new_deadline: Instant) {
        match sleep.as_mut().downcast_mut_pin::<Deadline>() {
            Some(mut d) => d.at = new_deadline,
            None => *sleep = self.sleep_until(new_deadline),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready(d: &mut Deadline) -> bool {
        let waker = futures::task::noop_waker();
        Pin::new(d)
            .poll(&mut Context::from_waker(&waker))
            .is_ready()
    }

    #[tokio::test(start_paused = true)]
    async fn each_deadline_fires_at_its_own_time() {
        let t = ConnTimer::new();
        let mut late = t.after(Duration::from_secs(60));
        let mut soon = t.after(Duration::from_secs(30));
        assert!(!ready(&mut late) && !ready(&mut soon));
        tokio::time::advance(Duration::from_secs(29)).await;
        assert!(!ready(&mut soon));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(ready(&mut soon) && !ready(&mut late));
        tokio::time::advance(Duration::from_secs(30)).await;
        assert!(ready(&mut late));
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_task_is_woken_at_a_later_deadline() {
        let t = ConnTimer::new();
        // An earlier deadline armed the entry, then went away unfired.
        assert!(!ready(&mut t.after(Duration::from_secs(1))));
        let started = tokio::time::Instant::now();
        t.after(Duration::from_secs(5)).await;
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        // Moved later by hyper's reset: fires at the new time.
        let mut s: Pin<Box<dyn hyper::rt::Sleep>> =
            hyper::rt::Timer::sleep(&t, Duration::from_secs(1));
        hyper::rt::Timer::reset(&t, &mut s, now() + Duration::from_secs(10));
        let started = tokio::time::Instant::now();
        s.await;
        assert_eq!(started.elapsed(), Duration::from_secs(10));
    }
}
