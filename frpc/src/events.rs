//! What the client reports to an observer (tests, and the demo).

use tokio::sync::mpsc::UnboundedSender;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    LoggedIn {
        run_id: String,
    },
    ProxyStarted {
        name: String,
        remote_addr: String,
    },
    ProxyFailed {
        name: String,
        error: String,
    },
    SessionLost {
        reason: String,
    },
    /// A heartbeat went out (the tests count them).
    PingSent {
        seq: u32,
    },
}

/// Handle to report events through; cheap to clone, silent when unset.
#[derive(Clone, Default)]
pub struct Events(Option<UnboundedSender<Event>>);

impl Events {
    pub fn new(tx: UnboundedSender<Event>) -> Self {
        Events(Some(tx))
    }

    pub(crate) fn emit(&self, e: Event) {
        if let Some(tx) = &self.0 {
            let _ = tx.send(e);
        }
    }
}
