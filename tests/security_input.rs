//! ISSUE 8, size and shape: WebSocket message and frame limits sized for the service,
//! bounded polling bodies, and malformed Engine.IO / Socket.IO packets, invalid UTF-8 and
//! wrong JSON types in every client event and API body answered with `INVALID_PAYLOAD` or a
//! clean disconnect, never a panic; the server keeps serving afterwards.
//!
//! Covered elsewhere (not repeated): polling POST over the limit is 413
//! (`socketio_frames::polling_post_over_max_payload_is_413`), more attachments than
//! `--max-attachments` close the connection (`socketio_frames::too_many_attachments_...`).

// Tests fail by panicking: expect/unwrap are the point here.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;
mod security_common;

use common::{start, TestServer, T};
use security_common::{count_panics, frame, panics, text, RawWs};
use serde_json::{json, Value};

/// The node still answers health, API and a fresh client after the abuse.
async fn still_serves(s: &TestServer) {
    let r = s
        .http
        .get(s.url("/health/websocket"))
        .send()
        .await
        .expect("health");
    assert_eq!(r.status(), 200);
    let mut c = s.client("after-abuse").await;
    c.ws.emit("ping", &[json!(1)], Some(1));
    let ack = c.ws.ack(1, T).await;
    assert!(ack[0]["serverTime"].is_u64(), "{ack:?}");
    assert_eq!(panics(), 0, "a panic happened while serving bad input");
}

/// A raw WebSocket with a socket on `/` for `user`.
async fn raw_client(s: &TestServer, user: &str) -> RawWs {
    let session = s.session(user).await;
    let mut ws = RawWs::open(s.addr).await;
    ws.send_text(&format!("40{}", json!({"sessionId": session})))
        .await
        .expect("send");
    let t = ws.read_text(T).await.expect("connect answer");
    assert!(t.starts_with("40{"), "{t}");
    ws
}

#[tokio::test]
async fn one_mib_websocket_message_to_a_default_node_is_refused() {
    count_panics();
    // no --max-event-bytes: the default applies
    let s = start(&[]).await;
    let open = s.ws().await.open.clone();
    let max = open["maxPayload"].as_u64().expect("maxPayload");
    assert!(
        max <= 1 << 20,
        "default maxPayload {max} is not sized for this service"
    );

    // one 1 MiB text frame
    let mut ws = raw_client(&s, "big1").await;
    let big = format!("42[\"ping\",\"{}\"]", "x".repeat(1 << 20));
    let _ = ws.send(&text(&big)).await;
    assert!(
        ws.closed_within(T).await,
        "1 MiB frame did not close the connection"
    );

    // the same in small fragments (the message limit, not only the frame limit)
    let mut ws = raw_client(&s, "big2").await;
    let chunk = vec![b'x'; 16 * 1024];
    let mut closed = false;
    let _ = ws.send(&frame(1, false, b"42[\"ping\",\"")).await;
    for _ in 0..64 {
        if ws.send(&frame(0, false, &chunk)).await.is_err() {
            closed = true;
            break;
        }
    }
    let _ = ws.send(&frame(0, true, b"\"]")).await;
    assert!(
        closed || ws.closed_within(T).await,
        "1 MiB in fragments was accepted"
    );

    // a frame header announcing 1 GiB is refused before any of it arrives
    let mut ws = raw_client(&s, "big3").await;
    let mut head = vec![0x81u8, 0x80 | 127];
    head.extend_from_slice(&(1u64 << 30).to_be_bytes());
    head.extend_from_slice(&[1, 2, 3, 4]);
    let _ = ws.send(&head).await;
    assert!(
        ws.closed_within(T).await,
        "1 GiB frame header was not refused"
    );

    // binary messages too
    let mut ws = raw_client(&s, "big4").await;
    let _ = ws.send(&frame(2, true, &vec![0u8; 1 << 20])).await;
    assert!(ws.closed_within(T).await, "1 MiB binary frame was accepted");
    still_serves(&s).await;
}

