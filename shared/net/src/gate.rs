//! Admission for public ports that anyone may reach (virtual hosts, the
//! web servers): at most so many connections at once in all, and at most
//! so many from one source address, so no one address can take them all
//! and no amount of traffic can take the descriptors a login needs.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Descriptors several gates take from together.
#[derive(Clone)]
pub struct Share {
    permits: Arc<Semaphore>,
    size: usize,
    /// Connections and ports turned away, since start.
    refused: Arc<AtomicU64>,
}

impl Share {
    pub fn new(size: usize) -> Share {
        Share {
            permits: Arc::new(Semaphore::new(size)),
            size,
            refused: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Takes one descriptor's place, if there is room.
    pub fn try_take(&self) -> Option<OwnedSemaphorePermit> {
        let taken = self.permits.clone().try_acquire_owned().ok();
        if taken.is_none() {
            self.refused.fetch_add(1, Ordering::Relaxed);
        }
        taken
    }

    /// What was turned away for want of room (in all, or per address).
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    pub fn size(&self) -> usize {
        self.size
    }
}

/// One address may take at most this fraction (1 / this) of a share, so
/// that at a small descriptor limit one address cannot take it all.
const ADDRESS_PART: usize = 4;

/// Connections admitted through any gate sharing `total`, and per source
/// address through this one.
pub struct Gate {
    total: Share,
    per_ip: usize,
    by_ip: Mutex<HashMap<IpAddr, usize>>,
}

/// One admitted connection: its place is given back when dropped.
pub struct Pass {
    _total: OwnedSemaphorePermit,
    gate: Arc<Gate>,
    ip: IpAddr,
}

/// Why a connection was turned away.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    Full,
    PerAddress(usize),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Full => write!(f, "the public ports hold all the connections they may"),
            Refused::PerAddress(n) => write!(f, "{n} connections open from this address"),
        }
    }
}

impl Gate {
    /// A gate taking from `total` (shared between gates) with no limit per
    /// source address but the share itself.
    pub fn any_address(total: &Share) -> Arc<Gate> {
        Arc::new(Gate {
            total: total.clone(),
            per_ip: usize::MAX,
            by_ip: Mutex::new(HashMap::new()),
        })
    }

    /// A gate taking from `total` (shared between gates) and letting in at
    /// most `per_ip` connections per source address, and never more than
    /// a quarter of `total`.
    pub fn new(total: &Share, per_ip: usize) -> Arc<Gate> {
        Arc::new(Gate {
            total: total.clone(),
            per_ip: per_ip.min(total.size / ADDRESS_PART).max(1),
            by_ip: Mutex::new(HashMap::new()),
        })
    }

    fn by_ip(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.by_ip.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Pass, Refused> {
        // Refusals are what a flood costs: no count walked for the message.
        let Some(total) = self.total.try_take() else {
            return Err(Refused::Full);
        };
        let mut by_ip = self.by_ip();
        let n = by_ip.entry(ip).or_insert(0);
        if *n >= self.per_ip {
            self.total.refused.fetch_add(1, Ordering::Relaxed);
            return Err(Refused::PerAddress(*n));
        }
        *n += 1;
        Ok(Pass {
            _total: total,
            gate: self.clone(),
            ip,
        })
    }
}

impl Drop for Pass {
    fn drop(&mut self) {
        let mut by_ip = self.gate.by_ip();
        if let Some(n) = by_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                by_ip.remove(&self.ip);
            }
        }
    }
}

/// How many descriptors the public side may hold together: the process's
/// limit less what logins need (`reserve`) and an eighth of it for client
/// sessions and their work connections; never below 16.
pub fn fd_share(reserve: usize) -> usize {
    let limit = rlimit::getrlimit(rlimit::Resource::NOFILE)
        .map(|(soft, _)| soft)
        .unwrap_or(1024);
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    limit.saturating_sub(reserve + limit / 8).max(16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_in_all_and_per_address_and_gives_back() {
        let total = Share::new(3 * ADDRESS_PART);
        let (a, b) = (Gate::new(&total, 2), Gate::new(&total, 2));
        let _rest: Vec<_> = (0..3 * ADDRESS_PART - 3)
            .map(|_| total.try_take().expect("room"))
            .collect();
        let one: IpAddr = "127.0.0.1".parse().expect("ip");
        let two: IpAddr = "127.0.0.2".parse().expect("ip");
        let p1 = a.admit(one).expect("first");
        let p2 = a.admit(one).expect("second");
        assert_eq!(a.admit(one).err(), Some(Refused::PerAddress(2)));
        let _p3 = b.admit(one).expect("another gate counts its own addresses");
        assert!(
            matches!(a.admit(two), Err(Refused::Full)),
            "the shared total"
        );
        drop(p1);
        let _p4 = a.admit(two).expect("room again");
        drop(p2);
        let _p5 = a.admit(one).expect("its address has room again");
        assert_eq!(total.refused(), 2, "one per address, one in all");
    }

    #[test]
    fn one_address_takes_at_most_a_quarter_of_a_small_share() {
        let total = Share::new(80);
        let gate = Gate::new(&total, 256);
        let one: IpAddr = "127.0.0.1".parse().expect("ip");
        let held: Vec<_> = (0..100).filter_map(|_| gate.admit(one).ok()).collect();
        assert_eq!(held.len(), 20);
    }
}
