//! A lock-free log-linear latency histogram in microseconds (about 3 % relative error),
//! shared by thousands of client tasks without a lock.

use std::sync::atomic::{AtomicU64, Ordering};

const LINEAR: usize = 64;
const SUB_BITS: u32 = 5;
const SUB: usize = 1 << SUB_BITS;
const MAX_EXP: usize = 44;
const BUCKETS: usize = LINEAR + (MAX_EXP - 6 + 1) * SUB;

pub struct Histogram {
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    max: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

fn index(v: u64) -> usize {
    if v < LINEAR as u64 {
        return v as usize;
    }
    let e = 63 - v.leading_zeros() as usize;
    let e = e.min(MAX_EXP);
    let sub = ((v >> (e as u32 - SUB_BITS)) as usize)
        .saturating_sub(SUB)
        .min(SUB - 1);
    LINEAR + (e - 6) * SUB + sub
}

/// Lower bound and width of bucket `i`.
fn bounds(i: usize) -> (u64, u64) {
    if i < LINEAR {
        return (i as u64, 1);
    }
    let e = (i - LINEAR) / SUB + 6;
    let sub = ((i - LINEAR) % SUB) as u64;
    let width = 1u64 << (e as u32 - SUB_BITS);
    ((SUB as u64 + sub) * width, width)
}

impl Histogram {
    pub fn new() -> Self {
        Histogram {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            max: AtomicU64::new(0),
        }
    }

    pub fn record(&self, micros: u64) {
        self.buckets[index(micros)].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.max.fetch_max(micros, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    pub fn max_us(&self) -> u64 {
        self.max.load(Ordering::Relaxed)
    }

    pub fn reset(&self) {
        for b in &self.buckets {
            b.store(0, Ordering::Relaxed);
        }
        self.count.store(0, Ordering::Relaxed);
        self.max.store(0, Ordering::Relaxed);
    }

    /// The value (µs, bucket midpoint) at quantile `q` in [0, 1]; 0 when empty.
    pub fn quantile_us(&self, q: f64) -> f64 {
        let total = self.count();
        if total == 0 {
            return 0.0;
        }
        let target = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            seen += b.load(Ordering::Relaxed);
            if seen >= target {
                let (lo, w) = bounds(i);
                return (lo as f64 + w as f64 / 2.0).min(self.max_us() as f64);
            }
        }
        self.max_us() as f64
    }

    pub fn quantile_ms(&self, q: f64) -> f64 {
        self.quantile_us(q) / 1000.0
    }

    /// The CDF as (milliseconds, cumulative fraction) points at non-empty buckets.
    pub fn cdf_ms(&self) -> Vec<(f64, f64)> {
        let total = self.count();
        let mut out = Vec::new();
        if total == 0 {
            return out;
        }
        let mut seen = 0u64;
        for (i, b) in self.buckets.iter().enumerate() {
            let n = b.load(Ordering::Relaxed);
            if n == 0 {
                continue;
            }
            seen += n;
            let (lo, w) = bounds(i);
            out.push(((lo + w) as f64 / 1000.0, seen as f64 / total as f64));
        }
        out
    }
}

impl Histogram {
    /// A new histogram holding the samples of every histogram in `parts`.
    pub fn merged(parts: &[&Histogram]) -> Histogram {
        let out = Histogram::new();
        for p in parts {
            for (o, b) in out.buckets.iter().zip(&p.buckets) {
                o.fetch_add(b.load(Ordering::Relaxed), Ordering::Relaxed);
            }
            out.count.fetch_add(p.count(), Ordering::Relaxed);
            out.max.fetch_max(p.max_us(), Ordering::Relaxed);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_and_bounds_agree() {
        for v in [
            0u64,
            1,
            63,
            64,
            65,
            100,
            1000,
            12_345,
            1_000_000,
            123_456_789,
        ] {
            let (lo, w) = bounds(index(v));
            assert!(lo <= v && v < lo + w, "v={v} lo={lo} w={w}");
        }
    }

    #[test]
    fn quantiles() {
        let h = Histogram::new();
        for v in 1..=1000u64 {
            h.record(v * 1000);
        }
        let p50 = h.quantile_ms(0.5);
        let p99 = h.quantile_ms(0.99);
        assert!((p50 - 500.0).abs() / 500.0 < 0.04, "p50 {p50}");
        assert!((p99 - 990.0).abs() / 990.0 < 0.04, "p99 {p99}");
        assert_eq!(h.count(), 1000);
    }
}
