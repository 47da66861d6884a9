//! The PV guest's view of the CPU, as Xen's x86_64 PV model defines it:
//! bounce frames (exceptions, events, syscalls delivered to the guest
//! kernel), the `iret` hypercall, guest kernel/user mode switching, event
//! upcalls, and the guest's time record.
//!
//! Trusts nothing the guest wrote: every address it gave is checked before
//! xen-core returns to it (a non-canonical RIP or a foreign selector would
//! fault inside xen-core), and frames are written through
//! `domain::copy_to_guest`, which refuses anything but the guest's own
//! writable memory. A frame that cannot be written crashes the domain.

use crate::arch::x86_64::entry::{TrapFrame, VECTOR_SYSCALL};
use crate::arch::x86_64::gdt::{RING3_CS32, RING3_CS64, RING3_DS};
use crate::arch::x86_64::instr::{self, msr};
use crate::arch::x86_64::paging::phys_to_virt;
use crate::arch::x86_64::traps::{vector, vector_name};
use crate::domain::{self, crash_current, find, Vcpu, DOMAINS};
use hypercall_abi::arch_x86::{
    IretContext, TI_IF_FLAG, VGCF_IN_SYSCALL, VGCF_SYSCALL_DISABLES_EVENTS,
};
use hypercall_abi::callback::{CallbackType, CALLBACKF_MASK_EVENTS};
use hypercall_abi::xen::VcpuInfo;
use xen_core::guest_walk::{is_canonical, HYPERVISOR_VIRT_END, HYPERVISOR_VIRT_START};
use zerocopy::IntoBytes;

/// RFLAGS bits (Intel SDM vol 1 §3.4.3).
mod rflags {
    pub const IF: u64 = 1 << 9;
    pub const TF: u64 = 1 << 8;
    pub const DF: u64 = 1 << 10;
    pub const IOPL: u64 = 3 << 12;
    pub const NT: u64 = 1 << 14;
    pub const RF: u64 = 1 << 16;
    pub const VM: u64 = 1 << 17;
    pub const AC: u64 = 1 << 18;
}

/// DR7 bits that enable a breakpoint (L0..L3, G0..G3).
pub const DR7_ENABLE_MASK: u64 = 0xff;

/// What to deliver to the guest kernel (Xen's `struct trap_bounce`).
#[derive(Clone, Copy, Debug)]
pub struct Bounce {
    /// Guest handler address.
    pub eip: u64,
    /// Error code to push, if the exception has one.
    pub error_code: Option<u64>,
    /// Mask events (TBF_INTERRUPT): set the guest's virtual IF off.
    pub mask_events: bool,
    /// Push the failsafe frame (data segment selectors) too.
    pub failsafe: bool,
}

fn vcpu_info_ptr(v: &Vcpu) -> *mut VcpuInfo {
    phys_to_virt(v.vcpu_info_maddr) as *mut VcpuInfo
}

/// The guest's event mask byte (its virtual IF, inverted).
fn upcall_mask(v: &Vcpu) -> &'static core::sync::atomic::AtomicU8 {
    // SAFETY: vcpu_info_maddr points into a page the hypervisor keeps
    // allocated for the domain's lifetime (shared_info or a registered,
    // referenced guest page); AtomicU8 has the layout of u8 and tolerates
    // the guest changing it concurrently.
    unsafe {
        &*(core::ptr::addr_of_mut!((*vcpu_info_ptr(v)).evtchn_upcall_mask)
            as *const core::sync::atomic::AtomicU8)
    }
}

fn upcall_pending(v: &Vcpu) -> &'static core::sync::atomic::AtomicU8 {
    // SAFETY: as for `upcall_mask`.
    unsafe {
        &*(core::ptr::addr_of_mut!((*vcpu_info_ptr(v)).evtchn_upcall_pending)
            as *const core::sync::atomic::AtomicU8)
    }
}

/// Switches between guest kernel and guest user mode (Xen's
/// `toggle_guest_mode`): page tables and the active GS base.
#[inline(always)]
pub fn toggle_guest_mode(v: &mut Vcpu) {
    let active = instr::rdmsr(msr::GS_BASE);
    if v.kernel_mode {
        v.gs_base_kernel = active;
    } else {
        v.gs_base_user = active;
    }
    v.kernel_mode = !v.kernel_mode;
    // SAFETY: the GS base is the guest's; both L4s carry xen-core's slots.
    unsafe {
        instr::wrmsr(
            msr::GS_BASE,
            if v.kernel_mode {
                v.gs_base_kernel
            } else {
                v.gs_base_user
            },
        );
        instr::write_cr3(v.current_table());
    }
}

