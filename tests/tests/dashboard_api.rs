//! frps's web server against real frps and frpc processes, read with curl
//! and the Prometheus parser: frp's API paths and field names (server
//! info, proxies by type and name, 7-day traffic, clients), what we add
//! (client address and liveness, disconnecting a client), forgetting
//! offline proxies, and `/metrics` with frp's names and the login failures
//! and heartbeats per client; frp's API v2 (`/api/v2/...`: its envelope,
//! paging, filters, sorting, percent-encoded names and prune).

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

// ---------------------------------------------------------------------------
// frp's dashboard API v2 (`/api/v2/...`, in frp's `{code, msg, data}`).

/// A v2 answer that succeeded: its `data`.
fn v2(port: u16, path: &str) -> Value {
    let (code, body) = curl(port, &AUTH, path);
    assert_eq!(code, 200, "{path}: {body}");
    let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
    assert_eq!(
        (&v["code"], &v["msg"]),
        (&200.into(), &"success".into()),
        "{path}: {v}"
    );
    v["data"].clone()
}

/// A v2 answer that failed: frp's envelope, `code` the HTTP status and no
/// `data`; returns (status, msg).
fn v2_failure(port: u16, args: &[&str], path: &str) -> (u16, String) {
    let (code, body) = curl(port, &[&AUTH[..], args].concat(), path);
    let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
    assert_eq!(v["code"], code, "{path}: {v}");
    assert_eq!(v["data"], Value::Null, "{path}: {v}");
    assert_eq!(keys(&v), ["code", "data", "msg"], "{path}: {v}");
    (code, v["msg"].as_str().unwrap_or_default().to_owned())
}

/// An object's keys, sorted.
fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .map(String::as_str)
        .collect();
    k.sort_unstable();
    k
}

/// The `name`s of a page's items.
fn names(page: &Value) -> Vec<&str> {
    let items = page["items"].as_array().unwrap_or_else(|| panic!("{page}"));
    items.iter().filter_map(|i| i["name"].as_str()).collect()
}

/// frps (web server, http vhost) with two clients: alice's (clientID
/// `laptop/ü`) with tcp `echo` (with metadatas and annotations), tcp
/// `my proxy/ü` and udp `josé`, and one without a user with http `web`.
struct V2Lab {
    web: u16,
    frps_port: u16,
    alice: Proc,
    _anonymous: Proc,
    _frps: Proc,
    _dirs: [tempfile::TempDir; 3],
}

fn v2_lab() -> V2Lab {
    let dirs = [(); 3].map(|_| tempfile::tempdir().expect("tempdir"));
    let web = free_port();
    let (frps, frps_port) = spawn_frps(
        dirs[0].path(),
        &format!(
            "{TOKEN}webServer.port = {web}\nwebServer.user = \"ops\"\nwebServer.password = \"pw\"\n\
             vhostHTTPPort = {}\n",
            free_port()
        ),
    );
    let echo = echo_thread();
    let alice = spawn_frpc(
        dirs[1].path(),
        frps_port,
        &format!(
            "{TOKEN}user = \"alice\"\nclientID = \"laptop/ü\"\n{}{}{}{}",
            tcp_proxy("echo", echo, 0),
            "metadatas.team = \"net\"\nannotations.note = \"shown\"\n",
            tcp_proxy("my proxy/ü", echo, 0),
            udp_proxy("josé", echo, 0, "")
        ),
    );
    let anonymous = spawn_frpc(
        dirs[2].path(),
        frps_port,
        &format!(
            "{TOKEN}[[proxies]]\nname = \"web\"\ntype = \"http\"\nlocalPort = {}\n\
             customDomains = [\"web.example.com\"]\n",
            echo.port()
        ),
    );
    eventually("every proxy is online", || {
        let (code, body) = curl(web, &AUTH, "/api/v2/proxies?status=online");
        code == 200 && serde_json::from_str::<Value>(&body).is_ok_and(|v| v["data"]["total"] == 4)
    });
    V2Lab {
        web,
        frps_port,
        alice,
        _anonymous: anonymous,
        _frps: frps,
        _dirs: dirs,
    }
}

