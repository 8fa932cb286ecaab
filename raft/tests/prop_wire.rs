//! Property tests of the peer protocol's decoders: any bytes read as a frame give a message
//! or an error (never a panic or an outsized allocation), messages survive a round trip,
//! and a listener fed arbitrary bytes by a stranger refuses it and keeps serving peers that
//! know the cluster secret.
//!
//! Cases: `PROPTEST_CASES` (default 256 for the pure decoders, 32 for the TCP one).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use raftcast_raft::network::wire::{read_frame, write_frame, Req, Resp};
use raftcast_raft::network::{serve, Handler, NetCtx};
use raftcast_raft::{Command, NodeId, NodeInfo};
use tokio::io::AsyncWriteExt;

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Cases as given; failures are kept in `tests/regressions/prop_wire.txt` and replayed first.
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::Direct(
                "tests/regressions/prop_wire.txt",
            ),
        )),
        ..ProptestConfig::default()
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// A frame with a correct length prefix around arbitrary bytes.
fn framed(body: &[u8]) -> Vec<u8> {
    let mut f = (body.len() as u32).to_be_bytes().to_vec();
    f.extend_from_slice(body);
    f
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        (".{0,40}", ".{0,40}", any::<u64>()).prop_map(|(s, u, e)| Command::CreateSession {
            session_id: s,
            user_id: u,
            expires_at_ms: e
        }),
        ".{0,40}".prop_map(|s| Command::RevokeSession { session_id: s }),
        (
            ".{0,40}",
            ".{0,40}",
            proptest::collection::vec(any::<u8>(), 0..200),
            any::<bool>(),
            any::<u32>(),
            any::<u64>()
        )
            .prop_map(
                |(room, event, payload, durable, history_max, history_ttl_ms)| {
                    Command::Publish {
                        room,
                        event,
                        payload,
                        durable,
                        history_max,
                        history_ttl_ms,
                    }
                }
            ),
        (".{0,20}", proptest::collection::vec(".{0,20}", 0..5))
            .prop_map(|(sid, rooms)| Command::Join { sid, rooms }),
        (
            ".{0,20}",
            ".{0,20}",
            proptest::collection::vec(".{0,20}", 0..5)
        )
            .prop_map(|(sid, user_id, rooms)| Command::JoinOf {
                sid,
                user_id,
                rooms
            }),
        (".{0,20}", ".{0,20}", any::<u64>()).prop_map(|(sid, user_id, recoverable_for_ms)| {
            Command::SocketCloseOf {
                sid,
                user_id,
                recoverable_for_ms,
            }
        }),
    ]
}

proptest! {
    #![proptest_config(config(cases(256)))]

    /// Arbitrary bytes (raw or correctly framed) never panic the decoder.
    #[test]
    fn any_bytes_decode_to_a_message_or_an_error(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let rt = rt();
        rt.block_on(async {
            let _ = read_frame::<_, Req>(&mut &bytes[..], 1 << 20).await;
            let _ = read_frame::<_, Resp>(&mut &bytes[..], 1 << 20).await;
            let f = framed(&bytes);
            let _ = read_frame::<_, Req>(&mut &f[..], 1 << 20).await;
            let _ = read_frame::<_, Resp>(&mut &f[..], 1 << 20).await;
        });
    }

    /// A valid message with some bytes flipped still decodes or fails cleanly.
    #[test]
    fn mutated_messages_never_panic(cmds in proptest::collection::vec((any::<u64>(), command()), 0..8), flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
        let rt = rt();
        rt.block_on(async {
            let mut buf = Vec::new();
            write_frame(&mut buf, &Req::Forward(cmds)).await.expect("encode");
            let body_len = buf.len() - 4;
            for (i, b) in &flips {
                if body_len > 0 {
                    let at = 4 + i.index(body_len);
                    buf[at] ^= b;
                }
            }
            let _ = read_frame::<_, Req>(&mut &buf[..], 1 << 20).await;
        });
    }

    /// Requests survive encode → decode unchanged.
    #[test]
    fn requests_round_trip(cmds in proptest::collection::vec((any::<u64>(), command()), 0..8), node_id in any::<u64>(), peer in ".{0,30}", public in ".{0,30}") {
        let rt = rt();
        rt.block_on(async {
            let mut buf = Vec::new();
            write_frame(&mut buf, &Req::Forward(cmds.clone())).await.expect("encode");
            match read_frame::<_, Req>(&mut &buf[..], 1 << 20).await.expect("decode") {
                Req::Forward(got) => prop_assert_eq!(format!("{got:?}"), format!("{cmds:?}")),
                other => prop_assert!(false, "decoded {:?}", other),
            }
            let join = Req::Join { node_id, info: NodeInfo { peer_addr: peer.clone(), public_addr: public.clone() } };
            let mut buf = Vec::new();
            write_frame(&mut buf, &join).await.expect("encode");
            match read_frame::<_, Req>(&mut &buf[..], 1 << 20).await.expect("decode") {
                Req::Join { node_id: n, info } => {
                    prop_assert_eq!(n, node_id);
                    prop_assert_eq!(info.peer_addr, peer);
                    prop_assert_eq!(info.public_addr, public);
                }
                other => prop_assert!(false, "decoded {:?}", other),
            }
            Ok(())
        })?;
    }

    /// A length prefix over the limit is refused before anything is allocated for it.
    #[test]
    fn oversized_length_prefix_is_refused(len in (1u32 << 20) + 1..=u32::MAX) {
        let rt = rt();
        let f = len.to_be_bytes();
        let r = rt.block_on(read_frame::<_, Req>(&mut &f[..], 1 << 20));
        prop_assert!(r.is_err());
    }
}

