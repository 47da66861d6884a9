//! The 8254 PIT's arithmetic: channel 0 as a free-running clock.
//!
//! The kernels program channel 0 in mode 2 with a count of 65536 (its IRQ
//! stays masked) and poll its latched count: it counts down at
//! [`PIT_HZ`] and wraps every 55 ms, so summing the decrements between two
//! polls less than 55 ms apart gives elapsed time. That is the kernels'
//! only clock (for timeouts and the INIT/SIPI delays); it trusts nothing
//! but the PIT's input frequency.

/// The PIT's input clock (Hz).
pub const PIT_HZ: u64 = 1_193_182;

/// Counts elapsed PIT ticks from successive readings of a mode-2 counter
/// reloaded with 0 (65536).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopwatch {
    last: u16,
    elapsed: u64,
}

impl Stopwatch {
    /// Starts from the reading `now`.
    pub const fn new(now: u16) -> Self {
        Stopwatch {
            last: now,
            elapsed: 0,
        }
    }

    /// Takes the reading `now` and returns the ticks elapsed since `new`.
    /// The counter counts down and wraps, so the ticks since the previous
    /// reading are `last - now` modulo 2^16.
    pub fn advance(&mut self, now: u16) -> u64 {
        self.elapsed += u64::from(self.last.wrapping_sub(now));
        self.last = now;
        self.elapsed
    }

    /// Ticks elapsed up to the last reading.
    pub fn elapsed(&self) -> u64 {
        self.elapsed
    }
}

/// PIT ticks in `us` microseconds (rounded up, so a delay is never short).
pub const fn us_to_ticks(us: u64) -> u64 {
    (us * PIT_HZ).div_ceil(1_000_000)
}

/// Microseconds in `ticks` PIT ticks (rounded down).
pub const fn ticks_to_us(ticks: u64) -> u64 {
    ticks * 1_000_000 / PIT_HZ
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stopwatch_sums_decrements_across_wraps() {
        let mut s = Stopwatch::new(100);
        assert_eq!(s.advance(40), 60);
        // Wrapped: 40 → 0 → 65535 … → 65000.
        assert_eq!(s.advance(65000), 60 + 40 + 536);
        assert_eq!(s.advance(65000), 636);
        assert_eq!(s.elapsed(), 636);
    }

    #[test]
    fn conversions() {
        assert_eq!(us_to_ticks(1_000_000), PIT_HZ);
        assert_eq!(us_to_ticks(1), 2);
        assert_eq!(us_to_ticks(10_000), 11932);
        assert_eq!(ticks_to_us(PIT_HZ), 1_000_000);
    }
}
