//! Feeds arbitrary bytes to the frame decoder and to the message parser.
//! Any panic, overflow or out-of-bounds access is a bug; errors are fine.
//! Run with `make fuzz` from the repository root.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use shared::codec::{self, MAX_FRAME_LEN};
use shared::protocol::Message;

fuzz_target!(|data: &[u8]| {
    // A stream of frames: decode until more bytes are needed or it fails.
    let mut buf = BytesMut::from(data);
    while let Ok(Some(msg)) = codec::decode(&mut buf) {
        // Whatever a peer can make us decode, we can encode again, within
        // the frame limit, and it decodes to the same message.
        let mut out = BytesMut::new();
        codec::encode(&msg, &mut out).expect("a decoded message re-encodes");
        assert!(out.len() <= 2 + MAX_FRAME_LEN);
        let again = codec::decode(&mut out).expect("re-encoded frame decodes");
        assert_eq!(again.as_ref(), Some(&msg));
        assert!(out.is_empty());
    }

    // The bare message parser, without a frame header in front.
    if let Ok(msg) = postcard::from_bytes::<Message>(data) {
        let bytes = postcard::to_stdvec(&msg).expect("a parsed message serializes");
        let again = postcard::from_bytes::<Message>(&bytes).expect("and parses back");
        assert_eq!(again, msg);
    }
});
