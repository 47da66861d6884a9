//! Hypercall dispatch: from the PV `syscall` entry to one handler per
//! hypercall family. Unknown hypercalls and sub-ops return -ENOSYS.
//!
//! Arguments arrive in rdi, rsi, rdx, r10, r8 (Xen's x86_64 PV convention);
//! the result goes back in rax. Handlers never trust an argument: pointers are
//! guest virtual addresses copied through `domain::copy_{from,to}_guest`.

mod console_io;
pub(crate) mod cpu;
mod desc;
mod dm_op;
mod domctl;
pub(crate) mod evtchn;
pub mod grant_table;
mod hvm_op;
mod memory;
mod mmu;
mod physdev;
mod sched_op;
mod sysctl;
mod vcpu;
mod xen_version;

pub use desc::{get_desc_page, put_desc_page};

use crate::arch::x86_64::entry::TrapFrame;
use crate::domain::{Domain, DOMAINS};
use hypercall_abi::errno::Errno;
use hypercall_abi::hypercall::Hypercall;

/// The result of a handler: a value for rax, or an instruction to crash the
/// caller's domain.
pub enum Outcome {
    /// Return this value (negative: -errno) in rax.
    Ret(i64),
    /// The handler already set the registers (iret): return as they are.
    NoRet,
    /// Crash the calling domain (e.g. a broken iret frame), saying why.
    Crash(&'static str),
}

impl From<Result<i64, Errno>> for Outcome {
    fn from(r: Result<i64, Errno>) -> Self {
        Outcome::Ret(r.unwrap_or_else(Errno::to_ret))
    }
}

/// A hypercall's context: the caller and its arguments.
pub struct Call<'a> {
    /// The calling domain.
    pub dom: &'a mut Domain,
    /// The calling vCPU's number.
    pub vcpu: usize,
    /// The guest kernel's page table (machine address), for argument copies.
    pub cr3: u64,
    /// The caller's registers.
    pub frame: &'a mut TrapFrame,
    /// Every other domain, for operations that reach across domains
    /// (domctl, foreign mappings, inter-domain event channels, grants).
    pub others: Others<'a>,
    /// A change of the domain table itself, made once the call is over.
    pub deferred: Option<Deferred>,
}

/// Changes of the domain table a hypercall asks for (made after it, when
/// the table is no longer split around the caller).
pub enum Deferred {
    /// Add a new domain (XEN_DOMCTL_createdomain).
    Insert(alloc::boxed::Box<Domain>),
    /// Remove a destroyed domain.
    Remove(crate::domain::DomId),
    /// Wait, with the domain table unlocked, until none of the domain's
    /// first `vcpus` vCPUs is on a CPU (`XEN_DOMCTL_pausedomain`: Xen's
    /// `domain_pause` returns only then, `vcpu_sleep_sync`).
    WaitOffCpu(crate::domain::DomId, u32),
}

/// The domains other than the caller, while the domain table is locked:
/// the table split around the caller, so the caller and one other domain
/// can be borrowed at the same time.
pub struct Others<'a> {
    before: &'a mut [Domain],
    after: &'a mut [Domain],
}

impl<'a> Others<'a> {
    /// Splits the table around index `me`; `None` if out of range.
    pub fn split(doms: &'a mut [Domain], me: usize) -> Option<(&'a mut Domain, Others<'a>)> {
        if me >= doms.len() {
            return None;
        }
        let (before, rest) = doms.split_at_mut(me);
        let (dom, after) = rest.split_first_mut()?;
        Some((dom, Others { before, after }))
    }

    /// The domain `domid`, if it exists and is not the caller.
    pub fn get(&mut self, domid: crate::domain::DomId) -> Option<&mut Domain> {
        self.before
            .iter_mut()
            .chain(self.after.iter_mut())
            .find(|d| d.domid == domid)
    }

    /// Every other domain.
    pub fn iter(&self) -> impl Iterator<Item = &Domain> {
        self.before.iter().chain(self.after.iter())
    }

    /// Every other domain, mutably.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Domain> {
        self.before.iter_mut().chain(self.after.iter_mut())
    }
}

impl Call<'_> {
    /// The five arguments, from the caller's registers: rdi, rsi, rdx,
    /// r10, r8 (Xen's x86_64 convention; an HVM caller's are moved there).
    #[inline]
    pub fn args(&self) -> [u64; 5] {
        let f = &*self.frame;
        [f.rdi, f.rsi, f.rdx, f.r10, f.r8]
    }

    /// The calling vCPU.
    pub fn vcpu(&mut self) -> &mut crate::domain::Vcpu {
        &mut self.dom.vcpus[self.vcpu]
    }
}

