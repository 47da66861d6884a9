//! Time: the PV clock, the wallclock, one-shot and periodic timers, and
//! blocking with a deadline.
//!
//! # The PV clock (`public/xen.h`, `struct vcpu_time_info`)
//!
//! Xen keeps, per vCPU, the TSC value `tsc_timestamp` at which the system
//! time (ns since boot) was `system_time`, and how to scale TSC ticks to
//! ns: `ns = ((delta << shift) * mul) >> 32` (shift may be negative: a
//! right shift). It bumps `version` to odd before changing the record and
//! to even after, so readers retry while it is odd or changed. [`now_ns`]
//! also never goes backwards across vCPUs (a global high-water mark).
//!
//! # Timers
//!
//! `set_timer_op(deadline)` arms the vCPU's single-shot timer (absolute
//! system time; 0 cancels); when it expires Xen raises `VIRQ_TIMER` on the
//! vCPU. [`init_vcpu_timer`] binds that VIRQ and stops the default periodic
//! tick; [`arm`] keeps the earliest wanted deadline armed, and
//! [`block_until`] sleeps (`SCHEDOP_block`) until a condition holds or a
//! deadline passes.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::abi::hypercall::Hypercall;
use crate::abi::vcpu::{VcpuOp, VcpuSetPeriodicTimer, VcpuSetSingleshotTimer};
use crate::abi::xen::Virq;
use crate::error::{check, Errno};
use crate::events::{self, Port};
use crate::hypercall::{hypercall1, hypercall3};
use crate::shared::{SharedInfoView, VcpuTimeView};

/// Nanoseconds per second.
pub const NS_PER_SEC: u64 = 1_000_000_000;
/// Nanoseconds per millisecond.
pub const NS_PER_MS: u64 = 1_000_000;

/// Most vCPUs this module keeps timer state for.
pub const MAX_VCPUS: usize = 32;

/// `(delta << shift) * mul >> 32` (shift negative: right shift), in 128-bit
/// arithmetic, as Xen's and Linux's `pvclock_scale_delta`.
pub const fn scale_delta(delta: u64, mul: u32, shift: i8) -> u64 {
    let d = if shift < 0 {
        delta >> ((-(shift as i16)) as u32 & 63)
    } else {
        delta << (shift as u32 & 63)
    };
    ((d as u128 * mul as u128) >> 32) as u64
}

/// One consistent copy of a `vcpu_time_info`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimeSnapshot {
    /// Even version it was read at.
    pub version: u32,
    /// TSC at `system_time`.
    pub tsc_timestamp: u64,
    /// ns at `tsc_timestamp`.
    pub system_time: u64,
    /// Multiplier.
    pub mul: u32,
    /// Shift.
    pub shift: i8,
    /// Flags.
    pub flags: u8,
}

impl TimeSnapshot {
    /// System time at TSC value `tsc` (TSC values before the timestamp
    /// count as the timestamp).
    pub const fn at(&self, tsc: u64) -> u64 {
        let delta = tsc.saturating_sub(self.tsc_timestamp);
        self.system_time
            .wrapping_add(scale_delta(delta, self.mul, self.shift))
    }
}

/// Reads a consistent snapshot (version protocol) and the TSC inside it.
pub fn read(t: &VcpuTimeView, rdtsc: impl Fn() -> u64) -> (TimeSnapshot, u64) {
    loop {
        let v1 = t.version.load(Ordering::Acquire);
        if v1 & 1 != 0 {
            core::hint::spin_loop();
            continue;
        }
        let s = TimeSnapshot {
            version: v1,
            tsc_timestamp: t.tsc_timestamp.load(Ordering::Acquire),
            system_time: t.system_time.load(Ordering::Acquire),
            mul: t.tsc_to_system_mul.load(Ordering::Acquire),
            shift: t.tsc_shift.load(Ordering::Acquire),
            flags: t.flags.load(Ordering::Acquire),
        };
        let tsc = rdtsc();
        core::sync::atomic::fence(Ordering::SeqCst);
        if t.version.load(Ordering::Acquire) == v1 {
            return (s, tsc);
        }
    }
}

