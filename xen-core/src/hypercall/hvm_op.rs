//! `hvm_op`: `HVMOP_set_param` / `HVMOP_get_param`, from the toolstack
//! (Dom0) on an HVM domain (Xen's `hvmop_set_param`/`hvmop_get_param`),
//! and `HVMOP_set_evtchn_upcall_vector` from an HVM guest on itself.
//! Other sub-ops are `-ENOSYS`; a PV target, or a PV caller naming
//! itself, is `-EINVAL`; an unprivileged caller naming another domain is
//! `-EPERM`, and one naming itself may only set `HVM_PARAM_CALLBACK_IRQ`
//! and read what is not the device model's.

use super::Call;
use crate::domain::{read_guest, write_guest};
use hypercall_abi::errno::Errno;
use hypercall_abi::hvm::{HvmOp, HvmParam, XenHvmParam, HVM_NR_PARAMS};
use hypercall_abi::xen::DOMID_SELF;

#[inline(never)]
pub fn hvm_op(c: &mut Call) -> Result<i64, Errno> {
    let [op, arg, ..] = c.args();
    let op = HvmOp::from_raw(op).ok_or(Errno::ENOSYS)?;
    let set = match op {
        HvmOp::SetParam => true,
        HvmOp::GetParam => false,
        HvmOp::SetEvtchnUpcallVector => {
            // struct xen_hvm_evtchn_upcall_vector { uint32_t vcpu; uint8_t vector; }
            let mut raw = [0u8; 8];
            crate::domain::copy_from_guest(c.cr3, arg, &mut raw[..5])?;
            let vcpu = u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]);
            crate::hvm_run::set_upcall_vector(c.dom, vcpu, raw[4])?;
            return Ok(0);
        }
        _ => return Err(Errno::ENOSYS),
    };
    let mut p: XenHvmParam = read_guest(c.cr3, arg)?;
    if p.index >= HVM_NR_PARAMS {
        return Err(Errno::EINVAL);
    }
    let self_target = p.domid == DOMID_SELF || p.domid == c.dom.domid;
    if self_target && !c.dom.is_privileged {
        // A guest on itself (Xen's XSM_TARGET rules): it sets its event
        // callback, and reads what the toolstack gave it, not the device
        // model's plumbing.
        let index = HvmParam::from_raw(u64::from(p.index));
        let ok = if set {
            index == Some(HvmParam::CallbackIrq)
        } else {
            !matches!(
                index,
                Some(HvmParam::IoreqPfn | HvmParam::BufioreqPfn | HvmParam::BufioreqEvtchn)
            )
        };
        if !ok {
            return Err(Errno::EPERM);
        }
    }
    let target = if self_target {
        &mut *c.dom
    } else {
        if !c.dom.is_privileged {
            return Err(Errno::EPERM);
        }
        c.others.get(p.domid).ok_or(Errno::ESRCH)?
    };
    if set {
        crate::hvm_run::set_param(target, p.index, p.value)?;
    } else {
        p.value = crate::hvm_run::get_param(target, p.index)?;
        write_guest(c.cr3, arg, &p)?;
    }
    Ok(0)
}
