//! frps's web server against real frps and frpc processes, read with curl
//! and the Prometheus parser: frp's API paths and field names (server
//! info, proxies by type and name, 7-day traffic, clients), what we add
//! (client address and liveness, disconnecting a client), forgetting
//! offline proxies, and `/metrics` with frp's names and the login failures
//! and heartbeats per client.

use std::io::{Read, Write};
use std::net::TcpStream;

use e2e::services::*;
use e2e::web::{curl, prometheus_samples};
use e2e::*;
use serde_json::Value;

const TOKEN: &str = "auth.token = \"dash\"\n";
const AUTH: [&str; 2] = ["-u", "ops:pw"];

fn api(port: u16, path: &str) -> Value {
    let (code, body) = curl(port, &AUTH, path);
    assert_eq!(code, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

/// One line of the parsed metrics starting with `prefix`, its value.
fn sample(samples: &str, prefix: &str) -> Option<f64> {
    samples
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// Echoes `n` bytes through the proxy at `port`.
fn echo_through(port: u16, n: usize) {
    let mut user = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let data = pattern(n, 7);
    user.write_all(&data).expect("write");
    let mut back = vec![0u8; data.len()];
    user.read_exact(&mut back).expect("read");
    assert_eq!(back, data);
}

#[test]
fn traffic_history_survives_a_restart_of_frps() {
    let dir = tempfile::tempdir().expect("tempdir");
    let web = free_port();
    let extra = format!(
        "{TOKEN}webServer.port = {web}\nwebServer.user = \"ops\"\nwebServer.password = \"pw\"\n"
    );
    let echo = echo_thread();
    let proxy = format!("{TOKEN}{}", tcp_proxy("echo", echo, 0));
    let (mut frps, frps_port) = spawn_frps(dir.path(), &extra);
    let mut frpc = spawn_frpc(dir.path(), frps_port, &proxy);
    echo_through(
        port_from_line(&frpc.wait_line("proxy started", WAIT)),
        20_000,
    );
    eventually("today's traffic is counted", || {
        api(web, "/api/traffic/echo")["trafficIn"][0].as_u64() >= Some(20_000)
    });
    // A clean stop writes the history; a new frps reads it.
    frps.signal("TERM");
    assert_eq!(frps.wait_exit(WAIT), Some(0), "{}", frps.output());
    drop(frpc);
    let (_frps, frps_port) = spawn_frps(dir.path(), &extra);
    let mut frpc = spawn_frpc(dir.path(), frps_port, &proxy);
    frpc.wait_line("proxy started", WAIT);
    let t = api(web, "/api/traffic/echo");
    assert!(
        t["trafficIn"][0].as_u64() >= Some(20_000),
        "history lost: {t}"
    );
    assert!(
        t["trafficOut"][0].as_u64() >= Some(20_000),
        "history lost: {t}"
    );
    assert!(api(web, "/api/proxies/echo")["todayTrafficIn"].as_u64() >= Some(20_000));
}

#[test]
fn frp_api_paths_and_fields_with_liveness_and_metrics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let web = free_port();
    let (frps, frps_port) = spawn_frps(
        dir.path(),
        &format!(
            "{TOKEN}webServer.port = {web}\nwebServer.user = \"ops\"\nwebServer.password = \"pw\"\n\
             enablePrometheus = true\n"
        ),
    );
    let echo_addr = echo_thread();
    // Beats every second, so frps soon knows the client's round trip.
    let mut frpc = spawn_frpc(
        dir.path(),
        frps_port,
        &format!(
            "{TOKEN}transport.heartbeatInterval = 1\n{}",
            tcp_proxy("echo", echo_addr, 0)
        ),
    );
    let port = port_from_line(&frpc.wait_line("proxy started", WAIT));

    assert_eq!(curl(web, &[], "/healthz").0, 200);
    assert_eq!(curl(web, &[], "/api/serverinfo").0, 401);
    let info = api(web, "/api/serverinfo");
    assert_eq!(info["bindPort"], frps_port, "{info}");
    assert_eq!(info["clientCounts"], 1, "{info}");
    assert_eq!(info["proxyTypeCount"]["tcp"], 1, "{info}");

    // 10 000 bytes each way through the proxy, counted for today.
    echo_through(port, 10_000);
    eventually("today's traffic is counted", || {
        let p = api(web, "/api/proxy/tcp");
        p["proxies"][0]["todayTrafficIn"].as_u64() >= Some(10_000)
            && p["proxies"][0]["todayTrafficOut"].as_u64() >= Some(10_000)
    });
    let p = &api(web, "/api/proxy/tcp")["proxies"][0];
    assert_eq!(p["name"], "echo");
    assert_eq!(p["status"], "online");
    assert_eq!(p["conf"]["remotePort"], port);
    assert_eq!(api(web, "/api/proxies/echo")["name"], "echo");
    assert_eq!(api(web, "/api/proxy/tcp/echo")["name"], "echo");
    assert_eq!(curl(web, &AUTH, "/api/proxy/udp/echo").0, 404);
    let t = api(web, "/api/traffic/echo");
    assert_eq!(t["trafficIn"].as_array().map(Vec::len), Some(7), "{t}");
    assert!(t["trafficOut"][0].as_u64() >= Some(10_000), "{t}");

    // The client, with its address and liveness.
    let clients = api(web, "/api/clients");
    let c = &clients[0];
    assert_eq!(c["online"], true, "{clients}");
    assert_eq!(c["clientIP"], "127.0.0.1", "{clients}");
    assert!(c["lastReceivedSecs"].as_f64().is_some(), "{clients}");
    let key = c["key"].as_str().expect("key").to_owned();
    eventually("the client's beats report its round trip", || {
        api(web, "/api/clients")[0]["heartbeatRttMs"].as_f64() > Some(0.0)
    });
    assert_eq!(
        api(web, &format!("/api/clients/{key}"))["runID"],
        c["runID"]
    );

    // A login with a wrong token is counted by reason.
    let mut stranger = spawn_frpc(
        dir.path(),
        frps_port,
        &format!("auth.token = \"wrong\"\n{}", tcp_proxy("x", echo_addr, 0)),
    );
    let _ = stranger.wait_exit(WAIT);
    let (_, metrics) = curl(web, &AUTH, "/metrics");
    // frp's exact names on the wire (the parser reads counters as `_total`).
    for name in ["frp_server_traffic_in{", "frp_server_traffic_out{"] {
        assert!(
            metrics.lines().any(|l| l.starts_with(name)),
            "{name} missing:\n{metrics}"
        );
    }
    let samples = prometheus_samples(&metrics);
    assert_eq!(
        sample(&samples, "frp_server_client_counts{}"),
        Some(1.0),
        "{samples}"
    );
    assert_eq!(
        sample(&samples, "frp_server_proxy_counts{type=tcp}"),
        Some(1.0),
        "{samples}"
    );
    assert!(
        sample(&samples, "frp_server_traffic_in_total{name=echo,type=tcp}") >= Some(10_000.0),
        "{samples}"
    );
    assert!(
        sample(&samples, "frp_server_traffic_out_total{name=echo,type=tcp}") >= Some(10_000.0),
        "{samples}"
    );
    assert_eq!(
        sample(
            &samples,
            "frp_server_login_failures_total{reason=invalid_token}"
        ),
        Some(1.0),
        "{samples}"
    );
    assert!(
        sample(&samples, "frp_server_client_last_received_seconds{").is_some(),
        "{samples}"
    );
    assert!(
        sample(&samples, "frp_server_client_heartbeat_rtt_seconds{") > Some(0.0),
        "{samples}"
    );
    assert!(
        sample(&samples, "process_resident_memory_bytes{}") > Some(0.0),
        "{samples}"
    );

    // Disconnecting the client from the API: frpc notices and comes back.
    let (code, body) = curl(
        web,
        &["-u", "ops:pw", "-X", "DELETE"],
        &format!("/api/clients/{key}"),
    );
    assert_eq!(code, 200, "{body}");
    frpc.wait_line("connection to server lost", WAIT);
    frpc.wait_line("proxy started", WAIT);
    eventually("the client is back online", || {
        api(web, "/api/serverinfo")["clientCounts"] == 1
    });

    // Stopped, its proxy is offline until forgotten.
    drop(frpc);
    eventually("the proxy goes offline", || {
        api(web, "/api/proxies/echo")["status"] == "offline"
    });
    assert_eq!(api(web, "/api/serverinfo")["clientCounts"], 0);
    let (code, _) = curl(
        web,
        &["-u", "ops:pw", "-X", "DELETE"],
        "/api/proxies?status=offline",
    );
    assert_eq!(code, 200);
    assert_eq!(curl(web, &AUTH, "/api/proxies/echo").0, 404);
    drop(frps);
}

/// Two users whose clients share a clientID (their run id) are two
/// clients: each is found under `user.runID`, a bare run id names neither,
/// and disconnecting one leaves the other online.
#[test]
fn clients_of_two_users_with_one_run_id_are_told_apart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let web = free_port();
    let extra = format!(
        "{TOKEN}webServer.port = {web}\nwebServer.user = \"ops\"\nwebServer.password = \"pw\"\n"
    );
    let (_frps, port) = spawn_frps(dir.path(), &extra);
    let mut frpcs = Vec::new();
    for user in ["alice", "bob"] {
        let d = tempfile::tempdir().expect("tempdir");
        let mut p = spawn_frpc(
            d.path(),
            port,
            &format!("{TOKEN}user = \"{user}\"\nclientID = \"same\"\nloginFailExit = false\n"),
        );
        p.wait_line("logged in", WAIT);
        frpcs.push((p, d));
    }
    for user in ["alice", "bob"] {
        let c = api(web, &format!("/api/clients/{user}.same"));
        assert_eq!(c["user"], user, "{c}");
    }
    assert_eq!(curl(web, &AUTH, "/api/clients/same").0, 404);
    let (code, body) = curl(
        web,
        &[&AUTH[..], &["-X", "DELETE"]].concat(),
        "/api/clients/bob.same",
    );
    assert_eq!(code, 200, "{body}");
    frpcs[1].0.wait_line("reconnect", WAIT);
    let alice = api(web, "/api/clients/alice.same");
    assert_eq!(alice["online"], true, "{alice}");
    assert_eq!(frpcs[0].0.output().matches("logged in").count(), 1);
}
