//! Per-vCPU state a PV guest registers: `vcpu_op`, `set_callbacks`,
//! `callback_op`, `set_trap_table` and `stack_switch`.

use super::Call;
use crate::arch::x86_64::entry::TrapFrame;
use crate::domain::{copy_from_guest, read_guest, write_guest, RunState};
use hypercall_abi::arch_x86::TrapInfo;
use hypercall_abi::arch_x86::{VcpuGuestContext, VGCF_I387_VALID};
use hypercall_abi::callback::{CallbackOp, CallbackRegister, CallbackType, CallbackUnregister};
use hypercall_abi::errno::Errno;
use hypercall_abi::vcpu::VcpuOp;
use hypercall_abi::vcpu::{
    VcpuRegisterRunstateMemoryArea, VcpuRegisterVcpuInfo, VcpuSetPeriodicTimer,
    VcpuSetSingleshotTimer,
};
use xen_core::guest_walk::is_canonical;
use zerocopy::FromZeros;

/// Most trap_info entries one set_trap_table call reads (a full IDT).
const MAX_TRAPS: usize = 256;
/// RPL every guest selector must carry (guest kernels run in ring 3).
const GUEST_RPL: u64 = 3;

#[inline(never)]
pub fn vcpu_op(c: &mut Call) -> Result<i64, Errno> {
    let [cmd, vcpuid, arg, ..] = c.args();
    // Xen takes `int cmd, unsigned int vcpuid` and checks the vCPU first.
    let id = vcpuid as u32;
    if id as usize >= c.dom.vcpus.len() {
        return Err(Errno::ENOENT);
    }
    let op = VcpuOp::from_raw(u64::from(cmd as u32)).ok_or(Errno::ENOSYS)?;
    let cr3 = c.cr3;
    let domid = c.dom.domid;
    let self_call = id as usize == c.vcpu;
    let v = &mut c.dom.vcpus[id as usize];
    match op {
        VcpuOp::IsUp => Ok(i64::from(v.state != RunState::Down)),
        VcpuOp::Initialise => {
            let ctx: VcpuGuestContext = read_guest(cr3, arg)?;
            if v.guest_table != 0 {
                return Err(Errno::EEXIST);
            }
            initialise(domid, v, &ctx)?;
            Ok(0)
        }
        VcpuOp::Up => {
            if v.guest_table == 0 {
                return Err(Errno::EINVAL);
            }
            crate::sched::vcpu_up(c.dom, id);
            Ok(0)
        }
        VcpuOp::Down => {
            // Xen's VCPUOP_down: the last vCPU that is up going down shuts
            // the domain down (poweroff) instead.
            crate::sched::vcpu_down(c.dom, id);
            Ok(0)
        }
        VcpuOp::SetPeriodicTimer => {
            let t: VcpuSetPeriodicTimer = read_guest(cr3, arg)?;
            // Xen's minimum period: 1 ms.
            if t.period_ns < MIN_PERIOD_NS {
                return Err(Errno::EINVAL);
            }
            // Xen's vcpu_set_periodic_timer: the first tick comes at once
            // if a period has passed since the last one, else a period
            // after it.
            let p = xen_core::timer_op::set_periodic(
                t.period_ns,
                v.periodic_last,
                crate::time::now_ns(),
            );
            v.periodic = Some((t.period_ns, p.next));
            v.periodic_last = p.last;
            if p.fire_now {
                crate::event::send_virq(c.dom, id, hypercall_abi::xen::Virq::Timer);
            }
            Ok(0)
        }
        VcpuOp::StopPeriodicTimer => {
            v.periodic = None;
            Ok(0)
        }
        VcpuOp::SetSingleshotTimer => {
            // Only a vCPU's own one-shot timer, as in Xen.
            if !self_call {
                return Err(Errno::EINVAL);
            }
            // Xen ignores VCPU_SSHOTTMR_future since 4.17.3 (its only known
            // user, Linux, set it wrongly and lost timer interrupts to the
            // -ETIME): a deadline in the past fires at once either way.
            let t: VcpuSetSingleshotTimer = read_guest(cr3, arg)?;
            let arm = xen_core::timer_op::singleshot(t.timeout_abs_ns, crate::time::now_ns());
            super::sched_op::apply_singleshot(c, arm);
            Ok(0)
        }
        VcpuOp::StopSingleshotTimer => {
            v.singleshot = None;
            Ok(0)
        }
        VcpuOp::GetRunstateInfo => {
            // Xen's vcpu_runstate_get: the current state counted up to now.
            let info = v.runstate.info(crate::time::now_ns());
            write_guest(cr3, arg, &info)?;
            Ok(0)
        }
        VcpuOp::RegisterRunstateMemoryArea => {
            let area: VcpuRegisterRunstateMemoryArea = read_guest(cr3, arg)?;
            // Xen's guest_handle_okay: the address must be a guest one
            // (below the non-canonical hole, or above the hypervisor's
            // range); whether it is mapped is only seen on each update.
            if !guest_address_ok(area.addr) {
                return Err(Errno::EFAULT);
            }
            crate::sched::register_runstate_area(v, area.addr, self_call, cr3);
            Ok(0)
        }
        VcpuOp::RegisterVcpuInfo => {
            let r: VcpuRegisterVcpuInfo = read_guest(cr3, arg)?;
            register_vcpu_info(c.dom, id, &r)?;
            Ok(0)
        }
        // NMIs, physical ids and time areas are not provided yet.
        _ => Err(Errno::ENOSYS),
    }
}

