//! `/metrics`: frp's names (`frp_server_*`, counters without `_total`, as
//! Go's client writes them), the liveness the heartbeat measures per
//! client, and the process's own metrics.

use hyper::StatusCode;
use net::web::{text, WebResponse};
use prometheus::{Encoder, GaugeVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

use super::shown_name;
use crate::Server;

pub(super) fn render(server: &Server) -> WebResponse {
    match gather(server) {
        Ok(body) => net::web::respond(StatusCode::OK, "text/plain; version=0.0.4", body),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
    }
}

fn gauge_vec(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<IntGaugeVec> {
    let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
    r.register(Box::new(g.clone()))?;
    Ok(g)
}

fn counter_vec(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<IntCounterVec> {
    let c = IntCounterVec::new(Opts::new(name, help), labels)?;
    r.register(Box::new(c.clone()))?;
    Ok(c)
}

fn gather(server: &Server) -> prometheus::Result<Vec<u8>> {
    let r = Registry::new();
    proxies(server, &r)?;
    clients(server, &r)?;
    login_guards(server, &r)?;
    refusals(server, &r)?;
    r.register(Box::new(
        prometheus::process_collector::ProcessCollector::for_self(),
    ))?;
    let mut out = Vec::new();
    prometheus::TextEncoder::new().encode(&r.gather(), &mut out)?;
    Ok(out)
}

/// What the descriptor shares turned away: users' connections (virtual
/// hosts, tcp proxies' users) and proxies' ports.
fn refusals(server: &Server, r: &Registry) -> prometheus::Result<()> {
    let refused = counter_vec(
        r,
        "frp_server_refused_total",
        "Connections and ports turned away for want of descriptors, or beyond one address's part",
        &["share"],
    )?;
    refused
        .with_label_values(&["connections"])
        .inc_by(server.public.refused());
    refused
        .with_label_values(&["ports"])
        .inc_by(server.ports.refused());
    Ok(())
}

/// frp's proxy metrics.
fn proxies(server: &Server, r: &Registry) -> prometheus::Result<()> {
    let counts = gauge_vec(
        r,
        "frp_server_proxy_counts",
        "Online proxies by type",
        &["type"],
    )?;
    let detailed = gauge_vec(
        r,
        "frp_server_proxy_counts_detailed",
        "1 for each online proxy",
        &["type", "name"],
    )?;
    let conns = gauge_vec(
        r,
        "frp_server_connection_counts",
        "Connections open now, per proxy",
        &["name", "type"],
    )?;
    let tin = counter_vec(
        r,
        "frp_server_traffic_in",
        "Bytes from users to the client, per proxy",
        &["name", "type"],
    )?;
    let tout = counter_vec(
        r,
        "frp_server_traffic_out",
        "Bytes from the client to users, per proxy",
        &["name", "type"],
    )?;
    for p in server.records.proxies() {
        let (kind, name) = (p.spec.kind().as_str(), shown_name(&p));
        let (i, o) = p.total();
        tin.with_label_values(&[&name, kind]).inc_by(i);
        tout.with_label_values(&[&name, kind]).inc_by(o);
        if p.online() {
            counts.with_label_values(&[kind]).inc();
            detailed.with_label_values(&[kind, &name]).set(1);
            conns
                .with_label_values(&[&name, kind])
                .set(p.traffic.snapshot().open as i64);
        }
    }
    Ok(())
}

/// frp's client count, and the liveness no peer exports.
fn clients(server: &Server, r: &Registry) -> prometheus::Result<()> {
    let records = &server.records;
    let all = records.clients();
    let online = IntGauge::new("frp_server_client_counts", "Clients logged in now")?;
    online.set(all.iter().filter(|c| c.online()).count() as i64);
    r.register(Box::new(online))?;
    let silence = GaugeVec::new(
        Opts::new(
            "frp_server_client_last_received_seconds",
            "Seconds since anything was received from the client",
        ),
        &["user", "run_id"],
    )?;
    r.register(Box::new(silence.clone()))?;
    let rtt = GaugeVec::new(
        Opts::new(
            "frp_server_client_heartbeat_rtt_seconds",
            "Round trip of the client's last answered heartbeat, as the client reports it",
        ),
        &["user", "run_id"],
    )?;
    r.register(Box::new(rtt.clone()))?;
    let beats = counter_vec(
        r,
        "frp_server_client_heartbeats_received_total",
        "Heartbeats received in the client's current session",
        &["user", "run_id"],
    )?;
    for c in all.iter().filter(|c| c.online()) {
        let labels = [c.user.as_str(), c.run_id.as_str()];
        if let Some(a) = &c.activity {
            silence
                .with_label_values(&labels)
                .set(a.last_recv().elapsed().as_secs_f64());
        }
        if let Some(ms) = super::rtt_ms(c) {
            rtt.with_label_values(&labels).set(ms / 1000.0);
        }
        beats
            .with_label_values(&labels)
            .inc_by(c.beats.load(std::sync::atomic::Ordering::Relaxed));
    }
    let replaced = prometheus::IntCounter::new(
        "frp_server_sessions_replaced_total",
        "Logins that replaced a session of the same client (reconnects)",
    )?;
    replaced.inc_by(records.sessions_replaced());
    r.register(Box::new(replaced))?;
    let failures = counter_vec(
        r,
        "frp_server_login_failures_total",
        "Connections that did not log in, by reason",
        &["reason"],
    )?;
    for (reason, n) in records.login_failures() {
        failures.with_label_values(&[reason]).inc_by(n);
    }
    Ok(())
}

/// What stands between a flood of connections and the logins: delayed
/// answers to failed proofs, and the pending-login slots.
fn login_guards(server: &Server, r: &Registry) -> prometheus::Result<()> {
    let penalties = &server.penalties;
    let delayed = prometheus::IntCounter::new(
        "frp_server_login_failures_delayed_total",
        "Answers to failed proofs held back because their address had failed before",
    )?;
    delayed.inc_by(penalties.delayed());
    r.register(Box::new(delayed))?;
    let addresses = prometheus::IntGauge::new(
        "frp_server_login_failing_addresses",
        "Source addresses with failed proofs in the last 10 minutes",
    )?;
    addresses.set(i64::try_from(penalties.addresses()).unwrap_or(i64::MAX));
    r.register(Box::new(addresses))?;
    let pending = &server.pending;
    let held = IntGauge::new(
        "frp_server_pending_logins",
        "Connections to bindPort that have not logged in yet (transport.maxPendingLogins)",
    )?;
    held.set(i64::try_from(pending.held()).unwrap_or(i64::MAX));
    r.register(Box::new(held))?;
    let closed = counter_vec(
        r,
        "frp_server_pending_logins_closed_total",
        "Connections closed before logging in because every slot was held: \
         taken (a newcomer took the slot) or refused (at accept)",
        &["why"],
    )?;
    closed.with_label_values(&["taken"]).inc_by(pending.taken());
    closed
        .with_label_values(&["refused"])
        .inc_by(pending.refused());
    Ok(())
}