/// `/api/v2/system/info` and `/api/v2/users`: frp's fields, frp's zero
/// values for what frps has not (kcp, quic).
#[test]
fn api_v2_system_info_and_users_answer_frps_fields() {
    let lab = v2_lab();
    let web = lab.web;
    let info = v2(web, "/api/v2/system/info");
    assert_eq!(keys(&info), ["config", "status", "version"], "{info}");
    let config = &info["config"];
    let want = [
        "allowPortsStr",
        "bindPort",
        "heartbeatTimeout",
        "kcpBindPort",
        "maxPoolCount",
        "maxPortsPerClient",
        "quicBindPort",
        "subdomainHost",
        "tcpmuxHTTPConnectPort",
        "tlsForce",
        "vhostHTTPPort",
        "vhostHTTPSPort",
    ];
    assert_eq!(keys(config), want, "{info}");
    assert_eq!(config["bindPort"], lab.frps_port, "{info}");
    assert_eq!(
        (&config["kcpBindPort"], &config["quicBindPort"]),
        (&0.into(), &0.into())
    );
    assert_eq!(
        (&config["allowPortsStr"], &config["tlsForce"]),
        (&"".into(), &false.into())
    );
    let status = &info["status"];
    let want = [
        "clientCounts",
        "curConns",
        "proxyTypeCount",
        "totalTrafficIn",
        "totalTrafficOut",
    ];
    assert_eq!(keys(status), want, "{info}");
    assert_eq!(status["clientCounts"], 2, "{info}");
    let counts = serde_json::json!({ "http": 1, "tcp": 2, "udp": 1 });
    assert_eq!(status["proxyTypeCount"], counts, "{info}");

    let users = v2(web, "/api/v2/users");
    let want = serde_json::json!({
        "total": 2, "page": 1, "pageSize": 50, "items": [
            { "user": "", "clientCount": 1, "proxyCount": 1 },
            { "user": "alice", "clientCount": 1, "proxyCount": 3 },
        ],
    });
    assert_eq!(users, want);
    assert_eq!(v2(web, "/api/v2/users?q=ALI")["items"][0]["user"], "alice");
    assert_eq!(
        v2(web, "/api/v2/users?page=2&pageSize=1")["items"][0]["user"],
        "alice"
    );
}

/// `/api/v2/clients` pages, filters and sorts as frp (user, clientID,
/// key); a client's detail sums its proxies; a key is percent-decoded.
#[test]
fn api_v2_clients_page_filter_and_detail_as_frp() {
    let lab = v2_lab();
    let web = lab.web;
    let first = v2(web, "/api/v2/clients?page=1&pageSize=1");
    assert_eq!(
        (&first["total"], &first["pageSize"]),
        (&2.into(), &1.into()),
        "{first}"
    );
    assert_eq!(first["items"][0]["user"], "", "{first}");
    let alice = &v2(web, "/api/v2/clients?page=2&pageSize=1")["items"][0];
    let want = [
        "clientID",
        "clientIP",
        "firstConnectedAt",
        "hostname",
        "key",
        "lastConnectedAt",
        "online",
        "runID",
        "user",
    ];
    assert_eq!(keys(alice), want, "{alice}");
    assert_eq!(alice["clientID"], "laptop/ü", "{alice}");
    assert_eq!(alice["key"], "alice.laptop/ü", "{alice}");
    assert_eq!(
        (&alice["online"], &alice["clientIP"]),
        (&true.into(), &"127.0.0.1".into())
    );
    for (query, total) in [
        ("user=", 1),
        ("user=alice&status=online", 1),
        ("status=offline", 0),
        ("clientID=laptop%2F%C3%BC", 1),
        ("q=LAPTOP", 1),
        ("q=127.0.0.1", 2),
    ] {
        let page = v2(web, &format!("/api/v2/clients?{query}"));
        assert_eq!(page["total"], total, "{query}: {page}");
    }
    let (code, msg) = v2_failure(web, &[], "/api/v2/clients?status=gone");
    assert_eq!(
        (code, msg.as_str()),
        (400, "status must be one of all, online, offline")
    );

    let detail = v2(web, "/api/v2/clients/alice.laptop%2F%C3%BC");
    assert_eq!(detail["clientID"], "laptop/ü", "{detail}");
    // frp's v1 proxy lists name the client too.
    let (_, v1) = curl(web, &AUTH, "/api/proxy/tcp/alice.echo");
    let v1: Value = serde_json::from_str(&v1).expect("json");
    assert_eq!(v1["clientID"], "laptop/ü", "{v1}");
    let status = serde_json::json!({ "phase": "online", "curConns": 0, "proxyCount": 3 });
    assert_eq!(detail["status"], status, "{detail}");
    let (code, msg) = v2_failure(web, &[], "/api/v2/clients/nobody");
    assert_eq!((code, msg.as_str()), (404, "client nobody not found"));
    drop(lab);
}

