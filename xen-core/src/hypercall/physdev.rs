//! `physdev_op`: the I/O privilege sub-ops of a PV vCPU
//! (`PHYSDEVOP_set_iopl`, `PHYSDEVOP_set_iobitmap`), which the privileged
//! instruction emulator (`pv_emul`) consults for `in`/`out`/`cli`/`sti`.
//! Every other sub-op answers -ENOSYS until interrupts and PCI are wired.
//!
//! Follows Xen 4.17's `do_physdev_op` (xen/arch/x86/physdev.c).

use super::Call;
use crate::domain::read_guest;
use hypercall_abi::errno::Errno;
use hypercall_abi::physdev::{PhysdevOp, PhysdevSetIobitmap, PhysdevSetIopl};
use xen_core::guest_walk::HYPERVISOR_VIRT_END;

/// Bytes of a full I/O bitmap (Xen's `IOBMP_BYTES`).
const IOBMP_BYTES: u64 = 8192;

/// `physdev_op(cmd, arg)`.
pub fn physdev_op(c: &mut Call) -> Result<i64, Errno> {
    let [cmd, arg, ..] = c.args;
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
        _ => {
            log::debug!("d{}: {} not implemented", c.dom.domid, op.name());
            Err(Errno::ENOSYS)
        }
    }
}

/// Xen's `guest_handle_okay` (`access_ok` → `__addr_ok`) for a 64-bit PV
/// guest: the start lies in the lower canonical half or above the
/// hypervisor's reserved area (Xen checks only the start; the bitmap's
/// bytes are read later through the guest's page tables, and unreadable
/// bytes deny access).
fn guest_range_okay(addr: u64, _len: u64) -> bool {
    !((1 << 47)..HYPERVISOR_VIRT_END).contains(&addr)
}
