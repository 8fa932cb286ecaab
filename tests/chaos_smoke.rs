//! A ~30 s chaos run against a real 3-node cluster of this build's binary: a leader kill, a
//! frozen follower and an isolated leader under load; nothing acknowledged may be lost,
//! duplicated after dedup, reordered or written twice under one offset.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::Duration;

use raftcast::chaos::execute;
use raftcast::config::{ChaosArgs, NetMode};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_smoke_kill_pause_partition() {
    let out_dir = std::env::temp_dir().join(format!("raftcast-chaos-smoke-{}", std::process::id()));
    let args = ChaosArgs {
        seed: Some(7),
        duration: Duration::from_secs(18),
        nodes: 3,
        out: out_dir.join("report.json"),
        plot: None,
        binary: Some(PathBuf::from(env!("CARGO_BIN_EXE_raftcast"))),
        clients: 4,
        users: 2,
        rate: 40,
        batch: 1,
        quote_rate: 10,
        fault_every: Duration::from_secs(6),
        fault_hold: Duration::from_secs(3),
        faults: "kill-leader,pause-follower,isolate-leader".into(),
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
    assert!(r.findings.emits.ok > 100, "the publisher got emits through");
    assert!(
        r.verdict.passed,
        "chaos smoke failed: {:?}",
        r.verdict.failures
    );
    assert!(outcome.json.exists());
    let _ = std::fs::remove_dir_all(&out_dir);
}
