//! Scheduling glue: which vCPU runs on which CPU, context switches, the
//! idle loop, and the exit path every return to a PV guest goes through
//! (reschedule if asked, then deliver pending events), as Xen's
//! `test_all_events` does.
//!
//! The choice is made by Xen's credit scheduler ([`xen_core::credit`]): one
//! instance for the machine, behind one lock ([`SCHED`]), with a run queue
//! per CPU inside it. Each vCPU is one scheduling unit ([`UnitMap`] maps
//! unit ids to (domain, vCPU)). This module turns events into scheduler
//! calls (vCPU up/down, block, wake, yield, the tick, shutdown), performs
//! the switches the scheduler decides on, and keeps each vCPU's
//! `RunState` and Xen runstate accounting (`vcpu_runstate_info`) in step.
//!
//! Owns: the scheduler, each CPU's "current vCPU" and "need resched" flag,
//! and the vCPUs' `state`/`runstate` fields. Trusts: its callers to hold
//! `DOMAINS` when they hand in a `Domain` or `Vcpu`; nothing from guests
//! reaches it unchecked (vCPU numbers are looked up, never indexed).
//!
//! Locking: `DOMAINS` before `SCHED`, never the other way round; both are
//! only taken with interrupts off (hypercalls, exceptions and interrupts
//! run with IF clear; the idle loop enables interrupts only in `sti; hlt`,
//! holding no lock). Guest copies (runstate areas), which take the frame
//! table's lock, are made holding `DOMAINS` only, never inside `SCHED`.
//!
//! Timing: the APIC ticks at `apic::TIMER_HZ` (1 kHz) on every CPU. Each
//! tick checks the CPU's slice deadline (so rate-limited slices are honoured
//! to the millisecond); every `tick_period_ns` (10 ms) it also runs credit's
//! own tick (burning credit, ending BOOST, and every 30 ms the accounting).

use crate::arch::x86_64::entry::{enter_frame, TrapFrame, TRAP_FRAME_SIZE};
use crate::arch::x86_64::instr::{self, msr};
use crate::arch::x86_64::percpu::{this_cpu, MAX_CPUS};
use crate::arch::x86_64::{apic, smp};
use crate::domain::{find, DomId, Domain, RunState, Vcpu, DOMAINS};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use hypercall_abi::errno::Errno;
use hypercall_abi::vcpu::RunstateState;
use spin::Mutex;
use xen_core::credit::unitmap::UnitMap;
use xen_core::credit::{self, CpuMask, Credit, CreditParams, UnitId, UnitState};

/// Vector of the "look at your run queue / pending events" IPI.
pub const EVENT_CHECK_VECTOR: u8 = 0xf2;
/// `current_vcpu` value of an idle CPU.
const IDLE: u32 = u32::MAX;
/// "No deadline" in `SLICE_END`.
const NEVER: u64 = u64::MAX;

/// The scheduler and the unit ↔ vCPU map, under one lock.
struct Sched {
    credit: Credit,
    units: UnitMap<{ credit::MAX_UNITS }>,
}

static SCHED: Mutex<Sched> = Mutex::new(Sched {
    credit: Credit::new(),
    units: UnitMap::new(),
});

/// Set when the CPU must call `schedule` at its next exit to a guest (or
/// leave its idle loop). A mirror of credit's per-CPU flag that can be read
/// without the lock.
static NEED_RESCHED: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
/// When the slice of the CPU's current decision ends (system time, ns).
static SLICE_END: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(NEVER) }; MAX_CPUS];
/// When the CPU next runs credit's tick (system time, ns).
static NEXT_TICK: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// Whether the CPU's current vCPU is an HVM one (run by [`hvm_loop`],
/// not from the trap frame).
static CURRENT_HVM: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
/// Whether the CPU has been added to the scheduler.
static REGISTERED: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];

const _: () = assert!(MAX_CPUS <= credit::MAX_CPUS);

/// The vCPU running on this CPU, as (domain, vCPU number).
pub fn current() -> Option<(DomId, u32)> {
    let c = this_cpu().current_vcpu.load(Ordering::Acquire);
    (c != IDLE).then_some(((c >> 16) as DomId, c & 0xffff))
}

