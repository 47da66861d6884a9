//! The 8254 PIT's channel 0 as the kernel's clock: mode 2, count 65536,
//! its IRQ masked; read by latching (port 0x43) and two reads of port 0x40.
//! [`Deadline`] turns it into timeouts; the arithmetic is in
//! [`crate::pit`]. A PIT that does not count must not hang the kernel, so a
//! deadline also gives up after a generous number of polls.

use super::cpu::{inb, outb, pause};
use crate::pit::{ticks_to_us, us_to_ticks, Stopwatch};

const CHANNEL0: u16 = 0x40;
const MODE_CMD: u16 = 0x43;
/// Channel 0, lobyte/hibyte access, mode 2 (rate generator), binary.
const CH0_LOHI_MODE2: u8 = 0x34;
/// Channel 0, counter latch command.
const CH0_LATCH: u8 = 0x00;

/// Starts channel 0 counting down from 65536, over and over.
pub fn init() {
    outb(MODE_CMD, CH0_LOHI_MODE2);
    outb(CHANNEL0, 0);
    outb(CHANNEL0, 0);
}

/// Channel 0's current count.
pub fn read() -> u16 {
    outb(MODE_CMD, CH0_LATCH);
    let lo = inb(CHANNEL0);
    let hi = inb(CHANNEL0);
    u16::from_le_bytes([lo, hi])
}

/// A point in time some microseconds from now.
pub struct Deadline {
    watch: Stopwatch,
    ticks: u64,
    polls: u64,
    max_polls: u64,
}

impl Deadline {
    pub fn after_us(us: u64) -> Self {
        Deadline {
            watch: Stopwatch::new(read()),
            ticks: us_to_ticks(us),
            polls: 0,
            // Far more polls than the PIT needs (each is three port
            // accesses, a microsecond or more), so only a PIT that does not
            // count ever reaches it.
            max_polls: us.saturating_mul(4).saturating_add(100_000),
        }
    }

    pub fn after_ms(ms: u64) -> Self {
        Self::after_us(ms.saturating_mul(1000))
    }

    /// Polls the PIT; true once the time has come.
    pub fn expired(&mut self) -> bool {
        self.polls += 1;
        self.watch.advance(read()) >= self.ticks || self.polls >= self.max_polls
    }

    /// Microseconds since the deadline was set, as of the last poll.
    pub fn elapsed_us(&self) -> u64 {
        ticks_to_us(self.watch.elapsed())
    }
}

/// Waits `us` microseconds.
pub fn delay_us(us: u64) {
    let mut d = Deadline::after_us(us);
    while !d.expired() {
        pause();
    }
}

/// Polls `done` until it is true or `ms` milliseconds pass; returns
/// whether it became true and the microseconds waited.
pub fn wait_until(ms: u64, mut done: impl FnMut() -> bool) -> (bool, u64) {
    let mut d = Deadline::after_ms(ms);
    loop {
        if done() {
            let _ = d.expired();
            return (true, d.elapsed_us());
        }
        if d.expired() {
            return (done(), d.elapsed_us());
        }
        pause();
    }
}
