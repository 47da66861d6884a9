//! The local APIC: x2APIC through MSRs when the CPU has it, xAPIC through an
//! uncached MMIO mapping otherwise. Owns the APIC timer, EOIs and IPIs.
//! (Intel SDM vol 3 chapter 11.)

use super::instr::{cpuid, msr, rdmsr, wrmsr};
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

/// Vector of the APIC timer (Xen's LOCAL_TIMER_VECTOR lives up here too).
pub const TIMER_VECTOR: u8 = 0xf0;
/// Vector of the "run the published job" IPI (Xen's CALL_FUNCTION_VECTOR).
pub const CALL_FUNCTION_VECTOR: u8 = 0xf1;
/// Vector of the spurious interrupt.
pub const SPURIOUS_VECTOR: u8 = 0xff;
/// Timer frequency per CPU.
pub const TIMER_HZ: u64 = 1000;

// Register offsets (xAPIC MMIO; x2APIC MSR = 0x800 + offset / 16).
const REG_ID: u32 = 0x20;
const REG_EOI: u32 = 0xb0;
const REG_SVR: u32 = 0xf0;
const REG_ICR_LO: u32 = 0x300;
const REG_ICR_HI: u32 = 0x310;
const REG_LVT_TIMER: u32 = 0x320;
const REG_TIMER_INIT: u32 = 0x380;
const REG_TIMER_CURRENT: u32 = 0x390;
const REG_TIMER_DIVIDE: u32 = 0x3e0;
const SVR_ENABLE: u32 = 1 << 8;
const LVT_PERIODIC: u32 = 1 << 17;
const LVT_MASKED: u32 = 1 << 16;
const DIVIDE_BY_16: u32 = 0x3;
const APIC_BASE_ENABLE: u64 = 1 << 11;
const APIC_BASE_X2APIC: u64 = 1 << 10;
const ICR_DELIVERY_PENDING: u32 = 1 << 12;
const CPUID_X2APIC: u32 = 1 << 21;

static X2APIC: AtomicBool = AtomicBool::new(false);
static MMIO_BASE: AtomicU64 = AtomicU64::new(0);
/// APIC timer counts per tick at TIMER_HZ (calibrated on the BSP).
static TIMER_COUNT: AtomicU32 = AtomicU32::new(0);

fn read(reg: u32) -> u32 {
    if X2APIC.load(Ordering::Relaxed) {
        rdmsr(0x800 + reg / 16) as u32
    } else {
        let va = MMIO_BASE.load(Ordering::Relaxed) + u64::from(reg);
        // SAFETY: the APIC page is mapped uncached at MMIO_BASE by `init_bsp`.
        unsafe { core::ptr::read_volatile(va as *const u32) }
    }
}

fn write(reg: u32, v: u32) {
    if X2APIC.load(Ordering::Relaxed) {
        // SAFETY: x2APIC registers are MSRs 0x800..0x8ff; writing them only
        // affects interrupt delivery, which this module owns.
        unsafe { wrmsr(0x800 + reg / 16, u64::from(v)) };
    } else {
        let va = MMIO_BASE.load(Ordering::Relaxed) + u64::from(reg);
        // SAFETY: as in `read`.
        unsafe { core::ptr::write_volatile(va as *mut u32, v) };
    }
}

/// Whether the APIC runs in x2APIC mode.
pub fn is_x2apic() -> bool {
    X2APIC.load(Ordering::Relaxed)
}

fn enable_this_cpu() {
    let mut base = rdmsr(msr::APIC_BASE) | APIC_BASE_ENABLE;
    if is_x2apic() {
        base |= APIC_BASE_X2APIC;
    }
    // SAFETY: enabling the local APIC (and x2APIC mode, which CPUID
    // advertised) keeps the base address unchanged.
    unsafe { wrmsr(msr::APIC_BASE, base) };
    write(REG_SVR, SVR_ENABLE | u32::from(SPURIOUS_VECTOR));
}

