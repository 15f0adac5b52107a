//! A fixed-bucket latency histogram in microseconds (HDR-like: 32 linear sub-buckets per
//! power of two, about 3% resolution), so recording a sample never allocates and
//! per-viewer histograms merge by adding counts.

/// Values below this are counted exactly, one bucket each.
const LINEAR: u64 = 64;
/// Sub-buckets per power of two above `LINEAR`.
const SUB_BITS: u32 = 5;
const SUB: u64 = 1 << SUB_BITS;
/// Highest power of two kept; larger values land in the last bucket (2^38 µs ≈ 76 hours).
const MAX_EXP: u32 = 38;
const BUCKETS: usize = LINEAR as usize + ((MAX_EXP - 6 + 1) as usize) * SUB as usize;

/// Counts of latencies in microseconds.
#[derive(Debug, Clone)]
pub struct Histogram {
    counts: Box<[u32]>,
    total: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS].into_boxed_slice(),
            total: 0,
            max: 0,
        }
    }
}

fn bucket(v: u64) -> usize {
    if v < LINEAR {
        return v as usize;
    }
    let exp = (63 - v.leading_zeros()).min(MAX_EXP);
    if exp == MAX_EXP && v >> MAX_EXP > 1 {
        return BUCKETS - 1;
    }
    let sub = (v >> (exp - SUB_BITS)) - SUB;
    LINEAR as usize + (exp - 6) as usize * SUB as usize + sub as usize
}

/// The largest value that falls in bucket `i`.
fn upper(i: usize) -> u64 {
    if i < LINEAR as usize {
        return i as u64;
    }
    let j = i - LINEAR as usize;
    let exp = 6 + (j / SUB as usize) as u32;
    let sub = (j % SUB as usize) as u64 + SUB;
    ((sub + 1) << (exp - SUB_BITS)) - 1
}

impl Histogram {
    /// Counts one sample.
    pub fn record(&mut self, us: u64) {
        let b = &mut self.counts[bucket(us)];
        *b = b.saturating_add(1);
        self.total += 1;
        self.max = self.max.max(us);
    }

    /// Adds another histogram's counts to this one.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a = a.saturating_add(*b);
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    /// Samples recorded.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// The largest sample.
    pub fn max(&self) -> u64 {
        self.max
    }

    /// The value at quantile `q` (0..=1): the upper edge of its bucket, never above the
    /// largest sample. 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (i, c) in self.counts.iter().enumerate() {
            seen += u64::from(*c);
            if seen >= rank {
                return upper(i).min(self.max);
            }
        }
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_tight() {
        let mut last = 0;
        for v in [
            0u64, 1, 63, 64, 65, 100, 1_000, 33_333, 1_000_000, 60_000_000,
        ] {
            let b = bucket(v);
            assert!(b >= last, "bucket of {v}");
            last = b;
            let up = upper(b);
            assert!(up >= v, "{v} above its bucket's edge {up}");
            assert!(up - v <= v / 16 + 1, "bucket of {v} too wide ({up})");
        }
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn quantiles_and_merge() {
        let mut a = Histogram::default();
        let mut b = Histogram::default();
        for v in 1..=90u64 {
            a.record(v * 1000);
        }
        for v in 91..=100u64 {
            b.record(v * 1000);
        }
        a.merge(&b);
        assert_eq!(a.count(), 100);
        assert_eq!(a.max(), 100_000);
        let p50 = a.quantile(0.5);
        assert!((50_000..=52_000).contains(&p50), "p50 {p50}");
        let p99 = a.quantile(0.99);
        assert!((99_000..=100_000).contains(&p99), "p99 {p99}");
        assert_eq!(a.quantile(1.0), 100_000);
        assert_eq!(Histogram::default().quantile(0.5), 0);
    }
}
