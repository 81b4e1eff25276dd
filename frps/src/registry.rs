//! The sessions online, by user and run id: what a newer login of the same
//! client retires, and where a non-multiplexed client's work connections
//! go. Proxies are kept in `records`, once each.

use std::collections::HashMap;
use std::sync::Mutex;

use std::sync::Arc;

use net::stats::{Traffic, TrafficSnapshot};
use tokio_util::sync::CancellationToken;

use crate::pool::WorkQueue;

/// A session is known by its user and run id: a run id presented by
/// another user is another session, never a replacement.
pub(crate) type SessionKey = (String, String);

/// What a newer login with the same run id needs to retire a session.
#[derive(Clone)]
pub(crate) struct SessionHandle {
    pub id: u64,
    pub close: CancellationToken,
    /// Cancelled once the session has ended: its proxies closed, their
    /// names and ports released, its connections finished.
    pub ended: CancellationToken,
    /// Where work connections of a non-multiplexed client go.
    pub work: Option<Arc<WorkQueue>>,
    /// Bytes of all the client's proxies.
    pub traffic: Arc<Traffic>,
}

/// Live figures of one client session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientStats {
    pub user: String,
    pub run_id: String,
    pub traffic: TrafficSnapshot,
}

#[derive(Default)]
pub(crate) struct Registry {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    next_id: u64,
    sessions: HashMap<SessionKey, SessionHandle>,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps inconsistent
        // (every update is a single insert or remove), so poisoning is ignored.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn next_session_id(&self) -> u64 {
        let mut inner = self.lock();
        inner.next_id += 1;
        inner.next_id
    }

    /// Registers `handle` under `key`, returning the session it replaces.
    pub(crate) fn insert_session(
        &self,
        key: &SessionKey,
        handle: SessionHandle,
    ) -> Option<SessionHandle> {
        self.lock().sessions.insert(key.clone(), handle)
    }

    /// The work-connection queue of `user`'s session `run_id`.
    pub(crate) fn work_queue(&self, user: &str, run_id: &str) -> Option<Arc<WorkQueue>> {
        let inner = self.lock();
        inner
            .sessions
            .get(&(user.to_owned(), run_id.to_owned()))?
            .work
            .clone()
    }

    /// Removes the entry only if it still belongs to session `id`.
    pub(crate) fn remove_session(&self, key: &SessionKey, id: u64) {
        let mut inner = self.lock();
        if inner.sessions.get(key).is_some_and(|h| h.id == id) {
            inner.sessions.remove(key);
        }
    }

    /// Every client session with its live counters.
    pub(crate) fn client_stats(&self) -> Vec<ClientStats> {
        let mut out: Vec<_> = self
            .lock()
            .sessions
            .iter()
            .map(|((user, run_id), h)| ClientStats {
                user: user.clone(),
                run_id: run_id.clone(),
                traffic: h.traffic.snapshot(),
            })
            .collect();
        out.sort_by(|a, b| (&a.user, &a.run_id).cmp(&(&b.user, &b.run_id)));
        out
    }
}