static HIGH_WATER: AtomicU64 = AtomicU64::new(0);

/// System time from `s` on `vcpu` (pure over the view), never below the
/// last value returned by this function on any vCPU.
pub fn now_from(s: &SharedInfoView, vcpu: u32) -> u64 {
    let Some(vi) = s.vcpu(vcpu) else {
        return HIGH_WATER.load(Ordering::Acquire);
    };
    let (snap, tsc) = read(&vi.time, crate::arch::rdtsc);
    let t = snap.at(tsc);
    let prev = HIGH_WATER.fetch_max(t, Ordering::AcqRel);
    t.max(prev)
}

/// Nanoseconds since the hypervisor booted (0 before the shared info page
/// is mapped).
pub fn now_ns() -> u64 {
    match crate::shared::get() {
        Some(s) => now_from(s, crate::percpu::current_vcpu()),
        None => 0,
    }
}

/// The raw (not high-water-marked) snapshot of this vCPU's time record.
pub fn snapshot() -> Option<TimeSnapshot> {
    let s = crate::shared::get()?;
    let vi = s.vcpu(crate::percpu::current_vcpu())?;
    Some(read(&vi.time, crate::arch::rdtsc).0)
}

/// Wallclock now: `(seconds, nanoseconds)` since the Unix epoch
/// (`wc_sec`/`wc_nsec` at system time 0, plus the system time).
pub fn wallclock() -> Option<(u64, u32)> {
    let s = crate::shared::get()?;
    Some(add_ns(s.wallclock_base(), now_ns()))
}

/// `(sec, nsec) + ns`, normalised.
pub const fn add_ns(base: (u64, u32), ns: u64) -> (u64, u32) {
    let total = base.1 as u64 + ns % NS_PER_SEC;
    (
        base.0 + ns / NS_PER_SEC + total / NS_PER_SEC,
        (total % NS_PER_SEC) as u32,
    )
}

// ---------------------------------------------------------------------------
// Hypercalls
// ---------------------------------------------------------------------------

/// `set_timer_op(deadline)`: arms this vCPU's single-shot timer at absolute
/// system time `deadline` (ns); 0 cancels it.
pub fn set_timer_op(deadline: u64) -> Result<(), Errno> {
    // SAFETY: no memory is passed.
    check(unsafe { hypercall1(Hypercall::SetTimerOp, deadline) }).map(|_| ())
}

fn vcpu_op<T>(cmd: VcpuOp, vcpu: u32, arg: Option<&mut T>) -> Result<u64, Errno> {
    let p = arg.map_or(0, |a| a as *mut T as u64);
    // SAFETY: `p` is 0 or the live argument struct of `cmd`.
    check(unsafe { hypercall3(Hypercall::VcpuOp, cmd as u64, u64::from(vcpu), p) })
}

/// `VCPUOP_set_singleshot_timer` (flags: `VCPU_SSHOTTMR_future`, which
/// asked for `-ETIME` for a deadline in the past, is ignored by Xen since
/// 4.17.3 and by Oxen: such a deadline fires at once).
pub fn set_singleshot_timer(vcpu: u32, deadline: u64, flags: u32) -> Result<(), Errno> {
    let mut a = VcpuSetSingleshotTimer {
        timeout_abs_ns: deadline,
        flags,
        _pad12: 0,
    };
    vcpu_op(VcpuOp::SetSingleshotTimer, vcpu, Some(&mut a)).map(|_| ())
}

/// `VCPUOP_stop_singleshot_timer`.
pub fn stop_singleshot_timer(vcpu: u32) -> Result<(), Errno> {
    vcpu_op::<()>(VcpuOp::StopSingleshotTimer, vcpu, None).map(|_| ())
}

