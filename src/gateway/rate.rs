//! Events per minute over a sliding window of one-second buckets.

use std::sync::atomic::{AtomicU64, Ordering};

const BUCKETS: usize = 60;

/// Counts events over the last minute without locks.
pub struct MinuteRate {
    /// Each bucket packs `(second << 32) | count`.
    buckets: [AtomicU64; BUCKETS],
}

impl Default for MinuteRate {
    fn default() -> Self {
        MinuteRate {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

fn now_secs() -> u64 {
    crate::util::now_unix_ms() / 1000
}

impl MinuteRate {
    /// Adds `n` events now.
    pub fn add(&self, n: u64) {
        self.add_at(now_secs(), n)
    }

    fn add_at(&self, sec: u64, n: u64) {
        let b = &self.buckets[(sec % BUCKETS as u64) as usize];
        let tag = (sec & 0xffff_ffff) << 32;
        let _ = b.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
            Some(if v & 0xffff_ffff_0000_0000 == tag {
                v.saturating_add(n).min(tag | 0xffff_ffff)
            } else {
                tag | n.min(0xffff_ffff)
            })
        });
    }

    /// Events in the last 60 seconds.
    pub fn per_minute(&self) -> u64 {
        self.per_minute_at(now_secs())
    }

    fn per_minute_at(&self, sec: u64) -> u64 {
        self.buckets
            .iter()
            .map(|b| b.load(Ordering::Acquire))
            .filter(|v| {
                let s = v >> 32;
                let now = sec & 0xffff_ffff;
                now >= s && now - s < BUCKETS as u64
            })
            .map(|v| v & 0xffff_ffff)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_slides() {
        let r = MinuteRate::default();
        r.add_at(1000, 5);
        r.add_at(1001, 2);
        r.add_at(1001, 1);
        assert_eq!(r.per_minute_at(1001), 8);
        assert_eq!(r.per_minute_at(1059), 8);
        assert_eq!(r.per_minute_at(1060), 3);
        assert_eq!(r.per_minute_at(1061), 0);
        r.add_at(1060, 4); // reuses bucket of second 1000
        assert_eq!(r.per_minute_at(1060), 7);
    }
}
