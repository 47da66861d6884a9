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
//! Figures also timed with the guest's clock (the toolstack's, in
//! `xl-bench`) add its median and minimum in nanoseconds:
//!
//! ```text
//! BENCH name=xl_create_first_line cycles=90000000 min=80000000 iters=20 ns=30000000 ns_min=27000000
//! ```
//!
//! [`Relay`] cuts a guest's console output (as the console back-end's
//! backlog grows) into lines, for the Dom0 that prints them on its own
//! console.

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
    /// `BENCH name=<name> cycles=<median> min=<min> iters=<n> ns=<median> ns_min=<min>`:
    /// a figure timed with the TSC and with the clock (nanoseconds).
    Timed {
        /// The figure's id.
        name: &'a str,
        /// In TSC cycles.
        cycles: Stats,
        /// In nanoseconds (the same iterations).
        ns: Stats,
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
            Line::Timed { name, cycles, ns } => write!(
                f,
                "{PREFIX}{name} cycles={} min={} iters={} ns={} ns_min={}",
                cycles.median, cycles.min, cycles.n, ns.median, ns.min
            ),
            Line::NotAvailable { name, why } => write!(f, "{PREFIX}{name} n/a ({why})"),
        }
    }
}

/// The last `n` bytes of a ring-buffer view `(older, newer)` (all of it if
/// shorter), as two slices in order.
pub fn tail<'a>(slices: (&'a [u8], &'a [u8]), n: usize) -> (&'a [u8], &'a [u8]) {
    let (a, b) = slices;
    let skip = (a.len() + b.len()).saturating_sub(n);
    if skip >= a.len() {
        (&[], &b[skip - a.len()..])
    } else {
        (&a[skip..], b)
    }
}

/// Whether a console's output so far holds a whole line (a `\n`).
pub fn has_line(slices: (&[u8], &[u8])) -> bool {
    slices.0.contains(&b'\n') || slices.1.contains(&b'\n')
}

/// `v` in decimal ASCII, written into `buf`.
pub fn decimal(v: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    let mut v = v;
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            return &buf[i..];
        }
    }
}

/// Longest line [`Relay`] holds back waiting for its end.
pub const RELAY_LINE_MAX: usize = 256;

/// Cuts a console's output into lines as it grows: give it the backlog's
/// total byte count and slices each time ([`Relay::take`]); it hands over
/// each line completed since (without `\r`/`\n`; a line longer than
/// [`RELAY_LINE_MAX`] is cut there).
pub struct Relay {
    /// Bytes of the output already taken in.
    seen: u64,
    line: [u8; RELAY_LINE_MAX],
    len: usize,
}

impl Default for Relay {
    fn default() -> Self {
        Self::new()
    }
}

impl Relay {
    /// Nothing seen yet.
    pub const fn new() -> Relay {
        Relay {
            seen: 0,
            line: [0; RELAY_LINE_MAX],
            len: 0,
        }
    }

    /// Takes what was added since the last call (`total`: bytes ever
    /// written; `slices`: what the backlog still holds, oldest first) and
    /// calls `on_line` for each completed line. Bytes that fell out of the
    /// backlog unseen are skipped. Returns the number of lines.
    pub fn take(
        &mut self,
        total: u64,
        slices: (&[u8], &[u8]),
        mut on_line: impl FnMut(&[u8]),
    ) -> usize {
        let new = total.saturating_sub(self.seen) as usize;
        self.seen = self.seen.max(total);
        let (a, b) = tail(slices, new);
        let mut lines = 0;
        for &c in a.iter().chain(b) {
            match c {
                b'\n' => {
                    on_line(&self.line[..self.len]);
                    self.len = 0;
                    lines += 1;
                }
                b'\r' => {}
                _ => {
                    if self.len == RELAY_LINE_MAX {
                        on_line(&self.line[..self.len]);
                        self.len = 0;
                        lines += 1;
                    }
                    self.line[self.len] = c;
                    self.len += 1;
                }
            }
        }
        lines
    }

    /// The unfinished line, if any.
    pub fn pending(&self) -> &[u8] {
        &self.line[..self.len]
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
        let l = Line::Timed {
            name: "xl_create_first_line",
            cycles: stats,
            ns: Stats {
                median: 30,
                min: 20,
                n: 65,
            },
        };
        assert_eq!(
            format!("{l}"),
            "BENCH name=xl_create_first_line cycles=1024 min=1000 iters=65 ns=30 ns_min=20"
        );
    }

    #[test]
    fn decimals() {
        let mut b = [0u8; 20];
        assert_eq!(decimal(0, &mut b), b"0");
        assert_eq!(decimal(1207, &mut b), b"1207");
        assert_eq!(decimal(u64::MAX, &mut b), b"18446744073709551615");
    }

    #[test]
    fn tails_of_a_ring_view() {
        let v: (&[u8], &[u8]) = (b"abc", b"de");
        assert_eq!(tail(v, 0), (&b""[..], &b""[..]));
        assert_eq!(tail(v, 1), (&b""[..], &b"e"[..]));
        assert_eq!(tail(v, 2), (&b""[..], &b"de"[..]));
        assert_eq!(tail(v, 4), (&b"bc"[..], &b"de"[..]));
        assert_eq!(tail(v, 99), (&b"abc"[..], &b"de"[..]));
        assert!(!has_line((b"abc", b"")));
        assert!(has_line((b"a", b"b\n")));
        assert!(has_line((b"a\n", b"")));
    }

    #[test]
    fn relays_whole_lines_once() {
        let mut r = Relay::new();
        let mut got = std::vec::Vec::new();
        let mut push = |r: &mut Relay, total: u64, s: (&[u8], &[u8])| {
            r.take(total, s, |l| {
                got.push(std::string::String::from_utf8_lossy(l).into_owned())
            })
        };
        assert_eq!(push(&mut r, 5, (b"hel", b"lo")), 0);
        assert_eq!(r.pending(), b"hello");
        assert_eq!(push(&mut r, 13, (b"hello w", b"orld\r\n")), 1);
        assert_eq!(push(&mut r, 13, (b"hello w", b"orld\r\n")), 0);
        // The backlog wrapped and dropped the start: only the new bytes.
        assert_eq!(push(&mut r, 18, (b"d\r\nab", b"c\nx")), 1);
        assert_eq!(got, ["hello world", "abc"]);
        assert_eq!(r.pending(), b"x");
        let mut long = Relay::new();
        let big = [b'y'; RELAY_LINE_MAX + 3];
        let mut n = 0;
        long.take(big.len() as u64, (&big, b""), |l| n += l.len());
        assert_eq!(n, RELAY_LINE_MAX);
        assert_eq!(long.pending().len(), 3);
    }
}
