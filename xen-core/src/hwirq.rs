//! The hardware domain's devices: their interrupts as PIRQs (Xen's
//! `arch/x86/irq.c`, `msi.c`, `io_apic.c` glue), the hypervisor's own
//! PCI configuration accesses, and the I/O memory the hardware domain may
//! map (`iomem_caps` as `dom0_setup_permissions` leaves it).
//!
//! **Owns** the [`IrqTable`] (which IRQ is whose PIRQ and event channel),
//! programming IO-APIC pins and MSI/MSI-X address/data for them, and the
//! interrupt path from a device vector to the domain's event channel:
//! every device interrupt goes to the boot CPU; a level-triggered GSI is
//! masked at the IO-APIC until the domain's `PHYSDEVOP_eoi` (Xen's
//! `ACKTYPE_UNMASK`), edge GSIs and MSIs are acknowledged at once.
//!
//! **Trusts** `xen_core::irq` for every range and state check; the
//! hypercall glue (`hypercall/physdev.rs`, `hypercall/evtchn.rs`) for the
//! privilege checks. PCI functions named by the hardware domain are read
//! through CONFIG_ADDRESS/CONFIG_DATA; a function that is absent reads as
//! all ones and is refused.
//!
//! Locking: [`IRQS`] is taken with interrupts off (hypercalls, and the
//! interrupt itself on CPU 0), before `DOMAINS` never while holding it in
//! the interrupt path (the table lock is dropped before DOMAINS is taken).

use crate::arch::x86_64::paging::ioremap;
use crate::arch::x86_64::{apic, instr, ioapic};
use crate::domain::{find, DOMAINS};
use core::sync::atomic::{AtomicU32, Ordering};
use hypercall_abi::errno::Errno;
use spin::{Mutex, Once};
use xen_core::irq::{IrqTable, Mapped, Source, DOMU_NR_PIRQS, HWDOM_NR_PIRQS, NR_IRQS};
use xen_core::mm::ptval::IoMem;

static IRQS: Mutex<IrqTable> = Mutex::new(IrqTable::new(0));
/// APIC ID every device interrupt is sent to (the boot CPU).
static DEST: AtomicU32 = AtomicU32::new(0);
/// `PHYSDEVOP_setup_gsi`'s word on each GSI: bit 0 set, bit 1 level, bit 2
/// active low.
static GSI_MODE: Mutex<[u8; NR_IRQS]> = Mutex::new([0; NR_IRQS]);
/// Frames kept away from the hardware domain.
static IOMEM_DENY: Once<heapless::Vec<(u64, u64), 8>> = Once::new();
/// PCI segment 0's ECAM (base, first bus, last bus).
static ECAM: Once<Option<(u64, u8, u8)>> = Once::new();

/// The MSI address window (Xen's `MSI_ADDR_BASE_LO` ..): also the local
/// APICs' registers.
const MSI_WINDOW: (u64, u64) = (0xfee00, 0xfeeff);

/// Sets up the IO-APICs and the hardware domain's I/O memory (from ACPI).
pub fn init(
    ioapics: &[ioapic::IoApicInfo],
    overrides: &[ioapic::IsaOverride],
    ecam: Option<(u64, u8, u8)>,
) {
    DEST.store(apic::id(), Ordering::Relaxed);
    ioapic::init(ioapics, overrides);
    *IRQS.lock() = IrqTable::new(ioapic::nr_gsis());
    IOMEM_DENY.call_once(|| {
        let mut v = heapless::Vec::new();
        let _ = v.push(MSI_WINDOW);
        for f in ioapic::frames() {
            let _ = v.push((f, f));
        }
        v
    });
    ECAM.call_once(|| ecam);
    if let Some((base, first, last)) = ecam {
        log::info!("PCI: ECAM at {base:#x}, buses {first}..{last}");
    }
}

/// The I/O memory domain `domid` may map: the hardware domain (domain 0)
/// every frame outside RAM but the IO-APICs' and the MSI/local APIC
/// window; anyone else none.
pub fn iomem_of(domid: u16) -> &'static IoMem {
    /// The hardware domain's, once [`init`] has read the IO-APICs.
    static HWDOM: Once<IoMem> = Once::new();
    /// Before that (no IO-APIC known yet).
    static EARLY: Once<IoMem> = Once::new();
    if domid != 0 {
        return &IoMem::NONE;
    }
    match IOMEM_DENY.get() {
        Some(d) => HWDOM.call_once(|| IoMem::all_but(d)),
        None => EARLY.call_once(|| IoMem::all_but(&[MSI_WINDOW])),
    }
}

