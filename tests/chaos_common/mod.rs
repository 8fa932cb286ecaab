//! The settings the chaos tests share: a short run of a 3-node cluster of this build's
//! binary, its report in a temp dir of its own.

use std::path::PathBuf;
use std::time::Duration;

use raftcast::config::{ChaosArgs, NetMode};

/// A `duration` run with `seed` drawing from `faults` every `every` (held for `hold`), four
/// clients, two users, 40 durable emits/s one per request and 10 quotes/s; fields can be
/// overridden with `..`. The report goes to `out_dir/report.json`.
pub fn args(
    out_dir: &std::path::Path,
    seed: u64,
    duration: Duration,
    faults: &str,
    (every, hold): (Duration, Duration),
    net: NetMode,
) -> ChaosArgs {
    ChaosArgs {
        seed: Some(seed),
        duration,
        nodes: 3,
        out: out_dir.join("report.json"),
        plot: None,
        binary: Some(PathBuf::from(env!("CARGO_BIN_EXE_raftcast"))),
        clients: 4,
        users: 2,
        rate: 40,
        batch: 1,
        quote_rate: 10,
        fault_every: every,
        fault_hold: hold,
        faults: faults.into(),
        settle: Duration::from_secs(30),
        keep: false,
        net,
    }
}
