//! Arbitrary bytes, in arbitrary read sizes, into a server-mode multiplexed
//! session over an in-memory pipe, with a consumer that accepts, reads and
//! drops streams as the input says. Finds panics (overflow checks are on in
//! fuzz builds) and broken bounds: no stream may hold more than its window.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mux::{self, Mode, MuxConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    // First byte: read sizes and consumer behaviour; the rest: the wire.
    let (knobs, wire) = (data[0], &data[1..]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let (mut peer, ours) = tokio::io::duplex(1 << 20);
        let cfg = MuxConfig::new(32);
        let cfg = if knobs & 1 == 0 { cfg.untrusted() } else { cfg };
        let mut session = mux::start(ours, Mode::Server, cfg, CancellationToken::new());
        let opener = session.opener.clone();
        let consumer = tokio::spawn(async move {
            let mut kept = Vec::new();
            let mut n = 0u32;
            while let Some(mut s) = session.incoming.recv().await {
                n += 1;
                match (u32::from(knobs >> 1) + n) % 3 {
                    0 => drop(s),
                    1 => kept.push(s),
                    _ => {
                        tokio::spawn(async move {
                            let mut buf = [0u8; 777];
                            while let Ok(k) = s.read(&mut buf).await {
                                if k == 0 {
                                    break;
                                }
                            }
                        });
                    }
                }
            }
        });
        let cut = 1 + (knobs as usize >> 3) * 61;
        let (mut r, mut w) = tokio::io::split(&mut peer);
        let feed = async {
            for piece in wire.chunks(cut) {
                if w.write_all(piece).await.is_err() {
                    break;
                }
                tokio::task::yield_now().await;
                let st = opener.stats();
                assert_eq!(st.over_window, 0, "{st:?}");
                assert!(st.queued <= st.windows, "{st:?}");
            }
            let _ = w.shutdown().await;
        };
        let drain = async {
            let mut sink = [0u8; 4096];
            while let Ok(k) = r.read(&mut sink).await {
                if k == 0 {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), async {
            tokio::join!(feed, drain)
        })
        .await;
        if let Ok(res) =
            tokio::time::timeout(std::time::Duration::from_secs(5), &mut session.driver).await
        {
            assert!(res.is_ok(), "driver panicked");
        }
        consumer.abort();
    });
});