/// PIRQs of a domain (Xen's `d->nr_pirqs`).
pub fn nr_pirqs(privileged: bool) -> u32 {
    if privileged {
        HWDOM_NR_PIRQS
    } else {
        DOMU_NR_PIRQS
    }
}

/// Number of GSIs.
pub fn nr_gsis() -> u32 {
    IRQS.lock().nr_gsis()
}

// ---- PCI configuration space (mechanism #1) ---------------------------------

fn cf8(bus: u8, devfn: u8, off: u8) -> u32 {
    0x8000_0000 | u32::from(bus) << 16 | u32::from(devfn) << 8 | u32::from(off & 0xfc)
}

/// Reads `size` (1, 2, 4) bytes of config space.
pub fn conf_read(bus: u8, devfn: u8, off: u8, size: u8) -> u32 {
    let _g = crate::pv_emul::PCI_LOCK.lock();
    instr::outl(0xcf8, cf8(bus, devfn, off));
    let port = 0xcfc + u16::from(off & 3);
    match size {
        1 => u32::from(instr::inb(port)),
        2 => u32::from(instr::inw(port)),
        _ => instr::inl(0xcfc),
    }
}

/// Writes `size` (1, 2, 4) bytes of config space.
pub fn conf_write(bus: u8, devfn: u8, off: u8, size: u8, val: u32) {
    let _g = crate::pv_emul::PCI_LOCK.lock();
    instr::outl(0xcf8, cf8(bus, devfn, off));
    let port = 0xcfc + u16::from(off & 3);
    match size {
        1 => instr::outb(port, val as u8),
        2 => instr::outw(port, val as u16),
        _ => instr::outl(0xcfc, val),
    }
}

/// Whether a function answers at `bus`/`devfn`.
pub fn device_present(bus: u8, devfn: u8) -> bool {
    conf_read(bus, devfn, 0, 2) != 0xffff
}

/// The config-space offset of capability `id`.
fn find_cap(bus: u8, devfn: u8, id: u8) -> Option<u8> {
    if conf_read(bus, devfn, 0x06, 2) & (1 << 4) == 0 {
        return None;
    }
    let mut pos = conf_read(bus, devfn, 0x34, 1) as u8 & 0xfc;
    for _ in 0..48 {
        if pos < 0x40 {
            return None;
        }
        if conf_read(bus, devfn, pos, 1) as u8 == id {
            return Some(pos);
        }
        pos = conf_read(bus, devfn, pos + 1, 1) as u8 & 0xfc;
    }
    None
}

const CAP_MSI: u8 = 0x05;
const CAP_MSIX: u8 = 0x11;

/// Cache of ioremapped MSI-X table pages (ioremap never unmaps).
static MSIX_PAGES: Mutex<heapless::Vec<(u64, u64), 32>> = Mutex::new(heapless::Vec::new());

fn msix_page_va(pa: u64) -> u64 {
    let page = pa & !0xfff;
    let mut c = MSIX_PAGES.lock();
    if let Some(&(_, va)) = c.iter().find(|(p, _)| *p == page) {
        return va + (pa & 0xfff);
    }
    let va = ioremap(page, 0x1000);
    let _ = c.push((page, va));
    va + (pa & 0xfff)
}

/// The VA of MSI-X table entry `entry` of `bus`/`devfn`, and the MSI-X
/// capability's offset. Errors as Xen's `msix_capability_init`.
fn msix_entry(bus: u8, devfn: u8, entry: u16) -> Result<(u64, u8), Errno> {
    let cap = find_cap(bus, devfn, CAP_MSIX).ok_or(Errno::ENODEV)?;
    let ctrl = conf_read(bus, devfn, cap + 2, 2);
    if u32::from(entry) > ctrl & 0x7ff {
        return Err(Errno::EINVAL);
    }
    let tbl = conf_read(bus, devfn, cap + 4, 4);
    let bir = (tbl & 7) as u8;
    if bir > 5 {
        return Err(Errno::EINVAL);
    }
    let bar = conf_read(bus, devfn, 0x10 + 4 * bir, 4);
    if bar & 1 != 0 {
        return Err(Errno::EINVAL);
    }
    let mut base = u64::from(bar & !0xf);
    if (bar >> 1) & 3 == 2 && bir < 5 {
        base |= u64::from(conf_read(bus, devfn, 0x14 + 4 * bir, 4)) << 32;
    }
    // Memory decoding must be on (Xen: -ENXIO).
    if base == 0 || conf_read(bus, devfn, 0x04, 2) & 2 == 0 {
        return Err(Errno::ENXIO);
    }
    let pa = base + u64::from(tbl & !7) + 16 * u64::from(entry);
    Ok((msix_page_va(pa), cap))
}

