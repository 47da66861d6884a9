//! `physdev_op`: the I/O privilege sub-ops of a PV vCPU
//! (`PHYSDEVOP_set_iopl`, `PHYSDEVOP_set_iobitmap`), which the privileged
//! instruction emulator (`pv_emul`) consults for `in`/`out`/`cli`/`sti`;
//! the hardware domain's interrupts (`map_pirq` for GSIs and MSI/MSI-X,
//! `unmap_pirq`, `setup_gsi`, `apic_read`) and PCI device reports
//! (`pci_device_add` and friends, which only check the function exists);
//! and every domain's `eoi` and `irq_status_query`. The IRQ side is
//! `crate::hwirq` over `xen_core::irq`.
//!
//! Privilege as Xen's default XSM policy: only the hardware domain maps,
//! unmaps, sets up GSIs, reads IO-APICs and reports PCI devices
//! (`-EPERM` for anyone else). Sub-ops not listed answer `-ENOSYS`
//! (`pirq_eoi_gmfn*`: Linux then EOIs every PIRQ with `PHYSDEVOP_eoi`).
//!
//! Follows Xen 4.17's `do_physdev_op` (xen/arch/x86/physdev.c).

use super::Call;
use crate::domain::read_guest;
use crate::domain::write_guest;
use crate::hwirq;
use hypercall_abi::errno::Errno;
use hypercall_abi::physdev::{
    MapPirqType, PhysdevApic, PhysdevEoi, PhysdevIrqStatusQuery, PhysdevManagePci, PhysdevMapPirq,
    PhysdevOp, PhysdevPciDevice, PhysdevPciDeviceAdd, PhysdevPciMmcfgReserved, PhysdevSetIobitmap,
    PhysdevSetIopl, PhysdevSetupGsi, PhysdevUnmapPirq, XENIRQSTAT_NEEDS_EOI,
};
use hypercall_abi::xen::DOMID_SELF;
use xen_core::guest_walk::HYPERVISOR_VIRT_END;

/// Bytes of a full I/O bitmap (Xen's `IOBMP_BYTES`).
const IOBMP_BYTES: u64 = 8192;

