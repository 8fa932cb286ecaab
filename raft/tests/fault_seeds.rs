//! Seeded fault tests of the Raft layer: three in-process nodes on 127.0.0.1 whose links are
//! cut, dropped one way or slowed through each node's [`FaultSwitch`], following a schedule
//! drawn from a seed, under a steady stream of proposals. Checked for every seed:
//!
//! - who led in which term is sampled every few ms and printed, but not judged: openraft 0.9
//!   without its `single-term-leader` feature identifies a leader by (term, node id), and a
//!   term may have several leaders in that order (a vote for (7, 2) outranks one for (7, 1),
//!   seen with seed 4 in CI). Standard Raft's "one leader per term" does not hold there by
//!   design; what must hold is what the checks below verify on the logs;
//! - log matching: once healed, every node holds the same events at the same offsets and
//!   applied them in the same order;
//! - committed entries stay committed: every proposal answered `Published` is in every
//!   node's final history with its payload, at its offset;
//! - offsets are gapless.
//!
//! `RAFTCAST_FAULT_SEEDS=N` runs seeds 1..=N (default 5), `RAFTCAST_FAULT_SEED=S` only seed
//! S. A failure names its seed; rerun it with `RAFTCAST_FAULT_SEED`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use raftcast_raft::{Applied, Command, FaultSwitch, NodeId, RaftConfig, RaftNode, Response};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const ROOM: &str = "r";
const NODES: u64 = 3;
/// Fault steps per seed, each held this long.
const STEPS: usize = 10;
const STEP: Duration = Duration::from_millis(300);

