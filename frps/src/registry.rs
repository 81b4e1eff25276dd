//! Server-wide bookkeeping: which run ids are online and which proxy names
//! are taken. Proxy names are unique per user, as in frp.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use shared::transport::BoxIo;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// What a newer login with the same run id needs to retire a session.
#[derive(Clone)]
pub(crate) struct SessionHandle {
    pub id: u64,
    pub user: String,
    pub close: CancellationToken,
    /// Closed once the session and all its proxies have ended.
    pub tasks: TaskTracker,
    /// Where work connections of a non-multiplexed client go.
    pub work: Option<mpsc::Sender<BoxIo>>,
}

#[derive(Default)]
pub(crate) struct Registry {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    next_id: u64,
    sessions: HashMap<String, SessionHandle>,
    proxies: HashSet<(String, String)>,
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

    /// Registers `handle` for `run_id`, returning the session it replaces.
    pub(crate) fn insert_session(
        &self,
        run_id: &str,
        handle: SessionHandle,
    ) -> Option<SessionHandle> {
        self.lock().sessions.insert(run_id.to_owned(), handle)
    }

    /// The user and work-connection queue of the session `run_id`.
    pub(crate) fn work_queue(&self, run_id: &str) -> Option<(String, mpsc::Sender<BoxIo>)> {
        let inner = self.lock();
        let h = inner.sessions.get(run_id)?;
        Some((h.user.clone(), h.work.clone()?))
    }

    /// Removes the entry only if it still belongs to session `id`.
    pub(crate) fn remove_session(&self, run_id: &str, id: u64) {
        let mut inner = self.lock();
        if inner.sessions.get(run_id).is_some_and(|h| h.id == id) {
            inner.sessions.remove(run_id);
        }
    }

    /// Claims a proxy name for `user`; false when it is taken.
    pub(crate) fn claim_proxy(&self, user: &str, name: &str) -> bool {
        self.lock()
            .proxies
            .insert((user.to_owned(), name.to_owned()))
    }

    pub(crate) fn release_proxy(&self, user: &str, name: &str) {
        self.lock()
            .proxies
            .remove(&(user.to_owned(), name.to_owned()));
    }
}