#[tokio::test]
async fn malformed_packets_get_a_clean_disconnect_or_an_answer() {
    count_panics();
    let s = start(&[]).await;
    let deep = format!("42[\"ping\",{}{}]", "[".repeat(5000), "]".repeat(5000));
    let deep_obj = format!(
        "42[\"ping\",{}1{}]",
        "{\"a\":".repeat(3000),
        "}".repeat(3000)
    );
    let many_keys = format!(
        "42[\"ping\",{{{}}}]",
        (0..5000)
            .map(|i| format!("\"k{i}\":{i}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    let cases: Vec<Vec<u8>> = vec![
        text(""),
        text("0"),
        text("0{\"sid\":\"x\"}"),
        text("5"),
        text("7"),
        text("b"),
        text("b!!!!"),
        text("4"),
        text("40garbage"),
        text("40[]"),
        text("401"),
        text("42"),
        text("42["),
        text("42[]"),
        text("42[null]"),
        text("42[1,2]"),
        text("42{\"a\":1}"),
        text("42\"ping\""),
        text("4299999999999999999[\"ping\"]"),
        text("42/,[\"ping\"]"),
        text("42/x/y/z,[\"ping\"]"),
        text(&format!("42/{},[\"ping\"]", "n".repeat(10_000))),
        text("43[]"),
        text("4312[1]"),
        text("44{\"message\":\"x\"}"),
        text("45-[\"ping\"]"),
        text("451-[\"ping\"]"),
        text("45999999999-[\"ping\"]"),
        text("451-[\"ping\",{\"_placeholder\":true,\"num\":5}]"),
        text("451-[\"ping\",{\"_placeholder\":\"yes\",\"num\":0}]"),
        text("46"),
        text("47"),
        text("4\u{0}\u{1}"),
        text("42[\"\u{0}\",\"\u{fffd}\"]"),
        text(&deep),
        text(&deep_obj),
        text(&many_keys),
        // invalid UTF-8 in a text frame
        frame(1, true, &[b'4', b'2', 0xff, 0xfe, 0xfd]),
        // a lone surrogate escape is valid JSON text but not a valid string
        text("42[\"ping\",\"\\ud800\"]"),
        // binary message with no binary packet announced
        frame(2, true, &[1, 2, 3]),
        // reserved opcode, RSV bits, unmasked client frame, control frame too long
        frame(3, true, b"x"),
        vec![0xf1, 0x81, 0, 0, 0, 0, b'x'],
        vec![0x81, 0x01, b'x'],
        frame(9, true, &[0u8; 200]),
        // a continuation with nothing to continue
        frame(0, true, b"42[\"ping\"]"),
        // a close frame with a bad code
        frame(8, true, &[0x03, 0xe7]),
    ];
    for (i, bytes) in cases.iter().enumerate() {
        let mut ws = raw_client(&s, &format!("bad{i}")).await;
        let _ = ws.send(bytes).await;
        // either the connection closes, or it lives on and still answers a ping
        let _ = ws.send_text("42999[\"ping\"]").await;
        let deadline = tokio::time::Instant::now() + T;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match ws.read_text(left).await {
                None => break, // closed (cleanly or by reset): fine
                Some(t) if t.starts_with("43999") => break,
                Some(_) => {}
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "case {i}: neither closed nor answered"
            );
        }
    }
    // the same garbage as a whole binary-attachment sequence: text where binary expected
    let mut ws = raw_client(&s, "seq").await;
    let _ = ws
        .send_text("451-[\"ping\",{\"_placeholder\":true,\"num\":0}]")
        .await;
    let _ = ws.send_text("42[\"ping\"]").await;
    assert!(ws.closed_within(T).await, "text while attachments pending");
    still_serves(&s).await;
}

async fn poll_post(s: &TestServer, sid: &str, body: impl Into<reqwest::Body>) -> u16 {
    s.http
        .post(s.url(&format!("/socket.io/?EIO=4&transport=polling&sid={sid}")))
        .header("content-type", "text/plain;charset=UTF-8")
        .body(body)
        .send()
        .await
        .expect("post")
        .status()
        .as_u16()
}

/// POSTs `chunks` chunks of `size` noop bytes with chunked transfer encoding (no
/// content-length to check up front); returns the status.
async fn chunked_post(s: &TestServer, sid: &str, chunks: usize, size: usize) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut c = tokio::net::TcpStream::connect(s.addr)
        .await
        .expect("connect");
    let head = format!(
        "POST /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    let _ = c.write_all(head.as_bytes()).await;
    let chunk = format!("{size:x}\r\n{}\r\n", "6".repeat(size));
    for _ in 0..chunks {
        if c.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
    }
    let _ = c.write_all(b"0\r\n\r\n").await;
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(T, c.read(&mut buf))
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or(0);
    let head = String::from_utf8_lossy(&buf[..n]).to_string();
    head.split_whitespace()
        .nth(1)
        .and_then(|x| x.parse().ok())
        .unwrap_or(0)
}

async fn polling_sid(s: &TestServer) -> String {
    let body = s
        .http
        .get(s.url("/socket.io/?EIO=4&transport=polling"))
        .send()
        .await
        .expect("handshake")
        .text()
        .await
        .expect("body");
    let v: Value = serde_json::from_str(&body[1..]).expect("open");
    v["sid"].as_str().expect("sid").to_owned()
}

#[tokio::test]
async fn polling_bodies_are_bounded_and_checked() {
    count_panics();
    let s = start(&[]).await;
    // invalid UTF-8
    let sid = polling_sid(&s).await;
    assert_eq!(poll_post(&s, &sid, vec![b'4', b'2', 0xff, 0xfe]).await, 400);
    // too many packets in one body (each is tiny, the body is under the byte limit)
    let sid = polling_sid(&s).await;
    let body = vec!["6"; 5000].join("\x1e");
    assert_eq!(poll_post(&s, &sid, body).await, 400);
    // an empty record
    let sid = polling_sid(&s).await;
    assert_eq!(poll_post(&s, &sid, "6\x1e\x1e6").await, 400);
    // bad base64
    let sid = polling_sid(&s).await;
    assert_eq!(poll_post(&s, &sid, "b!!!").await, 400);
    // a body without content-length (chunked) over the limit is still cut at the limit
    let sid = polling_sid(&s).await;
    let status = chunked_post(&s, &sid, 40, 4096).await;
    assert_eq!(status, 413, "chunked polling body over the limit");
    // a sid that does not exist, with a body
    assert_eq!(poll_post(&s, "nope", "40").await, 400);
    still_serves(&s).await;
}

/// Every client event with every JSON type as its argument: each is acked, either with the
/// confirmation or with `{ error: { code } }`; the connection stays up.
#[tokio::test]
async fn wrong_json_types_in_every_client_event() {
    count_panics();
    let s = start(&[
        "--event-rate",
        "100000",
        "--subscribe-rate",
        "100000",
        "--max-symbols",
        "50",
    ])
    .await;
    let mut c = s.client("types").await;
    let values = [
        json!(null),
        json!(true),
        json!(0),
        json!(-1),
        json!(1.5),
        json!(1e308),
        json!(""),
        json!("x".repeat(10_000)),
        json!([]),
        json!([1, "a", null]),
        json!({}),
        json!({"since": null}),
        json!({"since": 1}),
        json!({"since": "1"}),
        json!({"since": []}),
        json!({"since": {}}),
        json!({"since": {"offset": -1, "epoch": "e"}}),
        json!({"since": {"offset": 1.5, "epoch": "e"}}),
        json!({"since": {"offset": "1", "epoch": "e"}}),
        json!({"since": {"offset": 1, "epoch": 1}}),
        json!({"since": {"offset": 18446744073709551615u64, "epoch": "e"}}),
        json!({"since": {"offset": 1, "epoch": "e".repeat(10_000)}}),
        json!({"symbols": null}),
        json!({"symbols": "AAPL"}),
        json!({"symbols": {}}),
        json!({"symbols": []}),
        json!({"symbols": [null]}),
        json!({"symbols": [1]}),
        json!({"symbols": [["AAPL"]]}),
        json!({"symbols": ["aapl"]}),
        json!({"symbols": ["A".repeat(16)]}),
        json!({"symbols": vec!["AAPL"; 5_000]}),
        json!({"symbols": ["AAPL"], "since": 5}),
        json!({"symbols": ["AAPL", "MSFT"], "since": {"offset": 1, "epoch": "e"}}),
        json!({"symbols": ["AAPL"], "since": {"AAPL": 3}}),
    ];
    let events = [
        "subscribe:portfolio",
        "unsubscribe:portfolio",
        "subscribe:watchlist",
        "unsubscribe:watchlist",
        "subscribe:trades",
        "ping",
        "nonexistent",
        "",
    ];
    let mut id = 0u64;
    for event in events {
        for v in &values {
            id += 1;
            c.ws.emit(event, std::slice::from_ref(v), Some(id));
            let ack = c.ws.ack(id, T).await;
            let a = ack.first().cloned().unwrap_or(Value::Null);
            if let Some(e) = a.get("error") {
                let code = e["code"].as_str().unwrap_or_default();
                assert!(
                    ["INVALID_PAYLOAD", "SUBSCRIPTION_LIMIT"].contains(&code),
                    "{event} {v}: {a}"
                );
            } else {
                assert!(a.is_object(), "{event} {v}: {a}");
            }
        }
    }
    // the type errors that must be INVALID_PAYLOAD
    for (event, v) in [
        ("subscribe:portfolio", json!({"since": 1})),
        (
            "subscribe:trades",
            json!({"since": {"offset": "1", "epoch": "e"}}),
        ),
        ("subscribe:watchlist", json!({"symbols": "AAPL"})),
        ("subscribe:watchlist", json!({"symbols": [1]})),
        ("unsubscribe:watchlist", json!({"symbols": null})),
        ("nonexistent", json!({})),
    ] {
        id += 1;
        c.ws.emit(event, std::slice::from_ref(&v), Some(id));
        let ack = c.ws.ack(id, T).await;
        assert_eq!(
            ack[0]["error"]["code"], "INVALID_PAYLOAD",
            "{event} {v}: {ack:?}"
        );
    }
    // no args at all, and many args
    id += 1;
    c.ws.send(&format!("42{id}[\"subscribe:watchlist\"]"));
    assert_eq!(c.ws.ack(id, T).await[0]["error"]["code"], "INVALID_PAYLOAD");
    id += 1;
    let many: Vec<Value> = (0..1000).map(|i| json!(i)).collect();
    c.ws.emit("subscribe:portfolio", &many, Some(id));
    assert!(c.ws.ack(id, T).await[0].is_object());
    still_serves(&s).await;
}

/// Every API body with the wrong JSON type, invalid JSON or invalid UTF-8: 400
/// `INVALID_PAYLOAD` (413 beyond the size limit), never a 5xx.
#[tokio::test]
async fn wrong_types_in_every_api_body() {
    count_panics();
    let s = start(&[]).await;
    let raw_bodies: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"{".to_vec(),
        b"null".to_vec(),
        b"[]".to_vec(),
        b"1".to_vec(),
        b"\"s\"".to_vec(),
        vec![b'{', 0xff, b'}'],
        b"{\"a\":1}garbage".to_vec(),
        format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000)).into_bytes(),
    ];
    let typed: Vec<(&str, Vec<Value>)> = vec![
        (
            "/api/sessions",
            vec![
                json!({}),
                json!({"userId": null}),
                json!({"userId": 1}),
                json!({"userId": ["u"]}),
                json!({"userId": ""}),
                json!({"userId": "a b"}),
                json!({"userId": "u".repeat(200)}),
                json!({"userId": "u", "ttlSeconds": "60"}),
                json!({"userId": "u", "ttlSeconds": -1}),
                json!({"userId": "u", "ttlSeconds": 0}),
                json!({"userId": "u", "ttlSeconds": 1.5}),
                json!({"userId": "u", "ttlSeconds": 1e300}),
            ],
        ),
        (
            "/api/emit",
            vec![
                json!({}),
                json!({"event": "e", "data": 1}),
                json!({"userId": "u", "room": "r", "event": "e"}),
                json!({"userId": 1, "event": "e"}),
                json!({"room": [], "event": "e"}),
                json!({"room": "", "event": "e"}),
                json!({"room": "r\n", "event": "e"}),
                json!({"room": "r".repeat(300), "event": "e"}),
                json!({"userId": "u"}),
                json!({"userId": "u", "event": 1}),
                json!({"userId": "u", "event": ""}),
                json!({"userId": "u", "event": "e".repeat(200)}),
                json!({"userId": "u", "event": "e", "durable": "yes"}),
                json!({"userId": "u/../x", "event": "e"}),
            ],
        ),
        (
            "/api/quotes",
            vec![
                json!({}),
                json!({"symbol": 1, "quote": 1}),
                json!({"symbol": "aapl", "quote": 1}),
                json!({"symbol": "AAPL"}),
                json!({"symbol": "A".repeat(100), "quote": 1}),
            ],
        ),
    ];
    for path in ["/api/sessions", "/api/emit", "/api/quotes"] {
        for body in &raw_bodies {
            let r = s
                .http
                .post(s.url(path))
                .bearer_auth(common::API_KEY)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await
                .expect("post");
            let status = r.status().as_u16();
            let v: Value = r.json().await.unwrap_or(Value::Null);
            assert_eq!(
                status,
                400,
                "{path} {:?}: {v}",
                String::from_utf8_lossy(&body[..body.len().min(40)])
            );
            assert_eq!(v["code"], "INVALID_PAYLOAD", "{v}");
        }
    }
    for (path, bodies) in typed {
        for b in bodies {
            let (status, v) = s.api(reqwest::Method::POST, path, Some(b.clone())).await;
            assert_eq!(status, 400, "{path} {b}: {v}");
            assert_eq!(v["code"], "INVALID_PAYLOAD", "{path} {b}: {v}");
        }
    }
    // paths and queries
    for path in [
        "/api/rooms/user:x/history?since=-1",
        "/api/rooms/user:x/history?since=abc",
        "/api/rooms/user:x/history?since=1e3",
        "/api/rooms/user:x/history?since=99999999999999999999999",
        "/api/presence/a%20b",
        "/api/presence/a%00b",
        "/api/rooms/a%0Ab/history",
    ] {
        let (status, v) = s.get_json(path).await;
        assert_eq!(status, 400, "{path}: {v}");
        assert_eq!(v["code"], "INVALID_PAYLOAD", "{path}: {v}");
    }
    let long = format!("/api/rooms/{}/history", "r".repeat(300));
    assert_eq!(s.get_json(&long).await.0, 400);
    let (status, _) = s
        .api(
            reqwest::Method::DELETE,
            &format!("/api/sessions/{}", "s".repeat(200)),
            None,
        )
        .await;
    assert_eq!(status, 400);
    // over the body limit: 413
    let big = json!({"userId": "u", "event": "e", "data": "x".repeat(70_000)});
    let (status, v) = s.api(reqwest::Method::POST, "/api/emit", Some(big)).await;
    assert_eq!(status, 413, "{v}");
    assert_eq!(v["code"], "PAYLOAD_TOO_LARGE");
    still_serves(&s).await;
}
