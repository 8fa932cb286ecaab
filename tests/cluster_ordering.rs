//! ISSUE 4, test 1: one order across nodes. A client on node 2 receives durable events
//! emitted through nodes 1 and 3 with gapless offsets in emit order; presence and stats
//! are cluster-wide. A batch (`/api/emit/batch`) through a follower keeps its order.

// Tests fail by panicking: expect/unwrap are the point here.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod cluster_common;
mod ports;

use std::time::Duration;

use cluster_common::{durable_parts, poll, Cluster, Sio};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_through_two_nodes_arrive_in_one_order_on_a_third() {
    let c = Cluster::start("order", 3, &[]).await;
    let user = "alice";
    let session = c.session(1, user).await;
    let mut on2 = Sio::login(c.node(2).addr(), &json!({ "sessionId": session }))
        .await
        .expect("client on node 2");
    assert_eq!(on2.connected["nodeId"], json!(2), "{}", on2.connected);
    // A second client of the same user on node 1: both must see the same sequence.
    let mut on1 = Sio::login(c.node(1).addr(), &json!({ "sessionId": session }))
        .await
        .expect("client on node 1");

    // Sequential emits alternating nodes 1 and 3: offsets follow emit order.
    const N: u64 = 20;
    for i in 1..=N {
        let via = if i % 2 == 1 { 1 } else { 3 };
        let a = c.emit_ok(via, user, i).await;
        assert_eq!(a["offset"], json!(i), "emit {i} through {via}: {a}");
    }
    // Concurrent emits through nodes 1 and 3: any order, but one order everywhere, and the
    // offsets the API answered are the ones delivered with each data.
    const M: u64 = 10;
    let answers = futures_util::future::join_all((N + 1..=N + M).map(|i| {
        let c = &c;
        async move {
            let via = if i % 2 == 1 { 1 } else { 3 };
            (i, c.emit_ok(via, user, i).await)
        }
    }))
    .await;

    let total = (N + M) as usize;
    let got2 = on2
        .collect("trade:executed", total, Duration::from_secs(10))
        .await;
    let got1 = on1
        .collect("trade:executed", total, Duration::from_secs(10))
        .await;
    assert_eq!(got2.len(), total, "node 2 client got {got2:?}");
    assert_eq!(got1.len(), total, "node 1 client got {got1:?}");
    let seq2: Vec<_> = got2.iter().map(|a| durable_parts(a)).collect();
    let seq1: Vec<_> = got1.iter().map(|a| durable_parts(a)).collect();
    let offsets: Vec<u64> = seq2.iter().map(|p| p.1).collect();
    assert_eq!(
        offsets,
        (1..=N + M).collect::<Vec<_>>(),
        "offsets not gapless 1..{}",
        N + M
    );
    let data: Vec<u64> = seq2.iter().take(N as usize).map(|p| p.0).collect();
    assert_eq!(data, (1..=N).collect::<Vec<_>>(), "data not in emit order");
    let epoch = &seq2[0].2;
    assert!(!epoch.is_empty(), "empty epoch");
    assert!(
        seq2.iter().all(|p| &p.2 == epoch),
        "epochs differ: {seq2:?}"
    );
    assert!(
        seq2.iter().all(|p| !p.3.is_empty()),
        "a durable event without its trailing offset string: {got2:?}"
    );
    let pairs = |s: &[(u64, u64, String, String)]| -> Vec<(u64, u64)> {
        s.iter().map(|p| (p.0, p.1)).collect()
    };
    assert_eq!(
        pairs(&seq1),
        pairs(&seq2),
        "clients on nodes 1 and 2 saw different orders"
    );
    for (i, a) in &answers {
        let off = a["offset"].as_u64().expect("offset");
        assert!(
            seq2.iter().any(|p| p.0 == *i && p.1 == off),
            "emit {i} answered offset {off} but was delivered otherwise: {seq2:?}"
        );
    }
    // Nothing more (no duplicates).
    let extra = on2
        .collect("trade:executed", 1, Duration::from_millis(300))
        .await;
    assert!(extra.is_empty(), "duplicate deliveries: {extra:?}");

    // A batch of 150 (more than one log entry holds) through a follower: delivered on node 2
    // in the batch's order, offsets continuing without a gap, as answered.
    let leader = c.agreed_leader(&[1, 2, 3], Duration::from_secs(10)).await;
    let via = (1..=3).find(|&id| id != leader).expect("a follower");
    const B: u64 = 150;
    let first = N + M + 1;
    let r = c.emit_trades(via, user, first..first + B).await;
    let answer = match r {
        Ok((200, v)) => v,
        other => panic!("batch through follower {via}: {other:?}"),
    };
    let answered: Vec<u64> = answer["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| r["offset"].as_u64().expect("offset"))
        .collect();
    assert_eq!(answered, (first..first + B).collect::<Vec<_>>(), "{answer}");
    let got = on2
        .collect("trade:executed", B as usize, Duration::from_secs(10))
        .await;
    let pairs_b: Vec<(u64, u64)> = got
        .iter()
        .map(|a| durable_parts(a))
        .map(|p| (p.0, p.1))
        .collect();
    assert_eq!(
        pairs_b,
        (first..first + B).map(|i| (i, i)).collect::<Vec<_>>(),
        "the batch through node {via} as node 2's client saw it"
    );

    // Presence from node 3: online, on nodes 1 and 2 (both clients).
    let presence = poll(Duration::from_secs(5), || async {
        let (st, v) = c.get(3, &format!("/api/presence/{user}")).await.ok()?;
        (st == 200 && v["online"] == json!(true) && v["nodes"] == json!([1, 2])).then_some(v)
    })
    .await;
    assert!(
        presence.is_some(),
        "presence from node 3 never showed nodes [1, 2]: {:?}",
        c.get(3, &format!("/api/presence/{user}")).await
    );
    // Close the node 1 client: presence narrows to node 2 alone.
    drop(on1);
    let presence = poll(Duration::from_secs(5), || async {
        let (st, v) = c.get(3, &format!("/api/presence/{user}")).await.ok()?;
        (st == 200 && v["online"] == json!(true) && v["nodes"] == json!([2])).then_some(v)
    })
    .await;
    assert!(
        presence.is_some(),
        "presence from node 3 never showed nodes [2]: {:?}",
        c.get(3, &format!("/api/presence/{user}")).await
    );
    let p = presence.unwrap_or_default();
    assert_eq!(p["sockets"][0]["socketId"], json!(on2.sid), "{p}");

    // Stats on node 1 count node 2's connection.
    let stats = poll(Duration::from_secs(5), || async {
        let (st, v) = c.get(1, "/api/stats").await.ok()?;
        let node2 = v["nodes"]
            .as_array()?
            .iter()
            .find(|n| n["nodeId"] == json!(2))?
            .clone();
        (st == 200 && v["totalConnections"] == json!(1) && node2["totalConnections"] == json!(1))
            .then_some(v)
    })
    .await;
    assert!(
        stats.is_some(),
        "stats on node 1 never counted node 2's connection: {:?}",
        c.get(1, "/api/stats").await
    );
}

/// A backend's retry with the same `Idempotency-Key`, sent to another node (its first node
/// died before answering, say), is answered with the first attempt's offset and is not
/// published again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_with_the_same_idempotency_key_through_another_node_publishes_once() {
    let c = Cluster::start("idem", 3, &[]).await;
    let user = "ivy";
    let session = c.session(1, user).await;
    let mut on2 = Sio::login(c.node(2).addr(), &json!({ "sessionId": session }))
        .await
        .expect("client on node 2");
    let http = reqwest::Client::new();
    let post = |id: u64, key: &'static str, n: u64| {
        let req = http
            .post(c.url(id, "/api/emit"))
            .bearer_auth(cluster_common::API_KEY)
            .header("Idempotency-Key", key)
            .timeout(Duration::from_secs(10))
            .json(&json!({"userId": user, "event": "trade:executed", "data": {"i": n}}));
        async move {
            let r = req.send().await.expect("emit");
            let status = r.status().as_u16();
            (status, r.json::<serde_json::Value>().await.expect("json"))
        }
    };
    let (s1, first) = post(1, "order-7f3a", 1).await;
    assert_eq!(s1, 200, "{first}");
    // The retry carries the same key (and, as a retry would, the same body) via node 3.
    let (s3, again) = post(3, "order-7f3a", 1).await;
    assert_eq!(s3, 200, "{again}");
    assert_eq!(again["offset"], first["offset"], "{first} then {again}");
    // Another key is another event.
    let (s, next) = post(3, "order-8b21", 2).await;
    assert_eq!(s, 200, "{next}");
    assert_eq!(
        next["offset"],
        json!(first["offset"].as_u64().unwrap() + 1),
        "{next}"
    );
    let got = on2
        .collect("trade:executed", 2, Duration::from_secs(10))
        .await;
    let data: Vec<u64> = got.iter().map(|a| durable_parts(a).0).collect();
    assert_eq!(data, [1, 2], "node 2's client got {got:?}");
    // The history on every node holds the event once.
    for id in 1..=3 {
        let h = poll(Duration::from_secs(10), || async {
            let (st, h) = c.get(id, "/api/rooms/user:ivy/history").await.ok()?;
            (st == 200 && h["events"].as_array()?.len() == 2).then_some(h)
        })
        .await
        .unwrap_or_else(|| panic!("node {id}'s history never held exactly the two events"));
        assert_eq!(h["events"][0]["data"], json!({"i": 1}), "node {id}: {h}");
    }
}
