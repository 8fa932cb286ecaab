//! The business layer as a client sees it: auth at connect, `connected`, subscriptions with
//! acks, delivery with `meta`, recovery with `since` and Socket.IO connection state recovery,
//! quotes coalescing, errors, and the library API with binary payloads.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{jwt, now_secs, start, Msg, TestServer, T};
use raftcast::fanout::Payload;
use serde_json::{json, Value};

// ---------------------------------------------------------------- auth

async fn refused(s: &TestServer, auth: Value) -> Value {
    let mut ws = s.ws().await;
    match ws.connect(auth.clone()).await {
        Ok(ok) => panic!("auth {auth} was accepted: {ok}"),
        Err(e) => e,
    }
}

fn assert_unauthorized(e: &Value) {
    assert_eq!(e["message"], "UNAUTHORIZED", "{e}");
    assert_eq!(e["data"]["code"], "UNAUTHORIZED", "{e}");
    assert!(e["data"]["message"].is_string(), "{e}");
}

#[tokio::test]
async fn missing_or_unknown_session_is_unauthorized() {
    let s = start(&[]).await;
    assert_unauthorized(&refused(&s, json!({})).await);
    assert_unauthorized(&refused(&s, json!({"sessionId": "no-such-session"})).await);
    assert_unauthorized(&refused(&s, json!({"sessionId": 42})).await);
    // CONNECT without any payload
    let mut ws = s.ws().await;
    ws.send("40");
    let t = ws.wait_text(T, |t| t.starts_with("4")).await;
    assert!(t.starts_with("44"), "{t}");
    assert_unauthorized(&serde_json::from_str(&t[2..]).expect("json"));
}

#[tokio::test]
async fn valid_jwt_is_accepted() {
    let s = start(&[]).await;
    let token = jwt(&json!({"sub": "jwt-user", "exp": now_secs() + 600}));
    let mut ws = s.ws().await;
    let ok = ws.connect(json!({"token": token})).await.expect("accepted");
    assert!(ok["sid"].is_string());
    let connected = ws.event("connected", T).await;
    assert_eq!(connected[0]["userId"], "jwt-user");
}

fn b64(v: &Value) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

#[tokio::test]
async fn bad_jwts_are_refused() {
    let s = start(&[]).await;
    let now = now_secs();
    let expired = jwt(&json!({"sub": "u", "exp": now - 600}));
    let wrong_sig = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": "u", "exp": now + 600}),
        &jsonwebtoken::EncodingKey::from_secret(b"some-other-secret-0123"),
    )
    .expect("jwt");
    let alg_none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&json!({"sub": "u", "exp": now + 600}))
    );
    let no_sub = jwt(&json!({"exp": now + 600}));
    let not_yet = jwt(&json!({"sub": "u", "exp": now + 6000, "nbf": now + 3000}));
    let garbage = "not.a.token".to_owned();
    for (what, token) in [
        ("expired", expired),
        ("wrong signature", wrong_sig),
        ("alg none", alg_none),
        ("missing sub", no_sub),
        ("nbf in the future", not_yet),
        ("garbage", garbage),
    ] {
        let e = refused(&s, json!({"token": token})).await;
        assert_eq!(e["message"], "UNAUTHORIZED", "{what}: {e}");
        assert_eq!(e["data"]["code"], "UNAUTHORIZED", "{what}: {e}");
    }
}