/// Builds Xen's bounce frame on the guest kernel stack and redirects
/// `frame` to the handler (Xen's `create_bounce_frame`). Err: the frame
/// could not be written (the caller crashes the domain).
#[inline(never)]
pub fn create_bounce_frame(
    frame: &mut TrapFrame,
    v: &mut Vcpu,
    b: Bounce,
) -> Result<(), &'static str> {
    bounce_frame(frame, v, b)
}

/// [`create_bounce_frame`]'s body, inlined where the bounce's shape is
/// known (the event upcall), so that its branches fold away.
#[inline(always)]
fn bounce_frame(frame: &mut TrapFrame, v: &mut Vcpu, b: Bounce) -> Result<(), &'static str> {
    if b.eip == 0 || !is_canonical(b.eip) {
        return Err("no (or a non-canonical) guest handler");
    }
    let mut cs = frame.cs;
    let mut sp = if v.kernel_mode {
        // Tell the guest kernel it interrupted itself: RPL 0.
        cs &= !3;
        frame.rsp
    } else {
        toggle_guest_mode(v);
        v.kernel_sp
    };
    sp &= !0xf;
    if (HYPERVISOR_VIRT_START..HYPERVISOR_VIRT_END + 60).contains(&sp) {
        return Err("guest kernel stack in the hypervisor's range");
    }
    let saved_mask = upcall_mask(v).load(core::sync::atomic::Ordering::Acquire);
    if b.mask_events {
        upcall_mask(v).store(1, core::sync::atomic::Ordering::Release);
    }
    // The guest sees its virtual IF and its virtual IOPL (set_iopl).
    let guest_rflags = (frame.rflags & !(rflags::IF | rflags::IOPL))
        | if saved_mask == 0 { rflags::IF } else { 0 }
        | (u64::from(v.emul.iopl & 3) << 12);
    // Lowest address first: rcx, r11, [ds, es, fs, gs], [error], rip,
    // cs | mask << 32, rflags, rsp, ss.
    let top = [
        frame.rip,
        cs | (u64::from(saved_mask) << 32),
        guest_rflags,
        frame.rsp,
        frame.ss,
    ];
    if !b.failsafe && b.error_code.is_none() {
        // An event or a system call: the shape known where this is
        // inlined, no array to assemble.
        let [rip, csm, fl, rsp, ss] = top;
        let words = [frame.rcx, frame.r11, rip, csm, fl, rsp, ss];
        return finish_bounce(frame, v.guest_table, sp, &words, b.eip);
    }
    // Built from the top down in a fixed array.
    let mut words = [0u64; 12];
    let mut at = words.len() - top.len();
    words[at..].copy_from_slice(&top);
    if let Some(e) = b.error_code {
        at -= 1;
        words[at] = e;
    }
    if b.failsafe {
        // The data segment selectors: zero, as the array already holds.
        at -= 4;
    }
    at -= 2;
    words[at] = frame.rcx;
    words[at + 1] = frame.r11;
    finish_bounce(frame, v.guest_table, sp, &words[at..], b.eip)
}

/// Writes the bounce frame `words` below the guest kernel stack pointer
/// `sp` (through `guest_table`) and points `frame` at the handler `eip`.
#[inline(always)]
fn finish_bounce(
    frame: &mut TrapFrame,
    guest_table: u64,
    sp: u64,
    words: &[u64],
    eip: u64,
) -> Result<(), &'static str> {
    let new_sp = sp - (words.len() as u64) * 8;
    domain::copy_to_guest(guest_table, new_sp, words.as_bytes())
        .map_err(|_| "cannot write the bounce frame on the guest kernel stack")?;
    frame.vector = VECTOR_SYSCALL;
    frame.rflags &= !(rflags::AC | rflags::VM | rflags::RF | rflags::NT | rflags::TF);
    frame.ss = u64::from(RING3_DS);
    frame.rsp = new_sp;
    frame.cs = u64::from(RING3_CS64);
    frame.rip = eip;
    Ok(())
}

