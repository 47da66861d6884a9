//! Scheduling glue: which vCPU runs on which CPU, context switches, the
//! idle loop, and the exit path every return to a PV guest goes through
//! (reschedule if asked, then deliver pending events), as Xen's
//! `test_all_events` does.
//!
//! Owns the run queues and each CPU's "current vCPU". The choice of the next
//! vCPU is a simple per-CPU round robin with a 30 ms slice for now.

use crate::arch::x86_64::entry::{enter_frame, TrapFrame, TRAP_FRAME_SIZE};
use crate::arch::x86_64::instr::{self, msr};
use crate::arch::x86_64::percpu::{this_cpu, MAX_CPUS};
use crate::arch::x86_64::{apic, smp};
use crate::domain::{find, DomId, Domain, RunState, Vcpu, DOMAINS};
use alloc::collections::VecDeque;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use spin::Mutex;

/// Vector of the "look at your run queue / pending events" IPI.
pub const EVENT_CHECK_VECTOR: u8 = 0xf2;
/// Scheduler ticks per time slice (ticks are `apic::TIMER_HZ`).
const SLICE_TICKS: u64 = apic::TIMER_HZ * 30 / 1000;
/// `current_vcpu` value of an idle CPU.
const IDLE: u32 = u32::MAX;

static RUNQ: Mutex<[VecDeque<(DomId, u32)>; MAX_CPUS]> =
    Mutex::new([const { VecDeque::new() }; MAX_CPUS]);
static NEED_RESCHED: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
static TICKS: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// The vCPU running on this CPU, as (domain, vCPU number).
pub fn current() -> Option<(DomId, u32)> {
    let c = this_cpu().current_vcpu.load(Ordering::Acquire);
    (c != IDLE).then_some(((c >> 16) as DomId, c & 0xffff))
}

fn set_current(v: Option<(DomId, u32)>) {
    let val = v.map_or(IDLE, |(d, i)| (u32::from(d) << 16) | i);
    this_cpu().current_vcpu.store(val, Ordering::Release);
    crate::arch::x86_64::flush::set_running(v.map(|(d, _)| d));
}

fn cpu() -> usize {
    this_cpu().cpu as usize
}

/// Asks `cpu` to reschedule at its next exit to a guest (and kicks it if it
/// is another CPU).
pub fn raise_resched(target: usize) {
    NEED_RESCHED[target].store(true, Ordering::Release);
    kick(target);
}

/// Makes `target` look at its run queue and pending events soon.
pub fn kick(target: usize) {
    if target != cpu() {
        if let Some(id) = smp::apic_id_of(target) {
            apic::send_ipi(id, u32::from(EVENT_CHECK_VECTOR));
        }
    }
}

/// The CPU a vCPU is placed on (static placement: vCPU n on CPU n mod N).
pub fn home_cpu(v: &Vcpu) -> usize {
    (v.id as usize) % (smp::cpus_online() as usize).max(1)
}

/// Makes a blocked vCPU runnable. The caller holds DOMAINS.
pub fn wake(d: &mut Domain, vcpu: u32) {
    if d.vcpus
        .get(vcpu as usize)
        .is_some_and(|v| v.state == RunState::Blocked)
    {
        make_runnable(d, vcpu);
    }
}

/// Brings a down vCPU up (VCPUOP_up, or Dom0's first vCPU at boot). The
/// caller checked that it has a context.
pub fn vcpu_up(d: &mut Domain, vcpu: u32) {
    if d.shutdown.is_none()
        && d.vcpus
            .get(vcpu as usize)
            .is_some_and(|v| v.state == RunState::Down)
    {
        make_runnable(d, vcpu);
    }
}

fn make_runnable(d: &mut Domain, vcpu: u32) {
    let domid = d.domid;
    let Some(v) = d.vcpus.get_mut(vcpu as usize) else {
        return;
    };
    v.state = RunState::Runnable;
    v.poll_ports.clear();
    let target = home_cpu(v);
    RUNQ.lock()[target].push_back((domid, vcpu));
    raise_resched(target);
}

/// Blocks the current vCPU (SCHEDOP_block / poll); the exit path switches.
pub fn block_current(v: &mut Vcpu) {
    v.state = RunState::Blocked;
    v.state_entry_ns = crate::time::now_ns();
    NEED_RESCHED[cpu()].store(true, Ordering::Release);
}

/// Gives up the CPU (SCHEDOP_yield).
pub fn yield_current() {
    NEED_RESCHED[cpu()].store(true, Ordering::Release);
}

/// The scheduler tick, from the APIC timer on every CPU.
pub fn tick() {
    let c = cpu();
    let t = TICKS[c].fetch_add(1, Ordering::Relaxed) + 1;
    if c == 0 {
        crate::vtimer::run_expired();
    }
    if t.is_multiple_of(SLICE_TICKS) && !RUNQ.lock()[c].is_empty() {
        NEED_RESCHED[c].store(true, Ordering::Release);
    }
}

