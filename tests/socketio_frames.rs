//! Engine.IO / Socket.IO at the frame level, as a raw client sees it: handshake, heartbeat,
//! namespaces, malformed packets, binary events and acks, long-polling and its errors.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{start, Msg, TestServer, T};
use serde_json::{json, Value};

async fn assert_healthy(s: &TestServer) {
    let r = s.http.get(s.url("/healthz")).send().await.expect("healthz");
    assert_eq!(r.status(), 200);
    // and a new client still gets through
    let c = s.client("still-ok").await;
    assert_eq!(c.connected["userId"], "still-ok");
}

#[tokio::test]
async fn websocket_handshake_open_packet() {
    let s = start(&[]).await;
    let ws = s.ws().await;
    let open = &ws.open;
    let sid = open["sid"].as_str().expect("sid is a string");
    assert!(!sid.is_empty());
    assert_eq!(
        open["upgrades"],
        json!([]),
        "a WebSocket session has nothing to upgrade to"
    );
    assert_eq!(open["pingInterval"], 300);
    assert_eq!(open["pingTimeout"], 200);
    assert_eq!(open["maxPayload"], 65_536);
}

#[tokio::test]
async fn answering_client_stays_connected_past_several_intervals() {
    let s = start(&[]).await;
    let mut c = s.client("hb").await;
    // Observe for five ping intervals; pings must keep coming and the socket must live.
    let got = c.ws.collect(Duration::from_millis(1500)).await;
    assert!(!got.contains(&Msg::Closed), "connection closed: {got:?}");
    let pings = c.ws.pings.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        pings >= 3,
        "only {pings} pings in 1.5 s with pingInterval 300 ms"
    );
    c.ws.emit("ping", &[json!({})], Some(1));
    let ack = c.ws.ack(1, T).await;
    assert!(ack[0]["serverTime"].is_u64(), "{ack:?}");
}

#[tokio::test]
async fn silent_client_is_closed_after_interval_plus_timeout() {
    let s = start(&[]).await;
    let mut c = s.client("silent").await;
    c.ws.auto_pong
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let t0 = Instant::now();
    assert!(
        c.ws.closed_within(Duration::from_secs(3)).await,
        "a client that never answers pings was not closed"
    );
    let took = t0.elapsed();
    // pingInterval 300 + pingTimeout 200 = ~500 ms after the last pong.
    assert!(
        took >= Duration::from_millis(200),
        "closed too early: {took:?}"
    );
    assert!(
        took <= Duration::from_millis(1500),
        "closed too late: {took:?}"
    );
    assert!(c.ws.pings.load(std::sync::atomic::Ordering::SeqCst) >= 1);
}

#[tokio::test]
async fn unknown_namespace_is_refused() {
    let s = start(&[]).await;
    let mut ws = s.ws().await;
    ws.send("40/nope,");
    let t = ws.text(T).await;
    assert!(t.starts_with("44/nope,"), "{t}");
    let v: Value = serde_json::from_str(&t["44/nope,".len()..]).expect("json");
    assert_eq!(v, json!({"message": "Invalid namespace"}));
}

#[tokio::test]
async fn malformed_packets_close_the_connection() {
    let s = start(&[]).await;
    for bad in ["4garbage", "42{bad", "42[\"a\"", "9", "41[]"] {
        let mut c = s.client("malformed").await;
        c.ws.send(bad);
        assert!(
            c.ws.closed_within(T).await,
            "{bad:?} did not close the connection"
        );
    }
    assert_healthy(&s).await;
}