fn set_current(v: Option<(DomId, u32)>) {
    let val = v.map_or(IDLE, |(d, i)| (u32::from(d) << 16) | (i & 0xffff));
    this_cpu().current_vcpu.store(val, Ordering::Release);
    crate::arch::x86_64::flush::set_running(v.map(|(d, _)| d));
}

fn cpu() -> usize {
    this_cpu().cpu as usize
}

/// Takes the scheduler lock, first adding this CPU to the scheduler if it
/// is not in yet (the boot CPU before Dom0 is built, each AP as it reaches
/// its idle loop).
fn lock() -> spin::MutexGuard<'static, Sched> {
    let c = cpu();
    let mut s = SCHED.lock();
    if let Some(reg) = REGISTERED.get(c) {
        if !reg.load(Ordering::Relaxed)
            && matches!(s.credit.add_cpu(c), Ok(()) | Err(Errno::EEXIST))
        {
            reg.store(true, Ordering::Relaxed);
        }
    }
    s
}

/// Raises "need resched" on every CPU in `mask` and kicks the others.
fn tickle(mask: CpuMask) {
    let me = cpu();
    for c in mask.iter().filter(|&c| c < MAX_CPUS) {
        NEED_RESCHED[c].store(true, Ordering::Release);
        if c != me {
            kick(c);
        }
    }
}

/// Asks `cpu` to reschedule at its next exit to a guest (and kicks it if it
/// is another CPU).
#[allow(dead_code)] // kept for callers outside the scheduler (event and emulation glue)
pub fn raise_resched(target: usize) {
    if let Some(f) = NEED_RESCHED.get(target) {
        f.store(true, Ordering::Release);
        kick(target);
    }
}

/// Makes `target` look at its run queue and pending events soon.
pub fn kick(target: usize) {
    if target != cpu() {
        if let Some(id) = smp::apic_id_of(target) {
            apic::send_ipi(id, u32::from(EVENT_CHECK_VECTOR));
        }
    }
}

/// The CPU a vCPU runs on, or (not running) the one it would first be
/// placed on: vCPU n on CPU n mod N.
#[allow(dead_code)] // kept for callers outside the scheduler (event and emulation glue)
pub fn home_cpu(v: &Vcpu) -> usize {
    match v.state {
        RunState::Running(c) => c as usize,
        _ => (v.id as usize) % (smp::cpus_online() as usize).max(1),
    }
}

/// The CPU a new unit for vCPU `id` starts on: the (id mod N)th CPU in
/// the scheduler, else this one.
fn placement(id: u32) -> usize {
    let regs: heapless::Vec<usize, MAX_CPUS> = (0..MAX_CPUS)
        .filter(|&c| REGISTERED[c].load(Ordering::Relaxed))
        .collect();
    if regs.is_empty() {
        cpu()
    } else {
        regs[id as usize % regs.len()]
    }
}

/// Gives every vCPU of `d` a unit (offline until it comes up) and applies
/// the domain's weight and cap. Idempotent.
fn ensure_domain(s: &mut Sched, d: &Domain) -> Result<(), Errno> {
    let mut added = false;
    for v in &d.vcpus {
        if s.units.find(d.domid, v.id).is_some() {
            continue;
        }
        let u = s.units.alloc(d.domid, v.id)?;
        if let Err(e) = s.credit.insert_unit(u, d.domid, placement(v.id)) {
            s.units.free(u);
            return Err(e);
        }
        added = true;
    }
    if added {
        let p = d.sched_params;
        if let Err(e) = s.credit.set_params(d.domid, p.weight, p.cap) {
            log::warn!(
                "d{}: weight {} cap {} refused ({e:?}), using the defaults",
                d.domid,
                p.weight,
                p.cap
            );
        }
    }
    Ok(())
}

fn unit_of(s: &mut Sched, d: &Domain, vcpu: u32) -> Option<UnitId> {
    if let Some(u) = s.units.find(d.domid, vcpu) {
        return Some(u);
    }
    if let Err(e) = ensure_domain(s, d) {
        log::error!("d{}: no scheduling unit for its vCPUs ({e:?})", d.domid);
    }
    s.units.find(d.domid, vcpu)
}

/// The CPU the unit is current on, if it is.
fn running_on(s: &Sched, u: UnitId) -> Option<usize> {
    match s.credit.unit_info(u, 0)?.state {
        UnitState::Running { cpu } => Some(cpu),
        _ => None,
    }
}

