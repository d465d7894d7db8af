//! What a run measures: per-publisher sequence tracking (loss, duplicates, reordering),
//! the latency histogram, CPU time read from `/proc`, and the result record.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Bytes at the front of every payload: send time (ns since the run's epoch, u64 LE),
/// publisher id (u32 LE), sequence number (u32 LE). Payloads are never smaller.
pub const HEADER_LEN: usize = 16;

/// Writes the header into the first [`HEADER_LEN`] bytes of `payload`.
pub fn write_header(payload: &mut [u8], sent_ns: u64, publisher: u32, seq: u32) {
    payload[0..8].copy_from_slice(&sent_ns.to_le_bytes());
    payload[8..12].copy_from_slice(&publisher.to_le_bytes());
    payload[12..16].copy_from_slice(&seq.to_le_bytes());
}

/// Reads a header back; `None` for a payload that is not ours.
pub fn read_header(payload: &[u8]) -> Option<(u64, u32, u32)> {
    let header = payload.get(..HEADER_LEN)?;
    let sent_ns = u64::from_le_bytes(header[0..8].try_into().ok()?);
    let publisher = u32::from_le_bytes(header[8..12].try_into().ok()?);
    let seq = u32::from_le_bytes(header[12..16].try_into().ok()?);
    Some((sent_ns, publisher, seq))
}

/// A latency histogram in nanoseconds, 3 significant digits, up to 100 s.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("valid histogram bounds")
}

/// What one receiver saw of one publisher's sequence.
#[derive(Default, Clone)]
pub struct SeqTrack {
    /// One bit per sequence number seen.
    seen: Vec<u64>,
    /// Highest sequence number seen so far.
    max_seq: Option<u32>,
    /// Distinct sequence numbers seen.
    pub unique: u64,
    /// Sequence numbers seen again.
    pub duplicates: u64,
    /// Messages that arrived after a higher sequence number of the same publisher.
    pub reordered: u64,
}

impl SeqTrack {
    /// Records one arrival.
    pub fn record(&mut self, seq: u32) {
        let (word, bit) = ((seq / 64) as usize, seq % 64);
        if self.seen.len() <= word {
            self.seen.resize(word + 1, 0);
        }
        if self.seen[word] & (1 << bit) != 0 {
            self.duplicates += 1;
            return;
        }
        self.seen[word] |= 1 << bit;
        self.unique += 1;
        match self.max_seq {
            Some(max) if seq < max => self.reordered += 1,
            _ => self.max_seq = Some(seq),
        }
    }

    /// Folds another receiver's view of the same publisher into this one (a share group
    /// is one receiver): sequence numbers both saw count as duplicates.
    pub fn merge(&mut self, other: &SeqTrack) {
        if self.seen.len() < other.seen.len() {
            self.seen.resize(other.seen.len(), 0);
        }
        for (mine, theirs) in self.seen.iter_mut().zip(&other.seen) {
            self.duplicates += u64::from((*mine & theirs).count_ones());
            *mine |= theirs;
        }
        self.unique = self.seen.iter().map(|w| u64::from(w.count_ones())).sum();
        self.duplicates += other.duplicates;
        self.reordered += other.reordered;
    }

    /// Sequence numbers this track saw that `other` did not (acknowledged but never
    /// delivered, when this is what a publisher had acknowledged).
    pub fn missing_in(&self, other: &SeqTrack) -> u64 {
        self.seen
            .iter()
            .enumerate()
            .map(|(i, w)| u64::from((w & !other.seen.get(i).copied().unwrap_or(0)).count_ones()))
            .sum()
    }
}

/// Percentiles of a latency histogram, in microseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Latency {
    pub samples: u64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    pub mean_us: f64,
}

