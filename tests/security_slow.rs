//! ISSUE 8, slow and greedy clients: slow-header connections are closed by the header
//! timeout; a client that stops reading is dropped once its send buffer is full and its
//! connection really ends (memory freed); the per-IP cap refuses with a clear answer; rate
//! limits hold under a flood. (`--max-connections` answering `SERVER_FULL` is covered by
//! `tests/limits.rs::max_connections_refuses_with_server_full`.)

// Tests fail by panicking: expect/unwrap are the point here.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;
mod security_common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use common::{start, Msg, T};
use raftcast::fanout::Payload;
use security_common::{count_panics, panics, RawWs};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

async fn connect_from(addr: SocketAddr, ip: Ipv4Addr) -> std::io::Result<TcpStream> {
    let sock = TcpSocket::new_v4()?;
    sock.bind(SocketAddr::new(IpAddr::V4(ip), 0))?;
    sock.connect(addr).await
}

/// Reads until EOF/reset or `within`; returns (closed, bytes read).
async fn wait_closed(s: &mut TcpStream, within: Duration) -> (bool, Vec<u8>) {
    let mut got = Vec::new();
    let r = tokio::time::timeout(within, async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    (r.is_ok(), got)
}

#[tokio::test]
async fn slow_header_connections_are_closed_by_the_header_timeout() {
    count_panics();
    let s = start(&["--header-timeout", "1s"]).await;
    // dribbles one header byte every 200 ms, never finishing the request
    let mut dribble = TcpStream::connect(s.addr).await.expect("connect");
    dribble
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .expect("write");
    let start_at = Instant::now();
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if dribble.write_all(b"a").await.is_err() {
                return;
            }
            let mut buf = [0u8; 512];
            if let Ok(Ok(0)) | Ok(Err(_)) =
                tokio::time::timeout(Duration::from_millis(1), dribble.read(&mut buf)).await
            {
                return;
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "slow-header connection still open after 5 s"
    );
    let took = start_at.elapsed();
    assert!(
        took >= Duration::from_millis(800),
        "closed too early: {took:?}"
    );

    // a connection that sends nothing at all
    let mut idle = TcpStream::connect(s.addr).await.expect("connect");
    let (closed, _) = wait_closed(&mut idle, Duration::from_secs(4)).await;
    assert!(closed, "silent connection not closed by the header timeout");

    // many of them at once do not keep a normal client out
    let mut slow = Vec::new();
    for _ in 0..200 {
        let mut c = TcpStream::connect(s.addr).await.expect("connect");
        let _ = c.write_all(b"GET / HTTP/1.1\r\n").await;
        slow.push(c);
    }
    let r = s
        .http
        .get(s.url("/health/websocket"))
        .send()
        .await
        .expect("health");
    assert_eq!(r.status(), 200);
    for mut c in slow {
        let (closed, _) = wait_closed(&mut c, Duration::from_secs(4)).await;
        assert!(closed, "a slow-header connection outlived the timeout");
    }
    assert_eq!(panics(), 0);
}

/// The kernel's view of one TCP connection of this process: the `st` field of the
/// `/proc/net/tcp` line whose local port is `local` and remote port is `remote`.
fn tcp_state(local: u16, remote: u16) -> Option<u8> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    table.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        let port = |a: &str| u16::from_str_radix(a.rsplit(':').next()?, 16).ok();
        (port(f.get(1)?)? == local && port(f.get(2)?)? == remote)
            .then(|| u8::from_str_radix(f.get(3)?, 16).ok())
            .flatten()
    })
}

const ESTABLISHED: u8 = 1;

