//! Property tests of the multiplexer's receive side, fed by a hostile peer:
//! arbitrary frames (mostly well formed, some not) and raw garbage, cut into
//! arbitrary read sizes, into a server-mode session over an in-memory pipe,
//! while a task accepts, reads and drops streams at random. Whatever comes
//! in: no panic (debug build: overflow checks on), no stream holds more
//! than its window, and what the session holds stays within its bounds.

use std::time::Duration;

use mux::{self, frame, Mode, MuxConfig};
use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
enum Op {
    Frame {
        kind: u8,
        flags: u16,
        id: u32,
        len: u32,
        payload: usize,
    },
    Garbage(Vec<u8>),
}

fn op() -> impl Strategy<Value = Op> {
    let frame = (
        prop_oneof![8 => 0u8..4, 1 => 4u8..=255],
        0u16..16,
        prop_oneof![6 => 0u32..12, 1 => any::<u32>()],
        prop_oneof![6 => 0u32..4096, 1 => 4096u32..300_000, 1 => any::<u32>()],
    )
        .prop_map(|(kind, flags, id, len)| Op::Frame {
            kind,
            flags,
            id,
            len,
            // Data frames usually carry what their header says.
            payload: if kind == 0 {
                len.min(300_000) as usize
            } else {
                0
            },
        });
    prop_oneof![
        12 => frame,
        1 => proptest::collection::vec(any::<u8>(), 1..64).prop_map(Op::Garbage),
    ]
}

fn encode(ops: &[Op]) -> Vec<u8> {
    let mut out = Vec::new();
    for op in ops {
        match op {
            Op::Frame {
                kind,
                flags,
                id,
                len,
                payload,
            } => {
                let mut h = frame::Header::new(frame::Kind::Data, *flags, *id, *len).to_bytes();
                h[1] = *kind;
                out.extend_from_slice(&h);
                out.extend((0..*payload).map(|i| i as u8));
            }
            Op::Garbage(g) => out.extend_from_slice(g),
        }
    }
    out
}

/// Accepts streams; reads some, keeps some unread, drops others, as
/// `choices` says.
async fn consume(
    mut incoming: tokio::sync::mpsc::UnboundedReceiver<mux::MuxStream>,
    choices: Vec<u8>,
) -> Vec<mux::MuxStream> {
    let mut kept = Vec::new();
    let mut i = 0;
    while let Some(mut s) = incoming.recv().await {
        let c = choices.get(i % choices.len().max(1)).copied().unwrap_or(0);
        i += 1;
        match c % 3 {
            0 => drop(s),
            1 => kept.push(s),
            _ => {
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 1 + c as usize * 37];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                    }
                });
            }
        }
    }
    kept
}

fn run_case(input: Vec<u8>, cuts: Vec<usize>, choices: Vec<u8>, untrusted: bool) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let (mut peer, ours) = tokio::io::duplex(1 << 20);
        let cfg = MuxConfig::new(64);
        let cfg = if untrusted { cfg.untrusted() } else { cfg };
        let pause = cfg.out_pause;
        let session = mux::start(ours, Mode::Server, cfg, CancellationToken::new());
        let mut driver = session.driver;
        let opener = session.opener.clone();
        let consumer = tokio::spawn(consume(session.incoming, choices));
        let (mut peer_r, mut peer_w) = tokio::io::split(&mut peer);
        let drain = async {
            let mut sink = vec![0u8; 16 * 1024];
            while let Ok(n) = peer_r.read(&mut sink).await {
                if n == 0 {
                    break;
                }
            }
        };
        let feed = async {
            let mut rest = &input[..];
            for cut in cuts.iter().cycle() {
                if rest.is_empty() {
                    break;
                }
                let k = (*cut).clamp(1, rest.len());
                if peer_w.write_all(&rest[..k]).await.is_err() {
                    break;
                }
                rest = &rest[k..];
                tokio::task::yield_now().await;
                let st = opener.stats();
                assert_eq!(
                    st.over_window, 0,
                    "a stream holds more than its window: {st:?}"
                );
                // Streams' queues are within their windows (16 MiB at most
                // each); replies within the pause plus one frame's worth
                // per stream the session may hold.
                assert!(st.queued <= st.windows, "{st:?}");
                assert!(
                    st.outgoing <= pause + (64 + 2) * frame::HEADER_LEN + 64 * 1024,
                    "{st:?}"
                );
            }
            let _ = peer_w.shutdown().await;
        };
        let ended = tokio::time::timeout(Duration::from_secs(20), async {
            tokio::join!(feed, drain);
        })
        .await;
        assert!(ended.is_ok(), "the session stopped reading for good");
        let res = tokio::time::timeout(Duration::from_secs(20), &mut driver)
            .await
            .expect("the session ends after EOF or an error");
        assert!(res.is_ok(), "the driver panicked: {res:?}");
        consumer.abort();
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn hostile_frames_never_panic_or_overrun_bounds(
        ops in proptest::collection::vec(op(), 1..80),
        cuts in proptest::collection::vec(1usize..9000, 1..16),
        choices in proptest::collection::vec(any::<u8>(), 1..16),
        untrusted in any::<bool>(),
    ) {
        run_case(encode(&ops), cuts, choices, untrusted);
    }

    /// Pure noise (nearly always a protocol error at once).
    #[test]
    fn random_bytes_never_panic(
        input in proptest::collection::vec(any::<u8>(), 0..4096),
        cuts in proptest::collection::vec(1usize..700, 1..8),
    ) {
        run_case(input, cuts, vec![2], true);
    }
}
