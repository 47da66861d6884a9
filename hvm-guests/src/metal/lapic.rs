//! The local APIC in xAPIC mode, through its MMIO page at the base
//! IA32_APIC_BASE gives (Intel SDM vol. 3A §11.4–11.6): ID, version, EOI,
//! the spurious-vector register, the timer and the ICR for INIT/SIPI.
//! Every CPU sees its own APIC at the same address.

use super::cpu::{mmio_read32, mmio_write32, pause, rdmsr, wrmsr};
use super::phys::IDENTITY_LIMIT;
use crate::report::Why;
use crate::why;
use core::sync::atomic::{AtomicU64, Ordering};

/// IA32_APIC_BASE (SDM §11.4.4) and its bits.
pub const IA32_APIC_BASE: u32 = 0x1b;
pub const APIC_BASE_BSP: u64 = 1 << 8;
pub const APIC_BASE_X2APIC: u64 = 1 << 10;
pub const APIC_BASE_ENABLE: u64 = 1 << 11;
const APIC_BASE_ADDR: u64 = 0x000f_ffff_ffff_f000;

// Register offsets (SDM Table 11-1).
pub const REG_ID: u64 = 0x20;
pub const REG_VERSION: u64 = 0x30;
pub const REG_TPR: u64 = 0x80;
pub const REG_EOI: u64 = 0xb0;
pub const REG_SVR: u64 = 0xf0;
pub const REG_ICR_LO: u64 = 0x300;
pub const REG_ICR_HI: u64 = 0x310;
pub const REG_LVT_TIMER: u64 = 0x320;
pub const REG_TIMER_INITIAL: u64 = 0x380;
pub const REG_TIMER_CURRENT: u64 = 0x390;
pub const REG_TIMER_DIVIDE: u64 = 0x3e0;

/// SVR: APIC software enable.
const SVR_ENABLE: u32 = 1 << 8;
/// LVT: masked; timer mode periodic (SDM §11.5.1).
pub const LVT_MASKED: u32 = 1 << 16;
pub const LVT_TIMER_PERIODIC: u32 = 1 << 17;
/// Divide configuration: divide by 16 (SDM Figure 11-10).
pub const TIMER_DIVIDE_16: u32 = 0b0011;
/// ICR: delivery modes, level, delivery status (SDM §11.6.1).
pub const ICR_INIT: u32 = 0b101 << 8;
pub const ICR_STARTUP: u32 = 0b110 << 8;
pub const ICR_LEVEL_ASSERT: u32 = 1 << 14;
const ICR_SEND_PENDING: u32 = 1 << 12;
/// Polls of the ICR's delivery status before giving up.
const ICR_POLLS: u32 = 1_000_000;

/// The APIC's MMIO base, once [`init`] recorded it (0 before).
static BASE: AtomicU64 = AtomicU64::new(0);

/// The base address IA32_APIC_BASE holds.
pub fn msr_base() -> u64 {
    rdmsr(IA32_APIC_BASE) & APIC_BASE_ADDR
}

/// Enables this CPU's APIC in xAPIC mode (software-enabled, spurious vector
/// `spurious`, TPR 0) and records its base. Run on the BSP first.
pub fn init(spurious: u8) -> Result<u64, Why> {
    let msr = rdmsr(IA32_APIC_BASE);
    if msr & APIC_BASE_X2APIC != 0 {
        return Err(why!("the APIC is in x2APIC mode (IA32_APIC_BASE {msr:#x})"));
    }
    if msr & APIC_BASE_ENABLE == 0 {
        // SAFETY: enabling the APIC at the base it already has changes no
        // mapping this kernel relies on.
        unsafe { wrmsr(IA32_APIC_BASE, msr | APIC_BASE_ENABLE) };
    }
    let base = msr & APIC_BASE_ADDR;
    if base == 0 || base + 0x1000 > IDENTITY_LIMIT {
        return Err(why!("APIC base {base:#x} is outside the low 4 GiB"));
    }
    BASE.store(base, Ordering::Relaxed);
    write(REG_TPR, 0);
    write(REG_SVR, SVR_ENABLE | u32::from(spurious));
    Ok(base)
}

/// The MMIO base [`init`] recorded, if it succeeded.
pub fn base() -> Option<u64> {
    Some(BASE.load(Ordering::Relaxed)).filter(|&b| b != 0)
}

/// Reads an APIC register (0xffffffff before [`init`]).
pub fn read(reg: u64) -> u32 {
    let base = BASE.load(Ordering::Relaxed);
    if base == 0 {
        return u32::MAX;
    }
    // SAFETY: `init` checked the page is in the 1:1 map; `reg` is one of
    // the register offsets above, inside the APIC's 4 KiB page.
    unsafe { mmio_read32(base + reg) }
}

/// Writes an APIC register (ignored before [`init`]).
pub fn write(reg: u64, v: u32) {
    let base = BASE.load(Ordering::Relaxed);
    if base == 0 {
        return;
    }
    // SAFETY: as `read`; APIC registers control interrupts, not memory.
    unsafe { mmio_write32(base + reg, v) }
}

/// This CPU's APIC ID (xAPIC: bits 31:24 of the ID register).
pub fn id() -> u32 {
    read(REG_ID) >> 24
}

pub fn eoi() {
    write(REG_EOI, 0);
}

/// Sends an IPI (`icr` = delivery mode and vector) to APIC ID `dest` and
/// waits until the APIC has sent it.
pub fn send_ipi(dest: u32, icr: u32) -> Result<(), Why> {
    if dest > 0xff {
        return Err(why!("APIC ID {dest} needs x2APIC"));
    }
    write(REG_ICR_HI, dest << 24);
    write(REG_ICR_LO, icr);
    for _ in 0..ICR_POLLS {
        if read(REG_ICR_LO) & ICR_SEND_PENDING == 0 {
            return Ok(());
        }
        pause();
    }
    Err(why!("ICR {icr:#x} to APIC {dest} stays send-pending"))
}
