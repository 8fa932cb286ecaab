//! Redis mode with two raftcast nodes on one real `redis-server` (with a password and a
//! key prefix): cross-node delivery with offsets, cluster-wide presence and stats, recovery
//! with `since` through the other node, and a Redis outage: health 503 with the redis
//! status, local delivery still working, durable emits answering 503, and cross-node
//! delivery resuming by itself once Redis is back.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(unused_imports)]
#[path = "cluster_common/mod.rs"]
mod cluster_common;
mod ports;
mod redis_support;

use std::time::Duration;

use serde_json::{json, Value};

use cluster_common::durable_parts;
use redis_support::{event_where, jwt, poll, require_redis, RcNode, Redis, Sio};

const T: Duration = Duration::from_secs(5);

fn meta(args: &[Value]) -> (u64, String) {
    let m = args.get(1).cloned().unwrap_or(Value::Null);
    (
        m["offset"].as_u64().unwrap_or(0),
        m["epoch"].as_str().unwrap_or_default().to_owned(),
    )
}

async fn two_nodes(tag: &str) -> (Redis, RcNode, RcNode) {
    let redis = Redis::start(tag).await;
    let prefix = format!("t{}", rand::random::<u32>());
    let a = RcNode::spawn(1, &redis.url(), &prefix, &[]);
    let b = RcNode::spawn(2, &redis.url(), &prefix, &[]);
    a.wait_ready().await;
    b.wait_ready().await;
    (redis, a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_rooms_presence_stats_and_history() {
    if !require_redis() {
        return;
    }
    let (_redis, a, b) = two_nodes("share").await;

    // A client on node 2 (session made through node 1), events published through node 1.
    let session = a.session("alice").await;
    let mut c = Sio::login(b.addr(), &json!({ "sessionId": session }))
        .await
        .unwrap();
    c.emit("subscribe:trades", &[json!({})], Some(1));
    let sub = c.ack(1, T).await.unwrap();
    assert_eq!(sub[0]["room"], "user:alice");
    let base = sub[0]["offset"].as_u64().unwrap();
    let mut epoch = String::new();
    for i in 1..=3u64 {
        let (s, v) = a
            .emit(json!({ "userId": "alice", "event": "trade:executed", "data": { "i": i } }))
            .await;
        assert_eq!(s, 200, "emit: {v}");
        assert_eq!(v["offset"].as_u64(), Some(base + i));
        let got = c.event("trade:executed", T).await.unwrap();
        assert_eq!(got[0]["i"], i);
        let (offset, e) = meta(&got);
        assert_eq!(offset, base + i, "offsets count without gaps");
        epoch = e;
    }
    assert!(!epoch.is_empty());

    // Presence and stats are cluster-wide: asked of node 1, the socket is on node 2.
    let p = poll(T, || async {
        let (s, v) = a.get("/api/presence/alice").await;
        (s == 200 && v["online"] == true).then_some(v)
    })
    .await
    .expect("alice online through node 1");
    assert_eq!(p["nodes"], json!([2]));
    let mut d = Sio::login(a.addr(), &json!({ "token": jwt("bob") }))
        .await
        .unwrap();
    let stats = poll(T, || async {
        let (s, v) = b.get("/api/stats").await;
        (s == 200 && v["totalConnections"] == 2 && v["uniqueUsers"] == 2).then_some(v)
    })
    .await;
    assert!(stats.is_some(), "stats: {:?}", b.get("/api/stats").await);

    // History is shared: node 2 answers what node 1 published.
    let (s, h) = b.get("/api/rooms/user:alice/history?since=0").await;
    assert_eq!(s, 200, "history: {h}");
    assert_eq!(h["events"].as_array().map(Vec::len), Some(3));

    // Recovery with `since` through the other node.
    drop(c);
    for i in 4..=6u64 {
        let (s, _) = b
            .emit(json!({ "userId": "alice", "event": "trade:executed", "data": { "i": i } }))
            .await;
        assert_eq!(s, 200);
    }
    let mut c2 = Sio::login(a.addr(), &json!({ "sessionId": session }))
        .await
        .unwrap();
    c2.emit(
        "subscribe:trades",
        &[json!({ "since": { "offset": base + 3, "epoch": epoch } })],
        Some(2),
    );
    let replayed = c2.collect("trade:executed", 3, T).await;
    let is: Vec<u64> = replayed
        .iter()
        .map(|a| a[0]["i"].as_u64().unwrap())
        .collect();
    assert_eq!(is, vec![4, 5, 6]);
    let conf = c2.ack(2, T).await.unwrap();
    assert_eq!(conf[0]["recovered"], true);
    assert_eq!(conf[0]["offset"].as_u64(), Some(base + 6));

    // Live deliveries after the replay, from either node, with no duplicate.
    let (s, _) = b
        .emit(json!({ "userId": "alice", "event": "trade:executed", "data": { "i": 7 } }))
        .await;
    assert_eq!(s, 200);
    let got = c2.event("trade:executed", T).await.unwrap();
    assert_eq!(got[0]["i"], 7);

    // A revoked session disconnects its sockets on every node.
    let (s, _) = b
        .api(
            reqwest::Method::DELETE,
            &format!("/api/sessions/{session}"),
            None,
        )
        .await;
    assert_eq!(s, 204);
    assert!(
        redis_support::frame(&mut c2, "41", T).await,
        "the revoked session's socket on node 1 was disconnected"
    );
    d.emit("ping", &[], Some(9));
    assert!(d.ack(9, T).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_keeps_local_clients_and_recovers_by_itself() {
    if !require_redis() {
        return;
    }
    let (mut redis, a, b) = two_nodes("outage").await;
    let mut on_a = Sio::login(a.addr(), &json!({ "token": jwt("carol") }))
        .await
        .unwrap();
    let mut on_b = Sio::login(b.addr(), &json!({ "token": jwt("dave") }))
        .await
        .unwrap();
    let (s, h) = a.get("/health/websocket").await;
    assert_eq!(s, 200, "{h}");
    assert_eq!(h["redis"], json!({ "status": "ready", "healthy": true }));

    redis.stop();
    let down = poll(T, || async {
        let (s, h) = a.get("/health/websocket").await;
        (s == 503).then_some(h)
    })
    .await
    .expect("health 503 while Redis is down");
    assert_eq!(down["status"], "unhealthy");
    assert_eq!(down["redis"]["healthy"], false);
    assert_ne!(down["redis"]["status"], "ready");

    // Durable emits answer 503 and name Redis; volatile ones still reach local clients.
    let (s, v) = a
        .emit(json!({ "userId": "carol", "event": "trade:executed", "data": { "n": 1 } }))
        .await;
    assert_eq!(s, 503, "{v}");
    assert_eq!(v["code"], "NO_QUORUM");
    assert!(
        v["message"].as_str().unwrap_or_default().contains("Redis"),
        "{v}"
    );
    let (s, v) = a
        .emit(json!({ "userId": "carol", "event": "notice", "data": { "n": 2 }, "durable": false }))
        .await;
    assert_eq!(s, 200, "{v}");
    let got = on_a.event("notice", T).await.unwrap();
    assert_eq!(got[0]["n"], 2);
    on_a.emit("ping", &[], Some(3));
    assert!(
        on_a.ack(3, T).await.is_ok(),
        "local clients keep being served"
    );

    // Redis comes back (empty: no persistence): the nodes resubscribe by themselves and
    // cross-node delivery resumes within 5 s, without restarting anything.
    redis.restart().await;
    let back = poll(Duration::from_secs(5), || async {
        let (s, _) = a.get("/health/websocket").await;
        let (s2, _) = b.get("/health/websocket").await;
        (s == 200 && s2 == 200).then_some(())
    })
    .await;
    assert!(back.is_some(), "health back to 200 within 5 s");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut got = None;
    while got.is_none() && std::time::Instant::now() < deadline {
        let (s, _) = a
            .emit(json!({ "userId": "dave", "event": "trade:executed", "data": { "k": "x" } }))
            .await;
        if s != 200 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        got = event_where(
            &mut on_b,
            "trade:executed",
            Duration::from_millis(500),
            |a| a[0]["k"] == "x",
        )
        .await
        .ok();
    }
    let got = got.expect("cross-node delivery resumed within 5 s");
    let (offset, epoch) = meta(&got);
    assert!(offset >= 1 && !epoch.is_empty());
    // And the other way round.
    let (s, _) = b
        .emit(json!({ "userId": "carol", "event": "trade:executed", "data": { "k": "y" } }))
        .await;
    assert_eq!(s, 200);
    let got = event_where(&mut on_a, "trade:executed", T, |a| a[0]["k"] == "y").await;
    assert!(got.is_ok(), "{got:?}");
    // Presence is rewritten after the restart emptied Redis.
    let p = poll(T, || async {
        let (s, v) = b.get("/api/presence/carol").await;
        (s == 200 && v["online"] == true).then_some(v)
    })
    .await;
    assert!(p.is_some(), "presence rewritten after Redis lost its data");
}

/// A socket that goes away in its node's first second, before the node's first membership
/// rewrite, is recoverable like any other (its recovery record used to be skipped while the
/// rewrite was due): the client comes back on the other node with its pid and offset, keeps
/// its id and gets the event it missed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_closed_right_after_start_is_recoverable_on_the_other_node() {
    if !require_redis() {
        return;
    }
    let (_redis, a, b) = two_nodes("early").await;
    let session = a.session("erin").await;
    let mut c = Sio::login(b.addr(), &json!({ "sessionId": session }))
        .await
        .unwrap();
    let (sid, pid) = (c.sid.clone(), c.pid.clone());
    assert!(!pid.is_empty(), "CONNECT answer without pid");
    let (s, v) = a
        .emit(json!({ "userId": "erin", "event": "trade:executed", "data": { "i": 1 } }))
        .await;
    assert_eq!(s, 200, "emit: {v}");
    let got = c.event("trade:executed", T).await.unwrap();
    let (_, _, _, last_offset) = durable_parts(&got);
    assert!(
        !last_offset.is_empty(),
        "no trailing offset string: {got:?}"
    );
    drop(c); // the transport goes away: recoverable
    let (s, v) = a
        .emit(json!({ "userId": "erin", "event": "trade:executed", "data": { "i": 2 } }))
        .await;
    assert_eq!(s, 200, "emit: {v}");

    // Each attempt is a fresh connection; one that finds nothing leaves the record alone.
    let deadline = std::time::Instant::now() + T;
    let mut attempts = Vec::new();
    let mut recovered = loop {
        let mut s = Sio::open(a.addr()).await.expect("open on node 1");
        let auth = json!({ "sessionId": session, "pid": pid, "offset": last_offset });
        match s.connect(&auth).await {
            Ok(answer) if answer["pid"] == json!(pid) => break s,
            other => attempts.push(format!("{other:?}")),
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not recovered within {T:?}; attempts: {attempts:?}"
        );
        drop(s);
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(recovered.sid, sid, "a recovered socket keeps its id");
    let missed = recovered.event("trade:executed", T).await.unwrap();
    assert_eq!(durable_parts(&missed).0, 2, "the missed event: {missed:?}");
}

/// `POST /api/emit/batch` in Redis mode (one pipelined round trip to Redis for the whole
/// batch): a client on the other node gets the batch's events in the order given, each room's
/// offsets count on without gaps in that order, and a volatile event in the batch goes out
/// without taking an offset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_through_one_node_arrives_in_order_on_the_other() {
    if !require_redis() {
        return;
    }
    let (_redis, a, b) = two_nodes("batch").await;
    let session = a.session("bo").await;
    let mut c = Sio::login(b.addr(), &json!({ "sessionId": session }))
        .await
        .unwrap();
    c.emit("subscribe:trades", &[json!({})], Some(1));
    let sub = c.ack(1, T).await.unwrap();
    let base = sub[0]["offset"].as_u64().unwrap();
    // Trades to the user's room, every fourth event to another room, the 20th volatile.
    let emits: Vec<Value> = (1..=40u64)
        .map(|n| match n {
            20 => json!({ "userId": "bo", "event": "trade:executed", "data": { "n": n }, "durable": false }),
            n if n % 4 == 0 => {
                json!({ "room": "portfolio:bo", "event": "portfolio:update", "data": { "n": n } })
            }
            n => json!({ "userId": "bo", "event": "trade:executed", "data": { "n": n } }),
        })
        .collect();
    let (s, v) = a
        .api(
            reqwest::Method::POST,
            "/api/emit/batch",
            Some(json!({ "emits": emits })),
        )
        .await;
    assert_eq!(s, 200, "batch: {v}");
    assert_eq!(
        (v["ok"].clone(), v["failed"].clone()),
        (json!(40), json!(0))
    );
    let results = v["results"].as_array().expect("results");
    assert_eq!(results.len(), 40, "{v}");
    let (mut user, mut portfolio) = (base, 0);
    let mut want_offsets = Vec::new();
    for (i, r) in results.iter().enumerate() {
        let n = i as u64 + 1;
        let (room, offset) = match n {
            // A volatile event carries the room's current offset.
            20 => ("user:bo", user),
            n if n % 4 == 0 => {
                portfolio += 1;
                ("portfolio:bo", portfolio)
            }
            _ => {
                user += 1;
                want_offsets.push((n, user));
                ("user:bo", user)
            }
        };
        assert_eq!(r["room"], room, "result {i}: {r}");
        assert_eq!(r["offset"].as_u64(), Some(offset), "result {i}: {r}");
    }
    // The client, on node 2, gets every trade (the volatile one included) in batch order.
    for n in (1..=40u64).filter(|n| *n == 20 || n % 4 != 0) {
        let got = c.event("trade:executed", T).await.unwrap();
        assert_eq!(got[0]["n"], n, "event {n} out of order: {got:?}");
        if let Some((_, offset)) = want_offsets.iter().find(|(m, _)| *m == n) {
            assert_eq!(meta(&got).0, *offset, "event {n}: {got:?}");
        }
    }
}
