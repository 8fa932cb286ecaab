//! The log's most recent entries, kept decoded beside sled.
//!
//! Every entry is read back soon after it is appended: by the leader's replication to each
//! follower, and by the state machine on every node when it is committed. From sled, each
//! of those reads is a tree lookup and a decode of the whole entry (its events included);
//! from here it is a clone. A profile at 3,000 durable emits/s put those reads at 3–6 % of
//! each node (docs/performance.md, session 14).
//!
//! The entries held are a run of consecutive indexes, each the same as sled holds at that
//! index: every append adds to it (an append that does not follow on, after a truncation
//! or a snapshot install, starts the run afresh), a truncation or a purge cuts it. Bounded
//! by count and by encoded bytes, and entries leave after [`RECENT_FOR`] (so an idle node
//! holds none: a burst of connections leaves hundreds of entries of socket commands, which
//! would otherwise stay decoded in memory until the next burst); a read the run does not
//! cover whole goes to sled.

use std::collections::VecDeque;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::watch;

use openraft::Entry;

use crate::types::TypeConfig;

/// Most entries kept (a burst within [`RECENT_FOR`]; a reader further behind reads from
/// sled as before).
pub(crate) const RECENT_ENTRIES: usize = 256;
/// Most encoded bytes kept (large events fill this first).
pub(crate) const RECENT_BYTES: usize = 16 * 1024 * 1024;
/// How long an entry stays ([`Recent::expire`]): replication and apply read it within
/// milliseconds of the append when they keep up, and every decoded entry held is memory
/// (measured: held for 2 s through a connection storm, they left each idle connection
/// 0.5–1.1 KB larger).
pub(crate) const RECENT_FOR: Duration = Duration::from_millis(250);

#[derive(Default)]
struct Run {
    /// Entries with consecutive indexes, with their encoded sizes and when they came.
    entries: VecDeque<(Entry<TypeConfig>, usize, Instant)>,
    bytes: usize,
}

impl Run {
    fn first(&self) -> Option<u64> {
        self.entries.front().map(|(e, _, _)| e.log_id.index)
    }

    fn last(&self) -> Option<u64> {
        self.entries.back().map(|(e, _, _)| e.log_id.index)
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }

    fn pop_front(&mut self) {
        if let Some((_, n, _)) = self.entries.pop_front() {
            self.bytes -= n;
        }
    }

    /// Drops the entries that came `age` before `now` or earlier.
    fn expire(&mut self, now: Instant, age: Duration) {
        while self
            .entries
            .front()
            .is_some_and(|(_, _, at)| now.saturating_duration_since(*at) >= age)
        {
            self.pop_front();
        }
    }
}

/// The recent entries. Shared by the log store's clones.
#[derive(Default)]
pub(crate) struct Recent(Mutex<Run>);

impl Recent {
    /// After `e` (encoded in `size` bytes) was written to the log.
    pub(crate) fn appended(&self, e: Entry<TypeConfig>, size: usize) {
        let mut run = self.0.lock();
        if run.last().is_some_and(|l| l + 1 != e.log_id.index) {
            run.clear();
        }
        let now = Instant::now();
        run.expire(now, RECENT_FOR);
        run.entries.push_back((e, size, now));
        run.bytes += size;
        while run.entries.len() > RECENT_ENTRIES
            || (run.bytes > RECENT_BYTES && run.entries.len() > 1)
        {
            run.pop_front();
        }
    }

    /// After the log was truncated from `index` on.
    pub(crate) fn truncated(&self, index: u64) {
        let mut run = self.0.lock();
        while run.last().is_some_and(|l| l >= index) {
            if let Some((_, n, _)) = run.entries.pop_back() {
                run.bytes -= n;
            }
        }
    }

    /// Drops the entries that came `age` ago or earlier (called every second).
    pub(crate) fn expire(&self, age: Duration) {
        self.0.lock().expire(Instant::now(), age);
    }

