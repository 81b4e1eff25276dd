//! Heartbeat pacing and dead-link detection, free of I/O and of real time so
//! it is tested with a paused clock. See `docs/liveness.md`.
//!
//! The client beats only after `interval` with nothing received (any byte
//! counts) and declares the link dead after `timeout` of silence. The server
//! uses the same [`Pacer`] without an interval, to reap silent clients.

use std::time::Duration;

use tokio::time::Instant;

/// The interval the client must use so that neither side times out while
/// the other thinks all is well: at most a third of the smaller timeout, so
/// two lost beats in a row are still survived. Returns the interval and
/// whether it had to be lowered (or switched on) to get there.
pub fn agree_interval(
    interval: Option<Duration>,
    client_timeout: Option<Duration>,
    server_timeout: Option<Duration>,
) -> (Option<Duration>, bool) {
    let smallest = match (client_timeout, server_timeout) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let Some(limit) = smallest.map(|t| (t / 3).max(Duration::from_millis(100))) else {
        return (interval, false);
    };
    match interval {
        Some(i) if i <= limit => (Some(i), false),
        _ => (Some(limit), true),
    }
}

/// What the owner of a [`Pacer`] must do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Beat {
    /// Nothing; sleep until [`Pacer::next_wake`].
    Wait,
    /// Send a Ping.
    Ping,
    /// Nothing received for this long, beyond the timeout: the link is dead.
    Dead(Duration),
}

#[derive(Debug, Clone)]
pub struct Pacer {
    interval: Option<Duration>,
    timeout: Option<Duration>,
    last_ping: Option<Instant>,
}

impl Pacer {
    pub fn new(interval: Option<Duration>, timeout: Option<Duration>) -> Self {
        Pacer {
            interval,
            timeout,
            last_ping: None,
        }
    }

    pub fn interval(&self) -> Option<Duration> {
        self.interval
    }

    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// Decides, given when bytes last arrived.
    pub fn poll(&mut self, now: Instant, last_recv: Instant) -> Beat {
        let silence = now.saturating_duration_since(last_recv);
        if let Some(t) = self.timeout {
            if silence >= t {
                return Beat::Dead(silence);
            }
        }
        if let Some(due) = self.ping_due(last_recv) {
            if now >= due {
                self.last_ping = Some(now);
                return Beat::Ping;
            }
        }
        Beat::Wait
    }

    /// Next instant at which [`poll`](Self::poll) may have something to do;
    /// `None` when both checks are off.
    pub fn next_wake(&self, last_recv: Instant) -> Option<Instant> {
        let dead = self.timeout.map(|t| last_recv + t);
        match (self.ping_due(last_recv), dead) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// One beat per interval of silence: after the last thing received, or
    /// after the last Ping if that was later (its Pong may be lost).
    fn ping_due(&self, last_recv: Instant) -> Option<Instant> {
        let interval = self.interval?;
        let from = match self.last_ping {
            Some(p) if p > last_recv => p,
            _ => last_recv,
        };
        Some(from + interval)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn agreement() {
        // Defaults agree with each other.
        assert_eq!(
            agree_interval(Some(30 * S), Some(90 * S), Some(90 * S)),
            (Some(30 * S), false)
        );
        // A stricter server lowers the client's interval.
        assert_eq!(
            agree_interval(Some(30 * S), Some(90 * S), Some(9 * S)),
            (Some(3 * S), true)
        );
        // A client with beats off still beats if the server would reap it.
        assert_eq!(agree_interval(None, None, Some(6 * S)), (Some(2 * S), true));
        // Both off: nothing to agree on.
        assert_eq!(agree_interval(None, None, None), (None, false));
    }

    #[tokio::test(start_paused = true)]
    async fn idle_link_beats_once_per_interval_and_survives_lost_pongs() {
        let mut p = Pacer::new(Some(10 * S), Some(30 * S));
        let mut last_recv = Instant::now();
        let mut pings = 0;
        // Pongs come back for 60 s: a beat every 10 s, never dead.
        for _ in 0..60 {
            tokio::time::advance(S).await;
            match p.poll(Instant::now(), last_recv) {
                Beat::Ping => {
                    pings += 1;
                    last_recv = Instant::now(); // the Pong
                }
                Beat::Wait => {}
                Beat::Dead(d) => panic!("dead after {d:?}"),
            }
        }
        assert_eq!(pings, 6);
        // Now every Pong is lost: beats go on every interval and the link is
        // declared dead exactly at the timeout, not at the first lost beat.
        let silent_since = last_recv;
        let mut lost = 0;
        loop {
            let wake = p.next_wake(last_recv).expect("wake");
            tokio::time::advance(wake - Instant::now()).await;
            match p.poll(Instant::now(), last_recv) {
                Beat::Ping => lost += 1,
                Beat::Wait => {}
                Beat::Dead(d) => {
                    assert_eq!(d, 30 * S);
                    assert_eq!(Instant::now() - silent_since, 30 * S);
                    break;
                }
            }
        }
        assert_eq!(lost, 2, "beats at +10 s and +20 s, dead at +30 s");
    }

    #[tokio::test(start_paused = true)]
    async fn busy_link_never_beats() {
        let mut p = Pacer::new(Some(10 * S), Some(30 * S));
        for _ in 0..1000 {
            tokio::time::advance(Duration::from_millis(500)).await;
            // Traffic arrived just now.
            assert_eq!(p.poll(Instant::now(), Instant::now()), Beat::Wait);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn disabled_checks_never_fire() {
        let mut p = Pacer::new(None, None);
        let start = Instant::now();
        tokio::time::advance(Duration::from_secs(100_000)).await;
        assert_eq!(p.poll(Instant::now(), start), Beat::Wait);
        assert_eq!(p.next_wake(start), None);
    }

    #[tokio::test(start_paused = true)]
    async fn server_reaper_has_no_interval() {
        let mut p = Pacer::new(None, Some(90 * S));
        let start = Instant::now();
        assert_eq!(p.next_wake(start), Some(start + 90 * S));
        tokio::time::advance(89 * S).await;
        assert_eq!(p.poll(Instant::now(), start), Beat::Wait);
        tokio::time::advance(S).await;
        assert_eq!(p.poll(Instant::now(), start), Beat::Dead(90 * S));
    }
}