/// Gives a new domain's vCPUs their scheduling units (all offline), with
/// the domain's weight and cap. `ENOSPC` when the scheduler is full.
pub fn domain_init(d: &Domain) -> Result<(), Errno> {
    ensure_domain(&mut lock(), d)
}

/// Removes a domain's units from the scheduler (domain destruction). Its
/// vCPUs must be down and switched away from (`EBUSY` otherwise; retry).
pub fn domain_destroy(domid: DomId) -> Result<(), Errno> {
    let mut s = lock();
    let units: heapless::Vec<UnitId, { credit::MAX_UNITS }> =
        s.units.units_of(domid).map(|(u, _)| u).collect();
    if units.iter().any(|&u| running_on(&s, u).is_some()) {
        return Err(Errno::EBUSY);
    }
    for u in units {
        let _ = s.credit.remove_unit(u);
        s.units.free(u);
    }
    Ok(())
}

/// Sets a domain's credit weight and cap (`XEN_DOMCTL_SCHEDOP_putinfo`):
/// weight 0 and cap 0xffff leave that value as it is.
pub fn set_params(d: &mut Domain, weight: u16, cap: u16) -> Result<(), Errno> {
    let mut s = lock();
    ensure_domain(&mut s, d)?;
    s.credit.set_params(d.domid, weight, cap)?;
    d.sched_params = s.credit.get_params(d.domid)?;
    Ok(())
}

/// A domain's credit weight and cap (`XEN_DOMCTL_SCHEDOP_getinfo`).
pub fn get_params(d: &Domain) -> CreditParams {
    d.sched_params
}

/// Pauses every vCPU of `d` once more (Xen's `domain_pause`): none runs
/// until as many [`domain_unpause`]s. A running one stops at its CPU's next
/// exit to the guest.
pub fn domain_pause(d: &Domain) -> Result<(), Errno> {
    let mut s = lock();
    ensure_domain(&mut s, d)?;
    let mut mask = CpuMask::EMPTY;
    for v in &d.vcpus {
        if let Some(u) = s.units.find(d.domid, v.id) {
            mask = CpuMask(mask.0 | s.credit.pause(u)?.0);
        }
    }
    tickle(mask);
    Ok(())
}

/// Undoes one [`domain_pause`].
pub fn domain_unpause(d: &Domain) -> Result<(), Errno> {
    let now = crate::time::now_ns();
    let mut s = lock();
    let mut mask = CpuMask::EMPTY;
    for v in &d.vcpus {
        if let Some(u) = s.units.find(d.domid, v.id) {
            mask = CpuMask(mask.0 | s.credit.unpause(u, now)?.0);
        }
    }
    tickle(mask);
    Ok(())
}

/// Waits until none of vCPUs `0..vcpus` of domain `domid` is on a CPU
/// (Xen's `vcpu_sleep_sync` after a pause): the caller must hold no lock a
/// CPU leaving the guest needs (the domain table), and must have paused
/// them (they were tickled; each leaves at its CPU's next exit). A domain
/// that is gone has nothing running.
#[inline(never)]
pub fn wait_off_cpu(domid: DomId, vcpus: u32) {
    loop {
        let running = {
            let s = lock();
            (0..vcpus).any(|v| {
                s.units
                    .find(domid, v)
                    .is_some_and(|u| running_on(&s, u).is_some())
            })
        };
        if !running {
            return;
        }
        core::hint::spin_loop();
    }
}

/// Whether a vCPU is still on a CPU (a vCPU taken down or paused leaves
/// at its CPU's next exit to the guest).
pub fn on_cpu(d: &Domain, vcpu: u32) -> bool {
    let mut s = lock();
    unit_of(&mut s, d, vcpu).is_some_and(|u| running_on(&s, u).is_some())
}

/// The CPU a vCPU runs on, is queued on or last ran on (getvcpuinfo).
pub fn vcpu_cpu(d: &Domain, vcpu: u32) -> Option<usize> {
    let mut s = lock();
    let u = unit_of(&mut s, d, vcpu)?;
    Some(s.credit.unit_info(u, crate::time::now_ns())?.cpu)
}