/// Regression (found by `mutated_messages_never_panic`): a string length prefix corrupted to
/// an exabyte-sized claim used to abort the process on the allocation.
#[test]
fn huge_length_prefix_inside_a_frame_is_an_error() {
    rt().block_on(async {
        let mut buf = Vec::new();
        let req = Req::Forward(vec![(
            1,
            Command::RevokeSession {
                session_id: "abc".into(),
            },
        )]);
        write_frame(&mut buf, &req).await.expect("encode");
        let body = buf[4..].to_vec();
        let at = body
            .windows(4)
            .position(|w| w == [3, b'a', b'b', b'c'])
            .expect("the string's length prefix");
        for claim in [u64::MAX, 6_735_228_137_099_970_700, 1 << 40, (1 << 30) + 1] {
            let mut corrupt = body[..at].to_vec();
            corrupt.push(0xfd); // bincode varint: a u64 follows
            corrupt.extend_from_slice(&claim.to_le_bytes());
            corrupt.extend_from_slice(b"abc");
            let f = framed(&corrupt);
            let r = read_frame::<_, Req>(&mut &f[..], 1 << 20).await;
            assert!(r.is_err(), "claim {claim} decoded");
        }
    });
}

/// Answers pings only.
struct Pong;

impl Handler for Pong {
    async fn handle(&self, _from: NodeId, req: Req) -> Resp {
        match req {
            Req::Ping => Resp::Pong {
                node_id: 1,
                public_addr: String::new(),
                initialized: true,
            },
            _ => Resp::Join(raftcast_raft::network::wire::JoinReply::Err("no".into())),
        }
    }
}

const SECRET: &str = "prop-wire-secret-0123456789";

proptest! {
    #![proptest_config(config(cases(32)))]

    /// Whatever a stranger sends to the peer port, it is refused (the connection closes),
    /// and a peer with the secret is served right after.
    #[test]
    fn listener_refuses_arbitrary_handshakes(garbage in prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..512),
        proptest::collection::vec(any::<u8>(), 0..300).prop_map(|b| framed(&b)),
        // a Hello-shaped frame: variant 0, a node id, then junk in place of the nonce/proof
        (any::<u8>(), proptest::collection::vec(any::<u8>(), 0..80)).prop_map(|(id, rest)| {
            let mut body = vec![0u8, id];
            body.extend(rest);
            framed(&body)
        }),
    ]) {
        let rt = rt();
        rt.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().expect("addr").to_string();
            let ctx = NetCtx::new(1, SECRET.into(), None);
            let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
            let server = tokio::spawn(serve(listener, ctx, Arc::new(Pong), stop_rx));

            let mut s = tokio::net::TcpStream::connect(&addr).await.expect("connect");
            let _ = s.write_all(&garbage).await;
            let _ = s.shutdown().await;
            let closed = tokio::time::timeout(Duration::from_secs(7), async {
                use tokio::io::AsyncReadExt;
                let mut buf = [0u8; 1024];
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                }
            })
            .await;
            prop_assert!(closed.is_ok(), "stranger's connection stayed open");

            let friend = NetCtx::new(2, SECRET.into(), None);
            let r = friend.call(&addr, None, &Req::Ping, Duration::from_secs(5)).await;
            prop_assert!(matches!(r, Ok(Resp::Pong { .. })), "peer not served after garbage: {:?}", r);
            let _ = stop_tx.send(true);
            let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
            Ok(())
        })?;
    }
}
