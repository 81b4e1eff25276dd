//! Socket options of tunnel connections: TCP keepalive as a complement to
//! the heartbeat, and on Linux `TCP_USER_TIMEOUT`, so a write stuck in
//! retransmission fails at the same bound as the heartbeat timeout instead
//! of after ~15 minutes. (`TCP_NOTSENT_LOWAT` was measured: it halved a
//! small frame's wait beside a bulk stream but cost TLS tunnels a quarter
//! of their throughput and half again the CPU per byte.)

use std::time::Duration;

use socket2::{SockRef, TcpKeepalive};
use tokio::net::TcpStream;

/// Applies the options; failures are reported, not fatal (the heartbeat is
/// the mechanism, these only tighten it).
pub fn tune(tcp: &TcpStream, keepalive: Option<Duration>, user_timeout: Option<Duration>) {
    let sock = SockRef::from(tcp);
    if let Some(idle) = keepalive {
        // Probe every idle/3 (at least 1 s) after `idle` of silence.
        let ka = TcpKeepalive::new()
            .with_time(idle)
            .with_interval((idle / 3).max(Duration::from_secs(1)));
        if let Err(e) = sock.set_tcp_keepalive(&ka) {
            tracing::warn!("cannot enable TCP keepalive: {e}");
        }
    }
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if let Err(e) = sock.set_tcp_user_timeout(user_timeout) {
        tracing::warn!("cannot set TCP_USER_TIMEOUT: {e}");
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = user_timeout;
}
