//! A follower that was down while hundreds of large durable events were committed catches
//! up when it comes back, without disturbing the leader. openraft gives each replication
//! request one heartbeat interval (100 ms); a request carrying every missed entry at once
//! (tens of megabytes) could never be answered in time, so the follower would get the same
//! request after every timeout, never catch up, and call elections meanwhile.

// Tests fail by panicking: expect/unwrap are the point here.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod cluster_common;
mod ports;

use std::time::Duration;

use cluster_common::{poll, Cluster};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_back_from_downtime_catches_up_on_large_events() {
    let mut c = Cluster::start("catchup", 3, &[]).await;
    let leader = c.agreed_leader(&[1, 2, 3], Duration::from_secs(10)).await;
    let away = (1..=3).find(|&i| i != leader).unwrap();
    let term = c.cluster_status(leader).await.unwrap()["term"]
        .as_u64()
        .unwrap();

    let node = c.node_mut(away);
    node.term();
    assert!(
        node.wait_exit(Duration::from_secs(15)).is_some(),
        "node {away} did not stop on SIGTERM"
    );

    // 240 events of 50 kB, 12 MB in all, each its own entry (emitted one after another).
    let big = "x".repeat(50_000);
    for i in 1..=240u64 {
        let body =
            json!({ "room": "charts", "event": "chart:data", "data": { "i": i, "pad": big } });
        let r = c.emit_body(leader, &body).await;
        assert!(matches!(r, Ok((200, _))), "emit {i}: {r:?}");
    }
    let commit = c.cluster_status(leader).await.unwrap()["commitIndex"]
        .as_u64()
        .unwrap();

    c.node_mut(away).spawn();
    let caught_up = poll(Duration::from_secs(60), || async {
        let s = c.cluster_status(away).await?;
        (s["appliedIndex"].as_u64()? >= commit).then_some(())
    })
    .await;
    assert!(
        caught_up.is_some(),
        "node {away} did not apply index {commit} within 60 s of its restart"
    );
    let (status, h) = c.get(away, "/api/rooms/charts/history").await.unwrap();
    assert_eq!(status, 200);
    assert!(
        h["events"].as_array().is_some_and(|e| !e.is_empty()),
        "node {away} has no history for the room: {h}"
    );
    let now = c.cluster_status(leader).await.unwrap();
    assert_eq!(
        (now["leaderId"].as_u64(), now["term"].as_u64()),
        (Some(leader), Some(term)),
        "the leader changed while the follower caught up"
    );
}
