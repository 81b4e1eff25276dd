//! Property tests of the frame decoder and message parser: whatever a peer
//! sends, decoding must never panic, must agree with itself however the bytes
//! are split, and must round-trip every message we can send.
//!
//! Case counts are bounded so the whole file runs in a few seconds in a debug
//! build; `PROPTEST_CASES=n` sets them all for a longer local run. The open-ended
//! search lives in the cargo-fuzz target (`make fuzz`).

use bytes::{BufMut, BytesMut};
use net::framed::read_message;
use proptest::collection::vec;
use proptest::prelude::*;
use tokio::io::AsyncWriteExt;
use tokio_util::codec::Decoder;
use wire::codec::{self, CodecError, MessageCodec, MAX_FRAME_LEN};
use wire::message::*;

// ---------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------

/// Cases per property: the default unless `PROPTEST_CASES` asks for more.
fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        // Failures are reported in the test output; no files in the tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn u16s() -> impl Strategy<Value = u16> {
    prop_oneof![0..300u16, any::<u16>()]
}

fn u32s() -> impl Strategy<Value = u32> {
    prop_oneof![0..300u32, any::<u32>()]
}

fn u64s() -> impl Strategy<Value = u64> {
    prop_oneof![0..300u64, any::<u64>()]
}

/// Any string that keeps its message well under the frame limit.
fn short_string() -> BoxedStrategy<String> {
    vec(any::<char>(), 0..24)
        .prop_map(String::from_iter)
        .boxed()
}

/// Mostly short strings, sometimes long ones: up to a little past the frame
/// limit in bytes, so that messages on both sides of the limit are produced.
fn any_string() -> BoxedStrategy<String> {
    prop_oneof![
        6 => vec(any::<char>(), 0..24).prop_map(String::from_iter),
        1 => vec(any::<char>(), 0..1024).prop_map(String::from_iter),
        1 => (any::<char>(), 0..=MAX_FRAME_LEN + 32)
            .prop_map(|(c, bytes)| c.to_string().repeat(bytes / c.len_utf8())),
        // Right around the limit, where an off-by-one would show.
        1 => (any::<char>(), MAX_FRAME_LEN - 64..=MAX_FRAME_LEN + 64)
            .prop_map(|(c, bytes)| c.to_string().repeat(bytes / c.len_utf8())),
    ]
    .boxed()
}

/// Every channel's messages in one type, so each property runs over all of
/// them (a test-only channel: the codec is generic over [`Frame`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
enum Message {
    Hello(Hello),
    Control(Control),
    Work(WorkHeader),
    Visit(Visit),
    Rendezvous(Rendezvous),
}

impl Frame for Message {
    const VARIANTS: u32 = 5;

    fn kind(&self) -> &'static str {
        match self {
            Message::Hello(m) => m.kind(),
            Message::Control(m) => m.kind(),
            Message::Work(m) => m.kind(),
            Message::Visit(m) => m.kind(),
            Message::Rendezvous(m) => m.kind(),
        }
    }
}

