//! Property tests of the net layer's parsers of peer bytes: a work-stream
//! header cut or split anywhere over a multiplexed stream, and the
//! known-servers file whatever it holds.

use std::time::Duration;

use mux::{self, Mode, MuxConfig};
use proptest::prelude::*;
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

/// How a work-stream header's sender ends: not at all, FIN or reset after
/// `at` bytes.
#[derive(Debug, Clone, Copy)]
enum Cut {
    Whole,
    Fin(usize),
    Reset(usize),
}

fn header_case(pieces: Vec<usize>, cut: Cut, name: String) {
    use wire::message::{StartWork, WorkHeader};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let (a, b) = tokio::io::duplex(1 << 16);
        let client = mux::start(a, Mode::Client, MuxConfig::new(8), CancellationToken::new());
        let mut server = mux::start(b, Mode::Server, MuxConfig::new(8), CancellationToken::new());
        let msg = WorkHeader::Start(StartWork {
            proxy_name: name,
            src: "127.0.0.1:5".parse().expect("addr"),
            dst: "127.0.0.1:6".parse().expect("addr"),
        });
        let mut bytes = bytes::BytesMut::new();
        wire::codec::encode(&msg, &mut bytes).expect("encode");
        let total = bytes.len();
        let upto = match cut {
            Cut::Whole => total,
            Cut::Fin(at) | Cut::Reset(at) => at % total,
        };
        let mut s = client.opener.open().await.expect("open");
        // Each write is a data frame of its own.
        let mut rest = &bytes[..upto];
        for p in pieces.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let k = (*p).clamp(1, rest.len());
            s.write_all(&rest[..k]).await.expect("write");
            rest = &rest[k..];
        }
        match cut {
            Cut::Whole => {}
            Cut::Fin(_) => s.shutdown().await.expect("fin"),
            Cut::Reset(_) => drop(s),
        }
        let mut t = server.incoming.recv().await.expect("accept");
        let got = tokio::time::timeout(Duration::from_secs(5), net::framed::read_message(&mut t))
            .await
            .expect("no hang");
        match cut {
            Cut::Whole => assert_eq!(got.expect("header"), Some(msg)),
            Cut::Fin(_) if upto == 0 => assert!(matches!(got, Ok(None)), "{got:?}"),
            _ => assert!(got.is_err(), "a cut header must be an error: {got:?}"),
        }
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// The work-stream header over a real multiplexed stream: split across
    /// data frames it arrives whole; cut by FIN or reset it is an error.
    #[test]
    fn work_header_split_or_cut_over_a_stream(
        pieces in proptest::collection::vec(1usize..40, 1..8),
        cut in prop_oneof![
            Just(Cut::Whole),
            any::<usize>().prop_map(Cut::Fin),
            any::<usize>().prop_map(Cut::Reset),
        ],
        name in "[a-z]{1,200}",
    ) {
        header_case(pieces, cut, name);
    }

    /// The known-servers file: any contents parse without panic, and a
    /// host's line is found whatever surrounds it.
    #[test]
    fn known_servers_file_parses_anything(
        noise in proptest::collection::vec("[ -~\t]{0,80}", 0..20),
        at in any::<usize>(),
    ) {
        for l in &noise {
            let _ = net::tls::known_fingerprint(l, "h:1");
        }
        let fp = "ab".repeat(32);
        let mut lines: Vec<String> = noise
            .iter()
            .filter(|l| l.split_whitespace().next() != Some("srv:7000"))
            .cloned()
            .collect();
        let i = at % (lines.len() + 1);
        lines.insert(i, format!("srv:7000 {fp}"));
        let text = lines.join("\n");
        let found = net::tls::known_fingerprint(&text, "srv:7000");
        prop_assert_eq!(found.as_deref(), Some(fp.as_str()));
    }
}