#[tokio::test]
async fn binary_event_with_ack_echoes_the_bytes() {
    let s = start(&[]).await;
    let mut c = s.client("bin").await;
    let bytes: Vec<u8> = (0..=255u8).chain([0, 0, 255]).collect();
    c.ws.send(r#"451-7["ping",{"_placeholder":true,"num":0}]"#);
    c.ws.send_binary(&bytes);
    let t = c.ws.wait_text(T, |t| t.starts_with("46")).await;
    assert!(
        t.starts_with("461-7["),
        "a BINARY_ACK for id 7 with one attachment: {t}"
    );
    let args: Value = serde_json::from_str(&t["461-7".len()..]).expect("json");
    assert_eq!(
        args[0]["echo"],
        json!({"_placeholder": true, "num": 0}),
        "{t}"
    );
    assert!(args[0]["serverTime"].is_u64(), "{t}");
    match c.ws.recv(T).await {
        Some(Msg::Binary(b)) => assert_eq!(b, bytes, "attachment bytes changed"),
        other => panic!("expected the attachment, got {other:?}"),
    }
}

#[tokio::test]
async fn too_many_attachments_close_the_connection() {
    let s = start(&[]).await;
    let mut c = s.client("att").await;
    let placeholders: Vec<Value> = (0..11)
        .map(|i| json!({"_placeholder": true, "num": i}))
        .collect();
    let mut arr = vec![json!("ping")];
    arr.extend(placeholders);
    c.ws.send(&format!("4511-{}", Value::Array(arr)));
    assert!(
        c.ws.closed_within(T).await,
        "11 attachments (limit 10) accepted"
    );
    assert_healthy(&s).await;
}

async fn poll_get(s: &TestServer, sid: &str) -> (u16, String) {
    let r = s
        .http
        .get(s.url(&format!("/socket.io/?EIO=4&transport=polling&sid={sid}")))
        .send()
        .await
        .expect("poll");
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

async fn poll_post(s: &TestServer, sid: &str, body: impl Into<reqwest::Body>) -> (u16, String) {
    let r = s
        .http
        .post(s.url(&format!("/socket.io/?EIO=4&transport=polling&sid={sid}")))
        .header("content-type", "text/plain;charset=UTF-8")
        .body(body)
        .send()
        .await
        .expect("post");
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

async fn polling_handshake(s: &TestServer) -> Value {
    let r = s
        .http
        .get(s.url("/socket.io/?EIO=4&transport=polling"))
        .send()
        .await
        .expect("handshake");
    assert_eq!(r.status(), 200);
    let body = r.text().await.expect("body");
    let open = body
        .strip_prefix('0')
        .unwrap_or_else(|| panic!("open packet: {body}"));
    serde_json::from_str(open).expect("open json")
}

#[tokio::test]
async fn polling_handshake_connect_and_connected() {
    let s = start(&[]).await;
    let open = polling_handshake(&s).await;
    assert_eq!(open["upgrades"], json!(["websocket"]));
    assert_eq!(open["pingInterval"], 300);
    assert_eq!(open["pingTimeout"], 200);
    assert_eq!(open["maxPayload"], 65_536);
    let sid = open["sid"].as_str().expect("sid").to_owned();

    let session = s.session("poller").await;
    let (status, body) = poll_post(&s, &sid, format!("40{}", json!({"sessionId": session}))).await;
    assert_eq!((status, body.as_str()), (200, "ok"));

    // The CONNECT answer and `connected` may come in one or several polls.
    let mut packets: Vec<String> = Vec::new();
    let deadline = Instant::now() + T;
    while !packets.iter().any(|p| p.starts_with("42[\"connected\"")) {
        assert!(Instant::now() < deadline, "no connected event: {packets:?}");
        let (status, body) = tokio::time::timeout(T, poll_get(&s, &sid))
            .await
            .expect("poll timed out");
        assert_eq!(status, 200, "{body}");
        packets.extend(body.split('\x1e').map(str::to_owned));
    }
    let connect = packets
        .iter()
        .find(|p| p.starts_with("40"))
        .unwrap_or_else(|| panic!("no CONNECT answer: {packets:?}"));
    let v: Value = serde_json::from_str(&connect[2..]).expect("json");
    assert!(v["sid"].is_string() && v["pid"].is_string(), "{connect}");
    let connected = packets
        .iter()
        .find(|p| p.starts_with("42[\"connected\""))
        .expect("connected");
    let args = common::event_args(connected).expect("args");
    assert_eq!(args[0]["userId"], "poller");
    assert_eq!(args[0]["socketId"], v["sid"]);
}

#[tokio::test]
async fn polling_post_over_max_payload_is_413() {
    let s = start(&[]).await;
    let open = polling_handshake(&s).await;
    let sid = open["sid"].as_str().expect("sid");
    let big = format!("42[\"ping\",\"{}\"]", "x".repeat(70_000));
    let (status, _) = poll_post(&s, sid, big).await;
    assert_eq!(status, 413);
}

#[tokio::test]
async fn engine_io_errors() {
    let s = start(&[]).await;
    let get = |q: &str| {
        let url = s.url(&format!("/socket.io/?{q}"));
        let http = s.http.clone();
        async move {
            let r = http.get(url).send().await.expect("get");
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            (status, body)
        }
    };
    assert_eq!(
        get("EIO=4&transport=polling&sid=nope").await,
        (400, json!({"code": 1, "message": "Session ID unknown"}))
    );
    let (status, body) = get("EIO=3&transport=polling").await;
    assert_eq!((status, &body["code"]), (400, &json!(5)), "{body}");
    let (status, body) = get("EIO=4&transport=foo").await;
    assert_eq!((status, &body["code"]), (400, &json!(0)), "{body}");
}