/// Fails to compile when a variant is added, as a reminder to give it a
/// strategy below.
#[allow(dead_code)]
#[allow(clippy::too_many_arguments, reason = "one parameter per enum to cover")]
fn strategies_cover_every_variant(
    h: &Hello,
    c: &Control,
    l: &LoginError,
    p: &ProxyError,
    k: &ProxySpec,
    v: &Visit,
    e: &VisitError,
    r: &Rendezvous,
) {
    match v {
        Visit::Open(_) | Visit::Answer(_) => {}
    }
    match e {
        VisitError::NoSuchProxy
        | VisitError::WrongKind(_)
        | VisitError::UserNotAllowed
        | VisitError::WrongSecret
        | VisitError::Refused(_) => {}
    }
    match h {
        Hello::Client { .. }
        | Hello::Server { .. }
        | Hello::Login(_)
        | Hello::LoginResp(_)
        | Hello::NewWorkConn(_) => {}
    }
    match c {
        Control::NewProxy(_)
        | Control::NewProxyResp(_)
        | Control::CloseProxy { .. }
        | Control::Ping(_)
        | Control::Pong(_)
        | Control::ReqWorkConn { .. } => {}
    }
    match l {
        LoginError::InvalidToken | LoginError::VersionMismatch { .. } | LoginError::Other(_) => {}
    }
    match p {
        ProxyError::PortInUse(_)
        | ProxyError::PortNotAllowed(_)
        | ProxyError::DuplicateName
        | ProxyError::Bind(_)
        | ProxyError::TooManyPorts(_)
        | ProxyError::Refused(_) => {}
    }
    match k {
        ProxySpec::Tcp(_)
        | ProxySpec::Udp(_)
        | ProxySpec::Https(_)
        | ProxySpec::Http(_)
        | ProxySpec::Tcpmux(_)
        | ProxySpec::Stcp(_)
        | ProxySpec::Sudp(_)
        | ProxySpec::Xtcp(_) => {}
    }
    match r {
        Rendezvous::Offer(_) | Rendezvous::Answer(_) => {}
    }
}

fn kinds() -> impl Strategy<Value = ProxyKind> {
    (0..ProxyKind::ALL.len()).prop_map(|i| ProxyKind::ALL[i])
}

fn visit_error(s: BoxedStrategy<String>) -> impl Strategy<Value = VisitError> {
    prop_oneof![
        Just(VisitError::NoSuchProxy),
        kinds().prop_map(VisitError::WrongKind),
        Just(VisitError::UserNotAllowed),
        Just(VisitError::WrongSecret),
        s.prop_map(VisitError::Refused),
    ]
}

fn addrs() -> impl Strategy<Value = std::net::SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), u16s()).prop_map(|(ip, port)| (ip, port).into()),
        (any::<[u16; 8]>(), u16s()).prop_map(|(ip, port)| (ip, port).into()),
    ]
}

fn login_error(s: BoxedStrategy<String>) -> impl Strategy<Value = LoginError> {
    prop_oneof![
        Just(LoginError::InvalidToken),
        (u16s(), u16s())
            .prop_map(|(client, server)| LoginError::VersionMismatch { client, server }),
        s.prop_map(LoginError::Other),
    ]
}

fn proxy_error(s: BoxedStrategy<String>) -> impl Strategy<Value = ProxyError> {
    prop_oneof![
        u16s().prop_map(ProxyError::PortInUse),
        u16s().prop_map(ProxyError::PortNotAllowed),
        Just(ProxyError::DuplicateName),
        s.clone().prop_map(ProxyError::Bind),
        u32s().prop_map(ProxyError::TooManyPorts),
        s.prop_map(ProxyError::Refused),
    ]
}

