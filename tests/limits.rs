//! Limits and resource release: connection cap, subscribe rate, symbol cap, memory released
//! after many sockets go away, and graceful shutdown.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{start, Msg, T};
use serde_json::{json, Value};

#[tokio::test]
async fn max_connections_refuses_with_server_full() {
    let s = start(&["--max-connections", "3"]).await;
    let mut clients = Vec::new();
    for i in 0..3 {
        clients.push(s.client(&format!("full{i}")).await);
    }
    let session = s.session("full3").await;
    let mut ws = s.ws().await;
    let e = ws
        .connect(json!({"sessionId": session}))
        .await
        .expect_err("a 4th socket was accepted with --max-connections 3");
    assert_eq!(e["message"], "SERVER_FULL", "{e}");
    assert_eq!(e["data"]["code"], "SERVER_FULL", "{e}");
    assert!(
        e["data"]["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{e}"
    );

    // once one leaves, there is room again
    let mut first = clients.remove(0);
    first.ws.close();
    let mut retry = || async {
        let mut ws = s.ws().await;
        ws.connect(json!({"sessionId": session})).await.is_ok()
    };
    assert!(
        common::poll_until(T, &mut retry).await,
        "no room after a socket left"
    );
}

#[tokio::test]
async fn subscribe_rate_limit_answers_every_request() {
    let s = start(&["--subscribe-rate", "2"]).await;
    let mut c = s.client("flood").await;
    for id in 0..20u64 {
        c.ws.emit("subscribe:portfolio", &[json!({})], Some(id));
    }
    let mut acks: Vec<(u64, Vec<Value>)> = Vec::new();
    let deadline = Instant::now() + T;
    while acks.len() < 20 {
        let left = deadline.saturating_duration_since(Instant::now());
        match c.ws.recv(left).await {
            Some(Msg::Text(t)) => {
                if let Some(a) = common::parse_ack(&t) {
                    acks.push(a);
                }
            }
            Some(Msg::Binary(_)) => {}
            Some(Msg::Closed) => panic!("closed after {} acks", acks.len()),
            None => panic!("only {} of 20 acks", acks.len()),
        }
    }
    let mut ids: Vec<u64> = acks.iter().map(|(id, _)| *id).collect();
    ids.sort_unstable();
    assert_eq!(
        ids,
        (0..20).collect::<Vec<_>>(),
        "every request answered once"
    );
    let limited: Vec<&Value> = acks
        .iter()
        .map(|(_, a)| &a[0])
        .filter(|a| a.get("error").is_some())
        .collect();
    let ok = 20 - limited.len();
    assert!(ok >= 1, "no subscription went through");
    assert!(
        !limited.is_empty(),
        "20 subscriptions at once with --subscribe-rate 2 all passed"
    );
    for e in &limited {
        assert_eq!(e["error"]["code"], "RATE_LIMIT", "{e}");
        assert!(
            e["error"]["retryAfterMs"].as_u64().is_some_and(|ms| ms > 0),
            "{e}"
        );
    }
}

#[tokio::test]
async fn too_many_symbols_is_subscription_limit() {
    let s = start(&[]).await;
    let mut c = s.client("symbols").await;
    let symbols: Vec<String> = (0..51).map(|i| format!("S{i}")).collect();
    c.ws.emit(
        "subscribe:watchlist",
        &[json!({"symbols": symbols})],
        Some(1),
    );
    // the error event, then the ack with the same error
    let err = c.ws.event("error", T).await;
    assert_eq!(err[0]["code"], "SUBSCRIPTION_LIMIT");
    let ack = c.ws.ack(1, T).await;
    assert_eq!(ack[0]["error"]["code"], "SUBSCRIPTION_LIMIT", "{ack:?}");
    // 50 is fine, then one more is not
    c.ws.emit(
        "subscribe:watchlist",
        &[json!({"symbols": &symbols[..50]})],
        Some(2),
    );
    let ack = c.ws.ack(2, T).await;
    assert_eq!(
        ack[0]["symbols"].as_array().map(Vec::len),
        Some(50),
        "{ack:?}"
    );
    // wait out the subscribe rate limit (10/s) so only the symbol cap can refuse
    tokio::time::sleep(Duration::from_millis(250)).await;
    c.ws.emit(
        "subscribe:watchlist",
        &[json!({"symbols": ["EXTRA"]})],
        Some(3),
    );
    let ack = c.ws.ack(3, T).await;
    assert_eq!(ack[0]["error"]["code"], "SUBSCRIPTION_LIMIT", "{ack:?}");
}

/// One socket that connects, subscribes to its portfolio and a watchlist symbol.
async fn subscribed_socket(
    s: &common::TestServer,
    user: &str,
    idx: usize,
    session: &str,
) -> common::Ws {
    let mut ws = s.ws().await;
    ws.connect(json!({"sessionId": session}))
        .await
        .unwrap_or_else(|e| panic!("{user}: {e}"));
    ws.emit("subscribe:portfolio", &[json!({})], Some(1));
    ws.emit(
        "subscribe:watchlist",
        &[json!({"symbols": [format!("SYM{}", idx % 7)]})],
        Some(2),
    );
    let a1 = ws.ack(1, T).await;
    assert_eq!(a1[0]["room"], format!("portfolio:{user}"));
    let a2 = ws.ack(2, T).await;
    assert!(a2[0]["rooms"].is_array(), "{a2:?}");
    ws
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_is_released_after_many_sockets_close() {
    const N: usize = 2000;
    const BATCH: usize = 100;
    let s = Arc::new(
        start(&[
            "--ping-interval-ms",
            "20000",
            "--ping-timeout-ms",
            "20000",
            "--max-connections-per-ip",
            "100000",
        ])
        .await,
    );
    let t0 = Instant::now();
    let mut sockets: Vec<common::Ws> = Vec::with_capacity(N);
    let done = Arc::new(AtomicUsize::new(0));
    for batch in 0..N / BATCH {
        let mut tasks = Vec::new();
        for i in 0..BATCH {
            let s = s.clone();
            let done = done.clone();
            tasks.push(tokio::spawn(async move {
                let idx = batch * BATCH + i;
                let user = format!("m{idx}");
                let session = s
                    .gateway
                    .create_session(&user, None)
                    .await
                    .expect("session")
                    .session_id;
                let ws = subscribed_socket(&s, &user, idx, &session).await;
                done.fetch_add(1, Ordering::Relaxed);
                ws
            }));
        }
        for t in tasks {
            sockets.push(
                tokio::time::timeout(Duration::from_secs(20), t)
                    .await
                    .expect("batch in time")
                    .expect("socket task"),
            );
        }
    }
    assert_eq!(done.load(Ordering::Relaxed), N);
    let st = s.stats().await;
    assert_eq!(st["totalConnections"], N as u64, "{st}");
    assert_eq!(st["uniqueUsers"], N as u64, "{st}");
    // user + portfolio rooms per user, and 7 watchlist symbols
    assert_eq!(st["roomCount"], (2 * N + 7) as u64, "{st}");
    assert_eq!(s.io.connection_count(), N);
    let opened = t0.elapsed();

    // half close politely, half vanish
    for (i, ws) in sockets.iter_mut().enumerate() {
        if i % 2 == 0 {
            ws.close();
        } else {
            ws.kill();
        }
    }
    let mut released = || {
        let s = s.clone();
        async move {
            let st = s.stats().await;
            st["totalConnections"] == 0 && st["roomCount"] == 0 && s.io.connection_count() == 0
        }
    };
    let ok = common::poll_until(Duration::from_secs(15), &mut released).await;
    let st = s.stats().await;
    assert!(
        ok,
        "not released: stats {st}, engine connections {} (opened {N} in {opened:?})",
        s.io.connection_count()
    );
    assert_eq!(st["uniqueUsers"], 0, "{st}");
    let ns = s.gateway.namespace().expect("namespace");
    assert_eq!(
        ns.counts(),
        (0, 0),
        "local sockets and rooms of the namespace"
    );
    drop(sockets);
}

#[tokio::test]
async fn graceful_shutdown_notifies_then_closes() {
    let mut s = start(&["--shutdown-timeout", "3s"]).await;
    let mut c = s.client("bye").await;
    let t0 = Instant::now();
    s.trigger_shutdown();
    let notice = c.ws.event("server:shutdown", T).await;
    assert!(notice[0]["reason"].is_string(), "{notice:?}");
    assert!(notice[0]["reconnectAfterMs"].is_u64(), "{notice:?}");
    assert!(
        c.ws.closed_within(Duration::from_secs(4)).await,
        "not closed after the notice"
    );
    s.join(Duration::from_secs(4)).await.expect("run completes");
    let took = t0.elapsed();
    assert!(
        took <= Duration::from_millis(3500),
        "shutdown took {took:?} (timeout 3 s)"
    );
    // and no new connections are accepted
    assert!(
        common::Ws::try_open(s.addr).await.is_err(),
        "a new connection was accepted after shutdown"
    );
}

/// One polling request on its own TCP connection (`Connection: close`), as a client whose
/// keep-alive connection was just closed makes it.
async fn fresh_poll(
    s: &common::TestServer,
    method: reqwest::Method,
    query: &str,
    body: &str,
) -> Result<(u16, String), String> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(3))
        .build()
        .map_err(|e| e.to_string())?;
    let r = http
        .request(
            method,
            s.url(&format!("/socket.io/?EIO=4&transport=polling{query}")),
        )
        .header("connection", "close")
        .body(body.to_owned())
        .send()
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    let status = r.status().as_u16();
    Ok((status, r.text().await.map_err(|e| e.to_string())?))
}