fn msi_address() -> u32 {
    0xfee0_0000 | (DEST.load(Ordering::Relaxed) & 0xff) << 12
}

/// Writes the MSI message (address, data = `vector`, fixed, edge) of
/// `source`, leaving it masked / disabled.
fn msi_program(source: Source, vector: u8) -> Result<(), Errno> {
    let Source::Msi {
        bus,
        devfn,
        entry,
        msix,
    } = source
    else {
        return Err(Errno::EINVAL);
    };
    if msix {
        let (va, cap) = msix_entry(bus, devfn, entry)?;
        // SAFETY: `va` is the device's MSI-X table entry (16 bytes inside
        // one table page, mapped uncached by `msix_page_va`).
        unsafe {
            core::ptr::write_volatile((va + 12) as *mut u32, 1);
            core::ptr::write_volatile(va as *mut u32, msi_address());
            core::ptr::write_volatile((va + 4) as *mut u32, 0);
            core::ptr::write_volatile((va + 8) as *mut u32, u32::from(vector));
        }
        // MSI-X on, function mask off (Xen's msix_capability_init leaves
        // the per-entry masks in charge).
        let ctrl = conf_read(bus, devfn, cap + 2, 2);
        conf_write(bus, devfn, cap + 2, 2, (ctrl | 0x8000) & !0x4000);
    } else {
        let cap = find_cap(bus, devfn, CAP_MSI).ok_or(Errno::ENODEV)?;
        let ctrl = conf_read(bus, devfn, cap + 2, 2);
        // One vector, disabled until bound.
        conf_write(bus, devfn, cap + 2, 2, ctrl & !0x71);
        conf_write(bus, devfn, cap + 4, 4, msi_address());
        if ctrl & 0x80 != 0 {
            conf_write(bus, devfn, cap + 8, 4, 0);
            conf_write(bus, devfn, cap + 12, 2, u32::from(vector));
        } else {
            conf_write(bus, devfn, cap + 8, 2, u32::from(vector));
        }
    }
    Ok(())
}

/// Masks or unmasks `source` at the device or IO-APIC.
fn set_masked(source: Source, masked: bool) {
    match source {
        Source::Gsi { gsi, .. } => ioapic::set_masked(gsi, masked),
        Source::Msi {
            bus,
            devfn,
            entry,
            msix: true,
        } => {
            if let Ok((va, _)) = msix_entry(bus, devfn, entry) {
                // SAFETY: as in `msi_program`.
                unsafe { core::ptr::write_volatile((va + 12) as *mut u32, u32::from(masked)) };
            }
        }
        Source::Msi { bus, devfn, .. } => {
            if let Some(cap) = find_cap(bus, devfn, CAP_MSI) {
                let ctrl = conf_read(bus, devfn, cap + 2, 2);
                let new = if masked { ctrl & !1 } else { ctrl | 1 };
                conf_write(bus, devfn, cap + 2, 2, new);
            }
        }
    }
}

// ---- PHYSDEVOP_* / EVTCHNOP_bind_pirq ---------------------------------------

/// `PHYSDEVOP_setup_gsi`: the trigger mode and polarity of a PCI GSI.
pub fn setup_gsi(gsi: i32, level: bool, active_low: bool) -> Result<(), Errno> {
    if gsi < 0 || gsi as u32 >= nr_gsis() {
        return Err(Errno::EINVAL);
    }
    GSI_MODE.lock()[gsi as usize] = 1 | u8::from(level) << 1 | u8::from(active_low) << 2;
    Ok(())
}

fn gsi_mode(gsi: u32) -> (bool, bool) {
    let m = GSI_MODE.lock().get(gsi as usize).copied().unwrap_or(0);
    if m & 1 != 0 {
        return (m & 2 != 0, m & 4 != 0);
    }
    // ISA: edge/high or the MADT override; PCI: level, active low.
    ioapic::isa_mode(gsi).unwrap_or((true, true))
}

