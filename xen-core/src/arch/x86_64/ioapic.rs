//! The IO-APICs (Xen's `io_apic.c`, the part a PV hardware domain needs):
//! found in the MADT, mapped uncached, every pin masked at boot, and a
//! pin's redirection entry written when a GSI is mapped to a domain.
//! Every interrupt goes to the boot CPU, fixed delivery, physical
//! destination.
//!
//! Owns the IO-APIC registers (the hardware domain may not map them: they
//! are kept out of its I/O memory, as Xen keeps them) and the ISA
//! interrupt source overrides of the MADT.

use super::paging::ioremap;
use spin::{Mutex, Once};

/// One IO-APIC as the MADT gives it.
#[derive(Clone, Copy, Debug)]
pub struct IoApicInfo {
    /// Physical base address of its registers.
    pub address: u64,
    /// First GSI of its pins.
    pub gsi_base: u32,
}

/// An ISA IRQ's GSI and its polarity/trigger (MADT interrupt source
/// override; the default is identity, edge, active high).
#[derive(Clone, Copy, Debug, Default)]
pub struct IsaOverride {
    /// The ISA IRQ.
    pub irq: u8,
    /// Its GSI.
    pub gsi: u32,
    /// MPS INTI flags (bits 0-1 polarity, 2-3 trigger).
    pub flags: u16,
}

struct Chip {
    phys: u64,
    va: u64,
    gsi_base: u32,
    pins: u32,
}

static CHIPS: Once<heapless::Vec<Chip, 8>> = Once::new();
static OVERRIDES: Once<heapless::Vec<IsaOverride, 16>> = Once::new();
static LOCK: Mutex<()> = Mutex::new(());

const REG_VER: u32 = 0x01;
const REG_RTE: u32 = 0x10;
const RTE_MASKED: u32 = 1 << 16;
const RTE_LEVEL: u32 = 1 << 15;
const RTE_ACTIVE_LOW: u32 = 1 << 13;

fn read(va: u64, reg: u32) -> u32 {
    // SAFETY: `va` is an IO-APIC's register window mapped uncached by
    // `init`; IOREGSEL at +0, IOWIN at +0x10. Callers hold LOCK.
    unsafe {
        core::ptr::write_volatile(va as *mut u32, reg);
        core::ptr::read_volatile((va + 0x10) as *const u32)
    }
}

fn write(va: u64, reg: u32, val: u32) {
    // SAFETY: as `read`.
    unsafe {
        core::ptr::write_volatile(va as *mut u32, reg);
        core::ptr::write_volatile((va + 0x10) as *mut u32, val);
    }
}

/// Maps every IO-APIC, masks all their pins and keeps the ISA overrides.
pub fn init(chips: &[IoApicInfo], overrides: &[IsaOverride]) {
    for o in overrides {
        log::debug!("ISA IRQ {} -> GSI {} (flags {:#x})", o.irq, o.gsi, o.flags);
    }
    OVERRIDES.call_once(|| overrides.iter().copied().take(16).collect());
    CHIPS.call_once(|| {
        let _g = LOCK.lock();
        let mut v = heapless::Vec::new();
        for c in chips {
            let va = ioremap(c.address, 0x20);
            let pins = ((read(va, REG_VER) >> 16) & 0xff) + 1;
            for p in 0..pins {
                write(va, REG_RTE + 2 * p, RTE_MASKED);
                write(va, REG_RTE + 2 * p + 1, 0);
            }
            log::info!(
                "IO-APIC at {:#x}: GSIs {}..{}",
                c.address,
                c.gsi_base,
                c.gsi_base + pins - 1
            );
            let _ = v.push(Chip {
                phys: c.address,
                va,
                gsi_base: c.gsi_base,
                pins,
            });
        }
        v
    });
}

/// Number of GSIs (one past the highest pin).
pub fn nr_gsis() -> u32 {
    CHIPS.get().map_or(0, |c| {
        c.iter().map(|c| c.gsi_base + c.pins).max().unwrap_or(0)
    })
}

/// The polarity and trigger of `gsi` if an ISA override or the ISA default
/// says so: `Some((level, active_low))` for GSIs below 16 or named by an
/// override, `None` for the rest (PCI: level, active low unless
/// `PHYSDEVOP_setup_gsi` says otherwise).
pub fn isa_mode(gsi: u32) -> Option<(bool, bool)> {
    let o = OVERRIDES
        .get()
        .and_then(|o| o.iter().find(|o| o.gsi == gsi));
    match o {
        Some(o) => {
            // MPS INTI: polarity 1 = high, 3 = low; trigger 1 = edge, 3 = level
            // (0 = bus default: ISA is edge, active high).
            let active_low = o.flags & 3 == 3;
            let level = (o.flags >> 2) & 3 == 3;
            Some((level, active_low))
        }
        None if gsi < 16 => {
            // An ISA IRQ moved elsewhere by an override leaves its pin
            // to whatever the override's source was; identity otherwise.
            Some((false, false))
        }
        None => None,
    }
}

fn chip_of(gsi: u32) -> Option<(u64, u32)> {
    CHIPS.get()?.iter().find_map(|c| {
        (gsi >= c.gsi_base && gsi < c.gsi_base + c.pins).then(|| (c.va, gsi - c.gsi_base))
    })
}

/// Programs `gsi`'s redirection entry: `vector` to APIC `dest`, fixed,
/// physical, masked or not.
pub fn program(gsi: u32, vector: u8, dest: u32, level: bool, active_low: bool, masked: bool) {
    let Some((va, pin)) = chip_of(gsi) else {
        return;
    };
    let mut lo = u32::from(vector);
    if level {
        lo |= RTE_LEVEL;
    }
    if active_low {
        lo |= RTE_ACTIVE_LOW;
    }
    if masked {
        lo |= RTE_MASKED;
    }
    let _g = LOCK.lock();
    write(va, REG_RTE + 2 * pin, RTE_MASKED);
    write(va, REG_RTE + 2 * pin + 1, (dest & 0xff) << 24);
    write(va, REG_RTE + 2 * pin, lo);
}

/// Masks or unmasks `gsi`'s pin.
pub fn set_masked(gsi: u32, masked: bool) {
    let Some((va, pin)) = chip_of(gsi) else {
        return;
    };
    let _g = LOCK.lock();
    let lo = read(va, REG_RTE + 2 * pin);
    let new = if masked {
        lo | RTE_MASKED
    } else {
        lo & !RTE_MASKED
    };
    write(va, REG_RTE + 2 * pin, new);
}

/// Reads register `reg` of the IO-APIC at `phys` (`PHYSDEVOP_apic_read`).
pub fn read_reg(phys: u64, reg: u32) -> Option<u32> {
    let c = CHIPS.get()?.iter().find(|c| c.phys == phys)?;
    let _g = LOCK.lock();
    Some(read(c.va, reg & 0xff))
}

/// The IO-APICs' register frames (kept out of the hardware domain's I/O
/// memory).
pub fn frames() -> impl Iterator<Item = u64> {
    CHIPS.get().into_iter().flatten().map(|c| c.phys >> 12)
}
