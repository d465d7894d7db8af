//! A latency histogram of relaxed atomics, for calls that are already expensive (a
//! plugin call, a database query): recording is a clock read, a short scan of the
//! bucket bounds and three relaxed additions, with no lock. The broker reads it at
//! scrape time ([`LatencyHistogram::snapshot`]) and exports it to Prometheus.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds of the buckets, nanoseconds: from a warm plugin call (about a
/// microsecond) to a database query at its statement timeout (seconds). The last
/// bucket, past these, is `+Inf`.
const BOUNDS_NS: [u64; 14] = [
    1_000,
    5_000,
    25_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    10_000_000,
    25_000_000,
    100_000_000,
    500_000_000,
    1_000_000_000,
    5_000_000_000,
];

/// Observed durations in fixed buckets, with their count and sum.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct LatencyHistogram {
    /// Observations per bucket (not cumulative); the last one is `+Inf`.
    buckets: [AtomicU64; BOUNDS_NS.len() + 1],
    count: AtomicU64,
    sum_ns: AtomicU64,
}

/// What a histogram held when it was read.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// `(upper bound in seconds, observations in that bucket alone)`, in order; the
    /// last bound is `f64::INFINITY` (`+Inf`).
    pub buckets: Vec<(f64, u64)>,
    /// Observations.
    pub count: u64,
    /// Sum of the observed durations, seconds.
    pub sum_secs: f64,
}

impl LatencyHistogram {
    /// Records one duration.
    pub fn observe(&self, elapsed: Duration) {
        let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let bucket = BOUNDS_NS
            .iter()
            .position(|&bound| ns <= bound)
            .unwrap_or(BOUNDS_NS.len());
        self.buckets[bucket].fetch_add(1, Relaxed);
        self.count.fetch_add(1, Relaxed);
        self.sum_ns.fetch_add(ns, Relaxed);
    }

    /// The current counts. Read without a lock, so a call recorded meanwhile may be in
    /// the count and not yet in its bucket: each value is exact, not their sum.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let buckets = self
            .buckets
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let bound = BOUNDS_NS
                    .get(i)
                    .map_or(f64::INFINITY, |&ns| ns as f64 / 1e9);
                (bound, n.load(Relaxed))
            })
            .collect();
        HistogramSnapshot {
            buckets,
            count: self.count.load(Relaxed),
            sum_secs: self.sum_ns.load(Relaxed) as f64 / 1e9,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_land_in_their_bucket() {
        let h = LatencyHistogram::default();
        h.observe(Duration::from_nanos(300));
        h.observe(Duration::from_micros(1));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(60));
        let s = h.snapshot();
        assert_eq!(s.count, 4);
        assert_eq!(s.buckets.len(), BOUNDS_NS.len() + 1);
        assert_eq!(s.buckets[0], (1e-6, 2), "<= 1 us, bound included");
        let at = |secs: f64| s.buckets.iter().find(|(b, _)| *b == secs).unwrap().1;
        assert_eq!(at(0.01), 1, "3 ms is in the 10 ms bucket");
        assert_eq!(s.buckets.last().unwrap(), &(f64::INFINITY, 1));
        assert!((s.sum_secs - 60.003_001_3).abs() < 1e-9, "{}", s.sum_secs);
    }
}