/// Delivers a pending event upcall to the running vCPU, if its events are
/// unmasked (Xen's `test_guest_events`). Interrupts are off.
pub fn deliver_events(frame: &mut TrapFrame) {
    let Some((domid, id)) = crate::sched::current() else {
        return;
    };
    let mut doms = DOMAINS.lock();
    let Some(v) = find(&mut doms, domid).and_then(|d| d.vcpus.get_mut(id as usize)) else {
        return;
    };
    if let Err(why) = deliver_events_to(frame, v) {
        drop(doms);
        crash_current(frame, format_args!("event upcall: {why}"));
    }
}

/// [`deliver_events`] for the running vCPU `v`, which the caller found
/// (with the domain table locked): the hypercall path's exit, which has
/// it at hand. Ok(true) if it bounced the vCPU to its event callback. An
/// error is the bounce frame's; the caller crashes the domain once the
/// table is unlocked.
#[inline]
pub fn deliver_events_to(frame: &mut TrapFrame, v: &mut Vcpu) -> Result<bool, &'static str> {
    let pending = upcall_pending(v).load(core::sync::atomic::Ordering::Acquire);
    let mask = upcall_mask(v).load(core::sync::atomic::Ordering::Acquire);
    if pending == 0 || mask != 0 || v.callbacks.event == 0 {
        return Ok(false);
    }
    bounce_event(frame, v).map(|()| true)
}

/// The event upcall's bounce frame (out of line: the exit paths only test
/// for events inline).
#[inline(never)]
fn bounce_event(frame: &mut TrapFrame, v: &mut Vcpu) -> Result<(), &'static str> {
    let b = Bounce {
        eip: v.callbacks.event,
        error_code: None,
        mask_events: true,
        failsafe: false,
    };
    bounce_frame(frame, v, b)
}

/// Whether exception `vec` pushes an error code.
fn has_error_code(vec: u64) -> bool {
    matches!(vec, 8 | 10..=14 | 17 | 21 | 29 | 30)
}

/// Page-fault error code bit: the access came from user mode.
const PFEC_USER_MODE: u64 = 1 << 2;

/// Why an exception could not be delivered (the domain is crashed).
struct Undeliverable {
    vector: u8,
    error_code: u64,
    why: Option<&'static str>,
}

/// A fault or trap raised while a PV guest ran: emulate the privileged
/// instruction behind a #GP/#UD if Xen would (`pv_emul`), else bounce the
/// exception to the guest's handler (from its trap table), or crash the
/// domain if it has none.
///
/// True if the way back to the guest is settled already: nothing for the
/// scheduler to do, and pending events delivered with the domain table
/// still locked (the exit path's work, done here without locking twice).
pub fn guest_exception(frame: &mut TrapFrame) -> bool {
    let vec = frame.vector;
    let Some((domid, id)) = crate::sched::current() else {
        crash_current(
            frame,
            format_args!("{} with no current vCPU", vector_name(vec)),
        )
    };
    let result = {
        let mut doms = DOMAINS.lock();
        let Some(d) = domain::position_of_current(&doms, domid).map(|i| &mut doms[i]) else {
            return false;
        };
        guest_exception_locked(frame, d, id as usize).map(|()| {
            if crate::sched::exit_needs_schedule() {
                return Ok(false);
            }
            match d.vcpus.get_mut(id as usize) {
                Some(v) => deliver_events_to(frame, v).map(|_| true),
                None => Ok(false),
            }
        })
    };
    match result {
        Ok(Ok(done)) => done,
        Ok(Err(why)) => crash_current(frame, format_args!("event upcall: {why}")),
        Err(u) => {
            let vec = u64::from(u.vector);
            match u.why {
                None => crash_current(
                    frame,
                    format_args!(
                        "{} (vector {}, error {:#x}) with no guest handler",
                        vector_name(vec),
                        vec,
                        u.error_code
                    ),
                ),
                Some(why) => crash_current(
                    frame,
                    format_args!("{} (vector {vec}): {why}", vector_name(vec)),
                ),
            }
        }
    }
}

