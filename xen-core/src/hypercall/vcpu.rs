//! Per-vCPU state a PV guest registers: `vcpu_op`, `set_callbacks`,
//! `callback_op`, `set_trap_table` and `stack_switch`.

use super::Call;
use crate::domain::{copy_from_guest, read_guest};
use hypercall_abi::arch_x86::TrapInfo;
use hypercall_abi::callback::{CallbackOp, CallbackRegister, CallbackType, CallbackUnregister};
use hypercall_abi::errno::Errno;
use hypercall_abi::vcpu::VcpuOp;
use xen_core::guest_walk::is_canonical;
use zerocopy::FromZeros;

/// Most trap_info entries one set_trap_table call reads (a full IDT).
const MAX_TRAPS: usize = 256;
/// RPL every guest selector must carry (guest kernels run in ring 3).
const GUEST_RPL: u64 = 3;

pub fn vcpu_op(c: &mut Call) -> Result<i64, Errno> {
    let [cmd, vcpuid, ..] = c.args;
    // Xen takes `int cmd, unsigned int vcpuid` and checks the vCPU first.
    let v = c
        .dom
        .vcpus
        .get(vcpuid as u32 as usize)
        .ok_or(Errno::ENOENT)?;
    match VcpuOp::from_raw(u64::from(cmd as u32)).ok_or(Errno::ENOSYS)? {
        VcpuOp::IsUp => Ok(i64::from(v.is_up)),
        // Bringing secondary vCPUs up, timers and runstate areas arrive
        // with SMP guests.
        _ => Err(Errno::ENOSYS),
    }
}

pub fn set_callbacks(c: &mut Call) -> Result<i64, Errno> {
    let [event, failsafe, syscall, ..] = c.args;
    // A non-canonical entry point would fault in xen-core's return to the
    // guest (the CVE-2012-0217 class): refuse it, as Xen does.
    if ![event, failsafe, syscall].iter().all(|&a| is_canonical(a)) {
        return Err(Errno::EINVAL);
    }
    let cb = &mut c.dom.vcpus[c.vcpu].callbacks;
    cb.event = event;
    cb.failsafe = failsafe;
    cb.syscall = syscall;
    Ok(0)
}

pub fn callback_op(c: &mut Call) -> Result<i64, Errno> {
    let [cmd, arg, ..] = c.args;
    match CallbackOp::from_raw(u64::from(cmd as u32)).ok_or(Errno::ENOSYS)? {
        CallbackOp::Register => {
            let r: CallbackRegister = read_guest(c.cr3, arg)?;
            let ty = CallbackType::from_raw(u64::from(r.r#type)).ok_or(Errno::ENOSYS)?;
            if !is_canonical(r.address) {
                return Err(Errno::EINVAL);
            }
            set_callback(c, ty, r.address, r.flags)
        }
        CallbackOp::Unregister => {
            let r: CallbackUnregister = read_guest(c.cr3, arg)?;
            let ty = CallbackType::from_raw(u64::from(r.r#type)).ok_or(Errno::ENOSYS)?;
            // Xen refuses to unregister the event and failsafe callbacks.
            match ty {
                CallbackType::Event | CallbackType::Failsafe => Err(Errno::EINVAL),
                _ => set_callback(c, ty, 0, 0),
            }
        }
    }
}

fn set_callback(c: &mut Call, ty: CallbackType, address: u64, flags: u16) -> Result<i64, Errno> {
    let cb = &mut c.dom.vcpus[c.vcpu].callbacks;
    match ty {
        CallbackType::Event => cb.event = address,
        CallbackType::Failsafe => cb.failsafe = address,
        CallbackType::Syscall => cb.syscall = address,
        CallbackType::Nmi => cb.nmi = address,
        // 32-bit entry points need compat-mode guests, which Oxen does not run.
        CallbackType::Syscall32 | CallbackType::Sysenter | CallbackType::SysenterDeprecated => {
            return Err(Errno::EINVAL)
        }
    }
    if let Some(slot) = cb.flags.get_mut(ty.raw() as usize) {
        *slot = flags;
    }
    Ok(0)
}

pub fn set_trap_table(c: &mut Call) -> Result<i64, Errno> {
    let [traps, ..] = c.args;
    let table = &mut c.dom.vcpus[c.vcpu].trap_table;
    if traps == 0 {
        table.iter_mut().for_each(|t| *t = TrapInfo::new_zeroed());
        return Ok(0);
    }
    let size = core::mem::size_of::<TrapInfo>() as u64;
    for i in 0..MAX_TRAPS as u64 {
        let mut t = TrapInfo::new_zeroed();
        copy_from_guest(
            c.cr3,
            traps.wrapping_add(i * size),
            zerocopy::IntoBytes::as_mut_bytes(&mut t),
        )?;
        if t.address == 0 {
            break;
        }
        if !is_canonical(t.address) {
            return Err(Errno::EINVAL);
        }
        table[usize::from(t.vector)] = t;
    }
    Ok(0)
}

pub fn stack_switch(c: &mut Call) -> Result<i64, Errno> {
    let [ss, sp, ..] = c.args;
    // Xen's fixup_guest_stack_selector: the guest kernel runs in ring 3, so
    // its stack selector gets RPL 3 whatever it asked for.
    let v = &mut c.dom.vcpus[c.vcpu];
    v.kernel_ss = (ss & 0xffff) | GUEST_RPL;
    v.kernel_sp = sp;
    Ok(0)
}
