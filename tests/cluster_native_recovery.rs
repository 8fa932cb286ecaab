//! ISSUE 4, test 5: Socket.IO's own connection state recovery across nodes. A client of
//! node 2 keeps its `pid` and last offset string; node 2 is killed; the client reconnects
//! to node 3 with `{sessionId, pid, offset}` and gets the same pid and the missed events.

// Tests fail by panicking: expect/unwrap are the point here.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod cluster_common;
mod ports;

use std::time::{Duration, Instant};

use cluster_common::{durable_parts, Cluster, Sio};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_recovery_on_another_node_after_a_kill() {
    let mut c = Cluster::start("native", 3, &[]).await;
    let user = "erin";
    let session = c.session(1, user).await;
    let mut on2 = Sio::login(c.node(2).addr(), &json!({ "sessionId": session }))
        .await
        .expect("client on node 2");
    let pid = on2.pid.clone();
    assert!(!pid.is_empty(), "CONNECT answer without pid");
    let sid = on2.sid.clone();

    for i in 1..=2 {
        c.emit_ok(1, user, i).await;
    }
    let got = on2
        .collect("trade:executed", 2, Duration::from_secs(5))
        .await;
    assert_eq!(got.len(), 2, "{got:?}");
    let (_, _, _, last_offset) = durable_parts(&got[1]);
    assert!(
        !last_offset.is_empty(),
        "no trailing offset string: {got:?}"
    );

    c.node_mut(2).kill();
    let killed_at = Instant::now();
    assert!(on2.closed_within(Duration::from_secs(5)).await);
    for i in 3..=4 {
        c.emit_ok(1, user, i).await;
    }

    // The dead node's sockets become recoverable once the leader purges it: retry, each
    // attempt a fresh connection, for up to ~10 s.
    let deadline = Instant::now() + Duration::from_secs(12);
    let mut attempts = Vec::new();
    let mut recovered = loop {
        let mut s = Sio::open(c.node(3).addr()).await.expect("open on node 3");
        let auth = json!({ "sessionId": session, "pid": pid, "offset": last_offset });
        match s.connect(&auth).await {
            Ok(answer) if answer["pid"] == json!(pid) => {
                eprintln!(
                    "recovered on node 3 {:?} after the kill (attempt {}): {answer}",
                    killed_at.elapsed(),
                    attempts.len() + 1
                );
                break s;
            }
            other => attempts.push(format!("{other:?}")),
        }
        assert!(
            Instant::now() < deadline,
            "no recovery within {:?} of the kill; attempts: {attempts:?}",
            killed_at.elapsed()
        );
        drop(s);
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(recovered.sid, sid, "a recovered socket keeps its id");
    let missed = recovered
        .collect("trade:executed", 2, Duration::from_secs(5))
        .await;
    let parts: Vec<_> = missed.iter().map(|a| durable_parts(a)).collect();
    assert_eq!(
        parts.iter().map(|p| (p.0, p.1)).collect::<Vec<_>>(),
        vec![(3, 3), (4, 4)],
        "missed events: {missed:?}"
    );
    let more = recovered
        .collect("trade:executed", 1, Duration::from_millis(300))
        .await;
    assert!(more.is_empty(), "duplicates: {more:?}");

    // The recovered socket is back in its rooms: live delivery through node 1.
    c.emit_ok(1, user, 5).await;
    let live = recovered
        .collect("trade:executed", 1, Duration::from_secs(5))
        .await;
    assert_eq!(
        live.iter().map(|a| durable_parts(a).0).collect::<Vec<_>>(),
        vec![5]
    );
}
