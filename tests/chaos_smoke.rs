//! A ~30 s chaos run against a real 3-node cluster of this build's binary: a leader kill, a
//! frozen follower and an isolated leader under load; nothing acknowledged may be lost,
//! duplicated after dedup, reordered or written twice under one offset.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use raftcast::config::NetMode;

mod chaos_common;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_smoke_kill_pause_partition() {
    let out_dir = std::env::temp_dir().join(format!("raftcast-chaos-smoke-{}", std::process::id()));
    let args = chaos_common::args(
        &out_dir,
        7,
        Duration::from_secs(18),
        "kill-leader,pause-follower,isolate-leader",
        (Duration::from_secs(6), Duration::from_secs(3)),
        NetMode::Switch,
    );
    let outcome = chaos_common::run_to_pass(args, 100, "chaos smoke").await;
    assert!(outcome.json.exists());
    let _ = std::fs::remove_dir_all(&out_dir);
}
