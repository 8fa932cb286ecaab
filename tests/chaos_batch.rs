//! A short chaos run whose publisher posts its durable emits in batches
//! (`POST /api/emit/batch`, 10 per request) while the leader is killed, a follower is killed
//! and the leader is frozen: every event answered committed must be delivered, in order, once,
//! and no offset written twice — as for single emits (`chaos_smoke.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::Duration;

use raftcast::chaos::execute;
use raftcast::config::{ChaosArgs, NetMode};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_with_batched_emits() {
    let out_dir = std::env::temp_dir().join(format!("raftcast-chaos-batch-{}", std::process::id()));
    let args = ChaosArgs {
        seed: Some(17),
        duration: Duration::from_secs(18),
        nodes: 3,
        out: out_dir.join("report.json"),
        plot: None,
        binary: Some(PathBuf::from(env!("CARGO_BIN_EXE_raftcast"))),
        clients: 4,
        users: 3,
        rate: 200,
        batch: 10,
        quote_rate: 0,
        fault_every: Duration::from_secs(6),
        fault_hold: Duration::from_secs(2),
        faults: "kill-leader,kill-follower,pause-leader".into(),
        settle: Duration::from_secs(30),
        keep: false,
        net: NetMode::Switch,
    };
    let outcome = execute(args, false)
        .await
        .expect("the chaos run could not be carried out");
    let r = &outcome.report;
    println!("{}", r.table());
    assert_eq!(r.faults.len(), 3, "three faults injected");
    assert!(
        r.findings.emits.ok > 1000,
        "the publisher got batches through: {} emits committed",
        r.findings.emits.ok
    );
    assert!(
        r.verdict.passed,
        "chaos with batches failed: {:?}",
        r.verdict.failures
    );
    let _ = std::fs::remove_dir_all(&out_dir);
}