/// Smallest periodic timer period a guest may ask for.
const MIN_PERIOD_NS: u64 = 1_000_000;

/// Xen's `__addr_ok` for a 64-bit PV guest: an address in the lower half,
/// or above the hypervisor's reserved range.
fn guest_address_ok(va: u64) -> bool {
    !(1 << 47..xen_core::guest_walk::HYPERVISOR_VIRT_END).contains(&va)
}

/// Drops the base-pointer references of a vCPU's previous context.
pub(crate) fn put_base_pointers(domid: u16, l4: u64, user_l4: u64) {
    use xen_core::mm::{ptval, Mfn};
    crate::pv_mm::with_pt(domid, |ctx, ft, mem| {
        for t in [l4, user_l4].into_iter().filter(|&t| t != 0) {
            let _ = ptval::new_baseptr(ctx, ft, mem, Some(Mfn(t >> 12)), None);
        }
    });
}

/// VCPUOP_initialise for a 64-bit PV vCPU (Xen's arch_set_info_guest).
/// Takes the base-pointer references of a vCPU being initialised: the
/// kernel L4 `l4` and, if not 0, the user L4 `user_l4` (machine addresses).
fn take_base_pointers(domid: u16, l4: u64, user_l4: u64) -> Result<(), Errno> {
    use xen_core::mm::{ptval, Mfn};
    crate::pv_mm::with_pt(domid, |ctx, ft, mem| {
        ptval::new_baseptr(ctx, ft, mem, None, Some(Mfn(l4 >> 12)))?;
        if user_l4 != 0 {
            if let Err(e) = ptval::new_baseptr(ctx, ft, mem, None, Some(Mfn(user_l4 >> 12))) {
                ptval::put_table(ctx, ft, mem, Mfn(l4 >> 12));
                return Err(e);
            }
        }
        Ok(())
    })
    .map_err(|e| {
        log::debug!("d{domid}: VCPUOP_initialise: {e}");
        e.errno()
    })
}

pub(crate) fn initialise(
    domid: u16,
    v: &mut crate::domain::Vcpu,
    ctx: &VcpuGuestContext,
) -> Result<(), Errno> {
    let r = &ctx.user_regs;
    for a in [
        r.rip,
        ctx.event_callback_eip,
        ctx.failsafe_callback_eip,
        ctx.syscall_callback_eip,
        ctx.fs_base,
        ctx.gs_base_kernel,
        ctx.gs_base_user,
        ctx.kernel_sp,
    ] {
        if !is_canonical(a) {
            return Err(Errno::EINVAL);
        }
    }
    for t in ctx.trap_ctxt.iter() {
        if !is_canonical(t.address) {
            return Err(Errno::EINVAL);
        }
    }
    // xen_cr3_to_pfn: on x86_64 the frame number is cr3 >> 12.
    let l4 = ctx.ctrlreg[3] & !0xfff;
    let user_l4 = ctx.ctrlreg[1] & !0xfff;
    // Xen's arch_set_info_guest: a root-table reference on the kernel L4
    // (validating it if need be), and on the user L4 if one is given.
    take_base_pointers(domid, l4, user_l4)?;
    v.regs = TrapFrame {
        r15: r.r15,
        r14: r.r14,
        r13: r.r13,
        r12: r.r12,
        rbp: r.rbp,
        rbx: r.rbx,
        r11: r.r11,
        r10: r.r10,
        r9: r.r9,
        r8: r.r8,
        rax: r.rax,
        rcx: r.rcx,
        rdx: r.rdx,
        rsi: r.rsi,
        rdi: r.rdi,
        vector: 0,
        error_code: 0,
        rip: r.rip,
        cs: u64::from(crate::arch::x86_64::gdt::RING3_CS64),
        rflags: (r.rflags & !(0x3 << 12)) | (1 << 9) | (1 << 1),
        rsp: r.rsp,
        ss: u64::from(crate::arch::x86_64::gdt::RING3_DS),
    };
    v.kernel_mode = true;
    v.guest_table = l4;
    v.guest_table_user = user_l4;
    v.kernel_ss = ctx.kernel_ss | GUEST_RPL;
    v.kernel_sp = ctx.kernel_sp;
    v.callbacks.event = ctx.event_callback_eip;
    v.callbacks.failsafe = ctx.failsafe_callback_eip;
    v.callbacks.syscall = ctx.syscall_callback_eip;
    v.fs_base = ctx.fs_base;
    v.gs_base_kernel = ctx.gs_base_kernel;
    v.gs_base_user = ctx.gs_base_user;
    v.vgc_flags = ctx.flags;
    // Xen keeps the IOPL of the context as the vCPU's virtual IOPL, and
    // only TS of its CR0.
    v.emul.iopl = ((r.rflags >> 12) & 3) as u8;
    v.fpu_ts = ctx.ctrlreg[0] & crate::arch::x86_64::instr::CR0_TS != 0;
    for t in ctx.trap_ctxt.iter().filter(|t| t.address != 0) {
        v.trap_table[usize::from(t.vector)] = *t;
    }
    if ctx.flags & VGCF_I387_VALID != 0 {
        v.fpu.0.copy_from_slice(&ctx.fpu_ctxt);
        v.fpu_valid = true;
    }
    Ok(())
}