/// Every variant of [`Message`], with strings drawn from `s`.
fn message_with(s: fn() -> BoxedStrategy<String>) -> BoxedStrategy<Message> {
    let login = (
        u16s(),
        s(),
        s(),
        s(),
        s(),
        s(),
        any::<[u8; 32]>(),
        any::<bool>(),
    )
        .prop_map(
            |(version, hostname, os, arch, user, run_id, proof, tcp_mux)| {
                Message::Hello(Hello::Login(Login {
                    version,
                    hostname,
                    os,
                    arch,
                    user,
                    run_id: run_id.clone(),
                    proof,
                    tcp_mux,
                    client_id: run_id.clone(),
                    metas: Default::default(),
                    caps: vec![run_id],
                }))
            },
        );
    let login_resp = prop_oneof![
        (s(), u32s(), u32s()).prop_map(|(run_id, heartbeat_timeout, udp_packet_size)| Ok(
            LoginAccepted {
                run_id,
                heartbeat_timeout,
                udp_packet_size,
                caps: Vec::new(),
            }
        )),
        login_error(s()).prop_map(Err),
    ]
    .prop_map(|result| Message::Hello(Hello::LoginResp(LoginResp { result })));
    let spec = prop_oneof![
        u16s().prop_map(|remote_port| ProxySpec::Tcp(TcpSpec { remote_port })),
        u16s().prop_map(|remote_port| ProxySpec::Udp(UdpSpec { remote_port })),
        (
            vec(s(), 0..2),
            s(),
            vec(s(), 0..2),
            s(),
            vec((s(), s()), 0..2)
        )
            .prop_map(|(custom_domains, subdomain, locations, user, headers)| {
                ProxySpec::Http(HttpSpec {
                    custom_domains,
                    subdomain,
                    locations,
                    http_user: user.clone(),
                    http_password: user.clone(),
                    host_header_rewrite: user,
                    request_headers: headers.clone(),
                    response_headers: headers,
                    route_by_http_user: String::new(),
                })
            }),
        (vec(s(), 0..2), s(), s()).prop_map(|(custom_domains, subdomain, user)| {
            ProxySpec::Tcpmux(TcpmuxSpec {
                custom_domains,
                subdomain,
                http_user: user.clone(),
                http_password: user,
                route_by_http_user: String::new(),
            })
        }),
        (vec(s(), 0..3), s()).prop_map(|(custom_domains, subdomain)| ProxySpec::Https(HttpsSpec {
            custom_domains,
            subdomain
        })),
        (any::<[u8; 32]>(), vec(s(), 0..3), 0..3u8).prop_map(|(verifier, allow_users, k)| {
            let p = PrivateSpec {
                verifier,
                allow_users,
            };
            match k {
                0 => ProxySpec::Stcp(p),
                1 => ProxySpec::Sudp(p),
                _ => ProxySpec::Xtcp(p),
            }
        }),
    ];
    let pairs = || vec((s(), s()), 0..3);
    let opts = (s(), s(), u64s(), any::<bool>(), pairs(), pairs()).prop_map(
        |(group, group_key, bandwidth_limit, limit_on_server, metas, annotations)| ProxyOpts {
            group,
            group_key,
            bandwidth_limit,
            limit_on_server,
            metas,
            annotations,
        },
    );
    let new_proxy = (s(), spec, opts).prop_map(|(name, spec, opts)| {
        Message::Control(Control::NewProxy(NewProxy { name, spec, opts }))
    });
    let new_proxy_resp = (
        s(),
        prop_oneof![s().prop_map(Ok), proxy_error(s()).prop_map(Err)],
    )
        .prop_map(|(name, result)| {
            Message::Control(Control::NewProxyResp(NewProxyResp { name, result }))
        });
    prop_oneof![
        u16s().prop_map(|version| Message::Hello(Hello::Client { version })),
        (u16s(), any::<[u8; NONCE_LEN]>())
            .prop_map(|(version, nonce)| Message::Hello(Hello::Server { version, nonce })),
        login,
        login_resp,
        new_proxy,
        new_proxy_resp,
        s().prop_map(|name| Message::Control(Control::CloseProxy { name })),
        (u32s(), u32s(), u64s(), u64s(), u32s()).prop_map(
            |(seq, proxies, bytes_in, bytes_out, rtt_us)| {
                Message::Control(Control::Ping(Ping {
                    seq,
                    proxies,
                    bytes_in,
                    bytes_out,
                    rtt_us,
                }))
            }
        ),
        u32s().prop_map(|seq| Message::Control(Control::Pong(Pong { seq }))),
        (s(), addrs(), addrs()).prop_map(|(proxy_name, src, dst)| Message::Work(
            WorkHeader::Start(StartWork {
                proxy_name,
                src,
                dst,
            })
        )),
        (s(), s(), any::<[u8; 32]>()).prop_map(|(run_id, user, proof)| {
            Message::Hello(Hello::NewWorkConn(NewWorkConn {
                run_id,
                user,
                proof,
            }))
        }),
        u32s().prop_map(|count| Message::Control(Control::ReqWorkConn { count })),
        (s(), s(), kinds(), any::<[u8; 32]>()).prop_map(
            |(server_user, server_name, kind, proof)| {
                Message::Visit(Visit::Open(OpenVisit {
                    server_user,
                    server_name,
                    kind,
                    proof,
                }))
            }
        ),
        prop_oneof![Just(Ok(())), visit_error(s()).prop_map(Err)]
            .prop_map(|result| Message::Visit(Visit::Answer(VisitAnswer { result }))),
        (vec(addrs(), 0..9), any::<[u8; 16]>(), u32s()).prop_map(
            |(candidates, token, timeout_ms)| {
                Message::Rendezvous(Rendezvous::Offer(Offer {
                    candidates,
                    token,
                    timeout_ms,
                }))
            }
        ),
        prop_oneof![(vec(addrs(), 0..9), s()).prop_map(Ok), s().prop_map(Err)].prop_map(|result| {
            Message::Rendezvous(Rendezvous::Answer(RendezvousAnswer { result }))
        }),
    ]
    .boxed()
}