/// A raw WebSocket client of `user`, connected to the main namespace with a session.
async fn connected_raw(s: &common::TestServer, user: &str) -> RawWs {
    let session = s.session(user).await;
    let mut raw = RawWs::open(s.addr).await;
    raw.send_text(&format!("40{}", json!({"sessionId": session})))
        .await
        .expect("send");
    let t = raw.read_text(T).await.expect("connect answer");
    assert!(t.starts_with("40{"), "{t}");
    raw
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_dropped_and_freed() {
    count_panics();
    let s = start(&["--ping-interval-ms", "60000", "--ping-timeout-ms", "60000"]).await;
    let raw = connected_raw(&s, "stalled").await;
    // a well-behaved client of another user, for comparison
    let mut good = s.client("reader").await;
    let mine = raw.stream.local_addr().expect("local").port();
    let server_port = s.addr.port();
    assert_eq!(tcp_state(server_port, mine), Some(ESTABLISHED));
    assert_eq!(s.io.connection_count(), 2);

    // From now on the raw client never reads. Publish 256 KiB volatile events to it.
    let big = format!("\"{}\"", "x".repeat(256 * 1024));
    let mut sent = 0usize;
    let dropped = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            s.gateway
                .publish(
                    "user:stalled",
                    "trade:executed",
                    Payload::json(big.clone()),
                    false,
                )
                .await
                .expect("publish");
            sent += 1;
            if s.io.connection_count() == 1 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(
        dropped.is_ok(),
        "still connected after {sent} events of 256 KiB"
    );
    // 4 MiB send queue + the kernel's buffers: dropped after tens of MiB, not hundreds
    assert!(sent < 400, "dropped only after {sent} events");

    // The server's end of the TCP connection is really closed (the task ended and its
    // buffers went with it), although this client still has not read a byte.
    let mut still = true;
    for _ in 0..100 {
        still = tcp_state(server_port, mine) == Some(ESTABLISHED);
        if !still {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !still,
        "the server still holds the stalled client's connection open"
    );
    let stats = s.stats().await;
    assert_eq!(stats["totalConnections"], 1, "{stats}");

    // the other client was not affected
    s.emit(json!({"userId": "reader", "event": "trade:executed", "data": {"ok": 1}}))
        .await;
    let args = good.ws.event("trade:executed", T).await;
    assert_eq!(args[0], json!({"ok": 1}));
    drop(raw);
    assert_eq!(panics(), 0);
}

#[tokio::test]
async fn per_ip_cap_refuses_with_a_clear_answer() {
    count_panics();
    let s = start(&["--max-connections-per-ip", "5"]).await;
    let ip = Ipv4Addr::new(127, 0, 0, 2);
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(
            RawWs::open_from(s.addr, Some(IpAddr::V4(ip)))
                .await
                .expect("within the cap"),
        );
    }
    let mut extra = connect_from(s.addr, ip).await.expect("tcp connect");
    let _ = extra
        .write_all(b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let (closed, got) = wait_closed(&mut extra, T).await;
    assert!(closed, "over-the-cap connection left open");
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 429"), "{text}");
    assert!(text.contains("max-connections-per-ip"), "{text}");
    let body: Value =
        serde_json::from_str(text.split("\r\n\r\n").nth(1).unwrap_or("")).expect("json body");
    assert_eq!(body["code"], "RATE_LIMIT", "{body}");

    // other addresses are not affected
    let r = s.http.get(s.url("/healthz")).send().await.expect("healthz");
    assert_eq!(r.status(), 200);
    // once one leaves there is room again
    drop(held.pop());
    let mut ok = false;
    for _ in 0..50 {
        if RawWs::open_from(s.addr, Some(IpAddr::V4(ip))).await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        ok,
        "no room after a connection from the capped address closed"
    );
    assert_eq!(panics(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_hold_under_a_flood() {
    count_panics();
    let s = start(&[
        "--event-rate",
        "20",
        "--api-rate",
        "50",
        "--ping-interval-ms",
        "5000",
        "--ping-timeout-ms",
        "5000",
    ])
    .await;
    let mut flooder = s.client("flooder").await;
    let mut calm = s.client("calm").await;
    // 2000 events as fast as the socket takes them, no acks
    for _ in 0..2000 {
        flooder.ws.emit("subscribe:portfolio", &[json!({})], None);
    }
    let mut limited = 0usize;
    let mut confirmed = 0usize;
    let deadline = Instant::now() + Duration::from_secs(10);
    while limited + confirmed < 2000 && Instant::now() < deadline {
        match flooder.ws.recv(Duration::from_secs(2)).await {
            Some(Msg::Text(t)) => match common::event_name(&t).as_deref() {
                Some("error") => {
                    let a = common::event_args(&t).unwrap_or_default();
                    assert_eq!(a[0]["code"], "RATE_LIMIT", "{t}");
                    assert!(
                        a[0]["retryAfterMs"].as_u64().is_some_and(|ms| ms > 0),
                        "{t}"
                    );
                    limited += 1;
                }
                Some("subscribed:portfolio") => confirmed += 1,
                _ => {}
            },
            Some(Msg::Closed) => panic!("flooder disconnected"),
            _ => break,
        }
    }
    assert_eq!(limited + confirmed, 2000, "every flooded event is answered");
    assert!(
        confirmed <= 20 + 20 * 10,
        "{confirmed} events got through a 20/s limit"
    );
    assert!(limited >= 1500, "only {limited} rate-limited");
    // the calm client is served promptly meanwhile
    let t0 = Instant::now();
    calm.ws.emit("ping", &[], Some(1));
    let _ = calm.ws.ack(1, T).await;
    assert!(
        t0.elapsed() < Duration::from_millis(500),
        "{:?}",
        t0.elapsed()
    );

    // API flood: 300 concurrent requests against 50/s: some 429 with Retry-After, no 5xx
    let mut tasks = Vec::new();
    for _ in 0..300 {
        let http = s.http.clone();
        let url = s.url("/api/stats");
        tasks.push(tokio::spawn(async move {
            let r = http
                .get(url)
                .bearer_auth(common::API_KEY)
                .send()
                .await
                .expect("request");
            (r.status().as_u16(), r.headers().contains_key("retry-after"))
        }));
    }
    let mut counts = std::collections::HashMap::<u16, usize>::new();
    for t in tasks {
        let (status, retry_after) = t.await.expect("task");
        if status == 429 {
            assert!(retry_after, "429 without Retry-After");
        }
        *counts.entry(status).or_default() += 1;
    }
    assert!(counts.keys().all(|c| *c == 200 || *c == 429), "{counts:?}");
    assert!(counts.get(&429).copied().unwrap_or(0) > 0, "{counts:?}");
    assert_eq!(panics(), 0);
}

#[tokio::test]
async fn a_large_event_goes_out_in_bounded_fragments_and_arrives_whole() {
    // tungstenite keeps its write buffer at the size of the largest frame it ever wrote, for
    // the life of the connection: a large event is written as fragments of at most 4 KiB.
    count_panics();
    let s = start(&[]).await;
    let mut raw = connected_raw(&s, "big-reader").await;
    let blob: String = (0..200 * 1024)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    s.gateway
        .publish(
            "user:big-reader",
            "trade:executed",
            Payload::json(json!({ "blob": blob }).to_string()),
            false,
        )
        .await
        .expect("publish");
    // Skip anything before the event (a ping, the `connected` event), then collect its
    // fragments.
    let mut message = Vec::new();
    let mut fragments = 0usize;
    loop {
        let (fin, op, payload) = raw.read_raw_frame(T).await.expect("a frame");
        if fragments == 0 && !(op == 1 && payload.starts_with(b"42[\"trade:executed\"")) {
            continue;
        }
        assert_eq!(
            op,
            if fragments == 0 { 1 } else { 0 },
            "text, then continuations"
        );
        assert!(payload.len() <= 4096, "a frame of {} bytes", payload.len());
        fragments += 1;
        message.extend_from_slice(&payload);
        if fin {
            break;
        }
    }
    assert!(fragments >= 50, "{fragments} fragments");
    let text = String::from_utf8(message).expect("utf-8 once whole");
    let args: Value = serde_json::from_str(&text[2..]).expect("a Socket.IO event");
    assert_eq!(args[0], "trade:executed");
    assert_eq!(args[1]["blob"], Value::String(blob));
    // The connection goes on: the next event is a single frame.
    s.gateway
        .publish(
            "user:big-reader",
            "trade:executed",
            Payload::json("{\"n\":2}".to_string()),
            false,
        )
        .await
        .expect("publish");
    let next = raw.read_text(T).await.expect("next event");
    assert!(next.contains("\"n\":2"), "{next}");
    assert_eq!(panics(), 0);
}
