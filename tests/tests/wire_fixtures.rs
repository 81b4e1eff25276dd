//! Every message of every protocol version we still speak, as recorded in
//! `tests/fixtures/wire/v<N>/` when that version was made, decodes with
//! today's code in that version's shape to the sample it was written from,
//! and today's code writes the same bytes back for a peer of that version.
//! The newest version's record is what today's code writes.

use bytes::BytesMut;
use e2e::wire_samples::{encode, fixture, fixture_dir, samples, Sample};
use wire::codec::{decode_for, encode_for};
use wire::message::{
    Control, Hello, Rendezvous, Visit, WorkHeader, OLDEST_PROTOCOL_VERSION, PROTOCOL_VERSION,
};

fn decode(version: u16, like: &Sample, bytes: &[u8]) -> Sample {
    let mut buf = BytesMut::from(bytes);
    let got = match like {
        Sample::Hello(_) => decode_for::<Hello>(&mut buf, version).map(|m| m.map(Sample::Hello)),
        Sample::Control(_) => {
            decode_for::<Control>(&mut buf, version).map(|m| m.map(Sample::Control))
        }
        Sample::Work(_) => decode_for::<WorkHeader>(&mut buf, version).map(|m| m.map(Sample::Work)),
        Sample::Visit(_) => decode_for::<Visit>(&mut buf, version).map(|m| m.map(Sample::Visit)),
        Sample::Rendezvous(_) => {
            decode_for::<Rendezvous>(&mut buf, version).map(|m| m.map(Sample::Rendezvous))
        }
        Sample::Udp(..) => Ok(wire::udp::decode(&mut buf)
            .expect("udp frame")
            .map(|d| Sample::Udp(d.peer, d.payload.to_vec()))),
    };
    let got = got
        .unwrap_or_else(|e| panic!("v{version}: {e}"))
        .expect("a whole frame");
    assert!(buf.is_empty(), "v{version}: bytes left over");
    got
}

fn encode_as(version: u16, sample: &Sample) -> Vec<u8> {
    let mut out = BytesMut::new();
    match sample {
        Sample::Hello(m) => encode_for(m, version, &mut out).expect("encode"),
        Sample::Control(m) => encode_for(m, version, &mut out).expect("encode"),
        Sample::Work(m) => encode_for(m, version, &mut out).expect("encode"),
        Sample::Visit(m) => encode_for(m, version, &mut out).expect("encode"),
        Sample::Rendezvous(m) => encode_for(m, version, &mut out).expect("encode"),
        Sample::Udp(..) => return encode(sample),
    }
    out.to_vec()
}

#[test]
fn every_recorded_message_of_every_version_decodes_and_is_written_the_same() {
    for version in OLDEST_PROTOCOL_VERSION..=PROTOCOL_VERSION {
        let all = samples(version);
        let recorded = std::fs::read_dir(fixture_dir(version))
            .unwrap_or_else(|e| panic!("fixtures of v{version}: {e}"))
            .count();
        assert_eq!(recorded, all.len(), "v{version}: one file per sample");
        for (name, sample) in &all {
            let bytes = fixture(version, name);
            assert_eq!(
                &decode(version, sample, &bytes),
                sample,
                "v{version} {name}"
            );
            assert_eq!(
                encode_as(version, sample),
                bytes,
                "v{version} {name}: written back"
            );
        }
    }
}

/// Today's code writes, for today's version, exactly what was recorded
/// for it: a change to a message's shape without a new version fails here.
#[test]
fn the_newest_record_is_what_this_code_writes() {
    for (name, sample) in samples(PROTOCOL_VERSION) {
        assert_eq!(
            encode(&sample),
            fixture(PROTOCOL_VERSION, name),
            "{name} changed without a new protocol version"
        );
    }
}
