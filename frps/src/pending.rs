//! Connections to `bindPort` that have not logged in yet: at most
//! `maxPendingLogins` at once. A slot is held from accept until the login
//! succeeds or the connection ends, at most `loginTimeout`.
//!
//! Refusing newcomers when every slot is taken would let one peer that opens
//! that many connections and sends nothing lock every client out until the
//! deadlines pass, again and again. So a newcomer takes a slot from someone
//! when it fairly can:
//! 1. from the source holding the most slots, if it holds two more than the
//!    newcomer's source (slots are shared out between sources);
//! 2. else the oldest slot of a source holding at least as many as the
//!    newcomer's, once that slot is older than [`MIN_HOLD`], which a real
//!    login (a TLS handshake and one exchange) does not need.
//!
//! Otherwise the newcomer is refused. A source is an IPv4 address or an IPv6
//! /64, as for failed proofs. Many sources can still fill every slot between
//! them; each slot then turns over every [`MIN_HOLD`] instead of every
//! `loginTimeout`.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How long a slot is safe from a newcomer of an equal source.
pub(crate) const MIN_HOLD: Duration = Duration::from_secs(2);
/// Refusals are logged at warn at most this often (a flood would otherwise
/// write a line per connection); the rest at debug, all counted.
const SAY_EVERY: Duration = Duration::from_secs(60);

pub(crate) struct Pending {
    max: usize,
    table: Mutex<Table>,
    taken: AtomicU64,
    refused: AtomicU64,
}

#[derive(Default)]
struct Table {
    next: u64,
    /// By age: ids grow with time.
    slots: BTreeMap<u64, Entry>,
    per_source: HashMap<IpAddr, usize>,
    said: Option<Instant>,
}

/// No slot for a newcomer. `say`: log it at warn (the first in a while).
pub(crate) struct Refused {
    pub say: bool,
}

struct Entry {
    source: IpAddr,
    since: Instant,
    taken: CancellationToken,
}

/// One connection's place among the pending logins; given back on drop.
pub(crate) struct Slot {
    pending: Arc<Pending>,
    id: u64,
    /// Cancelled when a newcomer takes this slot: the connection ends.
    pub taken: CancellationToken,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut t = self.pending.lock();
        if let Some(e) = t.slots.remove(&self.id) {
            t.release(e.source);
        }
    }
}

impl Pending {
    pub fn new(max: usize) -> Arc<Pending> {
        Arc::new(Pending {
            max: max.max(1),
            table: Mutex::default(),
            taken: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A slot for a connection from `ip`, taking one from another
    /// connection if the rules above allow.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Refused> {
        let source = crate::penalty::source(ip);
        let now = Instant::now();
        let mut t = self.lock();
        if t.slots.len() >= self.max {
            let Some(victim) = t.victim(source, now) else {
                self.refused.fetch_add(1, Ordering::Relaxed);
                let say = t.said.is_none_or(|at| now.duration_since(at) >= SAY_EVERY);
                if say {
                    t.said = Some(now);
                }
                return Err(Refused { say });
            };
            if let Some(e) = t.slots.remove(&victim) {
                t.release(e.source);
                e.taken.cancel();
                self.taken.fetch_add(1, Ordering::Relaxed);
            }
        }
        let id = t.next;
        t.next += 1;
        let taken = CancellationToken::new();
        t.slots.insert(
            id,
            Entry {
                source,
                since: now,
                taken: taken.clone(),
            },
        );
        *t.per_source.entry(source).or_default() += 1;
        Ok(Slot {
            pending: self.clone(),
            id,
            taken,
        })
    }

    /// Slots taken from waiting connections for newcomers, since start.
    pub fn taken(&self) -> u64 {
        self.taken.load(Ordering::Relaxed)
    }

    /// Newcomers refused because no slot could be taken, since start.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Connections logging in now.
    pub fn held(&self) -> usize {
        self.lock().slots.len()
    }
}

impl Table {
    fn release(&mut self, source: IpAddr) {
        if let Some(n) = self.per_source.get_mut(&source) {
            *n -= 1;
            if *n == 0 {
                self.per_source.remove(&source);
            }
        }
    }

    /// The slot a newcomer from `source` may take. Costs a pass over the
    /// sources and the slots, both at most `maxPendingLogins`, and only when
    /// all are taken.
    fn victim(&self, source: IpAddr, now: Instant) -> Option<u64> {
        let mine = self.per_source.get(&source).copied().unwrap_or(0);
        let (heaviest, most) = self
            .per_source
            .iter()
            .max_by_key(|(_, n)| **n)
            .map(|(s, n)| (*s, *n))?;
        if most > mine + 1 {
            return self
                .slots
                .iter()
                .find(|(_, e)| e.source == heaviest)
                .map(|(id, _)| *id);
        }
        let (id, e) = self
            .slots
            .iter()
            .find(|(_, e)| self.per_source.get(&e.source).copied().unwrap_or(0) >= mine)?;
        (now.duration_since(e.since) >= MIN_HOLD).then_some(*id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[tokio::test(start_paused = true)]
    async fn a_source_holding_more_gives_a_slot_to_another() {
        let p = Pending::new(4);
        let a: Vec<Slot> = (0..4)
            .map(|_| p.admit(ip("192.0.2.1")).ok().expect("slot"))
            .collect();
        // Another address gets in at once, from the one holding all.
        let b = p.admit(ip("192.0.2.2")).ok().expect("a fair share");
        assert!(a[0].taken.is_cancelled(), "the oldest of the heaviest");
        assert!(!a[1].taken.is_cancelled());
        assert_eq!(p.taken(), 1);
        // 3 against 1: one more for b's address; 2 against 2: no more.
        let _b2 = p.admit(ip("192.0.2.2")).ok().expect("one more");
        assert!(p.admit(ip("192.0.2.2")).is_err(), "shares are even");
        assert!(p.admit(ip("192.0.2.1")).is_err(), "too young to take");
        assert_eq!(p.held(), 4);
        drop(b);
        assert_eq!(p.held(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn one_source_recycles_its_own_slots_only_after_min_hold() {
        let p = Pending::new(2);
        let first = p.admit(ip("2001:db8::1")).ok().expect("slot");
        let _second = p.admit(ip("2001:db8::2")).ok().expect("same /64");
        assert!(p.admit(ip("2001:db8::3")).is_err());
        tokio::time::advance(MIN_HOLD).await;
        let _third = p
            .admit(ip("2001:db8::3"))
            .ok()
            .expect("the oldest is old enough");
        assert!(first.taken.is_cancelled());
        drop(first);
        assert_eq!(p.held(), 2, "a taken slot is not given back twice");
    }

    #[tokio::test(start_paused = true)]
    async fn many_sources_of_one_slot_each_turn_over_by_age() {
        let p = Pending::new(3);
        let slots: Vec<Slot> = (1..=3)
            .map(|n| p.admit(ip(&format!("198.51.100.{n}"))).ok().expect("slot"))
            .collect();
        assert!(p.admit(ip("198.51.100.9")).is_err());
        tokio::time::advance(MIN_HOLD).await;
        assert!(p.admit(ip("198.51.100.9")).is_ok());
        assert!(slots[0].taken.is_cancelled());
        assert!(!slots[1].taken.is_cancelled());
    }
}
