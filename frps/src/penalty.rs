//! Failed proofs per source address. After a few, the answer to each
//! further failure from that address waits longer (doubling up to a cap,
//! always within the login deadline), so guessing a token costs the
//! guesser time while clients with the right token behind the same
//! address log in at once: only failures wait.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Failures from one address answered at once.
const FREE: u32 = 3;
/// The wait after the first failure beyond [`FREE`]; it doubles with each.
const FIRST: Duration = Duration::from_millis(250);
/// The longest wait.
const MAX: Duration = Duration::from_secs(8);
/// An address with no failure for this long starts afresh.
const FORGET: Duration = Duration::from_secs(600);
/// Addresses remembered at once; beyond, those forgotten by time are
/// dropped first, and a new address is not remembered while all are recent.
pub(crate) const MAX_ADDRESSES: usize = 65_536;
/// A full table is swept for forgotten addresses at most this often, so
/// failures from ever new addresses cost a scan of it once, not each time.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

#[derive(Clone, Copy)]
struct Record {
    failures: u32,
    last: Instant,
}

#[derive(Default)]
pub(crate) struct Penalties {
    by_address: Mutex<Table>,
    delayed: AtomicU64,
}

#[derive(Default)]
struct Table {
    map: HashMap<IpAddr, Record>,
    swept: Option<Instant>,
    sweeps: u64,
}

impl Penalties {
    /// Counts a failed proof from `ip`; returns how long its answer waits.
    pub fn failed(&self, ip: IpAddr) -> Duration {
        let key = source(ip);
        let now = Instant::now();
        let mut table = self.by_address.lock().unwrap_or_else(|p| p.into_inner());
        let Table { map, swept, sweeps } = &mut *table;
        if map.len() >= MAX_ADDRESSES && !map.contains_key(&key) {
            if swept.is_none_or(|at| now.duration_since(at) >= SWEEP_EVERY) {
                map.retain(|_, r| now.duration_since(r.last) < FORGET);
                *swept = Some(now);
                *sweeps += 1;
            }
            if map.len() >= MAX_ADDRESSES {
                return Duration::ZERO;
            }
        }
        let r = map.entry(key).or_insert(Record {
            failures: 0,
            last: now,
        });
        if now.duration_since(r.last) >= FORGET {
            r.failures = 0;
        }
        r.failures = r.failures.saturating_add(1);
        r.last = now;
        let wait = wait_for(r.failures);
        if !wait.is_zero() {
            self.delayed.fetch_add(1, Ordering::Relaxed);
        }
        wait
    }

    /// Answers to failed proofs that were made to wait, since start.
    pub fn delayed(&self) -> u64 {
        self.delayed.load(Ordering::Relaxed)
    }

    /// Addresses with failures within the last [`FORGET`].
    pub fn addresses(&self) -> usize {
        let now = Instant::now();
        let table = self.by_address.lock().unwrap_or_else(|p| p.into_inner());
        table
            .map
            .values()
            .filter(|r| now.duration_since(r.last) < FORGET)
            .count()
    }
}

/// Sleeps for `wait`, ending early enough before `deadline` that the
/// answer still goes out in time.
pub(crate) async fn serve_wait(wait: Duration, deadline: Instant) {
    if wait.is_zero() {
        return;
    }
    let last = deadline
        .checked_sub(Duration::from_millis(250))
        .unwrap_or(deadline);
    let by = (Instant::now() + wait).min(last);
    tokio::time::sleep_until(by).await;
}

fn wait_for(failures: u32) -> Duration {
    match failures.checked_sub(FREE + 1) {
        None => Duration::ZERO,
        Some(beyond) => FIRST.saturating_mul(1 << beyond.min(16)).min(MAX),
    }
}

/// The unit an address is counted by: an IPv4 address, or an IPv6 /64
/// (one host usually has a whole /64 to pick from).
pub(crate) fn source(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(bits.into())
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_grow_after_a_few_failures_and_stay_capped() {
        let waits: Vec<u128> = (1..=12).map(|n| wait_for(n).as_millis()).collect();
        assert_eq!(
            waits,
            [0, 0, 0, 250, 500, 1000, 2000, 4000, 8000, 8000, 8000, 8000]
        );
        assert_eq!(wait_for(u32::MAX), MAX);
    }

    #[tokio::test]
    async fn counted_per_address_and_per_v6_prefix() {
        let p = Penalties::default();
        let a: IpAddr = "192.0.2.1".parse().expect("ip");
        for _ in 0..FREE {
            assert_eq!(p.failed(a), Duration::ZERO);
        }
        assert_eq!(p.failed(a), FIRST);
        assert_eq!(p.failed("192.0.2.2".parse().expect("ip")), Duration::ZERO);
        let (x, y): (IpAddr, IpAddr) = (
            "2001:db8::1".parse().expect("ip"),
            "2001:db8::ffff:1".parse().expect("ip"),
        );
        for _ in 0..FREE {
            p.failed(x);
        }
        assert_eq!(p.failed(y), FIRST, "one /64");
        assert_eq!(p.delayed(), 2);
        assert_eq!(p.addresses(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_table_is_swept_once_in_a_while_not_at_each_failure() {
        let p = Penalties::default();
        let v4 = |n: usize| IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + n as u32));
        for n in 0..MAX_ADDRESSES {
            p.failed(v4(n));
        }
        let sweeps = || p.by_address.lock().expect("lock").sweeps;
        for n in 0..100 {
            assert_eq!(p.failed(v4(MAX_ADDRESSES + n)), Duration::ZERO);
        }
        assert_eq!(sweeps(), 1, "full of recent addresses: one sweep");
        tokio::time::advance(SWEEP_EVERY).await;
        p.failed(v4(2 * MAX_ADDRESSES));
        assert_eq!(sweeps(), 2);
        tokio::time::advance(FORGET).await;
        p.failed(v4(3 * MAX_ADDRESSES));
        assert_eq!(p.addresses(), 1, "forgotten addresses are swept away");
    }
}
