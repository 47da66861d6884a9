//! What the `pv-bench` kernel reports, as pure logic: the statistics of a
//! set of TSC samples and the one machine-readable line per figure that
//! `scripts/bench` (`tests/src/bin/oxen-bench.rs`) parses:
//!
//! ```text
//! BENCH name=null_hypercall cycles=812 min=790 iters=1001
//! BENCH name=mmu_update_512 cycles=300000 min=290000 iters=65 batch=512 per_pte=585
//! BENCH name=evtchn_upcall n/a (event channels: -ENOSYS)
//! ```
//!
//! `cycles` is the median, `min` the minimum, both in TSC cycles with the
//! cost of the timing itself (an empty `rdtsc` pair) already subtracted.

#![forbid(unsafe_code)]

use core::fmt;

/// The line prefix `oxen-bench` looks for.
pub const PREFIX: &str = "BENCH name=";

/// Median and minimum of a set of samples.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stats {
    /// The median (the upper one for an even count).
    pub median: u64,
    /// The smallest sample.
    pub min: u64,
    /// How many samples.
    pub n: usize,
}

impl Stats {
    /// Sorts `samples` in place and summarises them; None if empty.
    pub fn of(samples: &mut [u64]) -> Option<Stats> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        Some(Stats {
            median: samples[samples.len() / 2],
            min: samples[0],
            n: samples.len(),
        })
    }

    /// Both figures less `overhead` (the timing's own cost), at least 0.
    pub fn minus(self, overhead: u64) -> Stats {
        Stats {
            median: self.median.saturating_sub(overhead),
            min: self.min.saturating_sub(overhead),
            n: self.n,
        }
    }
}

/// One `BENCH` line: a figure, or why there is none.
pub enum Line<'a> {
    /// `BENCH name=<name> cycles=<median> min=<min> iters=<n>[ batch=<div> per_<unit>=<median/div>]`.
    Figure {
        /// The figure's id.
        name: &'a str,
        /// Its statistics.
        stats: Stats,
        /// For a batch: (`unit`, items per batch).
        per: Option<(&'a str, u64)>,
    },
    /// `BENCH name=<name> n/a (<why>)`.
    NotAvailable {
        /// The figure's id.
        name: &'a str,
        /// Why.
        why: fmt::Arguments<'a>,
    },
}

impl fmt::Display for Line<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Line::Figure { name, stats, per } => {
                write!(
                    f,
                    "{PREFIX}{name} cycles={} min={} iters={}",
                    stats.median, stats.min, stats.n
                )?;
                if let Some((unit, div)) = per {
                    write!(
                        f,
                        " batch={div} per_{unit}={}",
                        stats.median / (*div).max(1)
                    )?;
                }
                Ok(())
            }
            Line::NotAvailable { name, why } => write!(f, "{PREFIX}{name} n/a ({why})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::format;

    #[test]
    fn stats() {
        assert_eq!(Stats::of(&mut []), None);
        let s = Stats::of(&mut [5, 1, 9, 3, 7]).unwrap();
        assert_eq!((s.median, s.min, s.n), (5, 1, 5));
        let s = Stats::of(&mut [4, 2]).unwrap();
        assert_eq!((s.median, s.min), (4, 2));
        let s = s.minus(3);
        assert_eq!((s.median, s.min), (1, 0));
    }

    #[test]
    fn lines() {
        let stats = Stats {
            median: 1024,
            min: 1000,
            n: 65,
        };
        let l = Line::Figure {
            name: "mmu_update_512",
            stats,
            per: Some(("pte", 512)),
        };
        assert_eq!(
            format!("{l}"),
            "BENCH name=mmu_update_512 cycles=1024 min=1000 iters=65 batch=512 per_pte=2"
        );
        let l = Line::Figure {
            name: "null_hypercall",
            stats,
            per: None,
        };
        assert_eq!(
            format!("{l}"),
            "BENCH name=null_hypercall cycles=1024 min=1000 iters=65"
        );
        let l = Line::NotAvailable {
            name: "evtchn_upcall",
            why: format_args!("event channels: {}", "-ENOSYS"),
        };
        assert_eq!(
            format!("{l}"),
            "BENCH name=evtchn_upcall n/a (event channels: -ENOSYS)"
        );
    }
}