/// VCPUOP_register_vcpu_info: move the vCPU's vcpu_info into a page of the
/// guest's own (at `offset`, not straddling the page).
fn register_vcpu_info(
    d: &mut crate::domain::Domain,
    id: u32,
    r: &VcpuRegisterVcpuInfo,
) -> Result<(), Errno> {
    let size = core::mem::size_of::<hypercall_abi::xen::VcpuInfo>() as u64;
    if u64::from(r.offset) + size > 4096 {
        return Err(Errno::EINVAL);
    }
    // A PV guest names a machine frame it owns; an HVM guest a guest frame
    // of its RAM (translated through its p2m).
    let mfn = match &d.hvm {
        Some(h) => crate::hvm_glue::lookup(h, r.mfn).ok_or(Errno::EINVAL)?.0,
        None if d.p2m.contains(&r.mfn) => r.mfn,
        None => return Err(Errno::EINVAL),
    };
    let v = &mut d.vcpus[id as usize];
    if v.vcpu_info_maddr != d.shared_info_maddr + crate::domain::vcpu_info_offset(id) {
        return Err(Errno::EINVAL);
    }
    let new = (mfn << 12) + u64::from(r.offset);
    // Carry the current contents over, as Xen does.
    // SAFETY: both addresses are in RAM the domain owns or shares with us,
    // covered by the direct map; `size` bytes each; they do not overlap.
    unsafe {
        core::ptr::copy_nonoverlapping(
            crate::arch::x86_64::paging::phys_to_virt(v.vcpu_info_maddr) as *const u8,
            crate::arch::x86_64::paging::phys_to_virt(new) as *mut u8,
            size as usize,
        )
    };
    v.vcpu_info_maddr = new;
    Ok(())
}

#[inline(never)]
pub fn set_callbacks(c: &mut Call) -> Result<i64, Errno> {
    let [event, failsafe, syscall, ..] = c.args();
    // A non-canonical entry point would fault in xen-core's return to the
    // guest (the CVE-2012-0217 class): refuse it, as Xen does.
    if ![event, failsafe, syscall].iter().all(|&a| is_canonical(a)) {
        return Err(Errno::EINVAL);
    }
    let cb = &mut c.vcpu().callbacks;
    cb.event = event;
    cb.failsafe = failsafe;
    cb.syscall = syscall;
    Ok(0)
}

#[inline(never)]
pub fn callback_op(c: &mut Call) -> Result<i64, Errno> {
    let [cmd, arg, ..] = c.args();
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
    let cb = &mut c.vcpu().callbacks;
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

#[inline(never)]
pub fn set_trap_table(c: &mut Call) -> Result<i64, Errno> {
    let [traps, ..] = c.args();
    let cr3 = c.cr3;
    let table = &mut c.dom.vcpus[c.vcpu].trap_table;
    if traps == 0 {
        table.iter_mut().for_each(|t| *t = TrapInfo::new_zeroed());
        return Ok(0);
    }
    let size = core::mem::size_of::<TrapInfo>() as u64;
    for i in 0..MAX_TRAPS as u64 {
        let mut t = TrapInfo::new_zeroed();
        copy_from_guest(
            cr3,
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
    let [ss, sp, ..] = c.args();
    // Xen's fixup_guest_stack_selector: the guest kernel runs in ring 3, so
    // its stack selector gets RPL 3 whatever it asked for.
    let v = c.vcpu();
    v.kernel_ss = (ss & 0xffff) | GUEST_RPL;
    v.kernel_sp = sp;
    Ok(0)
}