/// Sets a vCPU's hard affinity (a mask of physical CPUs).
pub fn set_affinity(d: &Domain, vcpu: u32, mask: u64) -> Result<(), Errno> {
    let mut s = lock();
    let u = unit_of(&mut s, d, vcpu).ok_or(Errno::EINVAL)?;
    let m = s.credit.set_affinity(u, CpuMask(mask))?;
    tickle(m);
    Ok(())
}

/// A vCPU's hard affinity.
pub fn affinity(d: &Domain, vcpu: u32) -> Result<u64, Errno> {
    let mut s = lock();
    let u = unit_of(&mut s, d, vcpu).ok_or(Errno::EINVAL)?;
    Ok(s.credit.affinity(u)?.0)
}

/// The scheduler's global parameters (XEN_SYSCTL_SCHEDOP_getinfo).
pub fn global_params() -> credit::GlobalParams {
    lock().credit.global()
}

/// Sets the scheduler's global parameters (XEN_SYSCTL_SCHEDOP_putinfo).
pub fn set_global_params(p: credit::GlobalParams) -> Result<(), Errno> {
    lock().credit.set_global(p)
}

/// Applies the scheduler's boot options (before the first domain).
pub fn configure(o: &xen_core::cmdline::SchedOptions) {
    if let Some(name) = o.sched.filter(|&n| n != "credit") {
        log::warn!("Could not find scheduler: {name}");
    }
    let (g, c) =
        credit::boot::boot_params(o.credit_tslice_ms, o.ratelimit_us, o.migration_delay_us);
    if c.tslice_reset {
        log::warn!(
            "sched_credit_tslice_ms outside of valid range [1,1000]: resetting to default 30"
        );
    }
    if c.ratelimit_reset {
        log::warn!(
            "sched_ratelimit_us outside of valid range [100,500000]: resetting to default 1000"
        );
    }
    if c.ratelimit_clamped {
        log::warn!(
            "sched_ratelimit_us > sched_credit_tslice_ms is undefined: setting ratelimit to tslice"
        );
    }
    if c.migration_delay_reset {
        log::warn!(
            "vcpu_migration_delay outside of valid range [0,100000]us: resetting to default 0"
        );
    }
    if let Err(e) = lock().credit.set_global(g) {
        log::error!("scheduler parameters refused ({e:?})");
    }
    log::info!(
        "Using scheduler: SMP Credit Scheduler (credit): tslice {} ms, ratelimit {} us",
        g.tslice_ms,
        g.ratelimit_us
    );
}

/// Makes a blocked vCPU runnable (an event or its timer arrived; Xen's
/// `vcpu_unblock`): credit wakes it with BOOST priority. The caller holds
/// DOMAINS.
pub fn wake(d: &mut Domain, vcpu: u32) {
    if d.vcpus
        .get(vcpu as usize)
        .is_none_or(|v| v.state != RunState::Blocked)
    {
        return;
    }
    let now = crate::time::now_ns();
    let mut s = lock();
    let Some(u) = unit_of(&mut s, d, vcpu) else {
        return;
    };
    let mask = s.credit.wake(u, now).unwrap_or(CpuMask::EMPTY);
    let on = running_on(&s, u);
    let Some(v) = d.vcpus.get_mut(vcpu as usize) else {
        return;
    };
    v.poll_ports.clear();
    v.poll_deadline = None;
    make_ready(v, on, now);
    tickle(mask);
}

/// The vCPU may run again: still current somewhere (it blocked or went
/// down and is back before its CPU switched away), or now waiting.
fn make_ready(v: &mut Vcpu, running_on: Option<usize>, now: u64) {
    match running_on {
        Some(c) => v.state = RunState::Running(c as u32),
        None => {
            v.state = RunState::Runnable;
            if v.runstate.state() != RunstateState::Runnable {
                v.runstate.change(RunstateState::Runnable, now);
            }
        }
    }
}

/// Brings a down vCPU up (VCPUOP_up, or Dom0's first vCPU at boot). The
/// caller checked that it has a context.
pub fn vcpu_up(d: &mut Domain, vcpu: u32) {
    if d.shutdown.is_some()
        || d.vcpus
            .get(vcpu as usize)
            .is_none_or(|v| v.state != RunState::Down)
    {
        return;
    }
    let now = crate::time::now_ns();
    let mut s = lock();
    let Some(u) = unit_of(&mut s, d, vcpu) else {
        return;
    };
    let mask = s.credit.online(u, now).unwrap_or(CpuMask::EMPTY);
    let on = running_on(&s, u);
    let Some(v) = d.vcpus.get_mut(vcpu as usize) else {
        return;
    };
    v.poll_ports.clear();
    make_ready(v, on, now);
    tickle(mask);
}

