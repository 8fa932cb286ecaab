//! ISSUE 4, test 2: the client's node dies (SIGKILL); the client reconnects to another node
//! and recovers exactly the missed events with `since`; presence forgets the dead node's
//! socket and `/cluster/status` reports the node unreachable.

// Tests fail by panicking: expect/unwrap are the point here.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod cluster_common;
mod ports;

use std::time::{Duration, Instant};

use cluster_common::{durable_parts, poll, Cluster, Sio};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_of_a_killed_node_recovers_missed_events_elsewhere() {
    let mut c = Cluster::start("failover", 3, &[]).await;
    let user = "bob";
    let session = c.session(1, user).await;
    let mut on2 = Sio::login(c.node(2).addr(), &json!({ "sessionId": session }))
        .await
        .expect("client on node 2");

    const BEFORE: u64 = 5;
    for i in 1..=BEFORE {
        c.emit_ok(if i % 2 == 1 { 1 } else { 3 }, user, i).await;
    }
    let got = on2
        .collect("trade:executed", BEFORE as usize, Duration::from_secs(10))
        .await;
    assert_eq!(got.len(), BEFORE as usize, "before the kill: {got:?}");
    let (_, last, epoch, _) = durable_parts(&got[got.len() - 1]);
    assert_eq!(last, BEFORE);
    // Node 2's socket is known cluster-wide before the kill.
    assert!(
        poll(Duration::from_secs(5), || async {
            let (_, v) = c.get(1, &format!("/api/presence/{user}")).await.ok()?;
            (v["nodes"] == json!([2])).then_some(())
        })
        .await
        .is_some(),
        "presence never showed node 2"
    );

    let killed_at = Instant::now();
    c.node_mut(2).kill();
    assert!(
        on2.closed_within(Duration::from_secs(5)).await,
        "the client's connection to the killed node did not end"
    );

    const MISSED: u64 = 6;
    for i in BEFORE + 1..=BEFORE + MISSED {
        let via = if i % 2 == 1 { 1 } else { 3 };
        let (st, a) = c.emit_trade(via, user, i).await.expect("emit request");
        assert_eq!(
            st, 200,
            "emit {i} through survivor {via} after the kill: {a}"
        );
        assert_eq!(a["offset"], json!(i), "{a}");
    }

    // Reconnect to node 3 (same session) and resubscribe with `since`.
    let mut on3 = Sio::login(c.node(3).addr(), &json!({ "sessionId": session }))
        .await
        .expect("client reconnects to node 3");
    on3.emit(
        "subscribe:trades",
        &[json!({ "since": { "offset": last, "epoch": epoch } })],
        Some(1),
    );
    let mut replayed = Vec::new();
    let confirmation: Vec<Value> = loop {
        let (name, args) = on3
            .next_event(Duration::from_secs(5))
            .await
            .expect("replay and confirmation");
        match name.as_str() {
            "trade:executed" => replayed.push(durable_parts(&args)),
            "subscribed:trades" => break args,
            "error" => panic!("error event: {args:?}"),
            _ => {}
        }
    };
    let offsets: Vec<u64> = replayed.iter().map(|p| p.1).collect();
    let data: Vec<u64> = replayed.iter().map(|p| p.0).collect();
    let want: Vec<u64> = (BEFORE + 1..=BEFORE + MISSED).collect();
    assert_eq!(offsets, want, "replayed offsets");
    assert_eq!(data, want, "replayed data");
    assert!(
        replayed.iter().all(|p| p.2 == epoch),
        "epoch changed: {replayed:?}"
    );
    assert_eq!(
        confirmation[0]["recovered"],
        json!(true),
        "{confirmation:?}"
    );
    assert_eq!(
        confirmation[0]["offset"],
        json!(BEFORE + MISSED),
        "{confirmation:?}"
    );
    assert_eq!(
        confirmation[0]["room"],
        json!(format!("user:{user}")),
        "{confirmation:?}"
    );
    let ack = on3
        .ack(1, Duration::from_secs(2))
        .await
        .expect("subscribe ack");
    assert_eq!(ack[0]["recovered"], json!(true), "{ack:?}");
    let dup = on3
        .collect("trade:executed", 1, Duration::from_millis(300))
        .await;
    assert!(dup.is_empty(), "duplicates after the confirmation: {dup:?}");

    // Live delivery continues on the new node.
    c.emit_ok(1, user, BEFORE + MISSED + 1).await;
    let live = on3
        .collect("trade:executed", 1, Duration::from_secs(5))
        .await;
    assert_eq!(
        live.iter().map(|a| durable_parts(a).1).collect::<Vec<_>>(),
        vec![BEFORE + MISSED + 1]
    );

    // Presence from node 1 forgets node 2's socket (the leader purges the dead node).
    let p = poll(Duration::from_secs(10), || async {
        let (st, v) = c.get(1, &format!("/api/presence/{user}")).await.ok()?;
        (st == 200 && v["nodes"] == json!([3])).then_some(v)
    })
    .await;
    assert!(
        p.is_some(),
        "presence from node 1 still lists node 2 {:?} after the kill: {:?}",
        killed_at.elapsed(),
        c.get(1, &format!("/api/presence/{user}")).await
    );
    eprintln!(
        "presence purged node 2 within {:?} of the kill",
        killed_at.elapsed()
    );

    // Both survivors' /cluster/status (the leader's first) show node 2 unreachable.
    let leader = c.agreed_leader(&[1, 3], Duration::from_secs(10)).await;
    let follower = if leader == 1 { 3 } else { 1 };
    for view in [leader, follower] {
        let st = poll(Duration::from_secs(10), || async {
            let v = c.cluster_status(view).await?;
            let n2 = v["nodes"]
                .as_array()?
                .iter()
                .find(|n| n["id"] == json!(2))?
                .clone();
            (n2["reachable"] == json!(false)).then_some(v)
        })
        .await;
        assert!(
            st.is_some(),
            "node {view}'s /cluster/status (leader {leader}) never showed node 2 unreachable: {:?}",
            c.cluster_status(view).await
        );
    }
}
