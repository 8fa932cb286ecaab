//! ISSUE 4, test 4: two of three nodes killed. The survivor refuses durable emits with 503
//! NO_QUORUM, reports `unhealthy`, and keeps its clients; restarting both with their data
//! dirs heals the cluster with history and sessions intact. A batch of emits
//! (`/api/emit/batch`) without a quorum is refused whole, and none of it is written.

// Tests fail by panicking: expect/unwrap are the point here.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod cluster_common;
mod ports;

use std::time::{Duration, Instant};

use cluster_common::{durable_parts, poll, Cluster, Sio};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survivor_without_quorum_refuses_then_cluster_heals_on_restart() {
    let mut c = Cluster::start("quorum", 3, &[]).await;
    let user = "dave";
    // The survivor is the leader: it must notice on its own that it lost its majority.
    let survivor = c.agreed_leader(&[1, 2, 3], Duration::from_secs(10)).await;
    let killed: Vec<u64> = (1..=3).filter(|&i| i != survivor).collect();
    let session = c.session(killed[0], user).await;
    let mut client = Sio::login(c.node(survivor).addr(), &json!({ "sessionId": session }))
        .await
        .expect("client on the survivor");
    for i in 1..=3 {
        c.emit_ok(killed[i as usize % 2], user, i).await;
    }
    let got = client
        .collect("trade:executed", 3, Duration::from_secs(5))
        .await;
    assert_eq!(got.len(), 3, "{got:?}");

    for &k in &killed {
        c.node_mut(k).kill();
    }
    let killed_at = Instant::now();

    // An emit through the survivor answers 503 NO_QUORUM within ~5 s; never 200.
    let mut refused = Vec::new();
    let mut answer = None;
    for i in 100..110u64 {
        let sent = Instant::now();
        let r = c.emit_trade(survivor, user, i).await;
        match r {
            Ok((503, v)) if v["code"] == json!("NO_QUORUM") => {
                refused.push(i);
                answer = Some((sent.elapsed(), killed_at.elapsed(), v));
                break;
            }
            Ok((200, v)) => panic!("emit {i} answered 200 without a quorum: {v}"),
            other => {
                assert!(
                    killed_at.elapsed() < Duration::from_secs(6),
                    "no NO_QUORUM answer within 6 s of the kills; last: {other:?}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    let (took, since_kill, body) = answer.expect("a NO_QUORUM answer");
    eprintln!("first emit after the kills answered 503 NO_QUORUM in {took:?} ({since_kill:?} after the kills): {body}");
    assert!(
        since_kill <= Duration::from_secs(6),
        "NO_QUORUM took {since_kill:?} after the kills"
    );
    // Once the survivor knows, it refuses quickly.
    let sent = Instant::now();
    let r = c.emit_trade(survivor, user, 110).await;
    eprintln!("a later emit answered {r:?} in {:?}", sent.elapsed());
    assert!(
        matches!(&r, Ok((503, v)) if v["code"] == json!("NO_QUORUM")),
        "{r:?}"
    );
    refused.push(110);
    // A batch without a quorum: 503 NO_QUORUM as a whole, and none of its events written.
    let r = c.emit_trades(survivor, user, 111..114).await;
    assert!(
        matches!(&r, Ok((503, v)) if v["code"] == json!("NO_QUORUM")),
        "batch without a quorum: {r:?}"
    );
    refused.extend(111..=113);

    // /health/websocket: 503, unhealthy, with a raft section.
    let h = poll(Duration::from_secs(5), || async {
        let (st, v) = c.get(survivor, "/health/websocket").await.ok()?;
        (st == 503 && v["status"] == json!("unhealthy")).then_some(v)
    })
    .await;
    let Some(h) = h else {
        panic!(
            "survivor's /health/websocket never 503 unhealthy: {:?}",
            c.get(survivor, "/health/websocket").await
        )
    };
    assert!(h["raft"].is_object(), "no raft section: {h}");
    assert!(h["raft"].get("term").is_some(), "{h}");

    // The survivor's client keeps its socket: heartbeats go on and a ping is acked.
    assert!(
        !client.closed_within(Duration::from_millis(1500)).await,
        "the survivor closed its client's socket"
    );
    client.emit("ping", &[json!({})], Some(7));
    let ack = client
        .ack(7, Duration::from_secs(3))
        .await
        .expect("ping ack without quorum");
    assert!(ack[0]["serverTime"].is_number(), "{ack:?}");

    // Restart both with their data dirs: the cluster heals by itself.
    for &k in &killed {
        c.node_mut(k).spawn();
    }
    let restarted_at = Instant::now();
    c.wait_ready(&[1, 2, 3], Duration::from_secs(30)).await;
    let leader = c.agreed_leader(&[1, 2, 3], Duration::from_secs(10)).await;
    eprintln!(
        "cluster ready {:?} after the restarts (leader {leader})",
        restarted_at.elapsed()
    );
    let h = poll(Duration::from_secs(10), || async {
        let (st, v) = c.get(survivor, "/health/websocket").await.ok()?;
        (st == 200).then_some(v)
    })
    .await;
    assert!(h.is_some(), "survivor's health never recovered");

    // History intact on every node.
    let room = format!("user:{user}");
    let mut epoch = String::new();
    let mut ghosts = Vec::new();
    for id in 1..=3 {
        let (e, events) = c.history(id, &room).await.expect("history");
        let first: Vec<(u64, serde_json::Value)> = events.iter().take(3).cloned().collect();
        assert_eq!(
            first,
            (1..=3).map(|i| (i, json!({ "i": i }))).collect::<Vec<_>>(),
            "node {id}'s history: {events:?}"
        );
        let late: Vec<_> = events
            .iter()
            .filter(|(_, d)| d["i"].as_u64().is_some_and(|i| refused.contains(&i)))
            .cloned()
            .collect();
        if !late.is_empty() {
            ghosts.push((id, late));
        }
        if id == 1 {
            epoch = e;
        } else {
            assert_eq!(e, epoch, "epochs differ");
        }
    }

    // A session created before the kills still authenticates, on a restarted node.
    let again = Sio::login(c.node(killed[0]).addr(), &json!({ "sessionId": session }))
        .await
        .expect("session created before the kills");
    assert_eq!(again.connected["userId"], json!(user));

    // Emits succeed again, through every node, and reach the survivor's old client.
    let mut want = Vec::new();
    for id in 1..=3 {
        let a = c.emit_ok(id, user, 200 + id).await;
        want.push((200 + id, a["offset"].as_u64().expect("offset")));
    }
    let mut live = Vec::new();
    let mut other = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while live.len() < 3 && Instant::now() < deadline {
        let got = client
            .collect(
                "trade:executed",
                1,
                deadline.saturating_duration_since(Instant::now()),
            )
            .await;
        for a in got {
            let p = durable_parts(&a);
            if p.0 > 200 {
                live.push((p.0, p.1));
            } else {
                other.push((p.0, p.1));
            }
        }
    }
    assert_eq!(live, want, "the survivor's client after the heal");

    // The contract: a 503 NO_QUORUM answer means nothing was written.
    assert!(
        ghosts.is_empty(),
        "emits answered 503 NO_QUORUM (\"nothing was written\") were committed after the heal \
         (node, [(offset, data)]): {ghosts:?}; the survivor's client received them too: {other:?}"
    );
}