/// Any message, including ones too large for a frame.
fn any_message() -> BoxedStrategy<Message> {
    message_with(any_string)
}

/// A message that always fits in a frame.
fn small_message() -> BoxedStrategy<Message> {
    message_with(short_string)
}

fn frame(msg: &Message) -> Vec<u8> {
    let mut buf = BytesMut::new();
    codec::encode(msg, &mut buf).expect("a small message encodes");
    buf.to_vec()
}

fn header(len: usize) -> [u8; 2] {
    u16::try_from(len)
        .expect("length fits in u16")
        .to_be_bytes()
}

/// Input a peer might send: plain noise, noise behind a plausible header,
/// a header that promises more than follows, and valid frames with a few
/// bytes changed, cut off or appended. The mutated frames reach deep into
/// the message parser; plain noise mostly tests the header.
fn hostile_bytes() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        vec(any::<u8>(), 0..64),
        vec(any::<u8>(), 0..256).prop_map(|body| {
            let mut v = header(body.len()).to_vec();
            v.extend_from_slice(&body);
            v
        }),
        (0..=MAX_FRAME_LEN, vec(any::<u8>(), 0..64)).prop_map(|(len, body)| {
            let mut v = header(len).to_vec();
            v.extend_from_slice(&body);
            v
        }),
        (
            vec(small_message(), 1..4),
            vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
            proptest::option::of(any::<prop::sample::Index>()),
            vec(any::<u8>(), 0..8),
        )
            .prop_map(|(msgs, flips, cut, tail)| {
                let mut v: Vec<u8> = msgs.iter().flat_map(frame).collect();
                for (at, byte) in flips {
                    let i = at.index(v.len());
                    v[i] = byte;
                }
                if let Some(cut) = cut {
                    v.truncate(cut.index(v.len() + 1));
                }
                v.extend_from_slice(&tail);
                v
            }),
    ]
    .boxed()
}

/// How a run of [`codec::decode`] calls ended, comparable across runs.
#[derive(Debug, PartialEq)]
enum Outcome {
    /// Messages decoded, then `Ok(None)` with this many bytes left.
    Pending(Vec<Message>, usize),
    /// Messages decoded, then this error.
    Failed(Vec<Message>, String),
}

/// Decodes frames from `buf` until it needs more bytes or fails.
fn decode_all(buf: &mut BytesMut, msgs: &mut Vec<Message>) -> Result<(), CodecError> {
    while let Some(msg) = codec::decode(buf)? {
        msgs.push(msg);
    }
    Ok(())
}

fn decode_at_once(bytes: &[u8]) -> Outcome {
    let mut buf = BytesMut::from(bytes);
    let mut msgs = Vec::new();
    match decode_all(&mut buf, &mut msgs) {
        Ok(()) => Outcome::Pending(msgs, buf.len()),
        Err(e) => Outcome::Failed(msgs, format!("{e:?}")),
    }
}

