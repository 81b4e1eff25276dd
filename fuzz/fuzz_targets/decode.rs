//! Feeds arbitrary bytes to the frame decoder and message parser of every
//! channel (handshake, control, work header, visitor stream, xtcp
//! rendezvous) and to the STUN answer parser, in the shape of every
//! protocol version spoken, and to the UDP datagram decoder. Any panic, overflow or out-of-bounds access is a bug; errors
//! are fine. Run with `make fuzz` from the repository root.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use wire::codec::{self, MAX_FRAME_LEN};
use wire::message::{
    Control, Frame, Hello, Rendezvous, Visit, WorkHeader, OLDEST_PROTOCOL_VERSION, PROTOCOL_VERSION,
};

/// Whatever a peer can make us decode, we can encode again in the same
/// version, within the frame limit, and it decodes to the same message.
fn channel<M: Frame + PartialEq>(data: &[u8]) {
    for version in OLDEST_PROTOCOL_VERSION..=PROTOCOL_VERSION {
        let mut buf = BytesMut::from(data);
        while let Ok(Some(msg)) = codec::decode_for::<M>(&mut buf, version) {
            let mut out = BytesMut::new();
            codec::encode_for(&msg, version, &mut out).expect("a decoded message re-encodes");
            assert!(out.len() <= 2 + MAX_FRAME_LEN);
            let again = codec::decode_for::<M>(&mut out, version).expect("re-encoded frame decodes");
            assert_eq!(again.as_ref(), Some(&msg));
            assert!(out.is_empty());
        }
    }
    // The bare message parser, without a frame header in front.
    if let Ok(msg) = postcard::from_bytes::<M>(data) {
        let bytes = postcard::to_stdvec(&msg).expect("a parsed message serializes");
        let again = postcard::from_bytes::<M>(&bytes).expect("and parses back");
        assert_eq!(again, msg);
    }
}

fuzz_target!(|data: &[u8]| {
    channel::<Hello>(data);
    channel::<Control>(data);
    channel::<WorkHeader>(data);
    channel::<Visit>(data);
    channel::<Rendezvous>(data);
    // A STUN answer, for any transaction id it claims.
    if data.len() >= 20 {
        let id: [u8; 12] = data[8..20].try_into().expect("12 bytes");
        let _ = wire::stun::mapped_address(data, &id);
    }
    let mut buf = BytesMut::from(data);
    while let Ok(Some(d)) = wire::udp::decode(&mut buf) {
        let mut out = BytesMut::new();
        wire::udp::encode(d.peer, &d.payload, &mut out).expect("a decoded datagram re-encodes");
        assert_eq!(wire::udp::decode(&mut out).expect("decodes"), Some(d));
    }
});