impl Latency {
    /// Summarises a histogram recorded in nanoseconds.
    pub fn of(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        let us = |ns: u64| ns as f64 / 1000.0;
        Latency {
            samples: h.len(),
            p50_us: us(h.value_at_quantile(0.50)),
            p90_us: us(h.value_at_quantile(0.90)),
            p99_us: us(h.value_at_quantile(0.99)),
            p999_us: us(h.value_at_quantile(0.999)),
            max_us: us(h.max()),
            mean_us: h.mean() / 1000.0,
        }
    }
}

/// The outcome of one scenario against one broker.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunResult {
    pub scenario: String,
    pub broker: String,
    /// Messages published (PUBLISH packets written by publishers).
    pub sent: u64,
    /// Deliveries expected: `sent` times the receivers of each message.
    pub expected: u64,
    /// Distinct deliveries received.
    pub received: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub reordered: u64,
    /// Seconds from the first PUBLISH to the last delivery (or the scenario's own span).
    pub elapsed_s: f64,
    /// Distinct deliveries per second (connections per second for the storm).
    pub throughput: f64,
    /// Payload megabytes (10^6) delivered per second.
    pub throughput_mb_s: f64,
    pub latency: Latency,
    /// CPU seconds the load generator used (user + system) during the run.
    pub generator_cpu_s: f64,
    /// `generator_cpu_s` over wall time: 1.0 is one core fully busy.
    pub generator_cores: f64,
    /// User-mode share of that (the generator's own code; kernel time on loopback also
    /// includes TCP work done on the broker's behalf).
    pub generator_user_cores: f64,
    /// CPU seconds the broker used during the run, when its pid is known.
    pub broker_cpu_s: Option<f64>,
    /// Broker resident memory added per connection (idle scenario) or per retained
    /// message (retained scenario), bytes.
    pub bytes_per_item: Option<f64>,
    /// Connections established (storm and idle scenarios).
    pub connections: Option<u64>,
    /// Connection attempts that failed.
    pub errors: u64,
}

/// CPU seconds (user + system) used so far by process `pid` ("self" for this one).
pub fn cpu_seconds(pid: &str) -> Option<f64> {
    cpu_times(pid).map(|(user, system)| user + system)
}

/// User and system CPU seconds used so far by process `pid`.
pub fn cpu_times(pid: &str) -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 11 and 12 here (0-based).
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // USER_HZ is 100 on every Linux this runs on.
    Some((utime / 100.0, stime / 100.0))
}

/// Resident memory of process `pid` in bytes (VmRSS of /proc/PID/status).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    status_bytes(pid, "VmRSS:")
}

/// Peak resident memory of process `pid` in bytes (VmHWM of /proc/PID/status).
pub fn hwm_bytes(pid: u32) -> Option<u64> {
    status_bytes(pid, "VmHWM:")
}

fn status_bytes(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips() {
        let mut payload = [0u8; 20];
        write_header(&mut payload, 123_456_789, 7, 42);
        assert_eq!(read_header(&payload), Some((123_456_789, 7, 42)));
        assert_eq!(read_header(&payload[..15]), None);
    }

    #[test]
    fn tracking_counts_duplicates_and_reordering() {
        let mut t = SeqTrack::default();
        for seq in [0, 1, 3, 2, 3, 4] {
            t.record(seq);
        }
        assert_eq!((t.unique, t.duplicates, t.reordered), (5, 1, 1));
        let mut other = SeqTrack::default();
        other.record(4);
        other.record(5);
        t.merge(&other);
        assert_eq!((t.unique, t.duplicates), (6, 2));
    }

    #[test]
    fn missing_counts_what_the_other_track_never_saw() {
        let (mut acked, mut received) = (SeqTrack::default(), SeqTrack::default());
        for seq in [0, 1, 2, 64, 200] {
            acked.record(seq);
        }
        for seq in [1, 64, 65] {
            received.record(seq);
        }
        assert_eq!(acked.missing_in(&received), 3);
        assert_eq!(received.missing_in(&acked), 1);
    }
}