/// The items of `/api/v2/proxies` (all four, sorted) have frp's fields:
/// an online proxy's block with frp's zero values for what frps does not
/// build, and metadatas and annotations only when it has them.
fn check_proxy_fields(all: &Value) {
    let echo = &all["items"][1];
    assert_eq!(
        keys(echo),
        ["clientID", "name", "spec", "status", "user"],
        "{echo}"
    );
    assert_eq!(
        (&echo["user"], &echo["clientID"]),
        (&"alice".into(), &"laptop/ü".into())
    );
    assert_eq!(keys(&echo["spec"]), ["tcp", "type"], "{echo}");
    let tcp = &echo["spec"]["tcp"];
    let want = [
        "annotations",
        "loadBalancer",
        "metadatas",
        "remotePort",
        "transport",
    ];
    assert_eq!(keys(tcp), want, "{echo}");
    assert_eq!(
        (&tcp["metadatas"]["team"], &tcp["annotations"]["note"]),
        (&"net".into(), &"shown".into())
    );
    let plain = &all["items"][2]["spec"]["tcp"];
    assert_eq!(
        keys(plain),
        ["loadBalancer", "remotePort", "transport"],
        "{all}"
    );
    let transport = serde_json::json!({
        "useEncryption": false, "useCompression": false,
        "bandwidthLimit": "", "bandwidthLimitMode": "",
    });
    assert_eq!(tcp["transport"], transport, "{echo}");
    let want = [
        "curConns",
        "lastStartAt",
        "phase",
        "todayTrafficIn",
        "todayTrafficOut",
    ];
    assert_eq!(keys(&echo["status"]), want, "{echo}");
    assert_eq!(echo["status"]["phase"], "online", "{echo}");
    let http = &all["items"][0]["spec"]["http"];
    assert_eq!(
        http["customDomains"],
        serde_json::json!(["web.example.com"]),
        "{all}"
    );
}

