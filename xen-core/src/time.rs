//! Time: the TSC calibrated against the PIT, and system time in nanoseconds.
//!
//! Owns PIT channel 2 during calibration. System time counts from TSC 0, which
//! on QEMU is the moment the machine started, so boot-time figures printed in
//! the log are "since power-on".

use crate::arch::x86_64::instr::{inb, outb, rdtsc};
use core::sync::atomic::{AtomicU64, Ordering};

/// The PIT's input clock, Hz.
const PIT_HZ: u64 = 1_193_182;
/// Calibration window: 10 ms.
const CALIBRATE_MS: u64 = 10;
const PIT_CH2_DATA: u16 = 0x42;
const PIT_MODE: u16 = 0x43;
const PORT_B: u16 = 0x61;
const PORT_B_GATE2: u8 = 1 << 0;
const PORT_B_SPEAKER: u8 = 1 << 1;
const PORT_B_OUT2: u8 = 1 << 5;
/// Channel 2, lobyte/hibyte, mode 0 (interrupt on terminal count), binary.
const PIT_CH2_MODE0: u8 = 0b1011_0000;

static TSC_HZ: AtomicU64 = AtomicU64::new(0);

/// Measures the TSC frequency against PIT channel 2; returns Hz.
pub fn calibrate_tsc() -> u64 {
    let ticks = PIT_HZ * CALIBRATE_MS / 1000;
    let b = inb(PORT_B);
    outb(PORT_B, (b & !PORT_B_SPEAKER) | PORT_B_GATE2);
    outb(PIT_MODE, PIT_CH2_MODE0);
    outb(PIT_CH2_DATA, (ticks & 0xff) as u8);
    outb(PIT_CH2_DATA, (ticks >> 8) as u8);
    let start = rdtsc();
    let mut spins = 0u64;
    while inb(PORT_B) & PORT_B_OUT2 == 0 && spins < 1 << 32 {
        spins += 1;
    }
    let end = rdtsc();
    outb(PORT_B, b);
    let hz = (end - start) * 1000 / CALIBRATE_MS;
    TSC_HZ.store(hz.max(1), Ordering::Relaxed);
    hz
}

/// TSC frequency in Hz (0 before calibration).
pub fn tsc_hz() -> u64 {
    TSC_HZ.load(Ordering::Relaxed)
}

/// Converts TSC ticks to nanoseconds (0 before calibration).
pub fn tsc_to_ns(tsc: u64) -> u64 {
    let hz = tsc_hz();
    if hz == 0 {
        return 0;
    }
    ((u128::from(tsc) * 1_000_000_000) / u128::from(hz)) as u64
}

/// Nanoseconds since power-on.
pub fn now_ns() -> u64 {
    tsc_to_ns(rdtsc())
}

/// Microseconds since power-on (0 before calibration).
pub fn now_us() -> u64 {
    now_ns() / 1000
}

/// Busy-waits for `us` microseconds (after calibration).
pub fn udelay(us: u64) {
    let end = rdtsc() + tsc_hz() * us / 1_000_000;
    while rdtsc() < end {
        core::hint::spin_loop();
    }
}

/// Xen's TSC-to-nanoseconds scale: `ns = ((tsc << shift) * mul) >> 32`
/// (a negative shift shifts right), as in Xen's `set_time_scale`.
pub fn time_scale(hz: u64) -> (u32, i8) {
    let mut tps = hz.max(1);
    let mut shift = 0i8;
    while tps > 2_000_000_000 {
        tps >>= 1;
        shift -= 1;
    }
    while tps <= 1_000_000_000 {
        tps <<= 1;
        shift += 1;
    }
    (((1_000_000_000u64 << 32) / tps) as u32, shift)
}

/// Fills a vCPU's time record (`vcpu_time_info`) from the TSC now (the
/// caller runs the version protocol around it).
pub fn fill_vcpu_time(t: &mut hypercall_abi::xen::VcpuTimeInfo) {
    let (mul, shift) = time_scale(tsc_hz());
    let tsc = rdtsc();
    t.tsc_timestamp = tsc;
    t.system_time = tsc_to_ns(tsc);
    t.tsc_to_system_mul = mul;
    t.tsc_shift = shift;
    t.flags = hypercall_abi::xen::XEN_PVCLOCK_TSC_STABLE_BIT;
}