/// `physdev_op(cmd, arg)`.
#[inline(never)]
pub fn physdev_op(c: &mut Call) -> Result<i64, Errno> {
    let [cmd, arg, ..] = c.args();
    // Xen's `cmd` is an `int`.
    let Some(op) = PhysdevOp::from_raw(u64::from(cmd as u32)) else {
        return Err(Errno::ENOSYS);
    };
    match op {
        PhysdevOp::SetIopl => {
            let s: PhysdevSetIopl = read_guest(c.cr3, arg)?;
            if s.iopl > 3 {
                return Err(Errno::EINVAL);
            }
            c.vcpu().emul.iopl = s.iopl as u8;
            Ok(0)
        }
        PhysdevOp::SetIobitmap => {
            let s: PhysdevSetIobitmap = read_guest(c.cr3, arg)?;
            if !guest_range_okay(s.bitmap, IOBMP_BYTES) || s.nr_ports > 65536 {
                return Err(Errno::EINVAL);
            }
            let e = &mut c.vcpu().emul;
            e.iobmp = s.bitmap;
            e.iobmp_limit = s.nr_ports;
            Ok(0)
        }
        PhysdevOp::MapPirq => {
            let mut m: PhysdevMapPirq = read_guest(c.cr3, arg)?;
            let me = target(c, m.domid)?;
            let nr = hwirq::nr_pirqs(true);
            let mapped = match MapPirqType::from_raw(i64::from(m.r#type)) {
                Some(MapPirqType::Gsi) => hwirq::map_gsi(me, m.index, m.pirq, nr)?,
                Some(t @ (MapPirqType::Msi | MapPirqType::MsiSeg)) => {
                    // MSI_SEG carries the segment in bus's upper half;
                    // only segment 0 exists here.
                    if t == MapPirqType::MsiSeg && (m.bus as u32) >> 16 != 0 {
                        return Err(Errno::ENODEV);
                    }
                    if m.index != -1 {
                        return Err(Errno::EINVAL);
                    }
                    let (Ok(devfn), Ok(entry)) = (u8::try_from(m.devfn), u16::try_from(m.entry_nr))
                    else {
                        return Err(Errno::EINVAL);
                    };
                    hwirq::map_msi(me, m.pirq, nr, m.bus as u8, devfn, entry, m.table_base != 0)?
                }
                Some(MapPirqType::MultiMsi) => return Err(Errno::EOPNOTSUPP),
                _ => return Err(Errno::EINVAL),
            };
            if mapped.new {
                log::info!(
                    "d{me}: pirq {} -> irq {} ({})",
                    mapped.pirq,
                    mapped.irq,
                    if m.r#type == MapPirqType::Gsi as i32 {
                        "GSI"
                    } else {
                        "MSI"
                    }
                );
            }
            m.pirq = mapped.pirq as i32;
            write_guest(c.cr3, arg, &m)?;
            Ok(0)
        }
        PhysdevOp::UnmapPirq => {
            let u: PhysdevUnmapPirq = read_guest(c.cr3, arg)?;
            let me = target(c, u.domid)?;
            if u.pirq < 0 || u.pirq as u32 >= hwirq::nr_pirqs(true) {
                return Err(Errno::EINVAL);
            }
            hwirq::unmap(me, u.pirq as u32)?;
            Ok(0)
        }
        PhysdevOp::Eoi => {
            let e: PhysdevEoi = read_guest(c.cr3, arg)?;
            hwirq::eoi(c.dom.domid, e.irq, hwirq::nr_pirqs(c.dom.is_privileged))?;
            Ok(0)
        }
        PhysdevOp::IrqStatusQuery => {
            let mut q: PhysdevIrqStatusQuery = read_guest(c.cr3, arg)?;
            if q.irq >= hwirq::nr_pirqs(c.dom.is_privileged) {
                return Err(Errno::EINVAL);
            }
            // Xen always says "needs EOI" (a guest without the EOI bitmap
            // must EOI every PIRQ) and never "shared" here.
            q.flags = XENIRQSTAT_NEEDS_EOI;
            write_guest(c.cr3, arg, &q)?;
            Ok(0)
        }
        PhysdevOp::SetupGsi => {
            let g: PhysdevSetupGsi = read_guest(c.cr3, arg)?;
            privileged(c)?;
            hwirq::setup_gsi(g.gsi, g.triggering != 0, g.polarity != 0)?;
            Ok(0)
        }
        PhysdevOp::ApicRead => {
            let mut a: PhysdevApic = read_guest(c.cr3, arg)?;
            privileged(c)?;
            a.value = crate::arch::x86_64::ioapic::read_reg(a.apic_physbase, a.reg)
                .ok_or(Errno::EINVAL)?;
            write_guest(c.cr3, arg, &a)?;
            Ok(0)
        }
        PhysdevOp::ApicWrite => {
            let _: PhysdevApic = read_guest(c.cr3, arg)?;
            privileged(c)?;
            // The IO-APICs are the hypervisor's (see abi-deviations).
            Err(Errno::EPERM)
        }
        PhysdevOp::PciDeviceAdd => {
            let a: PhysdevPciDeviceAdd = read_guest(c.cr3, arg)?;
            privileged(c)?;
            known_device(a.seg, a.bus, a.devfn)
        }
        PhysdevOp::PciDeviceRemove | PhysdevOp::RestoreMsiExt => {
            let a: PhysdevPciDevice = read_guest(c.cr3, arg)?;
            privileged(c)?;
            known_device(a.seg, a.bus, a.devfn)
        }
        PhysdevOp::ManagePciAdd | PhysdevOp::ManagePciRemove | PhysdevOp::RestoreMsi => {
            let a: PhysdevManagePci = read_guest(c.cr3, arg)?;
            privileged(c)?;
            known_device(0, a.bus, a.devfn)
        }
        PhysdevOp::PciMmcfgReserved => {
            let _: PhysdevPciMmcfgReserved = read_guest(c.cr3, arg)?;
            privileged(c)?;
            Ok(0)
        }
        _ => {
            log::debug!("d{}: {} not implemented", c.dom.domid, op.name());
            Err(Errno::ENOSYS)
        }
    }
}

/// Xen's XSM_PRIV check for the hardware domain's sub-ops.
fn privileged(c: &Call) -> Result<(), Errno> {
    if c.dom.is_privileged {
        Ok(())
    } else {
        Err(Errno::EPERM)
    }
}

/// The domain a `map_pirq`/`unmap_pirq` names (Xen's
/// `rcu_lock_domain_by_any_id`, then `xsm_map_domain_pirq`): the caller
/// itself; another existing domain gets `-EOPNOTSUPP` from the hardware
/// domain (no pass-through yet), `-EPERM` from anyone else; an unknown
/// one `-ESRCH`.
fn target(c: &Call, domid: u16) -> Result<u16, Errno> {
    if domid != DOMID_SELF && domid != c.dom.domid {
        if !c.others.iter().any(|d| d.domid == domid) {
            return Err(Errno::ESRCH);
        }
        privileged(c)?;
        return Err(Errno::EOPNOTSUPP);
    }
    privileged(c)?;
    Ok(c.dom.domid)
}

/// A PCI device report: fine if the function answers (segment 0 only).
fn known_device(seg: u16, bus: u8, devfn: u8) -> Result<i64, Errno> {
    if seg != 0 || !hwirq::device_present(bus, devfn) {
        return Err(Errno::ENODEV);
    }
    Ok(0)
}

/// Xen's `guest_handle_okay` (`access_ok` → `__addr_ok`) for a 64-bit PV
/// guest: the start lies in the lower canonical half or above the
/// hypervisor's reserved area (Xen checks only the start; the bitmap's
/// bytes are read later through the guest's page tables, and unreadable
/// bytes deny access).
fn guest_range_okay(addr: u64, _len: u64) -> bool {
    !((1 << 47)..HYPERVISOR_VIRT_END).contains(&addr)
}