/// `/api/v2/proxies` sorts by type then name, pages, filters (type, user,
/// clientID, status, q over names and the spec) and answers frp's fields.
#[test]
fn api_v2_proxies_page_filter_and_sort_as_frp() {
    let lab = v2_lab();
    let web = lab.web;
    let all = v2(web, "/api/v2/proxies");
    let sorted = ["web", "alice.echo", "alice.my proxy/ü", "alice.josé"];
    assert_eq!(names(&all), sorted, "{all}");
    check_proxy_fields(&all);

    let port = &all["items"][1]["spec"]["tcp"]["remotePort"];
    let port = port.as_u64().expect("remotePort").to_string();
    for (query, want) in [
        ("page=2&pageSize=2", &["alice.my proxy/ü", "alice.josé"][..]),
        ("page=3&pageSize=2", &[]),
        ("type=TCP", &["alice.echo", "alice.my proxy/ü"]),
        ("type=stcp", &[]),
        ("user=", &["web"]),
        ("user=alice&type=udp", &["alice.josé"]),
        ("clientID=laptop%2F%C3%BC&q=MY+PROXY", &["alice.my proxy/ü"]),
        ("q=web.example", &["web"]),
        (&format!("q={port}"), &["alice.echo"]),
        ("status=offline", &[]),
    ] {
        let page = v2(web, &format!("/api/v2/proxies?{query}"));
        assert_eq!(names(&page), want, "{query}: {page}");
    }
    for (query, msg) in [
        (
            "type=sctp",
            "type must be one of tcp, udp, http, https, tcpmux, stcp, xtcp, sudp",
        ),
        ("page=0", "page must be a positive integer"),
        ("pageSize=201", "pageSize must be between 1 and 200"),
        ("page=9223372036854775807&pageSize=2", "page is too large"),
    ] {
        let got = v2_failure(web, &[], &format!("/api/v2/proxies?{query}"));
        assert_eq!(got, (400, msg.to_owned()), "{query}");
    }
    drop(lab);
}

/// A proxy's detail and traffic are found by names percent-decoded after
/// the path is split (`%2F` is part of the name), as frp's router does;
/// unknown names get frp's 404, broken escapes its 400.
#[test]
fn api_v2_proxy_detail_and_traffic_by_percent_encoded_names() {
    let lab = v2_lab();
    let web = lab.web;
    let odd = v2(web, "/api/v2/proxies/alice.my%20proxy%2F%C3%BC");
    assert_eq!(
        (&odd["name"], &odd["spec"]["type"]),
        (&"alice.my proxy/ü".into(), &"tcp".into())
    );
    assert_eq!(
        v2(web, "/api/v2/proxies/alice.jos%C3%A9")["name"],
        "alice.josé"
    );
    let echo = v2(web, "/api/v2/proxies/alice.echo");
    let port = echo["spec"]["tcp"]["remotePort"]
        .as_u64()
        .expect("remotePort");
    echo_through(port as u16, 10_000);
    eventually("today's traffic is counted", || {
        let t = v2(web, "/api/v2/proxies/alice.echo/traffic");
        t["history"][6]["trafficIn"].as_u64() >= Some(10_000)
            && t["history"][6]["trafficOut"].as_u64() >= Some(10_000)
    });
    let status = &v2(web, "/api/v2/proxies/alice.echo")["status"];
    assert!(
        status["todayTrafficIn"].as_u64() >= Some(10_000),
        "{status}"
    );

    let t = v2(web, "/api/v2/proxies/alice.my%20proxy%2F%C3%BC/traffic");
    assert_eq!(keys(&t), ["granularity", "history", "name", "unit"], "{t}");
    assert_eq!(
        (&t["name"], &t["unit"]),
        (&"alice.my proxy/ü".into(), &"bytes".into())
    );
    assert_eq!(t["granularity"], "day", "{t}");
    let history = t["history"].as_array().expect("history");
    assert_eq!(history.len(), 7, "{t}");
    let dates: Vec<&str> = history.iter().filter_map(|p| p["date"].as_str()).collect();
    assert!(dates.windows(2).all(|d| d[0] < d[1]), "oldest first: {t}");
    for p in history {
        assert_eq!(keys(p), ["date", "trafficIn", "trafficOut"], "{t}");
        let date = p["date"].as_str().unwrap_or_default().as_bytes();
        assert!(
            date.len() == 10 && date[4] == b'-' && date[7] == b'-',
            "{t}"
        );
    }

    for path in [
        "/api/v2/proxies/nope",
        "/api/v2/proxies/nope/traffic",
        "/api/v2/proxies/alice.my%20proxy",
    ] {
        let got = v2_failure(web, &[], path);
        assert_eq!(got, (404, "no proxy info found".to_owned()), "{path}");
    }
    // An unencoded `/` separates segments: no such path, as frp's router.
    let (code, body) = curl(web, &AUTH, "/api/v2/proxies/alice.my%20proxy/%C3%BC");
    assert_eq!((code, body.trim_end()), (404, "404 page not found"));
    let got = v2_failure(web, &[], "/api/v2/proxies/%zz/traffic");
    assert_eq!(got, (400, "invalid proxy name".to_owned()));
    assert_eq!(curl(web, &AUTH, "/api/v2/nothing").0, 404);
    assert_eq!(curl(web, &[], "/api/v2/proxies").0, 401);
    drop(lab);
}