/// `VCPUOP_set_periodic_timer` (Xen refuses periods under 1 ms... or
/// rounds them; see its `vcpu.h`).
pub fn set_periodic_timer(vcpu: u32, period_ns: u64) -> Result<(), Errno> {
    let mut a = VcpuSetPeriodicTimer { period_ns };
    vcpu_op(VcpuOp::SetPeriodicTimer, vcpu, Some(&mut a)).map(|_| ())
}

/// `VCPUOP_stop_periodic_timer`.
pub fn stop_periodic_timer(vcpu: u32) -> Result<(), Errno> {
    vcpu_op::<()>(VcpuOp::StopPeriodicTimer, vcpu, None).map(|_| ())
}

// ---------------------------------------------------------------------------
// VIRQ_TIMER and deadlines
// ---------------------------------------------------------------------------

const NO_DEADLINE: u64 = u64::MAX;
const NO_PORT: u32 = u32::MAX;

static NEXT: [AtomicU64; MAX_VCPUS] = [const { AtomicU64::new(NO_DEADLINE) }; MAX_VCPUS];
static PORT: [AtomicU32; MAX_VCPUS] = [const { AtomicU32::new(NO_PORT) }; MAX_VCPUS];
static TICKS: [AtomicU64; MAX_VCPUS] = [const { AtomicU64::new(0) }; MAX_VCPUS];

fn on_timer(_port: Port, vcpu: usize) {
    if let Some(n) = NEXT.get(vcpu) {
        n.store(NO_DEADLINE, Ordering::Release);
    }
    if let Some(t) = TICKS.get(vcpu) {
        t.fetch_add(1, Ordering::AcqRel);
    }
}

/// Binds `VIRQ_TIMER` on `vcpu` (call it on that vCPU or before it starts),
/// installs the handler that wakes [`block_until`], and stops Xen's default
/// periodic timer. Returns the port.
pub fn init_vcpu_timer(vcpu: u32) -> Result<Port, Errno> {
    if vcpu as usize >= MAX_VCPUS {
        return Err(Errno::EINVAL);
    }
    let existing = PORT[vcpu as usize].load(Ordering::Acquire);
    if existing != NO_PORT {
        return Ok(existing);
    }
    let port = events::bind_virq(Virq::Timer, vcpu)?;
    events::set_handler(port, on_timer, vcpu as usize)?;
    PORT[vcpu as usize].store(port, Ordering::Release);
    let _ = stop_periodic_timer(vcpu);
    Ok(port)
}

/// After a restore: the `VIRQ_TIMER` bindings and armed deadlines are
/// gone with the old domain, and system time is the new host's (it may be
/// behind the old one): forgets all three. Bind again with
/// [`init_vcpu_timer`].
pub fn forget_after_restore() {
    for p in PORT.iter() {
        p.store(NO_PORT, Ordering::Release);
    }
    for n in NEXT.iter() {
        n.store(NO_DEADLINE, Ordering::Release);
    }
    HIGH_WATER.store(0, Ordering::Release);
}

/// The `VIRQ_TIMER` port of `vcpu`, if bound.
pub fn timer_port(vcpu: u32) -> Option<Port> {
    let p = PORT.get(vcpu as usize)?.load(Ordering::Acquire);
    (p != NO_PORT).then_some(p)
}

/// `VIRQ_TIMER` deliveries on `vcpu` so far.
pub fn ticks(vcpu: u32) -> u64 {
    TICKS
        .get(vcpu as usize)
        .map_or(0, |t| t.load(Ordering::Acquire))
}

/// Makes sure this vCPU's timer fires no later than `deadline`.
pub fn arm(deadline: u64) {
    let me = crate::percpu::current_vcpu() as usize;
    let Some(next) = NEXT.get(me) else {
        return;
    };
    let _irq = events::IrqGuard::new();
    if deadline < next.load(Ordering::Acquire) {
        next.store(deadline, Ordering::Release);
        if set_timer_op(deadline.max(1)).is_err() {
            next.store(NO_DEADLINE, Ordering::Release);
        }
    }
}