/// Takes a vCPU down (VCPUOP_down). As Xen, taking the last vCPU that is up
/// down shuts the domain down (poweroff) instead. A running vCPU stops at
/// its CPU's next exit to the guest.
pub fn vcpu_down(d: &mut Domain, vcpu: u32) {
    let others_up = d
        .vcpus
        .iter()
        .any(|v| v.id != vcpu && v.state != RunState::Down);
    if !others_up {
        crate::domain::domain_shutdown(d, hypercall_abi::sched::ShutdownReason::Poweroff);
        return;
    }
    let now = crate::time::now_ns();
    let mut s = lock();
    take_down(&mut s, d, vcpu, now);
}

/// Marks a vCPU down and takes its unit offline.
fn take_down(s: &mut Sched, d: &mut Domain, vcpu: u32, now: u64) {
    let Some(u) = unit_of(s, d, vcpu) else {
        if let Some(v) = d.vcpus.get_mut(vcpu as usize) {
            v.state = RunState::Down;
        }
        return;
    };
    let Some(v) = d.vcpus.get_mut(vcpu as usize) else {
        return;
    };
    if v.state == RunState::Down {
        return;
    }
    let mut mask = s.credit.offline(u).unwrap_or(CpuMask::EMPTY);
    // A blocked vCPU that goes down is no longer waiting for an event:
    // when it comes back up it runs (SCHEDOP_block returns).
    mask |= s.credit.wake(u, now).unwrap_or(CpuMask::EMPTY);
    if running_on(s, u).is_none() && v.runstate.state() == RunstateState::Runnable {
        // Xen's vcpu_sleep_nosync: a waiting vCPU goes offline (a blocked
        // one stays blocked); a running one changes at its switch-out.
        v.runstate.change(RunstateState::Offline, now);
    }
    v.state = RunState::Down;
    v.poll_ports.clear();
    v.poll_deadline = None;
    tickle(mask);
}

/// Takes every vCPU of a domain that is shutting down off the CPUs (they
/// stop at their CPUs' next exits to the guest).
pub fn domain_shutdown(d: &mut Domain) {
    let now = crate::time::now_ns();
    let mut s = lock();
    for id in 0..d.vcpus.len() as u32 {
        if let Some(v) = d.vcpus.get_mut(id as usize) {
            // Remembered for XEN_DOMCTL_resumedomain (a second shutdown
            // while already shut down keeps the first record).
            v.paused_for_shutdown |= v.state != RunState::Down;
        }
        take_down(&mut s, d, id, now);
    }
}

/// Xen's `domain_resume` (XEN_DOMCTL_resumedomain): a domain that shut
/// down (SHUTDOWN_suspend, for a cancelled save) runs on, its vCPUs that
/// the shutdown took down up again where they stopped. On a domain that
/// is not shut down it changes nothing, as Xen.
pub fn domain_resume(d: &mut Domain) {
    d.shutdown = None;
    d.shutdown_code = None;
    if d.dying {
        return;
    }
    for id in 0..d.vcpus.len() as u32 {
        let again = d
            .vcpus
            .get_mut(id as usize)
            .is_some_and(|v| core::mem::take(&mut v.paused_for_shutdown));
        if again {
            vcpu_up(d, id);
        }
    }
}

/// Blocks the current vCPU (SCHEDOP_block / poll); the exit path switches.
pub fn block_current(v: &mut Vcpu) {
    v.state = RunState::Blocked;
    NEED_RESCHED[cpu()].store(true, Ordering::Release);
    let Some((domid, id)) = current() else {
        return;
    };
    let mut s = lock();
    if let Some(u) = s.units.find(domid, id) {
        let mask = s.credit.sleep(u).unwrap_or(CpuMask::EMPTY);
        tickle(mask);
    }
}

/// Gives up the CPU (SCHEDOP_yield): the current vCPU queues behind one
/// lower-priority vCPU, if there is one, and this CPU reschedules.
pub fn yield_current() {
    NEED_RESCHED[cpu()].store(true, Ordering::Release);
    let Some((domid, id)) = current() else {
        return;
    };
    let mut s = lock();
    if let Some(u) = s.units.find(domid, id) {
        let mask = s.credit.yield_unit(u).unwrap_or(CpuMask::EMPTY);
        tickle(mask);
    }
}

