//! Summaries of timing samples, for `bare-bench`: the median and the
//! minimum of many round trips, each timed on its own with the TSC.
//!
//! The median is the figure (robust against the odd round trip that an
//! interrupt or a host preemption stretched); the minimum shows the best
//! case. Pure arithmetic, tested on the host.

use core::fmt;

/// The median and minimum of `n` samples (cycles).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub median: u64,
    pub min: u64,
    pub n: usize,
}

/// Sorts `samples` in place and summarises them; `None` if there are none.
/// With an even count the median is the mean of the two middle samples
/// (rounded down).
pub fn summarize(samples: &mut [u64]) -> Option<Summary> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_unstable();
    let n = samples.len();
    let median = if n % 2 == 1 {
        samples[n / 2]
    } else {
        let (a, b) = (samples[n / 2 - 1], samples[n / 2]);
        a / 2 + b / 2 + (a % 2 + b % 2) / 2
    };
    Some(Summary {
        median,
        min: samples[0],
        n,
    })
}

/// The sample at percentile `p` (0..=100, nearest rank) of `sorted`
/// (ascending, as [`summarize`] leaves them); `None` if there are none.
pub fn percentile(sorted: &[u64], p: u32) -> Option<u64> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    // Nearest rank: the smallest sample with at least p% at or below it.
    let rank = (u64::from(p.min(100)) * n as u64).div_ceil(100).max(1);
    Some(sorted[rank as usize - 1])
}

/// The line `bare-bench` prints for one figure:
/// `BENCH <name> <median> min=<min> n=<n>` (what `tests/src/bench.rs`
/// parses).
pub struct BenchLine<'a> {
    pub name: &'a str,
    pub summary: Summary,
}

impl fmt::Display for BenchLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.summary;
        write!(
            f,
            "BENCH {} {} min={} n={}",
            self.name, s.median, s.min, s.n
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_and_even_counts() {
        assert_eq!(summarize(&mut []), None);
        assert_eq!(
            summarize(&mut [7]),
            Some(Summary {
                median: 7,
                min: 7,
                n: 1
            })
        );
        assert_eq!(
            summarize(&mut [9, 1, 5]),
            Some(Summary {
                median: 5,
                min: 1,
                n: 3
            })
        );
        assert_eq!(summarize(&mut [4, 1, 3, 10]).map(|s| s.median), Some(3));
        assert_eq!(summarize(&mut [5, 2, 4, 9]).map(|s| s.median), Some(4));
    }

    #[test]
    fn no_overflow_near_the_top() {
        let mut v = [u64::MAX, u64::MAX - 1];
        assert_eq!(summarize(&mut v).map(|s| s.median), Some(u64::MAX - 1));
        let mut v = [u64::MAX, u64::MAX];
        assert_eq!(summarize(&mut v).map(|s| s.median), Some(u64::MAX));
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        assert_eq!(percentile(&[], 50), None);
        let v: std::vec::Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 0), Some(1));
        assert_eq!(percentile(&v, 10), Some(10));
        assert_eq!(percentile(&v, 90), Some(90));
        assert_eq!(percentile(&v, 100), Some(100));
        assert_eq!(percentile(&v, 250), Some(100));
        assert_eq!(percentile(&[5, 7, 9], 50), Some(7));
        assert_eq!(percentile(&[5, 7, 9], 99), Some(9));
    }

    #[test]
    fn formats_the_bench_line() {
        let summary = summarize(&mut [300, 100, 200]).unwrap();
        let line = BenchLine {
            name: "hvm_cpuid_cycles",
            summary,
        };
        assert_eq!(
            std::format!("{line}"),
            "BENCH hvm_cpuid_cycles 200 min=100 n=3"
        );
    }
}