#[tokio::test]
async fn a_polling_client_reaches_its_session_during_shutdown() {
    // Regression: the listener was closed as soon as the shutdown began, so a polling
    // client whose next request needed a new TCP connection got "connection refused" and
    // never read the shutdown notice (seen as a flaky SIGINT test with the official client).
    let mut s = start(&["--shutdown-timeout", "4s"]).await;
    let session = s.session("poll-bye").await;
    let (_, open) = fresh_poll(&s, reqwest::Method::GET, "", "")
        .await
        .expect("handshake");
    let sid = serde_json::from_str::<Value>(&open[1..]).expect("open packet")["sid"]
        .as_str()
        .expect("sid")
        .to_owned();
    let q = format!("&sid={sid}");
    let connect = format!("40{}", json!({ "sessionId": session }));
    let (st, _) = fresh_poll(&s, reqwest::Method::POST, &q, &connect)
        .await
        .expect("connect");
    assert_eq!(st, 200);
    let (_, answer) = fresh_poll(&s, reqwest::Method::GET, &q, "")
        .await
        .expect("connect answer");
    assert!(answer.contains("40{"), "{answer}");

    s.trigger_shutdown();
    let stopping = || async { s.io.is_stopping() };
    assert!(s.poll_until(T, stopping).await, "shutdown did not begin");

    // A new handshake is refused, but the session's own polls are served until it closes.
    let (st, _) = fresh_poll(&s, reqwest::Method::GET, "", "")
        .await
        .expect("the listener is still open while draining");
    assert_ne!(st, 200, "a new handshake was accepted during shutdown");
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !seen.contains("server:shutdown") && Instant::now() < deadline {
        let (st, body) = fresh_poll(&s, reqwest::Method::GET, &q, "")
            .await
            .expect("a poll during shutdown reaches the server");
        assert_eq!(st, 200, "poll during shutdown: {body}");
        seen.push_str(&body);
    }
    assert!(seen.contains("server:shutdown"), "polls read: {seen}");
    s.join(Duration::from_secs(6)).await.expect("run completes");
}