/// The timer tick, from the APIC timer on every CPU (interrupts off).
pub fn tick() {
    let c = cpu();
    if c == 0 {
        crate::vtimer::run_expired();
    }
    if c >= MAX_CPUS {
        return;
    }
    let now = crate::time::now_ns();
    if now >= SLICE_END[c].load(Ordering::Acquire) {
        NEED_RESCHED[c].store(true, Ordering::Release);
    }
    if now < NEXT_TICK[c].load(Ordering::Relaxed) {
        return;
    }
    let mut s = lock();
    let period = s.credit.tick_period_ns().max(1_000_000);
    NEXT_TICK[c].store(now + period, Ordering::Relaxed);
    let mask = s.credit.tick(c, now);
    if s.credit.need_resched(c) {
        NEED_RESCHED[c].store(true, Ordering::Release);
    }
    tickle(mask);
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
}

/// Saves a running HVM vCPU's FPU (its other state is in its VMCB and
/// registers, saved at every exit).
fn save_hvm(v: &mut Vcpu) {
    instr::fxsave(&mut v.fpu.0);
    v.fpu_valid = true;
}

/// Loads an HVM vCPU's FPU; the hypervisor's own page tables go into CR3
/// (no PV guest's tables stay loaded while an HVM guest runs).
fn load_hvm(v: &mut Vcpu) {
    instr::clts();
    if v.fpu_valid {
        instr::fxrstor(&v.fpu.0);
    } else {
        instr::fpu_init();
    }
    if instr::read_cr3() & !0xfff != crate::arch::x86_64::paging::idle_l4() {
        crate::pv_mm::load_cr3(crate::arch::x86_64::paging::idle_l4());
    }
    // Its pvclock (`XENFEAT_hvm_safe_pvclock`) from this CPU's clock, as
    // for a PV vCPU, in the guest's TSC (which the guest reads directly).
    let off = v.hvm.as_ref().map_or(0, |h| h.svm.tsc_offset());
    crate::pv::update_vcpu_time_offset(v, off);
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
    // The vCPU may have moved to another CPU: its time record is refreshed
    // from this CPU's clock on every switch in.
    crate::pv_emul::load_vcpu(v);
    crate::pv::update_vcpu_time(v);
}

/// Copies the vCPU's runstate to its registered area, if any (Xen's
/// `update_runstate_area`; a guest address that does not work is ignored).
fn update_runstate_area(v: &Vcpu) {
    if v.runstate_guest != 0 && v.guest_table != 0 {
        let _ = crate::domain::write_guest(v.guest_table, v.runstate_guest, &v.runstate.raw());
    }
}

/// Registers (or, with 0, forgets) the vCPU's runstate area
/// (VCPUOP_register_runstate_memory_area) and fills it at once, through the
/// caller's page tables `cr3` as Xen does (later updates, at the vCPU's
/// context switches, go through its own kernel page tables).
pub fn register_runstate_area(v: &mut Vcpu, va: u64, is_current: bool, cr3: u64) {
    v.runstate_guest = va;
    if va == 0 {
        return;
    }
    let info = if is_current {
        v.runstate.raw()
    } else {
        v.runstate.info(crate::time::now_ns())
    };
    let _ = crate::domain::write_guest(cr3, va, &info);
}