/// Every message decoded from a peer's bytes must be one we could have sent:
/// it re-encodes within the frame limit and decodes to itself.
fn check_reencodes(msg: &Message, original_payload_len: usize) -> Result<(), TestCaseError> {
    let mut buf = BytesMut::new();
    codec::encode(msg, &mut buf)
        .map_err(|e| TestCaseError::fail(format!("re-encoding {msg:?}: {e}")))?;
    // postcard's encoding is the shortest one; a longer original means the
    // peer used redundant varint bytes.
    prop_assert!(buf.len() - 2 <= original_payload_len);
    let again = codec::decode(&mut buf).expect("decode re-encoded");
    prop_assert_eq!(again.as_ref(), Some(msg));
    prop_assert!(buf.is_empty());
    Ok(())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(5000))]

    /// Arbitrary bytes: `decode` returns Ok(None), Ok(Some) or Err and never
    /// panics; each decoded message consumed exactly one frame and re-encodes.
    #[test]
    fn decode_arbitrary_bytes(bytes in hostile_bytes()) {
        let mut buf = BytesMut::from(&bytes[..]);
        loop {
            let before = buf.len();
            let declared = (before >= 2).then(|| usize::from(u16::from_be_bytes([buf[0], buf[1]])));
            match codec::decode(&mut buf) {
                Ok(Some(msg)) => {
                    let len = declared.expect("a message needs a header");
                    prop_assert_eq!(buf.len(), before - 2 - len, "consumed one frame");
                    check_reencodes(&msg, len)?;
                }
                Ok(None) => {
                    // Only ever for an incomplete frame, which stays buffered.
                    prop_assert_eq!(buf.len(), before);
                    if let Some(len) = declared {
                        prop_assert!(len <= MAX_FRAME_LEN && before < 2 + len);
                    }
                    break;
                }
                Err(CodecError::FrameTooLarge { len }) => {
                    prop_assert_eq!(Some(len), declared);
                    prop_assert!(len > MAX_FRAME_LEN);
                    break;
                }
                Err(CodecError::Malformed(_)) => break,
                Err(e) => return Err(TestCaseError::fail(format!("unexpected error {e:?}"))),
            }
        }
    }

    /// The same through `MessageCodec::decode_eof`: at the end of the stream
    /// a partial frame is an error, and Ok(None) means nothing is left.
    #[test]
    fn decode_eof_arbitrary_bytes(bytes in hostile_bytes()) {
        let mut codec = MessageCodec::<Message>::new();
        let mut buf = BytesMut::from(&bytes[..]);
        let expected = decode_at_once(&bytes);
        let mut msgs = Vec::new();
        let got = loop {
            match codec.decode_eof(&mut buf) {
                Ok(Some(msg)) => msgs.push(msg),
                Ok(None) => {
                    prop_assert!(buf.is_empty());
                    break Outcome::Pending(msgs, 0);
                }
                Err(e) => break Outcome::Failed(msgs, format!("{e:?}")),
            }
        };
        match expected {
            Outcome::Pending(m, 0) => prop_assert_eq!(got, Outcome::Pending(m, 0)),
            Outcome::Pending(m, _) => {
                prop_assert_eq!(got, Outcome::Failed(m, format!("{:?}", CodecError::Truncated)));
            }
            failed => prop_assert_eq!(got, failed),
        }
    }

    /// Valid frames, optionally followed by noise, give the same messages
    /// and the same ending whether they arrive at once or in arbitrary pieces.
    #[test]
    fn split_input_decodes_like_whole(
        msgs in vec(small_message(), 0..6),
        tail in prop_oneof![Just(Vec::new()), vec(any::<u8>(), 0..16)],
        cuts in vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let mut bytes: Vec<u8> = msgs.iter().flat_map(frame).collect();
        bytes.extend_from_slice(&tail);

        let whole = decode_at_once(&bytes);
        if tail.is_empty() {
            prop_assert_eq!(&whole, &Outcome::Pending(msgs.clone(), 0));
        }

        let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
        cuts.push(bytes.len());
        cuts.sort_unstable();
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        let mut start = 0;
        let mut pieces = Outcome::Pending(Vec::new(), 0);
        for end in cuts {
            buf.extend_from_slice(&bytes[start..end]);
            start = end;
            if let Err(e) = decode_all(&mut buf, &mut got) {
                pieces = Outcome::Failed(std::mem::take(&mut got), format!("{e:?}"));
                break;
            }
            // Never a message before its last byte has arrived.
            let consumed: usize = got.iter().map(|m| frame(m).len()).sum();
            prop_assert!(consumed <= end);
        }
        if let Outcome::Pending(..) = pieces {
            pieces = Outcome::Pending(got, buf.len());
        }
        prop_assert_eq!(&pieces, &whole);
        // The valid frames always come out, whatever follows them.
        let decoded = match &whole {
            Outcome::Pending(m, _) | Outcome::Failed(m, _) => m,
        };
        prop_assert!(decoded.len() >= msgs.len());
        prop_assert_eq!(&decoded[..msgs.len()], &msgs[..]);
    }

    /// A valid frame followed by garbage: the message decodes and exactly the
    /// garbage is left in the buffer.
    #[test]
    fn frame_then_garbage(msg in small_message(), garbage in vec(any::<u8>(), 0..64)) {
        let mut buf = BytesMut::from(&frame(&msg)[..]);
        buf.extend_from_slice(&garbage);
        let got = codec::decode(&mut buf).expect("the first frame is valid");
        prop_assert_eq!(got, Some(msg));
        prop_assert_eq!(&buf[..], &garbage[..]);
    }

    /// A header announcing more than MAX_FRAME_LEN is rejected as soon as its
    /// two bytes are in, whatever (and however little) follows.
    #[test]
    fn oversized_header_rejected_early(
        len in (MAX_FRAME_LEN + 1)..=usize::from(u16::MAX),
        body in vec(any::<u8>(), 0..32),
    ) {
        let h = header(len);
        let mut buf = BytesMut::from(&h[..1]);
        prop_assert!(matches!(codec::decode::<Message>(&mut buf), Ok(None)));
        buf.put_u8(h[1]);
        let is_too_large = |r: Result<Option<Message>, CodecError>| {
            matches!(r, Err(CodecError::FrameTooLarge { len: l }) if l == len)
        };
        prop_assert!(is_too_large(codec::decode(&mut buf.clone())));
        prop_assert!(is_too_large(MessageCodec::<Message>::new().decode_eof(&mut buf.clone())));
        buf.extend_from_slice(&body);
        prop_assert!(is_too_large(codec::decode(&mut buf)));
        // read_message must not wait for (or try to read) the body either.
        let mut reader: &[u8] = &h;
        prop_assert!(is_too_large(runtime().block_on(read_message::<Message, _>(&mut reader))));
    }
}

