//! The settings the chaos tests share: a short run of a 3-node cluster of this build's
//! binary, its report in a temp dir of its own.

use std::path::PathBuf;
use std::time::Duration;

use raftcast::chaos::{execute, Outcome};
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

/// Runs `args` and checks what every chaos test wants: the report printed, three faults
/// injected, more than `min_ok` emits committed, and the verdict PASS (`what` names the run).
#[allow(dead_code)] // not every test binary that includes this module calls it
pub async fn run_to_pass(args: ChaosArgs, min_ok: u64, what: &str) -> Outcome {
    let outcome = execute(args, false)
        .await
        .expect("the chaos run could not be carried out");
    let r = &outcome.report;
    println!("{}", r.table());
    assert_eq!(r.faults.len(), 3, "three faults injected");
    assert!(
        r.findings.emits.ok > min_ok,
        "the publisher got emits through: {} committed",
        r.findings.emits.ok
    );
    assert!(r.verdict.passed, "{what} failed: {:?}", r.verdict.failures);
    outcome
}