fn guest_exception_locked(
    frame: &mut TrapFrame,
    d: &mut domain::Domain,
    id: usize,
) -> Result<(), Undeliverable> {
    let vec = frame.vector;
    if vec == u64::from(vector::GENERAL_PROTECTION) || vec == u64::from(vector::INVALID_OPCODE) {
        use crate::pv_emul::Action;
        match crate::pv_emul::handle(frame, d, id) {
            Some(Action::Resume { dr6 }) => {
                let Some(v) = d.vcpus.get_mut(id) else {
                    return Ok(());
                };
                if dr6 == 0 {
                    return Ok(());
                }
                // A trap after the emulated instruction (single-step, I/O
                // breakpoint): the DR6 bits, then #DB.
                // SAFETY: DR6 is a status register; writing it enables
                // nothing.
                unsafe { instr::write_dr(6, instr::read_dr6() | u64::from(dr6)) };
                return inject(frame, v, vector::DEBUG, None, None);
            }
            Some(Action::SoftInt { vector }) => {
                let Some(v) = d.vcpus.get_mut(id) else {
                    return Ok(());
                };
                return inject(frame, v, vector, None, None);
            }
            Some(Action::Fault {
                vector,
                error_code,
                cr2,
            }) => {
                let Some(v) = d.vcpus.get_mut(id) else {
                    return Ok(());
                };
                return inject(frame, v, vector, error_code.map(u64::from), cr2);
            }
            None => {}
        }
    }
    let Some(v) = d.vcpus.get_mut(id) else {
        return Ok(());
    };
    let cr2 = (vec == u64::from(vector::PAGE_FAULT)).then(instr::read_cr2);
    if let Some(addr) = cr2 {
        // A write to a mapping log-dirty mode protected: fixed here, the
        // guest retries it and never sees the fault.
        if crate::log_dirty::pv_write_fault(d.domid, addr, frame.error_code) {
            return Ok(());
        }
    }
    if vec == u64::from(vector::DEVICE_NOT_AVAILABLE) {
        // Lazy FPU (Xen's do_device_not_available): the state is loaded;
        // clear TS, and bounce #NM only if the guest asked for TS.
        instr::clts();
        if !v.fpu_ts {
            return Ok(());
        }
        v.fpu_ts = false;
    }
    let error_code = has_error_code(vec).then_some(frame.error_code);
    inject(frame, v, (vec & 0xff) as u8, error_code, cr2)
}

/// Delivers exception or software interrupt `vec` through the guest's trap
/// table (Xen's `pv_inject_event`): a #PF's address goes to the virtual
/// CR2 and `vcpu_info.arch.cr2` first.
fn inject(
    frame: &mut TrapFrame,
    v: &mut Vcpu,
    vec: u8,
    error_code: Option<u64>,
    cr2: Option<u64>,
) -> Result<(), Undeliverable> {
    if let Some(addr) = cr2 {
        v.emul.cr2 = addr;
        set_vcpu_info_cr2(v, addr);
    }
    let mut error_code = error_code;
    if vec == vector::PAGE_FAULT {
        // The guest kernel runs in ring 3, so the CPU always sets the
        // user bit: report it as the guest's mode says (as Xen does).
        error_code = error_code.map(|e| {
            if v.kernel_mode {
                e & !PFEC_USER_MODE
            } else {
                e | PFEC_USER_MODE
            }
        });
    }
    let t = v.trap_table[usize::from(vec)];
    let fail = |why| Undeliverable {
        vector: vec,
        error_code: error_code.unwrap_or(0),
        why,
    };
    if t.address == 0 {
        return Err(fail(None));
    }
    let b = Bounce {
        eip: t.address,
        error_code,
        mask_events: t.flags & TI_IF_FLAG != 0,
        failsafe: false,
    };
    create_bounce_frame(frame, v, b).map_err(|why| fail(Some(why)))
}

/// Sets `vcpu_info.arch.cr2`, where Xen hands a PV guest the faulting
/// address of a page fault (and what `mov %cr2` writes).
pub fn set_vcpu_info_cr2(v: &Vcpu, val: u64) {
    // SAFETY: see `upcall_mask`; a plain u64 store the guest reads later.
    unsafe { core::ptr::addr_of_mut!((*vcpu_info_ptr(v)).arch.cr2).write_volatile(val) };
}

/// A `syscall` from guest user mode: bounce to the guest kernel's syscall
/// callback (Xen's `switch_to_kernel`), or #UD if it registered none.
#[inline(never)]
pub fn syscall_from_user(frame: &mut TrapFrame, v: &mut Vcpu) -> Result<(), &'static str> {
    let cb = v.callbacks.syscall;
    if cb == 0 {
        let t = v.trap_table[usize::from(vector::INVALID_OPCODE)];
        frame.rip = frame.rcx;
        frame.rflags = frame.r11;
        return bounce_frame(
            frame,
            v,
            Bounce {
                eip: t.address,
                error_code: None,
                mask_events: t.flags & TI_IF_FLAG != 0,
                failsafe: false,
            },
        );
    }
    let mask = v.vgc_flags & VGCF_SYSCALL_DISABLES_EVENTS != 0
        || v.callbacks.flags[CallbackType::Syscall.raw() as usize] & CALLBACKF_MASK_EVENTS != 0;
    // The syscall left the return address in rcx and the flags in r11.
    frame.rip = frame.rcx;
    frame.rflags = frame.r11;
    bounce_frame(
        frame,
        v,
        Bounce {
            eip: cb,
            error_code: None,
            mask_events: mask,
            failsafe: false,
        },
    )?;
    frame.rflags &= !rflags::DF;
    Ok(())
}