proptest! {
    #![proptest_config(config(2000))]

    /// Any message round-trips exactly, or, when its encoding is larger than
    /// a frame, is refused with FrameTooLarge and nothing written.
    #[test]
    fn messages_roundtrip_or_are_too_large(msg in any_message(), prefix in vec(any::<u8>(), 0..4)) {
        let payload = postcard::to_stdvec(&msg).expect("postcard serializes any message");
        let mut buf = BytesMut::from(&prefix[..]);
        match codec::encode(&msg, &mut buf) {
            Ok(()) => {
                prop_assert!(payload.len() <= MAX_FRAME_LEN);
                prop_assert_eq!(&buf[..prefix.len()], &prefix[..]);
                let mut framed = buf.split_off(prefix.len());
                prop_assert_eq!(framed.len(), 2 + payload.len());
                prop_assert_eq!(&framed[..2], &header(payload.len())[..]);
                prop_assert_eq!(&framed[2..], &payload[..]);
                prop_assert_eq!(codec::decode(&mut framed).expect("decode"), Some(msg));
                prop_assert!(framed.is_empty());
            }
            Err(CodecError::FrameTooLarge { len }) => {
                prop_assert_eq!(len, payload.len());
                prop_assert!(len > MAX_FRAME_LEN);
                prop_assert_eq!(&buf[..], &prefix[..]);
            }
            Err(e) => return Err(TestCaseError::fail(format!("unexpected error {e:?}"))),
        }
    }

    /// Right at the limit: a payload of exactly MAX_FRAME_LEN bytes is sent,
    /// one more is refused.
    #[test]
    fn frame_limit_is_exact(extra in 0usize..8, c in prop_oneof![Just('a'), Just('é')]) {
        // CloseProxy: 2 tag bytes (channel, variant), a 2- or 3-byte length
        // varint, the name.
        let target = MAX_FRAME_LEN - 5 + extra;
        let msg = Message::Control(Control::CloseProxy {
            name: c.to_string().repeat(target / c.len_utf8()),
        });
        let payload_len = postcard::to_stdvec(&msg).expect("serialize").len();
        let mut buf = BytesMut::new();
        let res = codec::encode(&msg, &mut buf);
        if payload_len <= MAX_FRAME_LEN {
            prop_assert!(res.is_ok());
            prop_assert_eq!(codec::decode(&mut buf).expect("decode"), Some(msg));
        } else {
            let refused = matches!(res, Err(CodecError::FrameTooLarge { len }) if len == payload_len);
            prop_assert!(refused);
        }
    }
}