/// `PHYSDEVOP_map_pirq`, `MAP_PIRQ_TYPE_GSI`.
pub fn map_gsi(domid: u16, gsi: i32, pirq: i32, nr_pirqs: u32) -> Result<Mapped, Errno> {
    let (level, active_low) = if gsi >= 0 {
        gsi_mode(gsi as u32)
    } else {
        (false, false)
    };
    let mut t = IRQS.lock();
    let m = t.map_gsi(domid, gsi, pirq, nr_pirqs, level, active_low)?;
    if m.new {
        if let Some(q) = t.get(m.irq) {
            ioapic::program(
                gsi as u32,
                q.vector,
                DEST.load(Ordering::Relaxed),
                level,
                active_low,
                true,
            );
        }
    }
    Ok(m)
}

/// `PHYSDEVOP_map_pirq`, `MAP_PIRQ_TYPE_MSI(_SEG)` with index -1.
pub fn map_msi(
    domid: u16,
    pirq: i32,
    nr_pirqs: u32,
    bus: u8,
    devfn: u8,
    entry: u16,
    msix: bool,
) -> Result<Mapped, Errno> {
    if !device_present(bus, devfn) {
        return Err(Errno::ENODEV);
    }
    let source = Source::Msi {
        bus,
        devfn,
        entry: if msix { entry } else { 0 },
        msix,
    };
    let mut t = IRQS.lock();
    let m = t.map_msi(domid, pirq, nr_pirqs, source)?;
    let vector = t.get(m.irq).map_or(0, |q| q.vector);
    if let Err(e) = msi_program(source, vector) {
        let _ = t.unmap(domid, m.pirq);
        return Err(e);
    }
    Ok(m)
}

/// `PHYSDEVOP_unmap_pirq`.
pub fn unmap(domid: u16, pirq: u32) -> Result<(), Errno> {
    let (_, q) = IRQS.lock().unmap(domid, pirq)?;
    set_masked(q.source, true);
    Ok(())
}

/// `EVTCHNOP_bind_pirq`'s checks (`-EINVAL`, `-EPERM`, `-EEXIST`).
pub fn check_bind(domid: u16, pirq: u32, nr_pirqs: u32) -> Result<(), Errno> {
    IRQS.lock().check_bind(domid, pirq, nr_pirqs).map(|_| ())
}

/// Binds `port` to `pirq` and unmasks its source (`pirq_guest_bind` →
/// `startup`).
pub fn bind(domid: u16, pirq: u32, port: u32) {
    let mut t = IRQS.lock();
    if let Some(irq) = t.bind(domid, pirq, port) {
        if let Some(q) = t.get(irq) {
            set_masked(q.source, false);
        }
    }
}

/// The port bound to `pirq` was closed (`pirq_guest_unbind`): mask it.
pub fn unbind(domid: u16, pirq: u32) {
    let mut t = IRQS.lock();
    if let Some(irq) = t.unbind(domid, pirq) {
        if let Some(q) = t.get(irq) {
            set_masked(q.source, true);
        }
    }
}

/// `PHYSDEVOP_eoi`.
pub fn eoi(domid: u16, pirq: u32, nr_pirqs: u32) -> Result<(), Errno> {
    let mut t = IRQS.lock();
    if let Some(irq) = t.eoi(domid, pirq, nr_pirqs)? {
        if let Some(q) = t.get(irq) {
            set_masked(q.source, false);
        }
    }
    Ok(())
}

/// Every event channel of `domid` was closed (`EVTCHNOP_reset`): mask
/// what was bound.
pub fn unbind_domain(domid: u16) {
    IRQS.lock()
        .unbind_domain(domid, |_, q| set_masked(q.source, true));
}

/// Drops every PIRQ of a dying domain.
pub fn release_domain(domid: u16) {
    IRQS.lock()
        .release_domain(domid, |_, q| set_masked(q.source, true));
}

/// A device vector fired (interrupts off; the caller EOIs the local APIC
/// afterwards). Returns false if `vector` is no device's.
pub fn handle(vector: u8) -> bool {
    let d = {
        let mut t = IRQS.lock();
        let Some(d) = t.interrupt(vector) else {
            return false;
        };
        if d.mask {
            if let Some(q) = t.get(d.irq) {
                set_masked(q.source, true);
            }
        }
        d
    };
    if d.target.is_none() {
        log::debug!(
            "irq {} (vector {vector:#x}) with no event channel: masked",
            d.irq
        );
    }
    if let Some((domid, port)) = d.target {
        let mut doms = DOMAINS.lock();
        if let Some(dom) = find(&mut doms, domid) {
            crate::event::raise(dom, port);
        }
    }
    true
}