type AppliedLog = Arc<Mutex<Vec<(u64, Vec<u8>)>>>;

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn seeds() -> Vec<u64> {
    if let Some(s) = std::env::var("RAFTCAST_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return vec![s];
    }
    let n = std::env::var("RAFTCAST_FAULT_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5u64);
    (1..=n).collect()
}

fn publish(i: u64) -> Command {
    Command::Publish {
        room: ROOM.into(),
        event: "ev".into(),
        payload: i.to_be_bytes().to_vec(),
        durable: true,
        history_max: 1_000_000,
        history_ttl_ms: 0,
    }
}

struct Node {
    node: RaftNode,
    switch: FaultSwitch,
    applied: AppliedLog,
}

async fn start_cluster(seed: u64, dir: &TempDir) -> Vec<Node> {
    let ports: BTreeMap<NodeId, u16> = (1..=NODES).map(|i| (i, free_port())).collect();
    let peers: BTreeMap<NodeId, String> = ports
        .iter()
        .map(|(i, p)| (*i, format!("127.0.0.1:{p}")))
        .collect();
    let mut out = Vec::new();
    for id in 1..=NODES {
        let cfg = RaftConfig {
            node_id: id,
            data_dir: dir.0.join(format!("n{id}")),
            peer_listen: format!("127.0.0.1:{}", ports[&id]).parse().unwrap(),
            peers: peers.clone(),
            public_addr: format!("127.0.0.1:{}", 5000 + id),
            cluster_secret: format!("seed-{seed}"),
            election_timeout_ms: (200, 400),
            propose_timeout: Duration::from_secs(1),
            node_dead_after: Duration::from_secs(30),
            fault_injection: true,
            ..Default::default()
        };
        let (node, mut rx) = RaftNode::start(cfg).await.expect("start");
        let applied: AppliedLog = Arc::default();
        let a = applied.clone();
        tokio::spawn(async move {
            while let Some(ev) = rx.recv().await {
                if let Applied::Published {
                    room,
                    offset,
                    payload,
                    durable: true,
                    ..
                } = ev
                {
                    if room == ROOM {
                        a.lock().unwrap().push((offset, payload));
                    }
                }
            }
        });
        let switch = node.fault().expect("fault injection is on");
        out.push(Node {
            node,
            switch,
            applied,
        });
    }
    out
}

/// One random fault step.
fn inject(rng: &mut StdRng, nodes: &[Node]) -> String {
    let a = rng.random_range(0..nodes.len());
    let b = (a + rng.random_range(1..nodes.len())) % nodes.len();
    let (ia, ib) = (nodes[a].node.id(), nodes[b].node.id());
    match rng.random_range(0..5) {
        0 => {
            nodes[a].switch.isolate_all();
            format!("isolate {ia}")
        }
        1 => {
            nodes[a].switch.drop_outgoing(ib);
            nodes[b].switch.drop_incoming(ia);
            format!("drop {ia}->{ib}")
        }
        2 => {
            let d = Duration::from_millis(rng.random_range(20..150));
            nodes[a].switch.delay(ib, d);
            nodes[b].switch.delay(ia, d);
            format!("delay {ia}<->{ib} {d:?}")
        }
        3 => {
            nodes[a].switch.isolate(ib);
            nodes[b].switch.isolate(ia);
            format!("cut {ia}<->{ib}")
        }
        _ => {
            for n in nodes {
                n.switch.heal_all();
            }
            "heal".into()
        }
    }
}

async fn run_seed(seed: u64) -> Result<(), String> {
    let dir = TempDir(
        std::env::temp_dir().join(format!("raftcast-fault-seed-{seed}-{}", std::process::id())),
    );
    let _ = std::fs::remove_dir_all(&dir.0);
    let nodes = start_cluster(seed, &dir).await;
    for n in &nodes {
        if !n.node.wait_ready(Duration::from_secs(20)).await {
            return Err(format!("node {} not ready", n.node.id()));
        }
    }
    let handles: Vec<RaftNode> = nodes.iter().map(|n| n.node.clone()).collect();

    // Election safety: sample who leads in which term.
    let leaders: Arc<Mutex<HashMap<u64, HashSet<NodeId>>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (h, l, stop) = (handles.clone(), leaders.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for n in &h {
                    let st = n.status();
                    if st.leader_id == Some(n.id()) {
                        l.lock().unwrap().entry(st.term).or_default().insert(n.id());
                    }
                }
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
        })
    };

    // Proposals through every node in turn; keep what was answered Published.
    let acked: Arc<Mutex<Vec<(u64, u64)>>> = Arc::default();
    let proposer = {
        let (h, acked, stop) = (handles.clone(), acked.clone(), stop.clone());
        tokio::spawn(async move {
            let mut i = 0u64;
            let mut inflight = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && i < 100_000 {
                i += 1;
                let n = h[(i as usize) % h.len()].clone();
                let acked = acked.clone();
                inflight.push(tokio::spawn(async move {
                    if let Ok(Response::Published { offset, .. }) = n.propose(publish(i)).await {
                        acked.lock().unwrap().push((offset, i));
                    }
                }));
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            for f in inflight {
                let _ = f.await;
            }
        })
    };

    let mut rng = StdRng::seed_from_u64(seed);
    let mut steps = Vec::new();
    for _ in 0..STEPS {
        steps.push(inject(&mut rng, &nodes));
        tokio::time::sleep(STEP).await;
    }
    for n in &nodes {
        n.switch.heal_all();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = tokio::time::timeout(Duration::from_secs(10), proposer).await;
    let _ = sampler.await;

    let result = verify(&nodes, &leaders, &acked).await;
    for n in &nodes {
        n.node.shutdown().await;
    }
    result.map_err(|e| format!("{e}\n  schedule: {}", steps.join(", ")))
}

async fn verify(
    nodes: &[Node],
    leaders: &Mutex<HashMap<u64, HashSet<NodeId>>>,
    acked: &Mutex<Vec<(u64, u64)>>,
) -> Result<(), String> {
    // Several leaders in one term are legal here (module docs): only reported.
    for (term, ids) in leaders.lock().unwrap().iter() {
        if ids.len() > 1 {
            println!("  term {term} had leaders {ids:?} (ordered by node id)");
        }
    }
    // Wait until every node holds and applied the same number of events.
    let deadline = Instant::now() + Duration::from_secs(15);
    let last = |n: &Node| n.node.state().history(ROOM, 0).last_offset;
    loop {
        let lasts: Vec<u64> = nodes.iter().map(last).collect();
        let applied: Vec<usize> = nodes
            .iter()
            .map(|n| n.applied.lock().unwrap().len())
            .collect();
        let same =
            lasts.iter().all(|l| *l == lasts[0]) && applied.iter().all(|a| *a as u64 == lasts[0]);
        if same {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "nodes did not converge: last offsets {lasts:?}, applied {applied:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let reference: Vec<(u64, Vec<u8>)> = nodes[0]
        .node
        .state()
        .history(ROOM, 0)
        .events
        .into_iter()
        .map(|e| (e.offset, e.payload))
        .collect();
    for (k, (offset, _)) in reference.iter().enumerate() {
        if *offset != k as u64 + 1 {
            return Err(format!(
                "offset gap: position {} holds offset {offset}",
                k + 1
            ));
        }
    }
    for n in nodes {
        let h: Vec<(u64, Vec<u8>)> = n
            .node
            .state()
            .history(ROOM, 0)
            .events
            .into_iter()
            .map(|e| (e.offset, e.payload))
            .collect();
        if h != reference {
            return Err(format!(
                "log matching: node {} history differs from node {}",
                n.node.id(),
                nodes[0].node.id()
            ));
        }
        if *n.applied.lock().unwrap() != reference {
            return Err(format!(
                "log matching: node {} applied a different sequence",
                n.node.id()
            ));
        }
    }
    let by_offset: BTreeMap<u64, Vec<u8>> = reference.into_iter().collect();
    let mut seen_payloads = HashSet::new();
    for p in by_offset.values() {
        if !seen_payloads.insert(p.clone()) {
            return Err(format!("a proposal committed twice: payload {p:?}"));
        }
    }
    let acked = acked.lock().unwrap();
    for (offset, i) in acked.iter() {
        match by_offset.get(offset) {
            Some(p) if *p == i.to_be_bytes().to_vec() => {}
            other => {
                return Err(format!(
                    "committed entry lost or changed: proposal {i} answered offset {offset}, history holds {other:?}"
                ))
            }
        }
    }
    if acked.is_empty() {
        return Err("no proposal was committed at all".into());
    }
    println!(
        "  {} committed ({} acknowledged), {} terms with a leader",
        by_offset.len(),
        acked.len(),
        leaders.lock().unwrap().len()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_survives_seeded_link_faults() {
    let mut failed = Vec::new();
    for seed in seeds() {
        println!("fault seed {seed}");
        if let Err(e) = run_seed(seed).await {
            println!("FAILED seed {seed}: {e}");
            failed.push(format!("seed {seed}: {e}"));
        }
    }
    assert!(
        failed.is_empty(),
        "{} seed(s) failed (rerun one with RAFTCAST_FAULT_SEED=<seed>):\n{}",
        failed.len(),
        failed.join("\n")
    );
}
