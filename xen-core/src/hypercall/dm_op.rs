//! `dm_op`: a device model's operations on the HVM domain it serves
//! (Xen's `do_dm_op`, `public/hvm/dm_op.h`). Dom0's device model drives
//! the guest's ISA interrupt lines with `XEN_DMOP_set_isa_irq_level`
//! (its UART's IRQ 4). Only a privileged caller, only on an HVM domain;
//! other operations are `-EOPNOTSUPP`.

use super::Call;
use crate::domain::copy_from_guest;
use hypercall_abi::errno::Errno;

/// `XEN_DMOP_set_isa_irq_level`.
const XEN_DMOP_SET_ISA_IRQ_LEVEL: u32 = 9;
/// `sizeof(xen_dm_op_buf_t)`: a handle and a size.
const BUF_SIZE: usize = 16;

#[inline(never)]
pub fn dm_op(c: &mut Call) -> Result<i64, Errno> {
    let [domid, nr_bufs, bufs, ..] = c.args();
    let domid = domid as u16;
    if !c.dom.is_privileged {
        return Err(Errno::EPERM);
    }
    if nr_bufs as u32 == 0 {
        return Err(Errno::EINVAL);
    }
    // bufs[0]: the operation.
    let mut b = [0u8; BUF_SIZE];
    copy_from_guest(c.cr3, bufs, &mut b)?;
    let handle = u64::from_le_bytes(b[..8].try_into().map_err(|_| Errno::EFAULT)?);
    let size = u64::from_le_bytes(b[8..].try_into().map_err(|_| Errno::EFAULT)?);
    // struct xen_dm_op: op, pad, then the union (the IRQ op's 2 bytes).
    if size < 10 {
        return Err(Errno::EFAULT);
    }
    let mut op = [0u8; 10];
    copy_from_guest(c.cr3, handle, &mut op)?;
    let code = u32::from_le_bytes([op[0], op[1], op[2], op[3]]);
    let d = c.others.get(domid).ok_or(Errno::ESRCH)?;
    if !d.is_hvm() {
        return Err(Errno::EINVAL);
    }
    match code {
        XEN_DMOP_SET_ISA_IRQ_LEVEL => {
            let (irq, level) = (op[8], op[9]);
            if irq >= 16 || level > 1 {
                return Err(Errno::EINVAL);
            }
            crate::hvm_run::set_isa_irq_level(d, irq, level == 1);
            Ok(0)
        }
        _ => Err(Errno::EOPNOTSUPP),
    }
}
