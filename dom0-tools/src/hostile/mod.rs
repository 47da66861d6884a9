//! The hostile fuzzing PV guest's logic (issue 8), plain `no_std` and
//! tested on the host: a seeded PRNG ([`Rng`]), the call generators of
//! each class ([`gen`]: pure functions from the PRNG and the guest's
//! layout facts to hypercall numbers, sub-ops and argument values), the
//! tally of how each class was answered ([`Tally`]) and its report lines.
//!
//! The report, one line each (the HVM fuzzing guest prints the same
//! format; `tests/src/robustness.rs` parses it on the host):
//!
//! ```text
//! fuzz: seed <S>
//! fuzz: class <class>: <N> calls; <answer>=<count> <answer>=<count> ...
//! fuzz: total <N> calls in <ms> ms
//! ```
//!
//! An answer is `ok` (a hypercall's non-negative return or `GNTST_okay`),
//! Xen's errno name (`-EINVAL`), a grant status name (`GNTST_bad_gntref`)
//! or `fatal-skipped` (a call the generator drew that would legitimately
//! destroy the guest itself, e.g. `SCHEDOP_shutdown`: counted, not made).

#![forbid(unsafe_code)]

pub mod gen;

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use hypercall_abi::errno::Errno;
use hypercall_abi::grant_table::GntStatus;

/// The answer name of a call the guest did not make because it would have
/// destroyed itself.
pub const FATAL_SKIPPED: &str = "fatal-skipped";

/// A seeded PRNG: SplitMix64 to spread the seed, xorshift64* to step.
#[derive(Clone, Debug)]
pub struct Rng {
    s: u64,
}

impl Rng {
    /// The generator for `seed` (any value, 0 too).
    pub fn new(seed: u64) -> Rng {
        // SplitMix64 of the seed: never 0 afterwards.
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        Rng {
            s: if z == 0 { 0x2545_f491_4f6c_dd1d } else { z },
        }
    }

    /// The next 64 random bits (xorshift64*).
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.s;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.s = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A value in `0..n` (0 if `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }

    /// True one time in `n`.
    pub fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }

    /// One of `items` (which must not be empty).
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

/// The answer name of a hypercall's return value: `ok` or `-E...`.
pub fn answer(ret: i64) -> String {
    if ret >= 0 {
        return String::from("ok");
    }
    match Errno::from_ret(ret) {
        Some(e) => format!("-{}", e.name()),
        None => format!("{ret}"),
    }
}

/// The answer name of a grant operation: the hypercall's error if it
/// failed, else the op's `GNTST_*` status (`ok` for `GNTST_okay`).
pub fn grant_answer(ret: i64, status: i16) -> String {
    if ret < 0 {
        return answer(ret);
    }
    if status == 0 {
        return String::from("ok");
    }
    match GntStatus::from_raw(i64::from(status)) {
        Some(s) => String::from(s.name()),
        None => format!("GNTST_{status}"),
    }
}

/// Class → answer → count, classes in the order first seen.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    classes: Vec<(String, BTreeMap<String, u64>)>,
}

impl Tally {
    /// Empty.
    pub fn new() -> Tally {
        Tally::default()
    }

    /// Declares `class` (so that it is reported even with no call).
    pub fn class(&mut self, class: &str) {
        if !self.classes.iter().any(|(c, _)| c == class) {
            self.classes.push((String::from(class), BTreeMap::new()));
        }
    }

    /// Counts one call of `class` answered `answer`.
    pub fn add(&mut self, class: &str, answer: &str) {
        self.class(class);
        if let Some((_, m)) = self.classes.iter_mut().find(|(c, _)| c == class) {
            *m.entry(String::from(answer)).or_insert(0) += 1;
        }
    }

    /// Calls counted for `class`.
    pub fn calls(&self, class: &str) -> u64 {
        self.classes
            .iter()
            .find(|(c, _)| c == class)
            .map_or(0, |(_, m)| m.values().sum())
    }

    /// How often `class` got `answer`.
    pub fn count(&self, class: &str, answer: &str) -> u64 {
        self.classes
            .iter()
            .find(|(c, _)| c == class)
            .and_then(|(_, m)| m.get(answer).copied())
            .unwrap_or(0)
    }

    /// Calls counted in every class.
    pub fn total(&self) -> u64 {
        self.classes.iter().map(|(c, _)| self.calls(c)).sum()
    }

    /// The class names, in order.
    pub fn class_names(&self) -> impl Iterator<Item = &str> {
        self.classes.iter().map(|(c, _)| c.as_str())
    }

    /// The report lines (without newlines): seed, one per class, total.
    pub fn report(&self, seed: u64, ms: u64) -> Vec<String> {
        let mut v = Vec::new();
        v.push(format!("fuzz: seed {seed}"));
        for (c, m) in &self.classes {
            let mut line = format!("fuzz: class {c}: {} calls;", self.calls(c));
            for (a, n) in m {
                line.push_str(&format!(" {a}={n}"));
            }
            v.push(line);
        }
        v.push(format!("fuzz: total {} calls in {ms} ms", self.total()));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_is_deterministic_and_spread() {
        let mut a = Rng::new(1);
        let mut b = Rng::new(1);
        let mut c = Rng::new(2);
        let xa: Vec<u64> = (0..100).map(|_| a.next_u64()).collect();
        let xb: Vec<u64> = (0..100).map(|_| b.next_u64()).collect();
        let xc: Vec<u64> = (0..100).map(|_| c.next_u64()).collect();
        assert_eq!(xa, xb);
        assert_ne!(xa, xc);
        // Seed 0 works too, and `below` stays in range and hits all values.
        let mut z = Rng::new(0);
        let mut seen = [false; 7];
        for _ in 0..1000 {
            let v = z.below(7);
            assert!(v < 7);
            seen[v as usize] = true;
        }
        assert!(seen.iter().all(|&s| s));
        assert_eq!(z.below(0), 0);
    }

    #[test]
    fn answers_are_xen_names() {
        assert_eq!(answer(0), "ok");
        assert_eq!(answer(5), "ok");
        assert_eq!(answer(-22), "-EINVAL");
        assert_eq!(answer(-38), "-ENOSYS");
        assert_eq!(answer(-1000), "-1000");
        assert_eq!(grant_answer(0, 0), "ok");
        assert_eq!(grant_answer(0, -3), "GNTST_bad_gntref");
        assert_eq!(grant_answer(-14, -3), "-EFAULT");
        assert_eq!(grant_answer(0, -99), "GNTST_-99");
    }

    #[test]
    fn tally_and_report_format() {
        let mut t = Tally::new();
        t.class("random");
        t.add("mmu", "-EINVAL");
        t.add("mmu", "ok");
        t.add("mmu", "-EINVAL");
        t.add("random", FATAL_SKIPPED);
        t.class("grant");
        assert_eq!(t.calls("mmu"), 3);
        assert_eq!(t.count("mmu", "-EINVAL"), 2);
        assert_eq!(t.total(), 4);
        assert_eq!(
            t.report(7, 12),
            [
                "fuzz: seed 7",
                "fuzz: class random: 1 calls; fatal-skipped=1",
                "fuzz: class mmu: 3 calls; -EINVAL=2 ok=1",
                "fuzz: class grant: 0 calls;",
                "fuzz: total 4 calls in 12 ms",
            ]
        );
    }
}