#[tokio::test]
async fn revoking_a_session_disconnects_its_socket() {
    let s = start(&[]).await;
    let mut c = s.client("revoked").await;
    let (status, _) = s
        .api(
            reqwest::Method::DELETE,
            &format!("/api/sessions/{}", c.session),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let t = c.ws.wait_text(T, |t| t == "41").await;
    assert_eq!(t, "41");
    // the session cannot be used again
    let e = refused(&s, json!({"sessionId": c.session})).await;
    assert_unauthorized(&e);
}

// ---------------------------------------------------------------- connect, subscribe, deliver

#[tokio::test]
async fn connected_payload() {
    let s = start(&[]).await;
    let before = raftcast::util::now_unix_ms();
    let c = s.client("alice").await;
    let v = &c.connected;
    assert_eq!(v["userId"], "alice");
    assert_eq!(v["socketId"], c.sid.as_str());
    assert_eq!(v["nodeId"], 1);
    let t = v["serverTime"].as_u64().expect("serverTime");
    assert!(t >= before && t <= raftcast::util::now_unix_ms(), "{v}");
}

#[tokio::test]
async fn subscribe_portfolio_confirmation_and_ack_match() {
    let s = start(&[]).await;
    let mut c = s.client("bob").await;
    c.ws.emit("subscribe:portfolio", &[json!({})], Some(5));
    let confirmation = c.ws.event("subscribed:portfolio", T).await;
    let ack = c.ws.ack(5, T).await;
    assert_eq!(confirmation[0], ack[0]);
    let v = &ack[0];
    assert_eq!(v["room"], "portfolio:bob");
    assert_eq!(v["offset"], 0);
    assert!(v["epoch"].is_string());
    assert_eq!(v["recovered"], false);
    // without an ack: the confirmation still comes
    c.ws.emit("unsubscribe:portfolio", &[], None);
    let u = c.ws.event("unsubscribed:portfolio", T).await;
    assert_eq!(u[0], json!({"room": "portfolio:bob"}));
}

/// A delivered durable or volatile event: (data, meta, trailing index string if any).
fn delivered(args: &[Value]) -> (Value, Value, Option<String>) {
    (
        args[0].clone(),
        args[1].clone(),
        args.get(2).and_then(Value::as_str).map(str::to_owned),
    )
}

#[tokio::test]
async fn api_emits_reach_the_user_with_gapless_offsets() {
    let s = start(&[]).await;
    let mut a = s.client("carol").await;
    let mut other = s.client("dave").await;
    a.ws.emit("subscribe:portfolio", &[json!({})], Some(1));
    a.ws.ack(1, T).await;
    let before = raftcast::util::now_unix_ms();

    let mut answers = Vec::new();
    for i in 1..=3 {
        answers.push(
            s.emit(json!({"userId": "carol", "event": "trade:executed", "data": {"n": i}}))
                .await,
        );
    }
    let mut indexes = Vec::new();
    for i in 1..=3u64 {
        let args = a.ws.event("trade:executed", T).await;
        let (data, meta, index) = delivered(&args);
        assert_eq!(data, json!({"n": i}));
        assert_eq!(meta["room"], "user:carol");
        assert_eq!(meta["offset"], i, "{meta}");
        assert_eq!(meta["epoch"], answers[0]["epoch"]);
        assert!(meta["ts"].as_u64().is_some_and(|ts| ts >= before), "{meta}");
        let index: u64 = index
            .expect("durable events carry their index")
            .parse()
            .expect("numeric");
        indexes.push(index);
        assert_eq!(answers[i as usize - 1]["offset"], i);
        assert_eq!(answers[i as usize - 1]["room"], "user:carol");
    }
    assert!(indexes.windows(2).all(|w| w[0] < w[1]), "{indexes:?}");

    // the portfolio room, by room name
    for i in 1..=2u64 {
        let r = s
            .emit(json!({"room": "portfolio:carol", "event": "portfolio:update", "data": {"v": i}}))
            .await;
        assert_eq!(r["offset"], i);
    }
    for i in 1..=2u64 {
        let args = a.ws.event("portfolio:update", T).await;
        let (data, meta, _) = delivered(&args);
        assert_eq!(data, json!({"v": i}));
        assert_eq!(meta["room"], "portfolio:carol");
        assert_eq!(meta["offset"], i);
    }

    // dave got none of it
    let got = other.ws.collect(Duration::from_millis(300)).await;
    for m in &got {
        if let Msg::Text(t) = m {
            let name = common::event_name(t);
            assert!(
                !matches!(name.as_deref(), Some("trade:executed" | "portfolio:update")),
                "another user received {t}"
            );
        }
    }
}

#[tokio::test]
async fn volatile_emit_does_not_advance_the_offset() {
    let s = start(&[]).await;
    let mut a = s.client("erin").await;
    s.emit(json!({"userId": "erin", "event": "trade:executed", "data": 1}))
        .await;
    let r = s
        .emit(json!({"userId": "erin", "event": "tick", "data": 2, "durable": false}))
        .await;
    assert_eq!(r["offset"], 1);
    s.emit(json!({"userId": "erin", "event": "trade:executed", "data": 3}))
        .await;

    let (_, m1, i1) = delivered(&a.ws.event("trade:executed", T).await);
    let (d2, m2, i2) = delivered(&a.ws.event("tick", T).await);
    let (_, m3, _) = delivered(&a.ws.event("trade:executed", T).await);
    assert_eq!(d2, json!(2));
    assert_eq!(m1["offset"], 1);
    assert_eq!(
        m2["offset"], 1,
        "a volatile event carries the current offset"
    );
    assert_eq!(m2["epoch"], m1["epoch"]);
    assert_eq!(
        m3["offset"], 2,
        "durable offsets stay gapless around volatile events"
    );
    assert!(i1.is_some());
    assert!(i2.is_none(), "a volatile event has no recovery offset");
    let (status, h) = s.get_json("/api/rooms/user:erin/history").await;
    assert_eq!(status, 200);
    assert_eq!(h["events"].as_array().map(Vec::len), Some(2), "{h}");
}

#[tokio::test]
async fn since_recovery_replays_exactly_the_missed_events() {
    let s = start(&[]).await;
    let mut a = s.client("frank").await;
    a.ws.emit("subscribe:portfolio", &[json!({})], Some(1));
    let sub = a.ws.ack(1, T).await;
    let epoch = sub[0]["epoch"].as_str().expect("epoch").to_owned();
    for i in 1..=3 {
        s.emit(json!({"room": "portfolio:frank", "event": "portfolio:update", "data": {"n": i}}))
            .await;
    }
    for i in 1..=3u64 {
        let (_, meta, _) = delivered(&a.ws.event("portfolio:update", T).await);
        assert_eq!(meta["offset"], i);
    }
    a.ws.close();

    // a new socket that saw offset 1
    let mut b = s.client("frank").await;
    b.ws.emit(
        "subscribe:portfolio",
        &[json!({"since": {"offset": 1, "epoch": epoch}})],
        Some(2),
    );
    let mut replayed = Vec::new();
    let confirmation = loop {
        let t =
            b.ws.wait_text(T, |t| t.starts_with("42") || t.starts_with("43"))
                .await;
        match common::event_name(&t).as_deref() {
            Some("portfolio:update") => replayed.push(common::event_args(&t).expect("args")),
            Some("subscribed:portfolio") => break common::event_args(&t).expect("args"),
            _ => {}
        }
    };
    let offsets: Vec<Value> = replayed.iter().map(|a| a[1]["offset"].clone()).collect();
    assert_eq!(
        offsets,
        vec![json!(2), json!(3)],
        "replay before the confirmation"
    );
    assert_eq!(replayed[0][0], json!({"n": 2}));
    assert_eq!(confirmation[0]["recovered"], true, "{confirmation:?}");
    assert_eq!(confirmation[0]["offset"], 3);
    assert_eq!(confirmation[0]["epoch"], epoch.as_str());
    let ack = b.ws.ack(2, T).await;
    assert_eq!(ack[0], confirmation[0]);

    // another epoch: nothing replayed, recovered false with the current position
    let mut c = s.client("frank").await;
    c.ws.emit(
        "subscribe:portfolio",
        &[json!({"since": {"offset": 1, "epoch": "another-epoch"}})],
        Some(3),
    );
    let ack = c.ws.ack(3, T).await;
    assert_eq!(ack[0]["recovered"], false);
    assert_eq!(ack[0]["offset"], 3);
    assert_eq!(ack[0]["epoch"], epoch.as_str());
    let extra = c.ws.collect(Duration::from_millis(200)).await;
    assert!(
        !extra
            .iter()
            .any(|m| matches!(m, Msg::Text(t) if t.contains("portfolio:update"))),
        "events replayed for a foreign epoch: {extra:?}"
    );
}

#[tokio::test]
async fn recovery_beyond_history_retention_is_refused() {
    let s = start(&["--history-size", "5"]).await;
    let mut epoch = String::new();
    for i in 1..=8 {
        let r = s
            .emit(json!({"room": "portfolio:gina", "event": "portfolio:update", "data": i}))
            .await;
        epoch = r["epoch"].as_str().expect("epoch").to_owned();
    }
    let mut c = s.client("gina").await;
    c.ws.emit(
        "subscribe:portfolio",
        &[json!({"since": {"offset": 1, "epoch": epoch}})],
        Some(1),
    );
    let ack = c.ws.ack(1, T).await;
    assert_eq!(ack[0]["recovered"], false, "{ack:?}");
    assert_eq!(ack[0]["offset"], 8);
    // within the retention it works
    c.ws.emit(
        "subscribe:portfolio",
        &[json!({"since": {"offset": 5, "epoch": epoch}})],
        Some(2),
    );
    let ack = c.ws.ack(2, T).await;
    assert_eq!(ack[0]["recovered"], true, "{ack:?}");
}

// ---------------------------------------------------------------- quotes and errors

#[tokio::test]
async fn quotes_are_coalesced() {
    let s = start(&[]).await;
    let mut c = s.client("quotes").await;
    c.ws.emit(
        "subscribe:watchlist",
        &[json!({"symbols": ["AAPL"]})],
        Some(1),
    );
    let ack = c.ws.ack(1, T).await;
    assert_eq!(ack[0]["rooms"], json!(["watchlist:AAPL"]));

    let t0 = Instant::now();
    for i in 0..50 {
        let (status, body) = s
            .api(
                reqwest::Method::POST,
                "/api/quotes",
                Some(json!({"symbol": "AAPL", "quote": {"price": i}})),
            )
            .await;
        assert_eq!(status, 202, "{body}");
    }
    let burst = t0.elapsed();
    let mut updates: Vec<Vec<Value>> = Vec::new();
    let deadline = Instant::now() + T;
    while updates.last().is_none_or(|u| u[0]["quote"]["price"] != 49) {
        assert!(
            Instant::now() < deadline,
            "last quote never arrived: {updates:?}"
        );
        updates.push(c.ws.event("quote:update", T).await);
    }
    // nothing more after the last one
    let extra = c.ws.collect(Duration::from_millis(300)).await;
    assert!(!extra
        .iter()
        .any(|m| matches!(m, Msg::Text(t) if t.contains("quote:update"))));
    let n = updates.len();
    // at most one per 100 ms throttle interval (plus the edges)
    let bound = (burst.as_millis() / 100) as usize + 2;
    assert!(
        n < 50 && n <= bound,
        "{n} quote:update for 50 quotes in {burst:?}"
    );
    let last = &updates[n - 1];
    assert_eq!(last[0]["symbol"], "AAPL");
    assert!(last[0]["timestamp"].is_string());
    assert_eq!(last[1]["room"], "watchlist:AAPL");
    assert!(last.get(2).is_none(), "quotes are volatile");
}

#[tokio::test]
async fn invalid_symbol_and_unknown_event_are_invalid_payload() {
    let s = start(&[]).await;
    let mut c = s.client("errs").await;
    c.ws.emit(
        "subscribe:watchlist",
        &[json!({"symbols": ["aapl"]})],
        Some(1),
    );
    let err = c.ws.event("error", T).await;
    assert_eq!(err[0]["code"], "INVALID_PAYLOAD");
    assert_eq!(err[0]["event"], "subscribe:watchlist");
    assert!(err[0]["message"].is_string());
    let ack = c.ws.ack(1, T).await;
    assert_eq!(ack[0]["error"]["code"], "INVALID_PAYLOAD", "{ack:?}");

    c.ws.emit("no:such:event", &[json!({})], Some(2));
    let err = c.ws.event("error", T).await;
    assert_eq!(err[0]["code"], "INVALID_PAYLOAD");
    let ack = c.ws.ack(2, T).await;
    assert_eq!(ack[0]["error"]["code"], "INVALID_PAYLOAD");

    // without an ack, the error event alone
    c.ws.emit("subscribe:watchlist", &[json!({"symbols": "AAPL"})], None);
    let err = c.ws.event("error", T).await;
    assert_eq!(err[0]["code"], "INVALID_PAYLOAD");
}

// ---------------------------------------------------------------- connection state recovery

#[tokio::test]
async fn native_connection_state_recovery() {
    let s = start(&[]).await;
    let session = s.session("henry").await;
    let mut c = s.client_with_session(&session).await;
    assert!(!c.pid.is_empty(), "the CONNECT answer carries a pid");
    c.ws.emit("subscribe:portfolio", &[json!({})], Some(1));
    c.ws.ack(1, T).await;
    s.emit(json!({"userId": "henry", "event": "trade:executed", "data": {"n": 1}}))
        .await;
    let (_, _, offset) = delivered(&c.ws.event("trade:executed", T).await);
    let offset = offset.expect("durable packets carry an offset");

    c.ws.kill();
    // wait until the server noticed the dropped connection
    let mut gone = || async { s.get_json("/api/presence/henry").await.1["online"] == false };
    assert!(
        common::poll_until(T, &mut gone).await,
        "server never noticed the drop"
    );

    s.emit(json!({"userId": "henry", "event": "trade:executed", "data": {"n": 2}}))
        .await;
    s.emit(json!({"room": "portfolio:henry", "event": "portfolio:update", "data": {"n": 3}}))
        .await;

    let mut ws = s.ws().await;
    let ok = ws
        .connect(json!({"sessionId": session, "pid": c.pid, "offset": offset}))
        .await
        .expect("reconnect accepted");
    assert_eq!(ok["sid"], c.sid.as_str(), "same sid after recovery");
    assert_eq!(ok["pid"], c.pid.as_str(), "same pid after recovery");
    let (d2, m2, _) = delivered(&ws.event("trade:executed", T).await);
    assert_eq!(d2, json!({"n": 2}));
    assert_eq!(m2["offset"], 2);
    let (d3, m3, _) = delivered(&ws.event("portfolio:update", T).await);
    assert_eq!(d3, json!({"n": 3}), "the portfolio room was restored too");
    assert_eq!(m3["room"], "portfolio:henry");
    // and live delivery continues
    s.emit(json!({"userId": "henry", "event": "trade:executed", "data": {"n": 4}}))
        .await;
    let (d4, _, _) = delivered(&ws.event("trade:executed", T).await);
    assert_eq!(d4, json!({"n": 4}));
}

// ---------------------------------------------------------------- library API

#[tokio::test]
async fn library_publish_with_binary_attachment() {
    let s = start(&[]).await;
    let mut c = s.client("ivy").await;
    let bytes: Vec<u8> = [1.5f32, -2.25, 3.0]
        .iter()
        .flat_map(|f| f.to_le_bytes())
        .collect();
    let data = r#"{"prices":{"_placeholder":true,"num":0}}"#;
    let published = s
        .gateway
        .publish(
            "user:ivy",
            "chart:data",
            Payload {
                data: data.to_owned(),
                attachments: vec![bytes::Bytes::from(bytes.clone())],
            },
            true,
        )
        .await
        .expect("publish");
    assert_eq!(published.offset, 1);
    let t = c.ws.wait_text(T, |t| t.starts_with("45")).await;
    assert!(t.starts_with("451-[\"chart:data\","), "{t}");
    let args = common::event_args(&t).expect("args");
    assert_eq!(args[0], json!({"prices": {"_placeholder": true, "num": 0}}));
    assert_eq!(args[1]["room"], "user:ivy");
    assert_eq!(args[1]["offset"], 1);
    assert!(args[2].is_string(), "{t}");
    match c.ws.recv(T).await {
        Some(Msg::Binary(b)) => assert_eq!(b, bytes),
        other => panic!("expected the attachment, got {other:?}"),
    }

    // emit_to_user / emit_to_room
    s.gateway
        .emit_to_user("ivy", "trade:executed", &json!({"x": 1}), true)
        .await
        .expect("emit_to_user");
    let (d, m, _) = delivered(&c.ws.event("trade:executed", T).await);
    assert_eq!((d, &m["offset"]), (json!({"x": 1}), &json!(2)));
}