    /// Expires entries every second until `stop` turns true (or its sender goes).
    pub(crate) async fn expire_loop(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = tick.tick() => self.expire(RECENT_FOR),
                r = stop.changed() => if r.is_err() || *stop.borrow() { return },
            }
        }
    }

    /// After the log was purged up to `index` (inclusive).
    pub(crate) fn purged(&self, index: u64) {
        let mut run = self.0.lock();
        while run.first().is_some_and(|f| f <= index) {
            run.pop_front();
        }
    }

    /// The entries of `range` (stopping once their encoded size reaches `max_bytes`, the
    /// first always included), if the run holds all of them; None sends the read to sled.
    /// An unbounded end is not answered here.
    pub(crate) fn get<RB: RangeBounds<u64>>(
        &self,
        range: &RB,
        max_bytes: usize,
    ) -> Option<Vec<Entry<TypeConfig>>> {
        let start = match range.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => s.checked_add(1)?,
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&e) => e.checked_add(1)?,
            Bound::Excluded(&e) => e,
            Bound::Unbounded => return None,
        };
        let run = self.0.lock();
        let (first, last) = (run.first()?, run.last()?);
        if start < first || end > last + 1 {
            return None;
        }
        let skip = usize::try_from(start - first).ok()?;
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for (e, n, _) in run.entries.iter().skip(skip) {
            if e.log_id.index >= end || bytes >= max_bytes {
                break;
            }
            bytes = bytes.saturating_add(*n);
            out.push(e.clone());
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use openraft::{CommittedLeaderId, EntryPayload, LogId};

    fn entry(i: u64) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), i),
            payload: EntryPayload::Blank,
        }
    }

    fn idx(es: Option<Vec<Entry<TypeConfig>>>) -> Option<Vec<u64>> {
        es.map(|es| es.iter().map(|e| e.log_id.index).collect())
    }

    #[test]
    fn answers_only_what_it_holds_whole() {
        let r = Recent::default();
        assert_eq!(idx(r.get(&(1..2), usize::MAX)), None);
        for i in 5..=9 {
            r.appended(entry(i), 10);
        }
        assert_eq!(idx(r.get(&(5..10), usize::MAX)), Some(vec![5, 6, 7, 8, 9]));
        assert_eq!(idx(r.get(&(6..=7), usize::MAX)), Some(vec![6, 7]));
        assert_eq!(
            idx(r.get(&(4..7), usize::MAX)),
            None,
            "starts before the run"
        );
        assert_eq!(idx(r.get(&(8..11), usize::MAX)), None, "ends after it");
        assert_eq!(idx(r.get(&(8..), usize::MAX)), None, "unbounded");
        assert_eq!(idx(r.get(&(5..10), 25)), Some(vec![5, 6, 7]), "byte limit");
        assert_eq!(idx(r.get(&(5..10), 0)), Some(vec![]));
    }

    #[test]
    fn follows_truncation_purge_and_gaps() {
        let r = Recent::default();
        for i in 1..=6 {
            r.appended(entry(i), 10);
        }
        r.truncated(5);
        assert_eq!(idx(r.get(&(1..5), usize::MAX)), Some(vec![1, 2, 3, 4]));
        assert_eq!(idx(r.get(&(1..6), usize::MAX)), None);
        r.purged(2);
        assert_eq!(idx(r.get(&(1..5), usize::MAX)), None);
        assert_eq!(idx(r.get(&(3..5), usize::MAX)), Some(vec![3, 4]));
        // A gap (a snapshot was installed): the run starts again.
        r.appended(entry(20), 10);
        assert_eq!(idx(r.get(&(3..5), usize::MAX)), None);
        assert_eq!(idx(r.get(&(20..21), usize::MAX)), Some(vec![20]));
    }

    #[test]
    fn entries_leave_with_age() {
        let r = Recent::default();
        for i in 1..=3 {
            r.appended(entry(i), 10);
        }
        r.expire(RECENT_FOR);
        assert_eq!(
            idx(r.get(&(1..4), usize::MAX)),
            Some(vec![1, 2, 3]),
            "still fresh"
        );
        r.expire(Duration::ZERO);
        assert_eq!(idx(r.get(&(3..4), usize::MAX)), None, "all gone");
        r.appended(entry(4), 10);
        assert_eq!(idx(r.get(&(4..5), usize::MAX)), Some(vec![4]), "a new run");
    }

    #[test]
    fn bounded_by_count_and_bytes() {
        let r = Recent::default();
        for i in 1..=(RECENT_ENTRIES as u64 + 10) {
            r.appended(entry(i), 1);
        }
        assert_eq!(idx(r.get(&(1..2), usize::MAX)), None);
        assert!(r.get(&(11..12), usize::MAX).is_some());
        let big = Recent::default();
        for i in 1..=3 {
            big.appended(entry(i), RECENT_BYTES / 2 + 1);
        }
        assert_eq!(idx(big.get(&(2..3), usize::MAX)), None);
        assert_eq!(idx(big.get(&(3..4), usize::MAX)), Some(vec![3]));
        let huge = Recent::default();
        huge.appended(entry(1), RECENT_BYTES * 2);
        assert_eq!(
            idx(huge.get(&(1..2), usize::MAX)),
            Some(vec![1]),
            "the last one stays"
        );
    }
}