/// How a hypercall leaves [`pv_syscall_dispatch`]'s locked part.
enum Exit {
    /// rax set and events delivered already: straight back to the guest.
    Done,
    /// The general way: the outcome, then `sched::exit_to_guest`.
    Slow(Outcome),
    /// The event upcall's bounce frame could not be written (why).
    Upcall(&'static str),
}

/// Entered from `syscall_entry` with the guest's registers: a hypercall
/// from guest kernel mode, or a system call from guest user mode. Returns
/// non-zero when the way back may be `sysretq` (see `xen_core::sysret`).
#[no_mangle]
extern "C" fn pv_syscall_dispatch(frame: &mut TrapFrame) -> u64 {
    let Some((domid, vcpu)) = crate::sched::current() else {
        crate::domain::crash_current(frame, format_args!("syscall with no current vCPU"));
    };
    // A pause to see through once the domain table is unlocked.
    let mut wait_off_cpu = None;
    let out = {
        let mut doms = DOMAINS.lock();
        let me = crate::domain::position_of_current(&doms, domid);
        let Some((dom, others)) = me.and_then(|i| Others::split(&mut doms, i)) else {
            drop(doms);
            crate::domain::crash_current(frame, format_args!("syscall from a vanished domain"));
        };
        let v = &mut dom.vcpus[vcpu as usize];
        if !v.kernel_mode {
            // A system call of guest user mode: bounced to the guest
            // kernel, then, as for a hypercall, events under the lock held.
            match crate::pv::syscall_from_user(frame, v) {
                Ok(()) if !crate::sched::exit_needs_schedule() => {
                    match crate::pv::deliver_events_to(frame, v) {
                        Ok(false) => Exit::Done,
                        // Through the event bounce frame just built: back
                        // with `iretq` (no longer a frame `sysretq` restores).
                        Ok(true) => return 0,
                        Err(why) => Exit::Upcall(why),
                    }
                }
                Ok(()) => Exit::Slow(Outcome::NoRet),
                Err(why) => Exit::Slow(Outcome::Crash(why)),
            }
        } else {
            let nr = frame.rax;
            // `iret` ends every bounce (events, exceptions, system calls):
            // straight to the vCPU, without the general call's set-up;
            // so does an unknown number.
            let (out, deferred, dom, f, may_unmap) = if nr == Hypercall::Iret as u64 {
                let out = match crate::pv::do_iret(frame, v) {
                    Ok(()) => Outcome::NoRet,
                    Err(why) => Outcome::Crash(why),
                };
                (out, None, dom, &mut *frame, false)
            } else if Hypercall::from_raw(nr).is_none() {
                // A number Xen does not define: nothing to set up.
                log::debug!("d{domid}: unknown hypercall {nr}");
                (
                    Outcome::Ret(Errno::ENOSYS.to_ret()),
                    None,
                    dom,
                    &mut *frame,
                    false,
                )
            } else {
                let cr3 = v.guest_table;
                let mut call = Call {
                    dom,
                    vcpu: vcpu as usize,
                    cr3,
                    frame,
                    others,
                    deferred: None,
                };
                let out = dispatch(nr, &mut call);
                let deferred = call.deferred.take();
                let Call { dom, frame: f, .. } = call;
                (out, deferred, dom, f, true)
            };
            // Only a call that may have changed page tables can have
            // implicitly unmapped a grant (not iret, not an unknown one).
            let implicit = may_unmap && grant_table::take_implicit_unmap(domid);
            match (out, deferred) {
                // The common way out, under the lock already held: a
                // value for rax, then events, unless the scheduler has
                // something to do first (then `exit_to_guest` below).
                (out @ (Outcome::Ret(_) | Outcome::NoRet), None)
                    if !implicit && !crate::sched::exit_needs_schedule() =>
                {
                    // NoRet: the handler set the registers (iret).
                    if let Outcome::Ret(r) = out {
                        f.rax = r as u64;
                    }
                    let v = &mut dom.vcpus[vcpu as usize];
                    match crate::pv::deliver_events_to(f, v) {
                        Ok(false) => Exit::Done,
                        // Through the event bounce frame just built: back
                        // with `iretq` (no longer a frame `sysretq` restores).
                        Ok(true) => return 0,
                        Err(why) => Exit::Upcall(why),
                    }
                }
                (out, deferred) => {
                    match deferred {
                        Some(Deferred::Insert(d)) => crate::domain::insert(&mut doms, *d),
                        Some(Deferred::Remove(id)) => crate::domain::destroy(&mut doms, id),
                        Some(Deferred::WaitOffCpu(id, n)) => wait_off_cpu = Some((id, n)),
                        None => {}
                    }
                    if implicit {
                        Exit::Slow(Outcome::Crash("attempt to implicitly unmap a granted PTE"))
                    } else {
                        Exit::Slow(out)
                    }
                }
            }
        }
    };
    if let Some((id, n)) = wait_off_cpu {
        crate::sched::wait_off_cpu(id, n);
    }
    match out {
        Exit::Done => {}
        Exit::Slow(out) => {
            match out {
                Outcome::Ret(v) => frame.rax = v as u64,
                Outcome::NoRet => {}
                Outcome::Crash(why) => crate::domain::crash_current(frame, format_args!("{why}")),
            }
            crate::sched::exit_to_guest(frame);
        }
        Exit::Upcall(why) => {
            crate::domain::crash_current(frame, format_args!("event upcall: {why}"))
        }
    }
    u64::from(xen_core::sysret::may_sysret(
        frame.rip,
        frame.cs,
        frame.rflags,
        frame.ss,
        frame.rcx,
        frame.r11,
    ))
}

/// A hypercall from HVM vCPU `vcpu` of `doms[me]` (VMMCALL through its
/// hypercall page): the number in `frame.rax`, the arguments in `rdi`,
/// `rsi`, `rdx`, `r10`, `r8` (the caller moved a 32-bit guest's `ebx`,
/// `ecx`, `edx`, `esi`, `edi` there). Guest pointers go through the
/// vCPU's own page tables ([`crate::domain::HVM_SPACE`], set up by the
/// caller). Only the calls Xen offers HVM guests; the others `-ENOSYS`.
pub fn dispatch_hvm(doms: &mut [Domain], me: usize, vcpu: usize, frame: &mut TrapFrame) -> Outcome {
    let Some((dom, others)) = Others::split(doms, me) else {
        return Outcome::Crash("hypercall from a vanished domain");
    };
    let nr = frame.rax;
    let allowed = matches!(
        Hypercall::from_raw(nr),
        Some(
            Hypercall::XenVersion
                | Hypercall::ConsoleIo
                | Hypercall::SchedOp
                | Hypercall::SetTimerOp
                | Hypercall::VcpuOp
                | Hypercall::EventChannelOp
                | Hypercall::GrantTableOp
                | Hypercall::MemoryOp
                | Hypercall::HvmOp
        )
    );
    if !allowed {
        return Outcome::Ret(Errno::ENOSYS.to_ret());
    }
    let mut call = Call {
        dom,
        vcpu,
        cr3: crate::domain::HVM_SPACE,
        frame,
        others,
        deferred: None,
    };
    let out = dispatch(nr, &mut call);
    if call.deferred.is_some() {
        // None of the calls above changes the domain table.
        log::warn!("hypercall {nr} from an HVM vCPU asked for a table change; dropped");
    }
    out
}

/// One handler per hypercall family. `iret` never comes here: PV callers
/// have it handled in [`pv_syscall_dispatch`] before a [`Call`] is set up,
/// and HVM callers may not make it.
#[inline(always)]
fn dispatch(nr: u64, c: &mut Call) -> Outcome {
    let Some(hc) = Hypercall::from_raw(nr) else {
        log::debug!("d{}: unknown hypercall {nr}", c.dom.domid);
        return Outcome::Ret(Errno::ENOSYS.to_ret());
    };
    match hc {
        Hypercall::ConsoleIo => console_io::console_io(c).into(),
        Hypercall::XenVersion => xen_version::xen_version(c).into(),
        Hypercall::SchedOp => sched_op::sched_op(c),
        Hypercall::SetTimerOp => sched_op::set_timer_op(c).into(),
        Hypercall::VcpuOp => vcpu::vcpu_op(c).into(),
        Hypercall::SetCallbacks => vcpu::set_callbacks(c).into(),
        Hypercall::CallbackOp => vcpu::callback_op(c).into(),
        Hypercall::SetTrapTable => vcpu::set_trap_table(c).into(),
        Hypercall::StackSwitch => vcpu::stack_switch(c).into(),
        Hypercall::SetGdt => desc::set_gdt(c).into(),
        Hypercall::UpdateDescriptor => desc::update_descriptor(c).into(),
        Hypercall::MemoryOp => memory::memory_op(c).into(),
        Hypercall::MmuUpdate => mmu::mmu_update(c),
        Hypercall::UpdateVaMapping => mmu::update_va_mapping(c).into(),
        Hypercall::MmuextOp => mmu::mmuext_op(c),
        Hypercall::SetSegmentBase => cpu::set_segment_base(c).into(),
        Hypercall::FpuTaskswitch => cpu::fpu_taskswitch(c).into(),
        Hypercall::SetDebugreg => cpu::set_debugreg(c).into(),
        Hypercall::GetDebugreg => cpu::get_debugreg(c).into(),
        Hypercall::EventChannelOp => evtchn::event_channel_op(c).into(),
        Hypercall::EventChannelOpCompat => evtchn::event_channel_op_compat(c).into(),
        Hypercall::PhysdevOp => physdev::physdev_op(c).into(),
        Hypercall::GrantTableOp => grant_table::grant_table_op(c),
        Hypercall::Domctl => domctl::domctl(c).into(),
        Hypercall::Sysctl => sysctl::sysctl(c).into(),
        Hypercall::HvmOp => hvm_op::hvm_op(c).into(),
        Hypercall::DmOp => dm_op::dm_op(c).into(),
        _ => {
            log::debug!("d{}: hypercall {} not implemented", c.dom.domid, hc.name());
            Outcome::Ret(Errno::ENOSYS.to_ret())
        }
    }
}
