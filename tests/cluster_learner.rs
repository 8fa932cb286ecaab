//! ISSUE 4, test 7: a fourth process joins through node 1 as a learner, becomes ready,
//! shows as `learner` in `/cluster/status`, and its clients receive events emitted
//! through node 1.

// Tests fail by panicking: expect/unwrap are the point here.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod cluster_common;
mod ports;

use std::time::Duration;

use cluster_common::{durable_parts, poll, Cluster, Sio};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learner_joins_and_serves_clients() {
    let mut c = Cluster::start("learner", 3, &[]).await;
    let user = "grace";
    c.emit_ok(1, user, 1).await;

    let id = c.add_joiner(1, &[]);
    assert_eq!(id, 4);
    c.wait_ready(&[4], Duration::from_secs(30)).await;

    // Node 4 is a learner in every node's view, including its own.
    for view in [1, 4] {
        let st = poll(Duration::from_secs(10), || async {
            let v = c.cluster_status(view).await?;
            let n4 = v["nodes"]
                .as_array()?
                .iter()
                .find(|n| n["id"] == json!(4))?
                .clone();
            (n4["role"] == json!("learner")).then_some(v)
        })
        .await;
        assert!(
            st.is_some(),
            "node {view}'s /cluster/status never showed node 4 as learner: {:?}",
            c.cluster_status(view).await
        );
    }
    let st = c.cluster_status(4).await.expect("status of node 4");
    assert_eq!(st["nodeId"], json!(4), "{st}");
    assert!(
        st["leaderId"]
            .as_u64()
            .is_some_and(|l| (1..=3).contains(&l)),
        "{st}"
    );
    let voters = st["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .filter(|n| n["role"] == json!("leader") || n["role"] == json!("follower"))
        .count();
    assert_eq!(voters, 3, "{st}");

    // The learner caught up with the history written before it joined.
    let (_, events) = c
        .history(4, &format!("user:{user}"))
        .await
        .expect("history on node 4");
    assert_eq!(events, vec![(1, json!({ "i": 1 }))]);

    // A client of the learner (session created through the learner itself) receives
    // events emitted through node 1.
    let session = c.session(4, user).await;
    let mut on4 = Sio::login(c.node(4).addr(), &json!({ "sessionId": session }))
        .await
        .expect("client on node 4");
    assert_eq!(on4.connected["nodeId"], json!(4), "{}", on4.connected);
    for i in 2..=6 {
        c.emit_ok(1, user, i).await;
    }
    let got = on4
        .collect("trade:executed", 5, Duration::from_secs(10))
        .await;
    let got: Vec<(u64, u64)> = got
        .iter()
        .map(|a| {
            let p = durable_parts(a);
            (p.0, p.1)
        })
        .collect();
    assert_eq!(got, (2..=6).map(|i| (i, i)).collect::<Vec<_>>());

    // Presence from node 1 sees the learner's socket.
    let p = poll(Duration::from_secs(5), || async {
        let (_, v) = c.get(1, &format!("/api/presence/{user}")).await.ok()?;
        (v["nodes"] == json!([4])).then_some(v)
    })
    .await;
    assert!(
        p.is_some(),
        "presence from node 1: {:?}",
        c.get(1, &format!("/api/presence/{user}")).await
    );
}
