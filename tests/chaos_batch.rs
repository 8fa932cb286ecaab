//! A short chaos run whose publisher posts its durable emits in batches
//! (`POST /api/emit/batch`, 10 per request) while the leader is killed, a follower is killed
//! and the leader is frozen: every event answered committed must be delivered, in order, once,
//! and no offset written twice — as for single emits (`chaos_smoke.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use raftcast::config::{ChaosArgs, NetMode};

mod chaos_common;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_with_batched_emits() {
    let out_dir = std::env::temp_dir().join(format!("raftcast-chaos-batch-{}", std::process::id()));
    let args = ChaosArgs {
        users: 3,
        rate: 200,
        batch: 10,
        quote_rate: 0,
        ..chaos_common::args(
            &out_dir,
            17,
            Duration::from_secs(18),
            "kill-leader,kill-follower,pause-leader",
            (Duration::from_secs(6), Duration::from_secs(2)),
            NetMode::Switch,
        )
    };
    chaos_common::run_to_pass(args, 1000, "chaos with batches").await;
    let _ = std::fs::remove_dir_all(&out_dir);
}
