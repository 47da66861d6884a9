//! ACPI glue: finds the CPUs (MADT) and the sleep-control register used to
//! power off (FADT + the DSDT's \_S5 object), through the `acpi` crate.
//!
//! Trusts the firmware's tables only as far as the crate validates them
//! (signatures, checksums); every value read is range-checked before use.

use super::paging::phys_to_virt;
use acpi::madt::{Madt, MadtEntry};
use acpi::{AcpiHandler, AcpiTables, PhysicalMapping};
use core::ptr::NonNull;

/// Maps ACPI tables through the direct map (all RAM and the low 4 GiB of
/// firmware tables are in it).
#[derive(Clone, Copy)]
struct DirectMapHandler;

impl AcpiHandler for DirectMapHandler {
    unsafe fn map_physical_region<T>(&self, pa: usize, size: usize) -> PhysicalMapping<Self, T> {
        let va = phys_to_virt(pa as u64) as *mut T;
        // SAFETY: the direct map covers the physical address (firmware tables
        // live in RAM ranges the direct map maps); the crate's contract
        // guarantees `pa` points at a `T`.
        unsafe {
            PhysicalMapping::new(
                pa,
                NonNull::new(va).expect("direct map is never null"),
                size,
                size,
                *self,
            )
        }
    }

    fn unmap_physical_region<T>(_region: &PhysicalMapping<Self, T>) {}
}

/// What xen-core needs from ACPI.
pub struct AcpiInfo {
    /// APIC IDs of the enabled CPUs, the BSP's first.
    pub apic_ids: heapless::Vec<u32, { super::percpu::MAX_CPUS }>,
    /// CPUs listed but not started because of MAX_CPUS.
    pub cpus_skipped: usize,
    /// PM1a control port and the S5 sleep type, for power-off.
    pub s5: Option<(u16, u16)>,
    /// The ACPI PM timer's I/O port (FADT), if it has one in I/O space.
    pub pm_timer_port: Option<u16>,
    /// The IO-APICs (MADT).
    pub ioapics: heapless::Vec<super::ioapic::IoApicInfo, 8>,
    /// ISA interrupt source overrides (MADT).
    pub isa_overrides: heapless::Vec<super::ioapic::IsaOverride, 16>,
    /// PCI segment 0's ECAM (MCFG): base address, first and last bus.
    pub ecam: Option<(u64, u8, u8)>,
}

/// Reads the MADT and FADT from the RSDP at `rsdp` (or found by scanning
/// the BIOS areas when the boot loader gave none).
pub fn probe(rsdp: Option<u64>, bsp_apic_id: u32) -> Result<AcpiInfo, acpi::AcpiError> {
    // SAFETY: the RSDP address comes from the boot loader, or the crate
    // scans the BIOS read-only areas (this is a BIOS/PVH boot); both are in
    // the direct map.
    let tables = unsafe {
        match rsdp {
            Some(a) => AcpiTables::from_rsdp(DirectMapHandler, a as usize)?,
            None => AcpiTables::search_for_rsdp_bios(DirectMapHandler)?,
        }
    };
    let mut info = AcpiInfo {
        apic_ids: heapless::Vec::new(),
        cpus_skipped: 0,
        s5: None,
        pm_timer_port: None,
        ioapics: heapless::Vec::new(),
        isa_overrides: heapless::Vec::new(),
        ecam: None,
    };
    let _ = info.apic_ids.push(bsp_apic_id);
    let madt = tables.find_table::<Madt>()?;
    for e in madt.get().entries() {
        let (id, flags) = match e {
            MadtEntry::LocalApic(l) => (u32::from(l.apic_id), l.flags),
            MadtEntry::LocalX2Apic(l) => (l.x2apic_id, l.flags),
            MadtEntry::IoApic(a) => {
                let _ = info.ioapics.push(super::ioapic::IoApicInfo {
                    address: u64::from(a.io_apic_address),
                    gsi_base: a.global_system_interrupt_base,
                });
                continue;
            }
            MadtEntry::InterruptSourceOverride(o) => {
                if o.bus == 0 {
                    let _ = info.isa_overrides.push(super::ioapic::IsaOverride {
                        irq: o.irq,
                        gsi: o.global_system_interrupt,
                        flags: o.flags,
                    });
                }
                continue;
            }
            _ => continue,
        };
        // Bit 0: enabled; bit 1: online capable (may be hot-added later).
        if flags & 1 == 0 || id == bsp_apic_id || info.apic_ids.contains(&id) {
            continue;
        }
        if info.apic_ids.push(id).is_err() {
            info.cpus_skipped += 1;
        }
    }
    if let Ok(mcfg) = tables.find_table::<acpi::mcfg::Mcfg>() {
        info.ecam = mcfg
            .get()
            .entries()
            .iter()
            .find(|e| e.pci_segment_group == 0)
            .map(|e| (e.base_address, e.bus_number_start, e.bus_number_end));
    }
    if let Ok(fadt) = tables.find_table::<acpi::fadt::Fadt>() {
        if let Ok(Some(t)) = fadt.pm_timer_block() {
            if t.address_space == acpi::address::AddressSpace::SystemIo {
                info.pm_timer_port = u16::try_from(t.address).ok();
            }
        }
        if let (Ok(pm1a), Ok(dsdt)) = (fadt.pm1a_control_block(), tables.dsdt()) {
            let bytes = {
                let va = phys_to_virt(dsdt.address as u64) as *const u8;
                // SAFETY: the crate validated the DSDT header; `length` bytes
                // from its body lie in firmware RAM covered by the direct map.
                unsafe { core::slice::from_raw_parts(va, dsdt.length as usize) }
            };
            if let (Some(typ), Ok(port)) = (
                xen_core::acpi_s5::find_s5_sleep_type(bytes),
                u16::try_from(pm1a.address),
            ) {
                info.s5 = Some((port, typ));
            }
        }
    }
    Ok(info)
}