/// Why [`block_until`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wake {
    /// The condition held.
    Ready,
    /// The deadline passed first.
    TimedOut,
}

/// Sleeps until `cond()` holds or system time reaches `deadline`,
/// re-checking after every event. Must be called with events enabled (not
/// from a handler). Without a bound timer it polls, yielding the CPU.
pub fn block_until(deadline: u64, mut cond: impl FnMut() -> bool) -> Wake {
    let me = crate::percpu::current_vcpu();
    loop {
        if cond() {
            return Wake::Ready;
        }
        if now_ns() >= deadline {
            return if cond() { Wake::Ready } else { Wake::TimedOut };
        }
        if timer_port(me).is_none() || crate::shared::get().is_none() {
            let _ = crate::xen::sched_yield();
            continue;
        }
        arm(deadline);
        let was = events::irq_disable();
        let gen = events::generation();
        if !cond() && events::generation() == gen && now_ns() < deadline {
            // Unmasks events and sleeps unless one is already pending.
            let _ = crate::xen::sched_block();
        }
        if was {
            events::irq_enable();
        }
    }
}

/// Sleeps for `ns` nanoseconds.
pub fn sleep_ns(ns: u64) {
    let end = now_ns().saturating_add(ns);
    block_until(end, || false);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaling() {
        // 2 GHz: shift -1, mul 2^32 (ticks/2 = ns).
        assert_eq!(scale_delta(2_000, 1 << 31, 0), 1_000);
        assert_eq!(scale_delta(2_000, u32::MAX, -1), 999);
        // A slow TSC: shift left.
        assert_eq!(scale_delta(1_000, 1 << 31, 2), 2_000);
        // Huge deltas do not overflow.
        assert_eq!(scale_delta(u64::MAX, 1 << 31, 0), u64::MAX / 2);
        assert_eq!(scale_delta(123, 0, 5), 0);
    }

    #[test]
    fn snapshot_and_version_protocol() {
        let s = crate::shared::test_view();
        let t = &s.vcpu(0).unwrap().time;
        t.tsc_timestamp.store(1_000, Ordering::SeqCst);
        t.system_time.store(5_000, Ordering::SeqCst);
        t.tsc_to_system_mul.store(1 << 31, Ordering::SeqCst);
        t.tsc_shift.store(1, Ordering::SeqCst);
        t.version.store(2, Ordering::SeqCst);
        let (snap, tsc) = read(t, || 3_000);
        assert_eq!(tsc, 3_000);
        assert_eq!(snap.at(3_000), 7_000);
        assert_eq!(snap.at(10), 5_000);
        // An odd version is waited out (the "writer" finishes on the
        // second read of the TSC closure... here: the version flips back).
        t.version.store(3, Ordering::SeqCst);
        let v = &t.version;
        std::thread::scope(|sc| {
            sc.spawn(|| {
                std::thread::sleep(std::time::Duration::from_millis(5));
                v.store(4, Ordering::SeqCst);
            });
            let (snap, _) = read(t, || 1_000);
            assert_eq!(snap.version, 4);
        });
    }

    #[test]
    fn monotonic_across_vcpus() {
        let s = crate::shared::test_view();
        for v in 0..2u32 {
            let t = &s.vcpu(v).unwrap().time;
            t.tsc_to_system_mul.store(1 << 31, Ordering::SeqCst);
        }
        s.vcpu(0)
            .unwrap()
            .time
            .system_time
            .store(1 << 40, Ordering::SeqCst);
        let a = now_from(s, 0);
        let b = now_from(s, 1); // vCPU 1 lags far behind
        assert!(b >= a);
    }

    #[test]
    fn wallclock_addition() {
        assert_eq!(add_ns((10, 900_000_000), 200_000_000), (11, 100_000_000));
        assert_eq!(add_ns((0, 0), 3 * NS_PER_SEC + 5), (3, 5));
    }

    extern crate std;
}