/// Picks what runs next on this CPU and loads it into `frame` (the frame at
/// the top of this CPU's stack). Idles, with interrupts on, until there is
/// something to run. Called with interrupts off.
fn schedule(frame: &mut TrapFrame) {
    let c = cpu();
    loop {
        {
            let mut doms = DOMAINS.lock();
            // The decision, under the scheduler lock. The switch itself
            // happens after it is dropped (guest copies take the frame
            // table's lock): DOMAINS, still held, keeps every other CPU from
            // loading the vCPU switched away from before it is saved here.
            let (now, cur, next) = {
                let mut s = lock();
                NEED_RESCHED[c].store(false, Ordering::Release);
                let now = crate::time::now_ns();
                let d = s.credit.do_schedule(c, now);
                tickle(d.tickle);
                SLICE_END[c].store(
                    d.timeslice_ns.map_or(NEVER, |t| now.saturating_add(t)),
                    Ordering::Release,
                );
                let cur = current();
                let next = d.next.and_then(|u| s.units.owner(u));
                if next.is_some() && next == cur {
                    // Carry on with the current vCPU (its slice was renewed,
                    // or it woke up again before it was switched away).
                    drop(s);
                    if let Some(v) = cur.and_then(|(dom, id)| vcpu_mut(&mut doms, dom, id)) {
                        v.state = RunState::Running(c as u32);
                    }
                    return;
                }
                if let Some(p) = d.prev {
                    let m = s.credit.context_saved(p);
                    tickle(m);
                }
                if let Some(u) = d.next {
                    if next.is_none_or(|(dom, id)| vcpu_mut(&mut doms, dom, id).is_none()) {
                        // A unit whose vCPU is gone: never pick it again.
                        log::error!("scheduler picked unit {} with no vCPU", u.0);
                        let m = s.credit.offline(u).unwrap_or(CpuMask::EMPTY);
                        tickle(m);
                        NEED_RESCHED[c].store(true, Ordering::Release);
                    }
                }
                (now, cur, next)
            };
            // Put the current vCPU away.
            if let Some((dom, id)) = cur {
                if let Some(v) = vcpu_mut(&mut doms, dom, id) {
                    if v.hvm.is_some() {
                        save_hvm(v);
                    } else {
                        save(v, frame);
                    }
                    let st = match v.state {
                        RunState::Blocked => RunstateState::Blocked,
                        RunState::Down => RunstateState::Offline,
                        RunState::Running(_) | RunState::Runnable => {
                            v.state = RunState::Runnable;
                            RunstateState::Runnable
                        }
                    };
                    v.runstate.change(st, now);
                    update_runstate_area(v);
                }
                set_current(None);
            }
            if let Some((dom, id)) = next {
                if let Some(v) = vcpu_mut(&mut doms, dom, id) {
                    let hvm = v.hvm.is_some();
                    if hvm {
                        load_hvm(v);
                    } else {
                        load(v, frame);
                    }
                    CURRENT_HVM[c].store(hvm, Ordering::Release);
                    v.state = RunState::Running(c as u32);
                    v.runstate.change(RunstateState::Running, now);
                    update_runstate_area(v);
                    set_current(Some((dom, id)));
                    return;
                }
                // Stale unit, taken offline above: decide again.
                continue;
            }
            // Nothing to run: leave the last guest's page tables now,
            // while DOMAINS is held. Its domain may be being destroyed:
            // destroydomain (which holds DOMAINS) frees the tables once no
            // CPU runs one of its vCPUs, so no CPU may still have them in
            // CR3 by the time it can take the lock.
            if instr::read_cr3() & !0xfff != crate::arch::x86_64::paging::idle_l4() {
                crate::pv_mm::load_cr3(crate::arch::x86_64::paging::idle_l4());
            }
        }
        // Nothing to run: halt until an interrupt (a timer, an IPI) asks
        // this CPU to look again.
        while !NEED_RESCHED[c].load(Ordering::Acquire) {
            instr::sti_hlt();
            instr::cli();
        }
    }
}

fn vcpu_mut(doms: &mut [Domain], domid: DomId, id: u32) -> Option<&mut Vcpu> {
    find(doms, domid).and_then(|d| d.vcpus.get_mut(id as usize))
}

/// The frame at the top of this CPU's stack: the running guest's registers.
fn top_frame() -> *mut TrapFrame {
    (this_cpu().stack_top - TRAP_FRAME_SIZE) as *mut TrapFrame
}

/// Whether [`exit_to_guest`] would schedule before going back.
pub fn exit_needs_schedule() -> bool {
    // One look at this CPU's record for both (every exit runs this).
    let me = this_cpu();
    NEED_RESCHED
        .get(me.cpu as usize)
        .is_none_or(|f| f.load(Ordering::Acquire))
        || me.current_vcpu.load(Ordering::Acquire) == IDLE
}

/// The exit path of every entry from a PV guest (interrupts off).
#[inline(never)]
pub fn exit_to_guest(frame: &mut TrapFrame) {
    if exit_needs_schedule() {
        schedule(frame);
        if current_is_hvm() {
            enter_hvm_loop();
        }
    }
    crate::pv::deliver_events(frame);
}