/// This CPU's APIC ID.
pub fn id() -> u32 {
    let v = read(REG_ID);
    if is_x2apic() {
        v
    } else {
        v >> 24
    }
}

/// Enables the boot CPU's APIC and calibrates the timer against the TSC.
pub fn init_bsp() {
    X2APIC.store(cpuid(1, 0).ecx & CPUID_X2APIC != 0, Ordering::Relaxed);
    if !is_x2apic() {
        let pa = rdmsr(msr::APIC_BASE) & 0x000f_ffff_ffff_f000;
        MMIO_BASE.store(super::paging::ioremap(pa, 4096), Ordering::Relaxed);
    }
    enable_this_cpu();
    // Count how far the timer runs in 10 ms of TSC time.
    write(REG_TIMER_DIVIDE, DIVIDE_BY_16);
    write(REG_LVT_TIMER, LVT_MASKED | u32::from(TIMER_VECTOR));
    write(REG_TIMER_INIT, u32::MAX);
    crate::time::udelay(10_000);
    let elapsed = u32::MAX - read(REG_TIMER_CURRENT);
    write(REG_TIMER_INIT, 0);
    let per_tick = (u64::from(elapsed) * 100 / TIMER_HZ).max(1);
    TIMER_COUNT.store(per_tick.min(u64::from(u32::MAX)) as u32, Ordering::Relaxed);
    log::info!(
        "APIC: {} mode, timer {} kHz, {} Hz tick",
        if is_x2apic() { "x2APIC" } else { "xAPIC" },
        u64::from(elapsed) * 16 / 10,
        TIMER_HZ
    );
}

/// Enables an AP's APIC (the mode was chosen on the BSP).
pub fn init_ap() {
    enable_this_cpu();
}

/// Starts this CPU's periodic timer.
pub fn start_timer() {
    write(REG_TIMER_DIVIDE, DIVIDE_BY_16);
    write(REG_LVT_TIMER, LVT_PERIODIC | u32::from(TIMER_VECTOR));
    write(REG_TIMER_INIT, TIMER_COUNT.load(Ordering::Relaxed));
}

/// Signals end of interrupt.
pub fn eoi() {
    write(REG_EOI, 0);
}

/// Sends an IPI with the raw ICR low word `icr` to `apic_id`.
pub fn send_ipi(apic_id: u32, icr: u32) {
    if is_x2apic() {
        // SAFETY: the x2APIC ICR MSR only sends the interrupt described.
        unsafe { wrmsr(0x830, (u64::from(apic_id) << 32) | u64::from(icr)) };
    } else {
        write(REG_ICR_HI, apic_id << 24);
        write(REG_ICR_LO, icr);
        let mut spins = 0;
        while read(REG_ICR_LO) & ICR_DELIVERY_PENDING != 0 && spins < 1_000_000 {
            spins += 1;
            core::hint::spin_loop();
        }
    }
}

/// ICR destination shorthand "all excluding self" (SDM vol 3 §11.6.1).
const ICR_ALL_BUT_SELF: u32 = 0b11 << 18;

/// Sends `vector` to every other CPU.
pub fn ipi_all_but_self(vector: u8) {
    send_ipi(0, ICR_ALL_BUT_SELF | u32::from(vector));
}

/// Interrupts at vectors >= 32 land here.
pub fn handle_interrupt(vector: u8) {
    match vector {
        TIMER_VECTOR => {
            super::percpu::this_cpu()
                .timer_ticks
                .fetch_add(1, Ordering::Relaxed);
            eoi();
            crate::sched::tick();
        }
        crate::sched::EVENT_CHECK_VECTOR => eoi(),
        CALL_FUNCTION_VECTOR => {
            eoi();
            crate::scrub::on_ipi();
        }
        SPURIOUS_VECTOR => {}
        _ => {
            if !crate::hwirq::handle(vector) {
                log::warn!("unexpected interrupt vector {vector:#x}");
            }
            eoi();
        }
    }
}