/// The `iret` hypercall (Xen's `do_iret`): return from a bounce, possibly
/// to guest user mode. Err: crash the domain.
pub fn do_iret(frame: &mut TrapFrame, v: &mut Vcpu) -> Result<(), &'static str> {
    let ctx: IretContext = domain::read_guest(v.guest_table, frame.rsp)
        .map_err(|_| "fault while reading the IRET context from the guest stack")?;
    // Xen keeps only the 16-bit selectors (the frame's cs word also
    // carries the saved upcall mask above bit 32).
    let cs = (ctx.cs & 0xffff) | 3;
    let ss = (ctx.ss & 0xffff) | 3;
    if cs != u64::from(RING3_CS64) && cs != u64::from(RING3_CS32) {
        return Err("iret to a code selector that is not the guest's");
    }
    if ss != u64::from(RING3_DS) {
        return Err("iret to a stack selector that is not the guest's");
    }
    if !is_canonical(ctx.rip) {
        return Err("iret to a non-canonical address");
    }
    if ctx.cs & 3 == 3 {
        if v.guest_table_user == 0 {
            return Err("guest switching to user mode with no user page tables");
        }
        if v.kernel_mode {
            toggle_guest_mode(v);
        }
    }
    frame.rip = ctx.rip;
    frame.cs = cs;
    frame.rflags = (ctx.rflags & !(rflags::IOPL | rflags::VM | rflags::NT)) | rflags::IF;
    frame.rsp = ctx.rsp;
    frame.ss = ss;
    if ctx.flags & VGCF_IN_SYSCALL == 0 {
        frame.r11 = ctx.r11;
        frame.rcx = ctx.rcx;
    } else {
        frame.rcx = ctx.rip;
        frame.r11 = frame.rflags;
    }
    upcall_mask(v).store(
        u8::from(ctx.rflags & rflags::IF == 0),
        core::sync::atomic::Ordering::Release,
    );
    frame.rax = ctx.rax;
    Ok(())
}

/// Refreshes the vCPU's `vcpu_time_info` (Xen's update_vcpu_system_time).
pub fn update_vcpu_time(v: &Vcpu) {
    update_vcpu_time_offset(v, 0);
}

/// [`update_vcpu_time`] for a vCPU whose TSC reads `tsc_offset` more
/// than the host's (an HVM vCPU that wrote its TSC): the record's
/// `tsc_timestamp` is in the guest's TSC, as Xen's `hvm_scale_tsc` /
/// `tsc_offset` make it.
pub fn update_vcpu_time_offset(v: &Vcpu, tsc_offset: u64) {
    let p = vcpu_info_ptr(v);
    // SAFETY: see `upcall_mask`; the version protocol (odd while writing)
    // tells the guest to retry if it reads mid-update.
    unsafe {
        let t = core::ptr::addr_of_mut!((*p).time);
        let mut rec = t.read_volatile();
        let odd = rec.version | 1;
        rec.version = odd;
        t.write_volatile(rec);
        core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
        crate::time::fill_vcpu_time(&mut rec);
        rec.tsc_timestamp = rec.tsc_timestamp.wrapping_add(tsc_offset);
        rec.version = odd.wrapping_add(1);
        core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
        t.write_volatile(rec);
    }
}

/// Unmasks the vCPU's events (its virtual IF on).
pub fn enable_events(v: &Vcpu) {
    upcall_mask(v).store(0, core::sync::atomic::Ordering::Release);
}

/// Whether an event upcall is pending for the vCPU.
pub fn events_pending(v: &Vcpu) -> bool {
    upcall_pending(v).load(core::sync::atomic::Ordering::Acquire) != 0
}