/// `POST /api/v2/system/prune?type=offline_proxies` forgets offline
/// proxies (frp prunes nothing else: offline clients stay), says how many
/// of how many; a page of another origin may not ask for it.
#[test]
fn api_v2_prune_forgets_offline_proxies_and_refuses_other_origins() {
    let mut lab = v2_lab();
    let web = lab.web;
    let _ = lab.alice.child.kill();
    eventually("alice's proxies go offline", || {
        v2(web, "/api/v2/proxies?status=offline")["total"] == 3
    });
    let gone = v2(web, "/api/v2/proxies/alice.echo");
    // frp's shell of an offline proxy: the type, an empty block.
    assert_eq!(
        gone["spec"],
        serde_json::json!({ "type": "tcp", "tcp": {} }),
        "{gone}"
    );
    assert_eq!(gone["status"]["phase"], "offline", "{gone}");
    assert!(gone["status"]["lastCloseAt"].as_u64() > Some(0), "{gone}");
    let offline = v2(web, "/api/v2/clients?status=offline");
    assert_eq!(offline["items"][0]["key"], "alice.laptop/ü", "{offline}");
    assert!(
        offline["items"][0]["disconnectedAt"].as_u64() > Some(0),
        "{offline}"
    );

    let prune = "/api/v2/system/prune?type=offline_proxies";
    let post = ["-X", "POST"];
    for foreign in ["Origin: http://evil.example", "Sec-Fetch-Site: cross-site"] {
        let (code, body) = curl(web, &[&AUTH[..], &post, &["-H", foreign]].concat(), prune);
        assert_eq!(code, 403, "{foreign}: {body}");
    }
    assert_eq!(
        v2(web, "/api/v2/proxies")["total"],
        4,
        "a refused prune forgot something"
    );
    assert_eq!(curl(web, &AUTH, prune).0, 405, "a GET prunes nothing");
    for (path, msg) in [
        ("/api/v2/system/prune", "type is required"),
        (
            "/api/v2/system/prune?type=clients",
            "type must be one of offline_proxies",
        ),
    ] {
        assert_eq!(
            v2_failure(web, &post, path),
            (400, msg.to_owned()),
            "{path}"
        );
    }

    let own = format!("Origin: http://127.0.0.1:{web}");
    let (code, body) = curl(web, &[&AUTH[..], &post, &["-H", &own]].concat(), prune);
    assert_eq!(code, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).expect("json");
    let want = serde_json::json!({ "type": "offline_proxies", "cleared": 3, "total": 4 });
    assert_eq!(answer["data"], want, "{answer}");
    assert_eq!(names(&v2(web, "/api/v2/proxies")), ["web"]);
    let users = v2(web, "/api/v2/users");
    assert_eq!(
        users["items"][1],
        serde_json::json!({ "user": "alice", "clientCount": 1, "proxyCount": 0 })
    );
    assert_eq!(
        v2(web, "/api/v2/clients?status=offline")["total"],
        1,
        "offline clients stay"
    );
    let (code, body) = curl(web, &[&AUTH[..], &post].concat(), prune);
    assert_eq!(code, 200, "{body}");
    let again: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(
        (&again["data"]["cleared"], &again["data"]["total"]),
        (&0.into(), &1.into())
    );
}
