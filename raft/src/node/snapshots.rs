//! When a node builds its snapshot. Every node snapshots once per `snapshot_every` applied
//! entries, but not at the same index as the others: node `id` snapshots when its applied
//! index passes `k × every + phase(id)`, the phases a third of the interval apart. With
//! openraft's own `LogsSinceLast` policy all members dumped their state at the same moment
//! (within 50 ms), so for the 100–300 ms of a dump both cores of a small machine were busy
//! and every write in that window waited (docs/performance.md, session 6).
//!
//! A snapshot rewrites the whole state, a log entry only itself: with a large state (a long
//! event history) and small entries, a snapshot every `snapshot_every` entries would cost
//! many times the log's own writes (400 MB of history: a 118 MB snapshot, ~2 s of a core,
//! every 5,000 single emits). So a node skips a due index while its state is at least
//! [`MIN_STATE_TO_DEFER`] and the log written since its last snapshot is less than half the
//! state, and never skips past [`MAX_DEFERRALS`] intervals: writing snapshots then costs at
//! most about twice the log's bytes, the log kept stays about the state's size, and a skipped
//! node still snapshots on its own phase.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Core;

/// What [`Scheduler::decide`] weighs: the last snapshot's bytes, the log's byte count (since
/// the store was opened) and the configured interval.
#[derive(Clone, Copy)]
struct Sizes {
    state: u64,
    logged: u64,
    every: u64,
}

/// A state smaller than this is dumped at every due index (tens of milliseconds).
pub(crate) const MIN_STATE_TO_DEFER: u64 = 4 << 20;

/// A node snapshots at least once per this many intervals, however large its state.
pub(crate) const MAX_DEFERRALS: u64 = 16;

/// Whether a snapshot at a due index is worth its cost: the state is small, or the log
/// written since the last snapshot (`logged_since`, bytes) is at least half the state
/// (`state`, bytes: the last snapshot's size), or `entries_since` reached the bound.
pub(crate) fn worth_building(
    state: u64,
    logged_since: u64,
    entries_since: u64,
    every: u64,
) -> bool {
    state < MIN_STATE_TO_DEFER
        || logged_since.saturating_mul(2) >= state
        || entries_since >= every.max(1).saturating_mul(MAX_DEFERRALS)
}

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
    /// The last snapshot index seen, and the log's byte count when it was seen.
    seen: Option<(u64, u64)>,
    /// The last due index skipped since that snapshot (0: none).
    deferred: u64,
}

impl Scheduler {
    /// Whether to ask now: the applied index reached the next due index, and that index was
    /// not asked for already (the build takes longer than a duty tick, and a second request
    /// that arrives after the first build finished would build a second snapshot).
    fn should_ask(&self, due: u64, applied: u64, now: Instant) -> bool {
        applied >= due
            && !matches!(self.asked, Some((d, at)) if d == due && now - at < ASK_AGAIN_AFTER)
    }

    /// Whether to ask at `due` (reached), or skip it because the state is large next to
    /// the log written since the last snapshot; a skipped index moves the next one on.
    fn decide(&mut self, due: u64, applied: u64, last_snapshot: u64, sizes: Sizes) -> bool {
        let logged_since = sizes.logged.saturating_sub(self.seen.map_or(0, |s| s.1));
        let entries_since = applied.saturating_sub(last_snapshot);
        if worth_building(sizes.state, logged_since, entries_since, sizes.every) {
            return true;
        }
        if self.deferred == 0 {
            tracing::info!(
                state_bytes = sizes.state,
                logged_since,
                entries_since,
                "snapshot deferred: the log written since the last one is small next to the state"
            );
        }
        self.deferred = due;
        false
    }

    /// Whether to ask for a snapshot now, for node `id` (records the request).
    fn step(
        &mut self,
        id: u64,
        applied: u64,
        last_snapshot: u64,
        sizes: Sizes,
        now: Instant,
    ) -> bool {
        if self.seen.map(|s| s.0) != Some(last_snapshot) {
            self.seen = Some((last_snapshot, sizes.logged));
            self.deferred = 0;
        }
        let every = sizes.every;
        let due = next_due(last_snapshot.max(self.deferred), every, phase(id, every));
        if !self.should_ask(due, applied, now) || !self.decide(due, applied, last_snapshot, sizes) {
            return false;
        }
        self.asked = Some((due, now));
        true
    }

    /// One duty tick.
    pub(crate) async fn tick(&mut self, core: &Arc<Core>, applied: u64, last_snapshot: u64) {
        let sizes = Sizes {
            state: core.snapshot_bytes.load(Ordering::Relaxed),
            logged: core.logged_bytes.load(Ordering::Relaxed),
            every: core.cfg.snapshot_every,
        };
        if !self.step(core.id, applied, last_snapshot, sizes, Instant::now()) {
            return;
        }
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

    #[test]
    fn a_snapshot_is_worth_building_unless_the_state_is_large_next_to_the_log() {
        let big = 100 << 20;
        assert!(worth_building(0, 0, 5000, 5000), "no snapshot yet");
        assert!(
            worth_building(MIN_STATE_TO_DEFER - 1, 0, 5000, 5000),
            "a small state"
        );
        assert!(!worth_building(MIN_STATE_TO_DEFER, 0, 5000, 5000));
        assert!(!worth_building(big, big / 2 - 1, 5000, 5000));
        assert!(
            worth_building(big, big / 2, 5000, 5000),
            "half the state logged"
        );
        assert!(!worth_building(big, 0, 5000 * MAX_DEFERRALS - 1, 5000));
        assert!(
            worth_building(big, 0, 5000 * MAX_DEFERRALS, 5000),
            "the bound"
        );
    }

    /// Runs a scheduler over `entries` applied entries, `per_entry` log bytes each, a state
    /// of `state` bytes, every snapshot taken at once; returns the indexes snapshotted.
    fn simulate(id: u64, state: u64, per_entry: u64, entries: u64) -> Vec<u64> {
        let every = 60;
        let (mut s, mut last, mut taken) = (Scheduler::default(), 0, Vec::new());
        let t0 = Instant::now();
        for applied in 1..=entries {
            let sizes = Sizes {
                state: if last == 0 { 0 } else { state },
                logged: applied * per_entry,
                every,
            };
            if s.step(id, applied, last, sizes, t0) {
                taken.push(applied);
                last = applied;
            }
        }
        taken
    }

    #[test]
    fn a_large_state_is_snapshotted_less_often_on_each_nodes_own_phase() {
        // A small state: every interval of 60, on the node's phase (node 1: 20, 80, ...).
        assert_eq!(simulate(1, 1 << 20, 100, 300), vec![20, 80, 140, 200, 260]);
        // 8 MiB of state, 100 B entries: 4 MiB of log would take 41,944 entries, so the
        // bound decides: one snapshot per 16 intervals, still on the phase.
        let every_16 = simulate(1, 8 << 20, 100, 3000);
        assert_eq!(every_16, vec![20, 980, 1940, 2900]);
        // Node 2's phase is a third of an interval later.
        assert_eq!(simulate(2, 8 << 20, 100, 2000), vec![40, 1000, 1960]);
        // 8 MiB of state, 20 KiB entries: half the state is logged after 205 entries, so a
        // snapshot at the first due index past that.
        assert_eq!(simulate(1, 8 << 20, 20 << 10, 600), vec![20, 260, 500]);
    }
}
