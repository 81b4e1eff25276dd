//! A logged-in client attacking private proxies through visitor streams,
//! against the real frps binary: streams that never say what they want,
//! beyond the client's stream budget, and a flood of secret guesses. What
//! such a client can make frps hold is its own `maxStreamsPerClient`
//! streams, each for at most the 10 s a visit has to open; its guesses
//! cost it the login penalty and are logged once; other clients' visitors
//! keep working throughout.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use e2e::raw::{self, LoginOutcome, Raw};
use e2e::services::{banner, greeting};
use e2e::*;
use mux::frame::{Kind, FIN, RST, SYN};
use wire::message::{OpenVisit, ProxyKind, Visit, VisitError};

const TOKEN: &str = "visitor-attack";
/// frps's `maxStreamsPerClient` here: the control stream and 15 more.
const BUDGET: usize = 16;
const SILENT: u32 = 200;

async fn attacker(addr: SocketAddr) -> Raw {
    let mut r = Raw::new(raw::connect_plain(addr).await);
    let login = r
        .login_with(TOKEN, |l| {
            l.user = "mallory".into();
            l.caps = vec![wire::caps::VISITORS.into()];
        })
        .await;
    assert!(matches!(login, LoginOutcome::Accepted { .. }), "{login:?}");
    r
}

/// Reads frames until every stream of `ids` has ended (FIN or RST from
/// frps) or `within` has passed; returns the ids that ended, and each
/// stream's data.
async fn ends(
    r: &mut Raw,
    ids: &HashSet<u32>,
    within: Duration,
) -> (HashSet<u32>, HashMap<u32, BytesMut>) {
    let deadline = Instant::now() + within;
    let (mut ended, mut data) = (HashSet::new(), HashMap::<u32, BytesMut>::new());
    while ended.len() < ids.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(Ok(Some((h, payload)))) = tokio::time::timeout(left, r.next_frame()).await else {
            break;
        };
        if !ids.contains(&h.id) {
            continue;
        }
        if h.kind == Kind::Data {
            data.entry(h.id).or_default().extend_from_slice(&payload);
        }
        if h.flags & (FIN | RST) != 0 {
            ended.insert(h.id);
        }
    }
    (ended, data)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_streams_and_secret_guesses_cost_only_the_attacker() {
    let dir = tempfile::tempdir().expect("tempdir");
    let web = free_port();
    let (mut frps, port) = spawn_frps(
        dir.path(),
        &format!(
            "auth.token = \"{TOKEN}\"\ntransport.maxStreamsPerClient = {BUDGET}\n\
             webServer.port = {web}\nenablePrometheus = true\n"
        ),
    );
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let hello = banner("private hello\n");
    let owner_dir = tempfile::tempdir().expect("tempdir");
    let mut owner = spawn_frpc(
        owner_dir.path(),
        port,
        &format!(
            "auth.token = \"{TOKEN}\"\nuser = \"alice\"\n[[proxies]]\nname = \"hello\"\n\
             type = \"stcp\"\nsecretKey = \"k\"\nlocalPort = {}\nallowUsers = [\"*\"]\n",
            hello.port()
        ),
    );
    owner.wait_line("private proxy started", WAIT);
    let visit_port = free_port();
    let visitor_dir = tempfile::tempdir().expect("tempdir");
    let mut visitor = spawn_frpc(
        visitor_dir.path(),
        port,
        &format!(
            "auth.token = \"{TOKEN}\"\nuser = \"bob\"\n[[visitors]]\nname = \"v\"\ntype = \"stcp\"\n\
             serverUser = \"alice\"\nserverName = \"hello\"\nsecretKey = \"k\"\nbindPort = {visit_port}\n"
        ),
    );
    visitor.wait_line("logged in to server", WAIT);

    // 200 streams that never say what they want.
    let mut r = attacker(addr).await;
    let ids: HashSet<u32> = (0..SILENT).map(|i| 3 + 2 * i).collect();
    let mut opens = Vec::new();
    for id in &ids {
        opens.extend_from_slice(&raw::header(Kind::WindowUpdate, SYN, *id, 0));
    }
    r.send(&opens).await.expect("open streams");
    // Those beyond the budget are reset at once; the budget's worth stay.
    let (early, _) = ends(&mut r, &ids, Duration::from_secs(3)).await;
    assert!(
        early.len() >= SILENT as usize - (BUDGET - 1),
        "{} of {SILENT} silent streams ended early",
        early.len()
    );
    // Meanwhile another client's visitor works.
    let seen = tokio::task::spawn_blocking(move || greeting(visit_port))
        .await
        .expect("greeting");
    assert_eq!(seen.as_deref(), Some("private hello\n"));
    // The rest end when their 10 s to speak are up.
    let rest: HashSet<u32> = ids.difference(&early).copied().collect();
    let (late, _) = ends(&mut r, &rest, Duration::from_secs(30)).await;
    assert_eq!(
        late.len(),
        rest.len(),
        "silent streams still held after 30 s"
    );

    // Ten guesses at once, each with a proof of no secret: each is told
    // "wrong secretKey" (after the penalty its address earned), and frps
    // logs the refusal once, its repeats at debug.
    let guesses: HashSet<u32> = (0..10).map(|i| 1001 + 2 * i).collect();
    let mut frames = Vec::new();
    for id in &guesses {
        let open = Visit::Open(OpenVisit {
            server_user: "alice".into(),
            server_name: "hello".into(),
            kind: ProxyKind::Stcp,
            proof: [*id as u8; 32],
        });
        frames.extend(raw::message_frame(*id, SYN, &open));
    }
    r.send(&frames).await.expect("guesses");
    let (answered, mut data) = ends(&mut r, &guesses, Duration::from_secs(30)).await;
    assert_eq!(answered.len(), guesses.len(), "every guess answered");
    for id in &guesses {
        let buf = data.get_mut(id).expect("an answer");
        match wire::codec::decode::<Visit>(buf) {
            Ok(Some(Visit::Answer(a))) => assert_eq!(a.result, Err(VisitError::WrongSecret)),
            other => panic!("stream {id}: {other:?}"),
        }
    }
    frps.wait_line("visitor refused: wrong secretKey", WAIT);
    // The visitor still works, and frps logged no second refusal line.
    let seen = tokio::task::spawn_blocking(move || greeting(visit_port))
        .await
        .expect("greeting");
    assert_eq!(seen.as_deref(), Some("private hello\n"));
    assert!(
        frps.first_of(&["visitor refused"], Duration::from_secs(1))
            .is_none(),
        "a repeated refusal was logged again: {}",
        frps.output()
    );
    // Secret guesses are counted apart from logins: the address's logins
    // earned no penalty.
    let metrics = tokio::task::spawn_blocking(move || {
        e2e::web::prometheus_samples(&e2e::web::curl(web, &[], "/metrics").1)
    })
    .await
    .expect("metrics");
    for want in [
        "frp_server_login_failures_delayed_total{} 0.0",
        "frp_server_login_failing_addresses{} 0.0",
    ] {
        assert!(metrics.contains(want), "{want} not in\n{metrics}");
    }
}
