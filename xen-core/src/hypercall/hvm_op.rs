//! `hvm_op`: `HVMOP_set_param` / `HVMOP_get_param`, from the toolstack
//! (Dom0) on an HVM domain (Xen's `hvmop_set_param`/`hvmop_get_param`).
//! Other sub-ops are `-ENOSYS`; a PV target, or a PV caller naming
//! itself, is `-EINVAL`; an unprivileged caller naming another domain is
//! `-EPERM`.

use super::Call;
use crate::domain::{read_guest, write_guest};
use hypercall_abi::errno::Errno;
use hypercall_abi::hvm::{HvmOp, XenHvmParam, HVM_NR_PARAMS};
use hypercall_abi::xen::DOMID_SELF;

pub fn hvm_op(c: &mut Call) -> Result<i64, Errno> {
    let [op, arg, ..] = c.args;
    let op = HvmOp::from_raw(op).ok_or(Errno::ENOSYS)?;
    let set = match op {
        HvmOp::SetParam => true,
        HvmOp::GetParam => false,
        _ => return Err(Errno::ENOSYS),
    };
    let mut p: XenHvmParam = read_guest(c.cr3, arg)?;
    if p.index >= HVM_NR_PARAMS {
        return Err(Errno::EINVAL);
    }
    let target = if p.domid == DOMID_SELF || p.domid == c.dom.domid {
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