fn current_is_hvm() -> bool {
    CURRENT_HVM
        .get(cpu())
        .is_some_and(|f| f.load(Ordering::Acquire))
}

/// Leaves whatever this CPU's stack holds for [`hvm_loop`], on the stack
/// right below the trap frame area (so each switch between PV and HVM
/// starts afresh instead of nesting).
fn enter_hvm_loop() -> ! {
    let top = (top_frame() as u64) & !0xf;
    // SAFETY: the stack below this CPU's trap frame area is this CPU's
    // own; nothing on it is needed any more (the caller holds no lock and
    // never returns); `hvm_loop` never returns.
    unsafe {
        core::arch::asm!(
            "mov rsp, {top}",
            "call {f}",
            "ud2",
            top = in(reg) top,
            f = sym hvm_loop,
            options(noreturn)
        )
    }
}

/// Runs the HVM vCPUs this CPU is given, one VMRUN round after another
/// (interrupts let in between rounds), until the scheduler picks a PV
/// vCPU, which it enters through its trap frame.
extern "C" fn hvm_loop() -> ! {
    loop {
        instr::cli();
        let c = cpu();
        let need = NEED_RESCHED
            .get(c)
            .is_none_or(|f| f.load(Ordering::Acquire));
        if need || current().is_none() || !current_is_hvm() {
            let top = top_frame();
            // SAFETY: the top frame area of this CPU's stack holds only
            // the running PV guest's registers, if any; this loop's own
            // stack is below it.
            let frame = unsafe { &mut *top };
            schedule(frame);
            if !current_is_hvm() {
                crate::pv::deliver_events(frame);
                // SAFETY: `frame` holds the PV vCPU `schedule` loaded.
                unsafe { enter_frame(top) }
            }
        }
        if let Some((domid, id)) = current() {
            if crate::hvm_run::run_once(domid, id) == crate::hvm_run::After::Reschedule {
                if let Some(f) = NEED_RESCHED.get(c) {
                    f.store(true, Ordering::Release);
                }
            }
        }
        // Host interrupts that made the guest exit come in here.
        instr::sti_nop_cli();
    }
}

/// Leaves whatever this CPU was doing (boot, a crashed vCPU whose domain
/// was shut down) for the next runnable vCPU. Never returns.
pub fn schedule_away() -> ! {
    instr::cli();
    crate::arch::x86_64::svm_vcpu::cpu_init();
    let top = top_frame();
    // SAFETY: the top frame area of this CPU's stack is only ever used for
    // the running guest's registers; nothing else lives there.
    let frame = unsafe { &mut *top };
    schedule(frame);
    if current_is_hvm() {
        enter_hvm_loop();
    }
    crate::pv::deliver_events(frame);
    // SAFETY: `frame` now holds a vCPU context loaded by `schedule` (with
    // that vCPU's page tables in CR3).
    unsafe { enter_frame(top) }
}

/// What an AP (or any CPU with nothing else to do) runs.
pub fn idle_loop() -> ! {
    drop(lock());
    crate::arch::x86_64::svm_vcpu::cpu_init();
    schedule_away()
}

/// Logs each of `d`'s vCPUs' scheduling figures (debug level): run state
/// times, credit, migrations.
pub fn log_stats(d: &Domain) {
    if !log::log_enabled!(log::Level::Debug) {
        return;
    }
    let now = crate::time::now_ns();
    let s = lock();
    let ms = |ns: u64| ns / 1_000_000;
    for v in &d.vcpus {
        let info = v.runstate.info(now);
        let unit = s
            .units
            .find(d.domid, v.id)
            .and_then(|u| s.credit.unit_info(u, now));
        log::debug!(
            "d{}v{}: running {} ms, runnable {} ms, blocked {} ms, offline {} ms; {}",
            d.domid,
            v.id,
            ms(info.time[0]),
            ms(info.time[1]),
            ms(info.time[2]),
            ms(info.time[3]),
            match unit {
                Some(u) => alloc::format!(
                    "credit {}, {:?}, {} migrations",
                    u.credit,
                    u.priority,
                    u.migrations
                ),
                None => alloc::string::String::from("no unit"),
            }
        );
    }
    log::debug!(
        "credit: {} accounting periods",
        s.credit.accounting_periods()
    );
}