proptest! {
    #![proptest_config(config(2000))]

    /// `read_message` on arbitrary bytes never panics and agrees with the
    /// buffer decoder about the first frame; it consumes exactly that frame.
    #[test]
    fn read_message_arbitrary_bytes(bytes in hostile_bytes()) {
        let mut reader: &[u8] = &bytes;
        let got = runtime().block_on(read_message::<Message, _>(&mut reader));
        let mut buf = BytesMut::from(&bytes[..]);
        match (codec::decode(&mut buf), got) {
            (Ok(Some(want)), Ok(Some(msg))) => {
                prop_assert_eq!(msg, want);
                prop_assert_eq!(reader, &buf[..]);
            }
            (Ok(None), Ok(None)) => prop_assert!(bytes.is_empty()),
            (Ok(None), Err(CodecError::Truncated)) => prop_assert!(!bytes.is_empty()),
            (Err(CodecError::FrameTooLarge { len: a }), Err(CodecError::FrameTooLarge { len: b })) => {
                prop_assert_eq!(a, b);
            }
            (Err(CodecError::Malformed(a)), Err(CodecError::Malformed(b))) => prop_assert_eq!(a, b),
            (want, got) => {
                return Err(TestCaseError::fail(format!("decode gave {want:?}, read_message {got:?}")));
            }
        }
    }

    /// The same over a duplex pipe with a small buffer, written in arbitrary
    /// pieces by another task that then hangs up.
    #[test]
    fn read_message_from_duplex(
        bytes in hostile_bytes(),
        pipe in 1usize..64,
        cuts in vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
        cuts.push(bytes.len());
        cuts.sort_unstable();
        let from_slice = runtime().block_on(read_message::<Message, _>(&mut &bytes[..]));
        let data = bytes.clone();
        let from_pipe = runtime().block_on(async move {
            let (mut tx, mut rx) = tokio::io::duplex(pipe);
            let writer = tokio::spawn(async move {
                let mut start = 0;
                for end in cuts {
                    // Fails once the reader is gone; that is expected.
                    if tx.write_all(&data[start..end]).await.is_err() {
                        return;
                    }
                    tokio::task::yield_now().await;
                    start = end;
                }
            });
            let got = read_message::<Message, _>(&mut rx).await;
            drop(rx);
            writer.await.expect("writer task");
            got
        });
        prop_assert_eq!(format!("{from_pipe:?}"), format!("{from_slice:?}"));
    }
}