/// Saves the running vCPU's state from `frame` and the CPU.
fn save(v: &mut Vcpu, frame: &TrapFrame) {
    v.regs = *frame;
    v.fs_base = instr::rdmsr(msr::FS_BASE);
    if v.kernel_mode {
        v.gs_base_kernel = instr::rdmsr(msr::GS_BASE);
    } else {
        v.gs_base_user = instr::rdmsr(msr::GS_BASE);
    }
    instr::fxsave(&mut v.fpu.0);
    v.fpu_valid = true;
    if v.debugreg[7] & crate::pv::DR7_ENABLE_MASK != 0 {
        // SAFETY: disabling all breakpoints is always safe.
        unsafe { instr::write_dr(7, 0) };
    }
    crate::pv::unmap_gdt(v);
    let now = crate::time::now_ns();
    v.run_ns += now.saturating_sub(v.state_entry_ns);
    v.state_entry_ns = now;
}

/// Loads `v` onto this CPU, into `frame`.
fn load(v: &mut Vcpu, frame: &mut TrapFrame) {
    *frame = v.regs;
    // Another vCPU's address space: drop every translation, global ones
    // included (guest user mappings are global).
    crate::pv_mm::load_cr3(v.current_table());
    // SAFETY: the FS/GS bases are the guest's own, checked canonical.
    unsafe {
        instr::wrmsr(msr::FS_BASE, v.fs_base);
        instr::wrmsr(
            msr::GS_BASE,
            if v.kernel_mode {
                v.gs_base_kernel
            } else {
                v.gs_base_user
            },
        );
    }
    if v.fpu_valid {
        instr::fxrstor(&v.fpu.0);
    } else {
        instr::fpu_init();
    }
    if v.fpu_ts {
        instr::stts();
    }
    if v.debugreg[7] & crate::pv::DR7_ENABLE_MASK != 0 {
        for n in [0, 1, 2, 3, 7] {
            // SAFETY: the values were validated by set_debugreg to point
            // below the hypervisor's range.
            unsafe { instr::write_dr(n, v.debugreg[n]) };
        }
    }
    crate::pv::map_gdt(v);
    crate::pv_emul::load_vcpu(v);
    crate::pv::update_vcpu_time(v);
    v.state = RunState::Running(this_cpu().cpu);
    v.state_entry_ns = crate::time::now_ns();
}

/// Picks what runs next on this CPU and loads it into `frame` (the frame at
/// the top of this CPU's stack). Idles, with interrupts on, until there is
/// something to run. Called with interrupts off.
fn schedule(frame: &mut TrapFrame) {
    let c = cpu();
    NEED_RESCHED[c].store(false, Ordering::Release);
    // Put the current vCPU away.
    if let Some((domid, id)) = current() {
        let mut doms = DOMAINS.lock();
        if let Some(v) = find(&mut doms, domid).and_then(|d| d.vcpus.get_mut(id as usize)) {
            save(v, frame);
            if matches!(v.state, RunState::Running(_)) {
                v.state = RunState::Runnable;
                RUNQ.lock()[c].push_back((domid, id));
            }
        }
        set_current(None);
    }
    loop {
        {
            let mut doms = DOMAINS.lock();
            loop {
                let Some((domid, id)) = RUNQ.lock()[c].pop_front() else {
                    break;
                };
                if let Some(v) = find(&mut doms, domid).and_then(|d| d.vcpus.get_mut(id as usize)) {
                    if v.state == RunState::Runnable {
                        load(v, frame);
                        set_current(Some((domid, id)));
                        return;
                    }
                }
            }
        }
        // Nothing to run: halt until an interrupt (a timer, an IPI) may
        // have made something runnable.
        instr::sti_hlt();
        instr::cli();
    }
}

/// The frame at the top of this CPU's stack: the running guest's registers.
fn top_frame() -> *mut TrapFrame {
    (this_cpu().stack_top - TRAP_FRAME_SIZE) as *mut TrapFrame
}

/// The exit path of every entry from a PV guest (interrupts off).
pub fn exit_to_guest(frame: &mut TrapFrame) {
    if NEED_RESCHED[cpu()].load(Ordering::Acquire) || current().is_none() {
        schedule(frame);
    }
    crate::pv::deliver_events(frame);
}

/// Leaves whatever this CPU was doing (boot, a crashed vCPU) for the next
/// runnable vCPU. Never returns.
pub fn schedule_away() -> ! {
    instr::cli();
    set_current(None);
    let top = top_frame();
    // SAFETY: the top frame area of this CPU's stack is only ever used for
    // the running guest's registers; nothing else lives there.
    let frame = unsafe { &mut *top };
    schedule(frame);
    crate::pv::deliver_events(frame);
    // SAFETY: `frame` now holds a vCPU context loaded by `schedule` (with
    // that vCPU's page tables in CR3).
    unsafe { enter_frame(top) }
}

/// What an AP (or any CPU with nothing else to do) runs.
pub fn idle_loop() -> ! {
    schedule_away()
}
