//! Visitors: a stream a client opens on its own connection to reach a
//! private proxy (`stcp`, `sudp`) of some client. frps reads the stream's
//! [`OpenVisit`], finds the proxy in the one proxy table by its user and
//! name, checks the visitor's user against `allowUsers` and its proof of
//! the secret against the proxy's verifier, answers, and joins the stream
//! to a work stream of the proxy's client. No port is opened for it.
//!
//! Bounds: each visit holds one of the visitor's streams
//! (`maxStreamsPerClient`) from the moment it opens, its request must come
//! within [`OPEN_TIMEOUT`] in one frame of at most the codec's frame size,
//! and once joined it holds one of the proxy's client's streams as any user
//! connection does. A wrong secret is answered after the penalty its
//! address has earned (`penalty.rs`) as a wrong login token is, counted
//! apart from logins.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mux::MuxStream;
use net::framed;
use net::logging::Field;
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};
use wire::message::{OpenVisit, ProxySpec, Visit, VisitAnswer, VisitError, NONCE_LEN};

use crate::proxy::StreamBudget;
use crate::vhost::BackendRef;
use crate::Server;

/// How long a visitor's stream may take to say what it wants.
pub(crate) const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

/// The visiting session, as each of its visits needs it.
#[derive(Clone)]
pub(crate) struct Visitors {
    pub server: Arc<Server>,
    /// The visitor's own user (what `allowUsers` is checked against).
    pub user: String,
    /// The session's login nonce, which visit proofs cover.
    pub nonce: [u8; NONCE_LEN],
    /// The visitor's address, as frps sees it (the work stream's `src`).
    pub peer: SocketAddr,
    pub budget: StreamBudget,
    pub stop: CancellationToken,
    pub tasks: TaskTracker,
    /// The last refusal, to log its repeats quietly.
    pub last_refusal: Arc<std::sync::Mutex<Option<String>>>,
}

impl Visitors {
    /// Takes a stream the client opened. Beyond its stream budget the
    /// stream is reset at once and costs nothing.
    pub fn take(&self, stream: MuxStream) {
        let Ok(permit) = self.budget.permits.clone().try_acquire_owned() else {
            debug!(
                "visitor stream refused: the client has all {} of its streams open",
                self.budget.max
            );
            return;
        };
        let me = self.clone();
        self.tasks.spawn(async move {
            me.visit(stream).await;
            drop(permit);
        });
    }

    async fn visit(&self, mut stream: MuxStream) {
        let id = stream.id();
        let req = tokio::select! {
            _ = self.stop.cancelled() => return,
            r = tokio::time::timeout(OPEN_TIMEOUT, framed::read_message::<Visit, _>(&mut stream)) => r,
        };
        let req = match req {
            Ok(Ok(Some(Visit::Open(req)))) => req,
            Ok(Ok(_)) => return debug!("visitor stream without a request: closed"),
            Ok(Err(e)) => return debug!("visitor stream: {e}"),
            Err(_) => return debug!("visitor stream said nothing for {OPEN_TIMEOUT:?}: closed"),
        };
        let target = match self.admit(&req, id).await {
            Ok(t) => t,
            Err(e) => return self.refuse(stream, &req, e).await,
        };
        let permit = match target.permit() {
            Ok(p) => p,
            Err(max) => {
                let e = VisitError::Refused(format!(
                    "the proxy's client has all {max} of its streams open"
                ));
                return self.refuse(stream, &req, e).await;
            }
        };
        let work = match target.open(self.peer, self.peer).await {
            Ok(w) => w,
            Err(e) => {
                let e = VisitError::Refused(format!("cannot reach the proxy's client: {e:#}"));
                return self.refuse(stream, &req, e).await;
            }
        };
        if answer(&mut stream, Ok(())).await.is_err() {
            return;
        }
        debug!(
            visitor = %Field(&self.user),
            proxy = %Field(&req.server_name),
            "visitor joined to its proxy"
        );
        let mut work = work;
        tokio::select! {
            _ = self.stop.cancelled() => {}
            _ = target.stop().cancelled() => {}
            r = net::relay::relay(&mut stream, &mut work) => debug!("visit ended: {r:?}"),
        }
        drop(permit);
    }

    /// The proxy `req` names, if this visitor may reach it.
    async fn admit(&self, req: &OpenVisit, stream: u32) -> Result<BackendRef, VisitError> {
        let Some((target, spec)) = self
            .server
            .records
            .running(&req.server_user, &req.server_name)
        else {
            return Err(VisitError::NoSuchProxy);
        };
        let private = match &spec {
            ProxySpec::Stcp(p) | ProxySpec::Sudp(p) | ProxySpec::Xtcp(p) => p,
            _ => return Err(VisitError::WrongKind(spec.kind())),
        };
        if spec.kind() != req.kind {
            return Err(VisitError::WrongKind(spec.kind()));
        }
        if !allowed(&private.allow_users, &req.server_user, &self.user) {
            return Err(VisitError::UserNotAllowed);
        }
        let ok = wire::auth::visit_proof_ok(
            &private.verifier,
            &self.nonce,
            stream,
            &self.user,
            &req.proof,
        );
        if !ok {
            let wait = self.server.visit_penalties.failed(self.peer.ip());
            crate::penalty::serve_wait(wait, tokio::time::Instant::now() + OPEN_TIMEOUT).await;
            return Err(VisitError::WrongSecret);
        }
        Ok(target)
    }

    /// Tells the visitor why not; logs it (a refusal the same as this
    /// session's last one at debug, so a visitor retrying cannot flood the
    /// log).
    async fn refuse(&self, mut stream: MuxStream, req: &OpenVisit, e: VisitError) {
        let said = format!("{}/{}: {e}", req.server_user, req.server_name);
        let again = {
            let mut last = self.last_refusal.lock().unwrap_or_else(|p| p.into_inner());
            let again = last.as_deref() == Some(said.as_str());
            *last = Some(said);
            again
        };
        // The visiting client's user and the proxy's (empty: the default
        // user, shown as "").
        let (visitor_user, proxy_user, proxy) = (
            Field(&self.user),
            Field(&req.server_user),
            Field(&req.server_name),
        );
        let from = self.peer;
        if again {
            debug!(%from, %visitor_user, %proxy_user, %proxy, kind = %req.kind, "visitor refused again: {e}");
        } else {
            warn!(%from, %visitor_user, %proxy_user, %proxy, kind = %req.kind, "visitor refused: {e}");
        }
        let told = match self.server.config.detailed_errors_to_client {
            true => e,
            false => VisitError::Refused("refused by the server (its log says why)".into()),
        };
        let _ = answer(&mut stream, Err(told)).await;
        let _ = stream.shutdown().await;
    }
}

/// frp's rule: an empty `allowUsers` admits the proxy's own user only;
/// `"*"` admits every user.
fn allowed(allow: &[String], owner: &str, visitor: &str) -> bool {
    match allow {
        [] => owner == visitor,
        list => list.iter().any(|u| u == "*" || u == visitor),
    }
}

async fn answer(stream: &mut MuxStream, result: Result<(), VisitError>) -> std::io::Result<()> {
    let msg = Visit::Answer(VisitAnswer { result });
    framed::write_message(stream, &msg)
        .await
        .map_err(std::io::Error::other)?;
    stream.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_users_follows_frp() {
        assert!(allowed(&[], "alice", "alice"));
        assert!(!allowed(&[], "alice", "bob"));
        assert!(allowed(&["bob".into()], "alice", "bob"));
        assert!(!allowed(&["bob".into()], "alice", "alice"));
        assert!(allowed(&["*".into()], "alice", "carol"));
    }
}
