//! In-process clusters on 127.0.0.1: formation, forwarding, identical apply order, failover,
//! no-quorum refusal, restart with the data dir, and a wrong cluster secret.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use raftcast_raft::{Applied, Command, NodeId, ProposeError, RaftConfig, RaftNode, Response};

type Log = Arc<Mutex<Vec<(String, u64, u64)>>>;

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tempdir(name: &str) -> TempDir {
    let d = std::env::temp_dir().join(format!("raftcast-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    TempDir(d)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

fn cfg(id: NodeId, ports: &BTreeMap<NodeId, u16>, dir: &TempDir, secret: &str) -> RaftConfig {
    RaftConfig {
        node_id: id,
        data_dir: dir.0.join(format!("n{id}")),
        peer_listen: format!("127.0.0.1:{}", ports[&id]).parse().unwrap(),
        peers: ports
            .iter()
            .map(|(i, p)| (*i, format!("127.0.0.1:{p}")))
            .collect(),
        public_addr: format!("127.0.0.1:{}", 5000 + id),
        cluster_secret: secret.into(),
        election_timeout_ms: (300, 600),
        propose_timeout: Duration::from_secs(2),
        node_dead_after: Duration::from_secs(2),
        ..Default::default()
    }
}

async fn start(c: RaftConfig) -> (RaftNode, Log) {
    let (node, mut rx) = RaftNode::start(c).await.expect("start");
    let log: Log = Arc::default();
    let l = log.clone();
    tokio::spawn(async move {
        while let Some(a) = rx.recv().await {
            if let Applied::Published {
                room,
                offset,
                index,
                durable: true,
                ..
            } = a
            {
                l.lock().unwrap().push((room, offset, index));
            }
        }
    });
    (node, log)
}

async fn eventually(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn publish(room: &str, i: u32) -> Command {
    Command::Publish {
        room: room.into(),
        event: "ev".into(),
        payload: i.to_be_bytes().to_vec(),
        durable: true,
        history_max: 1000,
        history_ttl_ms: 0,
    }
}

fn leader_of(nodes: &[&RaftNode]) -> Option<NodeId> {
    let ids: Vec<Option<NodeId>> = nodes.iter().map(|n| n.status().leader_id).collect();
    let first = ids[0]?;
    ids.iter().all(|i| *i == Some(first)).then_some(first)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_replicate_fail_over_and_refuse_without_quorum() {
    init_tracing();
    let dir = tempdir("cluster3");
    let ports: BTreeMap<NodeId, u16> = (1..=3).map(|i| (i, free_port())).collect();
    let mut nodes = BTreeMap::new();
    let mut logs = BTreeMap::new();
    for id in 1..=3 {
        let (n, l) = start(cfg(id, &ports, &dir, "s3cret")).await;
        nodes.insert(id, n);
        logs.insert(id, l);
    }
    for n in nodes.values() {
        assert!(
            n.wait_ready(Duration::from_secs(15)).await,
            "node {} not ready",
            n.id()
        );
    }
    let epoch = nodes[&1].epoch().expect("epoch");
    assert_eq!(epoch.len(), 16);
    assert!(nodes
        .values()
        .all(|n| n.epoch().as_deref() == Some(epoch.as_str())));
    let leader = leader_of(&nodes.values().collect::<Vec<_>>()).expect("one leader");
    let follower = *nodes.keys().find(|i| **i != leader).unwrap();
    let st = nodes[&leader].status();
    assert!(st.has_quorum);
    assert_eq!(st.nodes.len(), 3);

    // Concurrent proposals through a follower: forwarded, batched, gapless.
    let (e0, c0) = nodes[&leader].batch_stats();
    let mut handles = Vec::new();
    for i in 0..300u32 {
        let n = nodes[&follower].clone();
        handles.push(tokio::spawn(async move {
            n.propose(publish(if i % 2 == 0 { "a" } else { "b" }, i))
                .await
        }));
    }
    let mut offsets_a = Vec::new();
    for h in handles {
        match h.await.unwrap().expect("propose") {
            Response::Published {
                room,
                offset,
                epoch: e,
                ..
            } => {
                assert_eq!(e, epoch);
                if room == "a" {
                    offsets_a.push(offset);
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    offsets_a.sort_unstable();
    assert_eq!(offsets_a, (1..=150).collect::<Vec<u64>>());
    let (e1, c1) = nodes[&leader].batch_stats();
    println!(
        "batching: {} commands in {} entries ({:.1} per entry)",
        c1 - c0,
        e1 - e0,
        (c1 - c0) as f64 / (e1 - e0).max(1) as f64
    );
    assert!(e1 - e0 < 300, "proposals were batched");

    // All three apply the same durable events in the same order.
    eventually(
        "all nodes applied 300 events",
        Duration::from_secs(10),
        || logs.values().all(|l| l.lock().unwrap().len() == 300),
    )
    .await;
    let reference = logs[&1].lock().unwrap().clone();
    for l in logs.values() {
        assert_eq!(*l.lock().unwrap(), reference);
    }

    // Kill the leader: a new one is elected and proposals continue.
    let old = nodes.remove(&leader).unwrap();
    old.shutdown().await;
    drop(old);
    let rest: Vec<NodeId> = nodes.keys().copied().collect();
    eventually("a new leader", Duration::from_secs(10), || {
        leader_of(&nodes.values().collect::<Vec<_>>()).is_some_and(|l| l != leader)
    })
    .await;
    let r = nodes[&rest[0]]
        .propose(publish("a", 1000))
        .await
        .expect("propose after failover");
    assert!(
        matches!(r, Response::Published { offset: 151, .. }),
        "{r:?}"
    );

    // Restart the old leader with its data dir: it rejoins and has the history.
    let (n, l) = start(cfg(leader, &ports, &dir, "s3cret")).await;
    logs.insert(leader, l);
    nodes.insert(leader, n);
    assert!(
        nodes[&leader].wait_ready(Duration::from_secs(15)).await,
        "restarted node ready"
    );
    eventually(
        "restarted node has the history",
        Duration::from_secs(10),
        || nodes[&leader].state().history("a", 0).last_offset == 151,
    )
    .await;
    assert_eq!(nodes[&leader].epoch().as_deref(), Some(epoch.as_str()));
    assert_eq!(nodes[&leader].state().history("a", 149).events.len(), 2);

    // Two of three down: NoQuorum within the timeout.
    let survivor = leader;
    for id in rest {
        let n = nodes.remove(&id).unwrap();
        n.shutdown().await;
    }
    let t = Instant::now();
    let r = nodes[&survivor].propose(publish("a", 2000)).await;
    assert!(matches!(r, Err(ProposeError::NoQuorum(_))), "{r:?}");
    assert!(
        t.elapsed() < Duration::from_millis(3500),
        "NoQuorum took {:?}",
        t.elapsed()
    );
    assert!(!nodes[&survivor].status().has_quorum);
    nodes[&survivor].shutdown().await;
}

/// When the leader falls silent, the followers agree on one candidate (the most complete log,
/// then the lowest id) which campaigns as soon as the leader lease runs out: one election
/// round, won by that node, started by the fast-failover watchdog (not openraft's random timer,
/// which would pick either follower and sometimes need a second round).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_leader_is_replaced_in_one_round_by_the_agreed_follower() {
    init_tracing();
    let dir = tempdir("failover");
    let ports: BTreeMap<NodeId, u16> = (1..=3).map(|i| (i, free_port())).collect();
    let mut nodes = BTreeMap::new();
    for id in 1..=3 {
        let mut c = cfg(id, &ports, &dir, "s3cret");
        c.fault_injection = true;
        let (n, _l) = start(c).await;
        nodes.insert(id, n);
    }
    for n in nodes.values() {
        assert!(
            n.wait_ready(Duration::from_secs(15)).await,
            "node {} not ready",
            n.id()
        );
    }
    for i in 0..20 {
        nodes[&1].propose(publish("f", i)).await.expect("propose");
    }
    let all: Vec<&RaftNode> = nodes.values().collect();
    let leader = leader_of(&all).expect("one leader");
    let term = nodes[&leader].status().term;
    let rest: Vec<NodeId> = nodes.keys().copied().filter(|i| *i != leader).collect();
    // Same log on both followers (everything above is committed and replicated).
    eventually("followers caught up", Duration::from_secs(5), || {
        rest.iter()
            .all(|i| nodes[i].status().last_log_index == nodes[&leader].status().last_log_index)
    })
    .await;

    nodes[&leader].fault().expect("fault switch").isolate_all();
    let survivors: Vec<&RaftNode> = rest.iter().map(|i| &nodes[i]).collect();
    eventually("a new leader", Duration::from_secs(10), || {
        leader_of(&survivors).is_some_and(|l| l != leader)
    })
    .await;
    let new = leader_of(&survivors).expect("new leader");
    assert_eq!(new, rest[0], "equal logs: the lowest id campaigns");
    assert_eq!(nodes[&new].fast_elections(), 1, "started by the watchdog");
    assert_eq!(
        nodes[&rest[1]].fast_elections(),
        0,
        "the other follower only voted"
    );
    assert_eq!(nodes[&new].status().term, term + 1, "won in one round");
    let r = nodes[&rest[1]]
        .propose(publish("f", 100))
        .await
        .expect("propose after failover");
    assert!(matches!(r, Response::Published { offset: 21, .. }), "{r:?}");

    // The old leader comes back as a follower of the new one.
    nodes[&leader].fault().expect("fault switch").heal_all();
    let all: Vec<&RaftNode> = nodes.values().collect();
    eventually("old leader follows", Duration::from_secs(10), || {
        leader_of(&all) == Some(new)
    })
    .await;
    for n in nodes.values() {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_cluster_secret_is_refused() {
    init_tracing();
    let dir = tempdir("secret");
    let p1 = free_port();
    let mut one = BTreeMap::new();
    one.insert(1, p1);
    let mut c1 = cfg(1, &one, &dir, "right");
    c1.peers.clear();
    let (n1, _l1) = start(c1).await;
    assert!(n1.wait_ready(Duration::from_secs(10)).await);

    let mut two = BTreeMap::new();
    two.insert(2, free_port());
    let mut c2 = cfg(2, &two, &dir, "wrong");
    c2.peers.clear();
    c2.join = Some(format!("127.0.0.1:{p1}"));
    let (n2, _l2) = start(c2).await;
    assert!(!n2.wait_ready(Duration::from_secs(2)).await);
    assert_eq!(n1.status().nodes.len(), 1, "the impostor was not added");

    // The right secret joins as a learner, which serves reads and forwards proposals.
    n2.shutdown().await;
    let mut three = BTreeMap::new();
    three.insert(3, free_port());
    let mut c3 = cfg(3, &three, &dir, "right");
    c3.peers.clear();
    c3.join = Some(format!("127.0.0.1:{p1}"));
    let (n3, _l3) = start(c3).await;
    assert!(
        n3.wait_ready(Duration::from_secs(10)).await,
        "learner ready"
    );
    let r = n3.propose(publish("x", 1)).await.expect("learner proposes");
    assert!(matches!(r, Response::Published { offset: 1, .. }));
    eventually("learner applied", Duration::from_secs(5), || {
        n3.state().room_offset("x").1 == 1
    })
    .await;
    n3.shutdown().await;
    n1.shutdown().await;
}

/// Every member snapshots (so its log can be purged), but not at the same index as the
/// others: with one shared threshold all three dumped their state at the same moment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_snapshot_at_different_indexes() {
    init_tracing();
    let dir = tempdir("stagger");
    let ports: BTreeMap<NodeId, u16> = (1..=3).map(|i| (i, free_port())).collect();
    let mut nodes = Vec::new();
    for id in 1..=3 {
        let mut c = cfg(id, &ports, &dir, "s3cret");
        c.snapshot_every = 60;
        nodes.push(start(c).await.0);
    }
    for n in &nodes {
        assert!(n.wait_ready(Duration::from_secs(20)).await, "ready");
    }
    let snapshot_of = |n: &RaftNode| n.raft().metrics().borrow().snapshot.map(|l| l.index);
    let mut seen: Vec<std::collections::BTreeSet<u64>> = vec![Default::default(); 3];
    let note = |seen: &mut Vec<std::collections::BTreeSet<u64>>| {
        for (i, n) in nodes.iter().enumerate() {
            if let Some(s) = snapshot_of(n) {
                seen[i].insert(s);
            }
        }
    };
    // One entry at a time, a little apart, so that a 100 ms duty tick overshoots its due
    // index by a few entries only.
    for i in 0..200 {
        nodes[(i % 3) as usize]
            .propose(publish("s", i))
            .await
            .expect("propose");
        note(&mut seen);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    eventually(
        "every member snapshotted twice",
        Duration::from_secs(20),
        || {
            note(&mut seen);
            seen.iter().all(|s| s.len() >= 2)
        },
    )
    .await;
    let common: Vec<u64> = seen[0]
        .iter()
        .filter(|s| seen[1].contains(s) && seen[2].contains(s))
        .copied()
        .collect();
    assert!(
        common.is_empty(),
        "all three members snapshotted at {common:?} (snapshots seen: {seen:?})"
    );
    for s in &seen {
        let v: Vec<u64> = s.iter().copied().collect();
        assert!(
            v.windows(2).all(|w| w[1] - w[0] >= 30),
            "one snapshot per interval of 60 entries, not two: {seen:?}"
        );
    }
    for n in nodes {
        n.shutdown().await;
    }
}

/// A snapshot rewrites the whole state: a node whose state is large next to its log entries
/// (a long history, small events) skips due indexes until the log written since its last
/// snapshot is half the state, or 16 intervals have passed (`node/snapshots.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_state_is_snapshotted_less_often() {
    init_tracing();
    let dir = tempdir("defer");
    let ports = BTreeMap::from([(1, free_port())]);
    let mut c = cfg(1, &ports, &dir, "s3cret");
    c.snapshot_every = 60;
    let (n, _log) = start(c).await;
    assert!(n.wait_ready(Duration::from_secs(20)).await, "ready");
    let snapshot = || n.raft().metrics().borrow().snapshot.map_or(0, |l| l.index);
    let applied = || {
        n.raft()
            .metrics()
            .borrow()
            .last_applied
            .map_or(0, |l| l.index)
    };
    let mut small = 0u32;
    let mut propose_small = || {
        small += 1;
        n.propose(publish("small", small))
    };
    // 6 MiB of history (96 events of 64 KiB in 12 rooms), then small events until a
    // snapshot holds it all.
    for i in 0..96u32 {
        let mut cmd = publish(&format!("big{}", i % 12), i);
        if let Command::Publish { payload, .. } = &mut cmd {
            *payload = vec![i as u8; 64 << 10];
        }
        n.propose(cmd).await.expect("propose a large event");
    }
    let big_last = applied();
    let bound = 16 * 60 + 120;
    while snapshot() < big_last {
        assert!(
            applied() < big_last + bound,
            "no snapshot of the large state within {bound} entries"
        );
        propose_small().await.expect("propose");
    }
    let s = snapshot();
    // 300 small entries (about 50 KB of log) are not worth rewriting 6 MiB for.
    while applied() < s + 300 {
        propose_small().await.expect("propose");
    }
    assert_eq!(
        snapshot(),
        s,
        "snapshotted again after {} small entries",
        applied() - s
    );
    // But the log does not grow without bound: a snapshot within 16 intervals.
    while snapshot() == s {
        assert!(
            applied() < s + bound,
            "no snapshot within {bound} entries of the last"
        );
        propose_small().await.expect("propose");
    }
    assert!(snapshot() >= s + 15 * 60, "{} after {s}", snapshot());
    n.shutdown().await;
}

/// Every member of a cluster of this version answers the protocol question, so the nodes
/// propose the commands that name a socket's user, and those reach every node's state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_of_this_version_propose_its_commands() {
    init_tracing();
    let dir = tempdir("versions3");
    let ports: BTreeMap<NodeId, u16> = (1..=3).map(|i| (i, free_port())).collect();
    let nodes = three_on_current_commands(&ports, &dir).await;
    open_join_close(&nodes, 2).await;
    for n in nodes.values() {
        n.shutdown().await;
    }
}

/// A member that speaks an older protocol (a node not yet upgraded, stood for by
/// `RaftConfig::protocol`) keeps every node on the command forms every version reads; the
/// socket commands still take effect everywhere; once it restarts on this protocol, the
/// nodes propose this version's commands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_member_keeps_the_cluster_on_the_older_forms_until_it_is_upgraded() {
    init_tracing();
    let dir = tempdir("versions-mixed");
    let ports: BTreeMap<NodeId, u16> = (1..=3).map(|i| (i, free_port())).collect();
    let older = RaftConfig {
        protocol: 1,
        ..cfg(3, &ports, &dir, "s3cret")
    };
    let mut nodes = BTreeMap::new();
    for id in 1..=2 {
        nodes.insert(id, start(cfg(id, &ports, &dir, "s3cret")).await.0);
    }
    nodes.insert(3, start(older).await.0);
    for n in nodes.values() {
        assert!(n.wait_ready(Duration::from_secs(15)).await);
    }
    // Each node checks its members every second: three checks, and none may switch.
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        for n in nodes.values() {
            assert!(
                !n.proposes_current_commands(),
                "node {} proposes commands node 3 cannot read",
                n.id()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    open_join_close(&nodes, 1).await;

    // Node 3 is upgraded: restarted on this protocol, same data dir.
    nodes.remove(&3).unwrap().shutdown().await;
    nodes.insert(3, start(cfg(3, &ports, &dir, "s3cret")).await.0);
    assert!(nodes[&3].wait_ready(Duration::from_secs(15)).await);
    eventually(
        "every node proposes the current commands after the upgrade",
        Duration::from_secs(15),
        || nodes.values().all(|n| n.proposes_current_commands()),
    )
    .await;
    for n in nodes.values() {
        n.shutdown().await;
    }
}

/// Through node `via`: a socket of alice opens there, joins `room:x` (in the form that names
/// its user) and closes; each step must reach every node's state.
async fn open_join_close(nodes: &BTreeMap<NodeId, RaftNode>, via: NodeId) {
    let n = &nodes[&via];
    n.propose(Command::SocketOpen {
        node: via,
        sid: "s1".into(),
        pid: "p1".into(),
        user_id: "alice".into(),
        session_id: None,
        rooms: vec![],
    })
    .await
    .unwrap();
    let joined = n
        .propose(Command::JoinOf {
            sid: "s1".into(),
            user_id: "alice".into(),
            rooms: vec!["room:x".into()],
        })
        .await
        .unwrap();
    assert_eq!(joined, raftcast_raft::Response::Ok);
    let here = vec![(via, "s1".to_string())];
    eventually(
        "the join reaches every node",
        Duration::from_secs(10),
        || {
            nodes.values().all(|n| {
                n.state().room_members("room:x") == here && n.state().presence("alice") == here
            })
        },
    )
    .await;
    n.propose(Command::SocketCloseOf {
        sid: "s1".into(),
        user_id: "alice".into(),
        recoverable_for_ms: 0,
    })
    .await
    .unwrap();
    eventually(
        "the close reaches every node",
        Duration::from_secs(10),
        || {
            nodes.values().all(|n| {
                n.state().presence("alice").is_empty()
                    && n.state().room_members("room:x").is_empty()
            })
        },
    )
    .await;
}

/// Once the cluster proposes this version's commands, a node that speaks an older protocol
/// is refused as a learner (it could not read the log) and the cluster stays on the newer
/// commands; the same node on this protocol joins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_node_cannot_join_a_cluster_on_the_newer_commands() {
    init_tracing();
    let dir = tempdir("versions-join");
    let ports: BTreeMap<NodeId, u16> = (1..=4).map(|i| (i, free_port())).collect();
    let voters: BTreeMap<NodeId, u16> = ports
        .iter()
        .filter(|(i, _)| **i <= 3)
        .map(|(i, p)| (*i, *p))
        .collect();
    let nodes = three_on_current_commands(&voters, &dir).await;
    let learner = |protocol| RaftConfig {
        peers: BTreeMap::new(),
        join: Some(format!("127.0.0.1:{}", ports[&1])),
        protocol,
        ..cfg(4, &ports, &dir, "s3cret")
    };
    let older = start(learner(1)).await.0;
    let members = |nodes: &BTreeMap<NodeId, RaftNode>| {
        nodes
            .values()
            .map(|n| n.status().nodes.len())
            .max()
            .unwrap_or(0)
    };
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        assert_eq!(members(&nodes), 3, "the older node was let in");
        assert!(nodes.values().all(|n| n.proposes_current_commands()));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    older.shutdown().await;
    drop(older);
    let current = start(learner(raftcast_raft::PEER_PROTOCOL)).await.0;
    eventually(
        "the node of this version joins",
        Duration::from_secs(15),
        || members(&nodes) == 4,
    )
    .await;
    eventually(
        "every node proposes the current commands again",
        Duration::from_secs(10),
        || {
            nodes.values().all(|n| n.proposes_current_commands())
                && current.proposes_current_commands()
        },
    )
    .await;
    current.shutdown().await;
    for n in nodes.values() {
        n.shutdown().await;
    }
}

/// Three voters of this version on `ports`, ready, each proposing this version's commands.
async fn three_on_current_commands(
    ports: &BTreeMap<NodeId, u16>,
    dir: &TempDir,
) -> BTreeMap<NodeId, RaftNode> {
    let mut nodes = BTreeMap::new();
    for id in 1..=3 {
        nodes.insert(id, start(cfg(id, ports, dir, "s3cret")).await.0);
    }
    for n in nodes.values() {
        assert!(n.wait_ready(Duration::from_secs(15)).await);
    }
    eventually(
        "every node proposes the current commands",
        Duration::from_secs(10),
        || nodes.values().all(|n| n.proposes_current_commands()),
    )
    .await;
    nodes
}
