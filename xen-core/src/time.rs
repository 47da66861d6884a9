//! Time: the TSC calibrated against the PIT, and system time in nanoseconds.
//!
//! Owns PIT channel 2 during calibration. System time counts from TSC 0, which
//! on QEMU is the moment the machine started, so boot-time figures printed in
//! the log are "since power-on".

use crate::arch::x86_64::instr::{inb, outb, rdtsc};
use core::sync::atomic::{AtomicU64, Ordering};

/// The PIT's input clock, Hz.
const PIT_HZ: u64 = 1_193_182;
/// One calibration window: 4 ms.
const CALIBRATE_MS: u64 = 4;
/// Windows measured; the median is kept. Under an emulator on a busy host
/// the vCPU may be descheduled in the middle of a window, which makes that
/// window's figure wildly off (seen: 68 times too high): the median of
/// five survives two such windows.
const CALIBRATE_RUNS: usize = 5;
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
    let mut runs = [0u64; CALIBRATE_RUNS];
    for r in runs.iter_mut() {
        *r = calibrate_once();
    }
    runs.sort_unstable();
    let hz = runs[CALIBRATE_RUNS / 2];
    TSC_HZ.store(hz.max(1), Ordering::Relaxed);
    hz
}

/// One window: TSC ticks while PIT channel 2 counts CALIBRATE_MS down.
fn calibrate_once() -> u64 {
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
    (end - start) * 1000 / CALIBRATE_MS
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

const CMOS_INDEX: u16 = 0x70;
const CMOS_DATA: u16 = 0x71;
/// CMOS register numbers (MC146818).
const RTC_SEC: u8 = 0x00;
const RTC_MIN: u8 = 0x02;
const RTC_HOUR: u8 = 0x04;
const RTC_DAY: u8 = 0x07;
const RTC_MONTH: u8 = 0x08;
const RTC_YEAR: u8 = 0x09;
const RTC_STATUS_A: u8 = 0x0a;
const RTC_STATUS_B: u8 = 0x0b;
const RTC_CENTURY: u8 = 0x32;
const RTC_UPDATE_IN_PROGRESS: u8 = 0x80;

/// Wall-clock nanoseconds since the epoch at system time 0.
static WALLCLOCK_BASE_NS: AtomicU64 = AtomicU64::new(0);

fn cmos(reg: u8) -> u8 {
    crate::arch::x86_64::instr::outb(CMOS_INDEX, reg);
    inb(CMOS_DATA)
}

/// Reads the RTC once (waiting out an update in progress) and remembers the
/// wall-clock time of system time 0. Returns the seconds since the epoch.
pub fn init_wallclock() -> Option<u64> {
    for _ in 0..1_000_000 {
        if cmos(RTC_STATUS_A) & RTC_UPDATE_IN_PROGRESS == 0 {
            break;
        }
    }
    let f = xen_core::wallclock::RtcFields {
        sec: cmos(RTC_SEC),
        min: cmos(RTC_MIN),
        hour: cmos(RTC_HOUR),
        day: cmos(RTC_DAY),
        month: cmos(RTC_MONTH),
        year: cmos(RTC_YEAR),
        century: cmos(RTC_CENTURY),
        status_b: cmos(RTC_STATUS_B),
    };
    let secs = xen_core::wallclock::to_unix(f)?;
    let base = (secs * 1_000_000_000).saturating_sub(now_ns());
    WALLCLOCK_BASE_NS.store(base, Ordering::Relaxed);
    Some(secs)
}

/// Seconds since the epoch now (the wall clock read at boot plus system
/// time).
pub fn wallclock_secs() -> u64 {
    (WALLCLOCK_BASE_NS.load(Ordering::Relaxed) + now_ns()) / 1_000_000_000
}

/// Fills shared_info's wallclock fields (the time at system time 0).
pub fn fill_wallclock(si: &mut hypercall_abi::xen::SharedInfo) {
    let base = WALLCLOCK_BASE_NS.load(Ordering::Relaxed);
    let secs = base / 1_000_000_000;
    si.wc_version = si.wc_version.wrapping_add(2) & !1;
    si.wc_sec = secs as u32;
    si.wc_sec_hi = (secs >> 32) as u32;
    si.wc_nsec = (base % 1_000_000_000) as u32;
}