/// Shows the vCPU's GDT frames in pages 0..13 of this CPU's GDT.
pub fn map_gdt(v: &Vcpu) {
    let gdt = crate::arch::x86_64::percpu::this_cpu()
        .gdt_va
        .load(core::sync::atomic::Ordering::Acquire);
    for (i, &mfn) in v.gdt_frames.iter().enumerate() {
        crate::arch::x86_64::paging::remap_page(gdt + (i as u64) * 4096, mfn << 12);
    }
    if v.ldt_ents != 0 {
        map_ldt(v);
    }
}

/// Puts this CPU's own (empty) pages back under the vCPU's GDT frames.
pub fn unmap_gdt(v: &Vcpu) {
    if v.ldt_ents != 0 {
        unmap_ldt(v);
    }
    let gdt = crate::arch::x86_64::percpu::this_cpu()
        .gdt_va
        .load(core::sync::atomic::Ordering::Acquire);
    for i in 0..v.gdt_frames.len() as u64 {
        let va = gdt + i * 4096;
        crate::arch::x86_64::paging::remap_page(
            va,
            crate::arch::x86_64::paging::image_virt_to_phys(va),
        );
    }
}

/// `MMUEXT_SET_LDT` for vCPU `vcpu` of `d`, the caller (running on this
/// CPU): `base`/`ents` are checked by the caller (page-aligned, at most 8192
/// entries, guest addresses). Every page of the new LDT must be mapped in
/// the guest kernel's address space and become a descriptor page (its
/// descriptors checked, and mapped writable nowhere); then it is loaded.
pub fn set_ldt(
    d: &mut crate::domain::Domain,
    vcpu: usize,
    base: u64,
    ents: u64,
) -> Result<(), hypercall_abi::errno::Errno> {
    use xen_core::mm::Mfn;
    let domid = d.domid;
    let Some(v) = d.vcpus.get_mut(vcpu) else {
        return Err(hypercall_abi::errno::Errno::EINVAL);
    };
    let mut frames = heapless::Vec::<u64, 16>::new();
    let pages = (ents * 8).div_ceil(4096);
    for i in 0..pages {
        let got = domain::translate_guest(v.guest_table, base + i * 4096)
            .map_err(|_| hypercall_abi::errno::Errno::EINVAL)
            .and_then(|ma| {
                crate::hypercall::get_desc_page(domid, Mfn(ma >> 12)).map(|()| ma >> 12)
            });
        match got {
            Ok(mfn) => {
                let _ = frames.push(mfn);
            }
            Err(e) => {
                frames
                    .iter()
                    .for_each(|&f| crate::hypercall::put_desc_page(Mfn(f)));
                return Err(e);
            }
        }
    }
    unmap_ldt(v);
    for &old in v.ldt_frames.iter() {
        crate::hypercall::put_desc_page(Mfn(old));
    }
    v.ldt_frames = frames;
    v.ldt_ents = ents;
    v.ldt_base = base;
    map_ldt(v);
    Ok(())
}

/// Shows the vCPU's LDT frames in this CPU's LDT window and loads LDTR.
fn map_ldt(v: &Vcpu) {
    let info = crate::arch::x86_64::percpu::this_cpu();
    let window = info.ldt_va.load(core::sync::atomic::Ordering::Acquire);
    for (i, &mfn) in v.ldt_frames.iter().enumerate() {
        crate::arch::x86_64::paging::remap_page(window + (i as u64) * 4096, mfn << 12);
    }
    let gdt = info.gdt_va.load(core::sync::atomic::Ordering::Acquire) as *mut u64;
    // SAFETY: `gdt` is this CPU's GDT; the window now maps the vCPU's LDT
    // frames, which hold descriptor-page type references (checked
    // descriptors, never guest-writable) until unmap_ldt.
    unsafe { crate::arch::x86_64::gdt::load_ldt(gdt, window, v.ldt_ents) };
}

/// Unloads LDTR and puts this CPU's own pages back under the LDT window.
fn unmap_ldt(v: &Vcpu) {
    let info = crate::arch::x86_64::percpu::this_cpu();
    let gdt = info.gdt_va.load(core::sync::atomic::Ordering::Acquire) as *mut u64;
    // SAFETY: loading the null LDT is always safe.
    unsafe { crate::arch::x86_64::gdt::load_ldt(gdt, 0, 0) };
    let window = info.ldt_va.load(core::sync::atomic::Ordering::Acquire);
    for i in 0..v.ldt_frames.len() as u64 {
        let va = window + i * 4096;
        crate::arch::x86_64::paging::remap_page(
            va,
            crate::arch::x86_64::paging::image_virt_to_phys(va),
        );
    }
}
