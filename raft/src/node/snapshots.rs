//! When a node builds its snapshot. Every node snapshots once per `snapshot_every` applied
//! entries, but not at the same index as the others: node `id` snapshots when its applied
//! index passes `k × every + phase(id)`, the phases a third of the interval apart. With
//! openraft's own `LogsSinceLast` policy all members dumped their state at the same moment
//! (within 50 ms), so for the 100–300 ms of a dump both cores of a small machine were busy
//! and every write in that window waited (docs/performance.md, session 6).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Core;

/// Where in each interval node `id` snapshots: 0, 1/3 or 2/3 of it.
pub(crate) fn phase(id: u64, every: u64) -> u64 {
    (id % 3) * every / 3
}

/// The first index after `last_snapshot` at which this node's phase comes round.
pub(crate) fn next_due(last_snapshot: u64, every: u64, phase: u64) -> u64 {
    let every = every.max(1);
    let phase = phase % every;
    if last_snapshot < phase {
        phase
    } else {
        phase + ((last_snapshot - phase) / every + 1) * every
    }
}

/// How long a snapshot asked for may take to show up in the metrics before it is asked for
/// again (a request that openraft dropped, e.g. while it installed a leader's snapshot).
const ASK_AGAIN_AFTER: Duration = Duration::from_secs(10);

/// Asks openraft for this node's snapshots at their due indexes, once per due index.
#[derive(Default)]
pub(crate) struct Scheduler {
    /// The due index last asked for, and when.
    asked: Option<(u64, Instant)>,
}

impl Scheduler {
    /// Whether to ask now: the applied index reached the next due index, and that index was
    /// not asked for already (the build takes longer than a duty tick, and a second request
    /// that arrives after the first build finished would build a second snapshot).
    fn should_ask(&self, due: u64, applied: u64, now: Instant) -> bool {
        applied >= due
            && !matches!(self.asked, Some((d, at)) if d == due && now - at < ASK_AGAIN_AFTER)
    }

    /// One duty tick.
    pub(crate) async fn tick(&mut self, core: &Arc<Core>, applied: u64, last_snapshot: u64) {
        let every = core.cfg.snapshot_every;
        let due = next_due(last_snapshot, every, phase(core.id, every));
        let now = Instant::now();
        if !self.should_ask(due, applied, now) {
            return;
        }
        self.asked = Some((due, now));
        if let Err(e) = core.raft.trigger().snapshot().await {
            tracing::warn!(error = %e, "cannot trigger a snapshot");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_nodes_snapshot_a_third_of_the_interval_apart() {
        let every = 5000;
        let due: Vec<u64> = (1..=3)
            .map(|id| next_due(0, every, phase(id, every)))
            .collect();
        assert_eq!(due, vec![1666, 3333, 5000]);
        // After a snapshot the node keeps its phase, wherever exactly the snapshot landed.
        assert_eq!(next_due(1666, every, phase(1, every)), 6666);
        assert_eq!(next_due(1700, every, phase(1, every)), 6666);
        assert_eq!(next_due(5000, every, phase(3, every)), 10_000);
        assert_eq!(next_due(5012, every, phase(3, every)), 10_000);
    }

    #[test]
    fn a_due_index_is_asked_for_once() {
        let t0 = Instant::now();
        let mut s = Scheduler::default();
        assert!(!s.should_ask(1666, 1665, t0), "not due yet");
        assert!(s.should_ask(1666, 1670, t0));
        s.asked = Some((1666, t0));
        let soon = t0 + Duration::from_millis(300);
        assert!(!s.should_ask(1666, 1700, soon), "still building");
        assert!(s.should_ask(6666, 6670, soon), "the next due index");
        assert!(
            s.should_ask(1666, 1800, t0 + ASK_AGAIN_AFTER),
            "a request that never showed up is repeated"
        );
    }

    #[test]
    fn tiny_intervals_still_advance() {
        for every in [1, 2, 3] {
            for id in 1..=4 {
                let p = phase(id, every);
                assert!(next_due(0, every, p) > 0);
                assert!(next_due(7, every, p) > 7);
                assert!(next_due(7, every, p) <= 7 + every);
            }
        }
        assert_eq!(next_due(10, 0, 0), 11, "an interval of 0 counts as 1");
    }
}
