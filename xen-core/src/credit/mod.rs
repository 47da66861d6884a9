//! The credit scheduler: a pure, allocation-free model of Xen's credit1
//! scheduler (`xen/common/sched/credit.c`), driven by the scheduling glue.
//!
//! # What it owns
//!
//! * Per schedulable unit ([`UnitId`], one per vCPU): its domain, hard
//!   affinity, priority (BOOST / UNDER / OVER), credit, run state and run
//!   time statistics.
//! * Per domain: weight and cap (`XEN_DOMCTL_SCHEDOP_{get,put}info`).
//! * Per physical CPU: the run queue (an index-linked list ordered by
//!   priority, FIFO within one; a yielding unit goes behind one
//!   lower-priority unit), the unit it believes is current, the "need
//!   resched" flag, the slice deadline and the idle mask.
//! * Globals: time slice, rate limit, migration delay
//!   (`XEN_SYSCTL_SCHEDOP_{get,put}info`), the accounting period and the
//!   system-wide credit balance.
//!
//! # What it trusts
//!
//! * The caller's clock: every `now` is nanoseconds on one monotonic
//!   timeline. Time going backwards is tolerated (deltas saturate at 0).
//! * The glue serialises all calls (one lock around the whole scheduler),
//!   calls [`CreditScheduler::tick`] and [`CreditScheduler::do_schedule`] for a
//!   CPU only *on* that CPU and never in the middle of that CPU's context
//!   switch, switches to exactly the unit a [`Decision`] names, and maps
//!   [`UnitId`]s to (domain, vCPU) consistently.
//! * Nothing else: unit ids, CPU numbers, weights, caps and masks coming from
//!   hypercalls are validated and rejected with Xen's error codes. No input
//!   panics (there is no `unwrap`/indexing on unchecked values).
//!
//! # How the glue drives it
//!
//! * Boot: [`CreditScheduler::add_cpu`] per CPU; per vCPU
//!   [`CreditScheduler::insert_unit`] (the unit starts *offline*), then
//!   [`CreditScheduler::online`] when the vCPU is brought up.
//! * Events: [`wake`](CreditScheduler::wake), [`sleep`](CreditScheduler::sleep)
//!   (block), [`yield_unit`](CreditScheduler::yield_unit),
//!   [`pause`](CreditScheduler::pause)/[`unpause`](CreditScheduler::unpause),
//!   [`set_affinity`](CreditScheduler::set_affinity). Each returns a
//!   [`CpuMask`] of CPUs whose "need resched" flag was raised: the glue sends
//!   the event-check IPI to those that are not itself.
//! * Every tick period (10 ms by default) each CPU calls
//!   [`tick`](CreditScheduler::tick); whenever [`need_resched`](CreditScheduler::need_resched)
//!   is set, or the slice of the last [`Decision`] expired, the CPU calls
//!   [`do_schedule`](CreditScheduler::do_schedule) and switches to
//!   `Decision::next` (idle when `None`).
//! * After switching away from `Decision::prev` and saving its register state,
//!   the glue calls [`context_saved`](CreditScheduler::context_saved). Until
//!   then no *other* CPU will pick that unit (Xen's `is_running` /
//!   `context_saved()` protocol). If the glue never calls it, the next `tick`
//!   or `do_schedule` on the old CPU marks the state saved implicitly, so the
//!   only cost is a migration delayed by up to one tick.
//!
//! # Mapping to Xen's `credit.c`
//!
//! | Xen                               | here                                   |
//! |-----------------------------------|----------------------------------------|
//! | `csched_unit_insert/remove`       | `insert_unit` / `remove_unit`          |
//! | `csched_unit_wake` (+`__runq_tickle`) | `wake` (and `unpause`, `online`, unpark) |
//! | `csched_unit_sleep`               | `sleep`, `pause`, `offline`, parking   |
//! | `csched_unit_yield`               | `yield_unit`                           |
//! | `csched_tick` + `csched_unit_acct`| `tick`                                 |
//! | `csched_acct` (master ticker)     | run by the first `tick` at/after each period end |
//! | `csched_runq_sort`                | done for every CPU right after accounting |
//! | `csched_schedule`                 | `do_schedule`                          |
//! | `csched_load_balance/runq_steal`  | stealing inside `do_schedule`          |
//! | `csched_dom_cntl`                 | `set_params` / `get_params`            |
//! | `csched_sys_cntl`                 | `set_global` / `global`                |
//! | `csched_aff_cntl` + `vcpu_migrate`| `set_affinity`                         |
//!
//! Defaults are Xen's: weight 256, cap 0 (none), 30 ms slice, 3 ticks per
//! slice (10 ms), 10 credits per ms (300 per slice per CPU), rate limit
//! 1 ms, no migration delay.
//!
//! # Deviations from Xen
//!
//! * No soft affinity, cpupools, SMT/NUMA topology or `tickle_one_idle_cpu=0`;
//!   the initial CPU is the caller's choice rather than `csched_res_pick`,
//!   and a running unit is never pushed to an idler by the tick
//!   (`_VPF_migrating` from `csched_unit_acct`): idle CPUs pull work instead.
//! * BOOST is granted only when `wake` ends a *block*; Xen also boosts on
//!   unpause and vCPU up. Parked units are never boosted (as Xen).
//! * After accounting, run queues get a full stable sort by priority (Xen
//!   only moves UNDER-or-better ahead of OVER).
//! * Credit burning keeps the sub-credit remainder exactly (Xen's
//!   `burn_credits` carries it both in `residual` and in `start_time`).
//! * An idle CPU whose tick finds work it could run (local or stealable) asks
//!   to reschedule; Xen relies on tickling alone.
//! * A rate-limited slice is never shorter than 100 µs (Xen compares the
//!   *run time* with `CSCHED_MIN_TIMER`, which looks like a slip).
//! * Units start *offline* and come up with [`CreditScheduler::online`];
//!   `pause` nests like `vcpu_pause`. In Xen these states live in the
//!   generic scheduler (`_VPF_down`, `pause_count`), here in one place.
//! * Accounting runs from whichever CPU ticks first after the period ends
//!   (there is one lock, so no master CPU/timer is needed).
//! * `set_params` also performs libxl's range check (cap at most
//!   100 × the domain's number of units), since the glue has no libxl.
//!
//! Cost: every operation is O(UNITS) at worst (queue walks; accounting is
//! one pass over domains and one over units); [`Credit`] takes about 34 KiB
//! and is built by a `const fn`, so it can sit in a `static` behind a lock.
//!
//! No crate implements Xen's credit algorithm, and this must run in ring 0
//! under a spinlock with interrupts off, without an allocator: hence written
//! here, with fixed capacities from const generics.

pub mod boot;
#[cfg(test)]
mod tests;
pub mod unitmap;

use hypercall_abi::errno::Errno;
use hypercall_abi::sysctl::{
    XEN_SYSCTL_CSCHED_MGR_DLY_MAX_US, XEN_SYSCTL_CSCHED_TSLICE_MAX, XEN_SYSCTL_CSCHED_TSLICE_MIN,
    XEN_SYSCTL_SCHED_RATELIMIT_MAX, XEN_SYSCTL_SCHED_RATELIMIT_MIN,
};
use hypercall_abi::xen::DOMID_FIRST_RESERVED;
use hypercall_abi::DomId;

/// Physical CPUs the default instantiation supports.
pub const MAX_CPUS: usize = 32;
/// Schedulable units (vCPUs) the default instantiation supports.
pub const MAX_UNITS: usize = 256;
/// The scheduler as the hypervisor instantiates it.
pub type Credit = CreditScheduler<MAX_CPUS, MAX_UNITS>;

/// Default domain weight (`CSCHED_DEFAULT_WEIGHT`).
pub const DEFAULT_WEIGHT: u16 = 256;
/// Default time slice in ms (`CSCHED_DEFAULT_TSLICE_MS`).
pub const DEFAULT_TSLICE_MS: u32 = 30;
/// Scheduler ticks per time slice (`CSCHED_TICKS_PER_TSLICE`).
pub const TICKS_PER_TSLICE: u32 = 3;
/// Credits a unit burns per millisecond of run time (`CSCHED_CREDITS_PER_MSEC`).
pub const CREDITS_PER_MSEC: i64 = 10;
/// Default context-switch rate limit in µs (`sched_ratelimit_us`).
pub const DEFAULT_RATELIMIT_US: u32 = 1000;
/// Shortest slice ever handed out (`CSCHED_MIN_TIMER`), in ns.
pub const MIN_TIMER_NS: u64 = XEN_SYSCTL_SCHED_RATELIMIT_MIN as u64 * NS_PER_US;
/// `putinfo` weight meaning "leave the weight unchanged".
pub const WEIGHT_UNCHANGED: u16 = 0;
/// `putinfo` cap meaning "leave the cap unchanged" (`(uint16_t)~0U`).
pub const CAP_UNCHANGED: u16 = u16::MAX;

const NS_PER_US: u64 = 1_000;
const NS_PER_MS: u64 = 1_000_000;
/// "No unit" in links and slots.
const NONE: u16 = u16::MAX;

/// Why a unit may not run (bits of `Unit::block`).
const B_BLOCKED: u8 = 1 << 0;
const B_DOWN: u8 = 1 << 1;
const B_PARKED: u8 = 1 << 2;

/// A schedulable unit (one vCPU), as numbered by the glue: `0..UNITS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UnitId(pub u16);

/// A set of physical CPUs (bit `n` = CPU `n`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CpuMask(pub u64);

impl CpuMask {
    /// No CPU.
    pub const EMPTY: Self = Self(0);

    /// Just `cpu` (empty if `cpu >= 64`).
    pub const fn single(cpu: usize) -> Self {
        Self(bit(cpu))
    }
    /// Whether no CPU is in the set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
    /// Whether `cpu` is in the set.
    pub const fn contains(self, cpu: usize) -> bool {
        self.0 & bit(cpu) != 0
    }
    /// Number of CPUs in the set.
    pub const fn count(self) -> u32 {
        self.0.count_ones()
    }
    /// The CPUs in the set, lowest first.
    pub fn iter(self) -> impl Iterator<Item = usize> {
        let mut m = self.0;
        core::iter::from_fn(move || {
            if m == 0 {
                return None;
            }
            let c = m.trailing_zeros() as usize;
            m &= m - 1;
            Some(c)
        })
    }
}

impl core::ops::BitOr for CpuMask {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

impl core::ops::BitOrAssign for CpuMask {
    fn bitor_assign(&mut self, rhs: Self) {
        self.0 |= rhs.0;
    }
}

/// A unit's scheduling priority (`CSCHED_PRI_*`), lowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Priority {
    /// Only the idle vCPU (`CSCHED_PRI_IDLE`, -64); never a real unit.
    Idle,
    /// Out of credit (`CSCHED_PRI_TS_OVER`, -2).
    Over,
    /// Has credit (`CSCHED_PRI_TS_UNDER`, -1).
    Under,
    /// Just woke from a block (`CSCHED_PRI_TS_BOOST`, 0).
    Boost,
}

impl Priority {
    /// Xen's numeric value.
    pub const fn xen_value(self) -> i32 {
        match self {
            Priority::Idle => -64,
            Priority::Over => -2,
            Priority::Under => -1,
            Priority::Boost => 0,
        }
    }
}

/// Where a unit is, as `xl vcpu-list` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnitState {
    /// Current on `cpu` (it may have just blocked: its CPU then has "need
    /// resched" set).
    Running {
        /// The CPU it runs on.
        cpu: usize,
    },
    /// Waiting in `cpu`'s run queue.
    Runnable {
        /// The run queue's CPU.
        cpu: usize,
    },
    /// Blocked, waiting for an event.
    Blocked,
    /// Paused (by the toolstack or the hypervisor).
    Paused,
    /// Its domain exceeded its cap; runnable again after accounting.
    Parked,
    /// vCPU down (never brought up, or taken offline).
    Offline,
}

/// A snapshot of one unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnitInfo {
    /// Owning domain.
    pub domid: DomId,
    /// Run state.
    pub state: UnitState,
    /// The CPU it runs on, is queued on, or last ran on.
    pub cpu: usize,
    /// Hard affinity.
    pub affinity: CpuMask,
    /// Scheduling priority.
    pub priority: Priority,
    /// Current credit.
    pub credit: i64,
    /// Total time spent running, in ns.
    pub runtime_ns: u64,
    /// Times it moved to another CPU.
    pub migrations: u64,
}

/// A domain's credit parameters (`struct xen_domctl_sched_credit`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CreditParams {
    /// Relative weight, 1..=65535.
    pub weight: u16,
    /// Cap in percent of one CPU; 0 = uncapped.
    pub cap: u16,
}

/// Global parameters (`struct xen_sysctl_credit_schedule`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GlobalParams {
    /// Time slice (and accounting period), ms.
    pub tslice_ms: u32,
    /// Minimum run time before a preemption, µs (0 = off).
    pub ratelimit_us: u32,
    /// A unit that ran this recently is not stolen by another CPU, µs.
    pub vcpu_migr_delay_us: u32,
}

/// What `do_schedule` decided for one CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The unit switched away from, if the CPU switches. Call
    /// [`CreditScheduler::context_saved`] once its state is saved.
    pub prev: Option<UnitId>,
    /// The unit to run; `None` = run the idle loop.
    pub next: Option<UnitId>,
    /// Call `do_schedule` again after this long; `None` (idle) = no deadline.
    pub timeslice_ns: Option<u64>,
    /// `next` last ran on another CPU.
    pub migrated: bool,
    /// Other CPUs whose "need resched" was raised as a side effect (IPI them).
    pub tickle: CpuMask,
}

impl Decision {
    const IDLE: Self = Self {
        prev: None,
        next: None,
        timeslice_ns: None,
        migrated: false,
        tickle: CpuMask::EMPTY,
    };
}

#[derive(Clone, Copy)]
struct Unit {
    used: bool,
    /// Index into `doms`.
    dom: u16,
    /// Runq it is on, CPU it runs on, or last ran on.
    cpu: u8,
    /// CPU whose registers last held it (`NO_CPU` = never ran).
    ctx_cpu: u8,
    pri: Priority,
    yielding: bool,
    running: bool,
    on_runq: bool,
    active: bool,
    block: u8,
    pause: u16,
    next: u16,
    prev: u16,
    affinity: u64,
    credit: i64,
    /// Sub-credit remainder, in credit·ns/ms units (`< NS_PER_MS`).
    residual: u64,
    /// Credit burnt up to here.
    burn_stamp: u64,
    /// Start of the current stint on a CPU (rate limit).
    run_start: u64,
    /// Run time accounted up to here.
    stat_stamp: u64,
    /// When it was last descheduled (migration delay).
    last_sched: u64,
    run_ns: u64,
    migrations: u64,
}

const NO_CPU: u8 = u8::MAX;

impl Unit {
    const EMPTY: Self = Self {
        used: false,
        dom: NONE,
        cpu: 0,
        ctx_cpu: NO_CPU,
        pri: Priority::Under,
        yielding: false,
        running: false,
        on_runq: false,
        active: false,
        block: 0,
        pause: 0,
        next: NONE,
        prev: NONE,
        affinity: 0,
        credit: 0,
        residual: 0,
        burn_stamp: 0,
        run_start: 0,
        stat_stamp: 0,
        last_sched: 0,
        run_ns: 0,
        migrations: 0,
    };

    fn runnable(&self) -> bool {
        self.used && self.block == 0 && self.pause == 0
    }
}

#[derive(Clone, Copy)]
struct Dom {
    used: bool,
    domid: DomId,
    weight: u16,
    cap: u16,
    nr_units: u16,
    active_units: u16,
    /// Scratch from the accounting pass.
    credit_per_unit: i64,
    cap_per_unit: i64,
}

impl Dom {
    const EMPTY: Self = Self {
        used: false,
        domid: 0,
        weight: DEFAULT_WEIGHT,
        cap: 0,
        nr_units: 0,
        active_units: 0,
        credit_per_unit: 0,
        cap_per_unit: 0,
    };
}

#[derive(Clone, Copy)]
struct Pcpu {
    online: bool,
    need_resched: bool,
    curr: u16,
    head: u16,
    tail: u16,
    len: u16,
    /// A unit switched away from here whose state may not be saved yet.
    unsaved: u16,
    slice_end: u64,
}

impl Pcpu {
    const EMPTY: Self = Self {
        online: false,
        need_resched: false,
        curr: NONE,
        head: NONE,
        tail: NONE,
        len: 0,
        unsaved: NONE,
        slice_end: u64::MAX,
    };
}

/// Xen's credit scheduler for up to `CPUS` (≤ 64) physical CPUs and `UNITS`
/// (< 65535) units. Domains are created with their first unit and freed with
/// their last, so there are never more than `UNITS` of them.
pub struct CreditScheduler<const CPUS: usize, const UNITS: usize> {
    units: [Unit; UNITS],
    doms: [Dom; UNITS],
    /// Domain indexes with active units, in Xen's `active_sdom` order.
    active_doms: [u16; UNITS],
    nr_active_doms: usize,
    pcpus: [Pcpu; CPUS],
    online: u64,
    idlers: u64,
    ncpus: u32,
    /// Sum of weight over active units.
    weight_total: u64,
    credit_balance: i64,
    tslice_ns: u64,
    tick_ns: u64,
    credits_per_tslice: i64,
    ratelimit_ns: u64,
    migr_delay_ns: u64,
    next_acct: Option<u64>,
    nr_acct: u64,
    balance_bias: usize,
    last_tickle: usize,
}

const fn bit(cpu: usize) -> u64 {
    if cpu < 64 {
        1 << cpu
    } else {
        0
    }
}

const fn div_ceil(a: i64, b: i64) -> i64 {
    // Only used with a >= 0, b > 0.
    (a + b - 1) / b
}

/// The first CPU of `mask` after `from`, wrapping (`None` if empty).
fn cycle(from: usize, mask: u64) -> Option<usize> {
    if mask == 0 {
        return None;
    }
    let shift = (from + 1) % 64;
    let rot = mask.rotate_right(shift as u32);
    Some((rot.trailing_zeros() as usize + shift) % 64)
}

impl<const CPUS: usize, const UNITS: usize> Default for CreditScheduler<CPUS, UNITS> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const CPUS: usize, const UNITS: usize> CreditScheduler<CPUS, UNITS> {
    const ALL_CPUS: u64 = if CPUS >= 64 {
        u64::MAX
    } else {
        (1u64 << CPUS) - 1
    };

    /// An empty scheduler with Xen's defaults and no CPU online.
    pub const fn new() -> Self {
        const {
            assert!(CPUS >= 1 && CPUS <= 64, "CPUS must be 1..=64");
            assert!(
                UNITS >= 1 && UNITS < NONE as usize,
                "UNITS must be 1..65535"
            );
        }
        let mut s = Self {
            units: [Unit::EMPTY; UNITS],
            doms: [Dom::EMPTY; UNITS],
            active_doms: [NONE; UNITS],
            nr_active_doms: 0,
            pcpus: [Pcpu::EMPTY; CPUS],
            online: 0,
            idlers: 0,
            ncpus: 0,
            weight_total: 0,
            credit_balance: 0,
            tslice_ns: 0,
            tick_ns: 0,
            credits_per_tslice: 0,
            ratelimit_ns: DEFAULT_RATELIMIT_US as u64 * NS_PER_US,
            migr_delay_ns: 0,
            next_acct: None,
            nr_acct: 0,
            balance_bias: 0,
            last_tickle: 0,
        };
        s.set_tslice(DEFAULT_TSLICE_MS);
        s
    }

    const fn set_tslice(&mut self, ms: u32) {
        let ticks = if ms < TICKS_PER_TSLICE {
            1
        } else {
            TICKS_PER_TSLICE
        };
        self.tslice_ns = ms as u64 * NS_PER_MS;
        self.tick_ns = self.tslice_ns / ticks as u64;
        self.credits_per_tslice = CREDITS_PER_MSEC * ms as i64;
    }

    // ----- configuration -------------------------------------------------

    /// Brings `cpu` into the scheduler (`init_pdata`); it starts idle.
    pub fn add_cpu(&mut self, cpu: usize) -> Result<(), Errno> {
        let p = self.pcpus.get_mut(cpu).ok_or(Errno::EINVAL)?;
        if p.online {
            return Err(Errno::EEXIST);
        }
        *p = Pcpu::EMPTY;
        p.online = true;
        self.online |= bit(cpu);
        self.idlers |= bit(cpu);
        self.ncpus += 1;
        Ok(())
    }

    /// Takes `cpu` out of the scheduler (`deinit_pdata` plus the generic
    /// code's evacuation). It must be idle (`EBUSY` otherwise, and for the
    /// last CPU while units exist). Units queued there move elsewhere; units
    /// whose affinity no longer meets an online CPU get it reset to all CPUs
    /// ("breaking affinity", as Xen does). Returns the CPUs to IPI.
    pub fn remove_cpu(&mut self, cpu: usize) -> Result<CpuMask, Errno> {
        let p = self.pcpus.get(cpu).ok_or(Errno::EINVAL)?;
        if !p.online {
            return Err(Errno::ENOENT);
        }
        if p.curr != NONE {
            return Err(Errno::EBUSY);
        }
        if self.online == bit(cpu) && self.units.iter().any(|u| u.used) {
            return Err(Errno::EBUSY);
        }
        self.pcpus[cpu].online = false;
        self.pcpus[cpu].unsaved = NONE;
        self.online &= !bit(cpu);
        self.idlers &= !bit(cpu);
        self.ncpus -= 1;
        for u in self.units.iter_mut().filter(|u| u.used) {
            if u.affinity & self.online == 0 {
                u.affinity = Self::ALL_CPUS;
            }
        }
        let mut mask = CpuMask::EMPTY;
        while self.pcpus[cpu].head != NONE {
            let u = self.pcpus[cpu].head;
            self.runq_remove(u);
            mask |= self.enqueue(u);
        }
        Ok(mask)
    }

    /// Sets the global parameters (`XEN_SYSCTL_SCHEDOP_putinfo` for credit),
    /// with Xen's checks: slice 1..=1000 ms, rate limit 0 or 100..=500000 µs
    /// and not longer than the slice, migration delay ≤ 100 ms.
    pub fn set_global(&mut self, p: GlobalParams) -> Result<(), Errno> {
        let bad_rl = p.ratelimit_us != 0
            && !(XEN_SYSCTL_SCHED_RATELIMIT_MIN..=XEN_SYSCTL_SCHED_RATELIMIT_MAX)
                .contains(&p.ratelimit_us);
        if !(XEN_SYSCTL_CSCHED_TSLICE_MIN..=XEN_SYSCTL_CSCHED_TSLICE_MAX).contains(&p.tslice_ms)
            || bad_rl
            || u64::from(p.ratelimit_us) * NS_PER_US > u64::from(p.tslice_ms) * NS_PER_MS
            || p.vcpu_migr_delay_us > XEN_SYSCTL_CSCHED_MGR_DLY_MAX_US
        {
            return Err(Errno::EINVAL);
        }
        self.set_tslice(p.tslice_ms);
        self.ratelimit_ns = u64::from(p.ratelimit_us) * NS_PER_US;
        self.migr_delay_ns = u64::from(p.vcpu_migr_delay_us) * NS_PER_US;
        Ok(())
    }

    /// The global parameters (`XEN_SYSCTL_SCHEDOP_getinfo`).
    pub fn global(&self) -> GlobalParams {
        GlobalParams {
            tslice_ms: (self.tslice_ns / NS_PER_MS) as u32,
            ratelimit_us: (self.ratelimit_ns / NS_PER_US) as u32,
            vcpu_migr_delay_us: (self.migr_delay_ns / NS_PER_US) as u32,
        }
    }

    /// How often each CPU should call [`tick`](Self::tick), in ns.
    pub fn tick_period_ns(&self) -> u64 {
        self.tick_ns
    }

    /// Sets a domain's weight and cap (`XEN_DOMCTL_SCHEDOP_putinfo`):
    /// weight [`WEIGHT_UNCHANGED`] (0) and cap [`CAP_UNCHANGED`] (0xffff)
    /// leave that value alone; a cap above 100 × the domain's units is
    /// `EINVAL` (libxl's check); an unknown domain is `ESRCH`.
    pub fn set_params(&mut self, domid: DomId, weight: u16, cap: u16) -> Result<(), Errno> {
        let d = self.find_dom(domid).ok_or(Errno::ESRCH)?;
        let dom = self.doms[d];
        if cap != CAP_UNCHANGED && u32::from(cap) > 100 * u32::from(dom.nr_units) {
            return Err(Errno::EINVAL);
        }
        if weight != WEIGHT_UNCHANGED {
            let act = u64::from(dom.active_units);
            self.weight_total =
                self.weight_total - u64::from(dom.weight) * act + u64::from(weight) * act;
            self.doms[d].weight = weight;
        }
        if cap != CAP_UNCHANGED {
            self.doms[d].cap = cap;
        }
        Ok(())
    }

    /// A domain's weight and cap (`XEN_DOMCTL_SCHEDOP_getinfo`).
    pub fn get_params(&self, domid: DomId) -> Result<CreditParams, Errno> {
        let d = self.find_dom(domid).ok_or(Errno::ESRCH)?;
        Ok(CreditParams {
            weight: self.doms[d].weight,
            cap: self.doms[d].cap,
        })
    }

    // ----- units -----------------------------------------------------------

    /// Adds a unit of `domid` (creating the domain's entry with weight 256,
    /// no cap, if it is the first) homed on `cpu`, with affinity "all CPUs".
    /// It starts offline: call [`online`](Self::online) to make it runnable.
    /// `EINVAL`: bad id, domid or CPU (not online); `EEXIST`: id in use.
    pub fn insert_unit(&mut self, unit: UnitId, domid: DomId, cpu: usize) -> Result<(), Errno> {
        let i = usize::from(unit.0);
        if i >= UNITS || domid >= DOMID_FIRST_RESERVED || cpu >= CPUS || !self.pcpus[cpu].online {
            return Err(Errno::EINVAL);
        }
        if self.units[i].used {
            return Err(Errno::EEXIST);
        }
        let d = match self.find_dom(domid) {
            Some(d) => d,
            None => {
                let d = self
                    .doms
                    .iter()
                    .position(|d| !d.used)
                    .ok_or(Errno::ENOSPC)?;
                self.doms[d] = Dom {
                    used: true,
                    domid,
                    ..Dom::EMPTY
                };
                d
            }
        };
        self.doms[d].nr_units += 1;
        self.units[i] = Unit {
            used: true,
            dom: d as u16,
            cpu: cpu as u8,
            block: B_DOWN,
            affinity: Self::ALL_CPUS,
            ..Unit::EMPTY
        };
        Ok(())
    }

    /// Removes a unit (`csched_unit_remove`). `EBUSY` while it is current on
    /// a CPU (pause it and let that CPU reschedule first). The domain's entry
    /// goes with its last unit.
    pub fn remove_unit(&mut self, unit: UnitId) -> Result<(), Errno> {
        let i = self.idx(unit)?;
        if self.units[i].running {
            return Err(Errno::EBUSY);
        }
        if self.units[i].on_runq {
            self.runq_remove(i as u16);
        }
        if self.units[i].active {
            self.acct_stop(i);
        }
        for p in self.pcpus.iter_mut() {
            if p.unsaved == i as u16 {
                p.unsaved = NONE;
            }
        }
        let d = usize::from(self.units[i].dom);
        self.doms[d].nr_units -= 1;
        if self.doms[d].nr_units == 0 {
            self.doms[d] = Dom::EMPTY;
        }
        self.units[i] = Unit::EMPTY;
        Ok(())
    }

    /// Brings a unit's vCPU up (`VCPUOP_up`, or the boot vCPU). No BOOST.
    pub fn online(&mut self, unit: UnitId, _now: u64) -> Result<CpuMask, Errno> {
        let i = self.idx(unit)?;
        self.units[i].block &= !B_DOWN;
        Ok(self.make_runnable(i, false))
    }

    /// Takes a unit's vCPU down (`VCPUOP_down`).
    pub fn offline(&mut self, unit: UnitId) -> Result<CpuMask, Errno> {
        let i = self.idx(unit)?;
        self.units[i].block |= B_DOWN;
        Ok(self.make_unrunnable(i))
    }

    /// The unit's vCPU got an event while blocked (`csched_unit_wake`): it
    /// becomes runnable with BOOST priority (if it had credit and is not
    /// parked), goes on its CPU's run queue, and CPUs are tickled: its own
    /// if idle or running something of lower priority, else an idle CPU in
    /// its affinity. Returns the tickled CPUs. Waking a unit that is not
    /// blocked does nothing.
    pub fn wake(&mut self, unit: UnitId, _now: u64) -> Result<CpuMask, Errno> {
        let i = self.idx(unit)?;
        if self.units[i].block & B_BLOCKED == 0 {
            return Ok(CpuMask::EMPTY);
        }
        self.units[i].block &= !B_BLOCKED;
        Ok(self.make_runnable(i, true))
    }

    /// The unit blocks (`SCHEDOP_block`/`poll`; `csched_unit_sleep`). If it
    /// is running, its CPU must reschedule (returned).
    pub fn sleep(&mut self, unit: UnitId) -> Result<CpuMask, Errno> {
        let i = self.idx(unit)?;
        self.units[i].block |= B_BLOCKED;
        Ok(self.make_unrunnable(i))
    }

    /// Pauses a unit (nesting count, like `vcpu_pause`).
    pub fn pause(&mut self, unit: UnitId) -> Result<CpuMask, Errno> {
        let i = self.idx(unit)?;
        let u = &mut self.units[i];
        u.pause = u.pause.checked_add(1).ok_or(Errno::EOVERFLOW)?;
        Ok(self.make_unrunnable(i))
    }

    /// Undoes one [`pause`](Self::pause) (`EINVAL` if not paused). No BOOST.
    pub fn unpause(&mut self, unit: UnitId, _now: u64) -> Result<CpuMask, Errno> {
        let i = self.idx(unit)?;
        let u = &mut self.units[i];
        u.pause = u.pause.checked_sub(1).ok_or(Errno::EINVAL)?;
        Ok(self.make_runnable(i, false))
    }

    /// The running unit yields (`SCHEDOP_yield`): its CPU reschedules
    /// (ignoring the rate limit) and it queues behind one lower-priority
    /// unit if there is one. No effect on a unit that is not running.
    pub fn yield_unit(&mut self, unit: UnitId) -> Result<CpuMask, Errno> {
        let i = self.idx(unit)?;
        if !self.units[i].running {
            return Ok(CpuMask::EMPTY);
        }
        self.units[i].yielding = true;
        let cpu = usize::from(self.units[i].cpu);
        Ok(self.raise(cpu))
    }

    /// Sets a unit's hard affinity (`XEN_DOMCTL_setvcpuaffinity`). Bits of
    /// CPUs that do not exist are dropped; `EINVAL` if no online CPU is
    /// left. A queued unit moves to an allowed CPU; a running one makes its
    /// CPU reschedule. Returns the CPUs to IPI.
    pub fn set_affinity(&mut self, unit: UnitId, mask: CpuMask) -> Result<CpuMask, Errno> {
        let i = self.idx(unit)?;
        let mask = mask.0 & Self::ALL_CPUS;
        if mask & self.online == 0 {
            return Err(Errno::EINVAL);
        }
        self.units[i].affinity = mask;
        let cpu = usize::from(self.units[i].cpu);
        if self.units[i].running {
            if mask & bit(cpu) == 0 {
                return Ok(self.raise(cpu));
            }
        } else if self.units[i].on_runq && mask & bit(cpu) == 0 {
            self.runq_remove(i as u16);
            return Ok(self.enqueue(i as u16));
        }
        Ok(CpuMask::EMPTY)
    }

    /// A unit's hard affinity.
    pub fn affinity(&self, unit: UnitId) -> Result<CpuMask, Errno> {
        Ok(CpuMask(self.units[self.idx(unit)?].affinity))
    }

    /// The glue finished saving the state of a unit it switched away from:
    /// other CPUs may now run it. Returns CPUs to IPI.
    pub fn context_saved(&mut self, unit: UnitId) -> CpuMask {
        let Ok(i) = self.idx(unit) else {
            return CpuMask::EMPTY;
        };
        let ctx = usize::from(self.units[i].ctx_cpu);
        match self.pcpus.get(ctx) {
            Some(p) if p.unsaved == i as u16 => self.mark_saved(ctx),
            _ => CpuMask::EMPTY,
        }
    }

    // ----- per-CPU entry points -----------------------------------------

    /// Whether `cpu` should call [`do_schedule`](Self::do_schedule).
    pub fn need_resched(&self, cpu: usize) -> bool {
        self.pcpus.get(cpu).is_some_and(|p| p.need_resched)
    }

    /// The unit current on `cpu` (`None` = idle).
    pub fn current(&self, cpu: usize) -> Option<UnitId> {
        self.pcpus
            .get(cpu)
            .and_then(|p| (p.curr != NONE).then_some(UnitId(p.curr)))
    }

    /// The periodic tick on `cpu` (`csched_tick`): ends the current unit's
    /// BOOST, burns its credit, makes it take part in accounting, and asks
    /// for a reschedule when its slice is over. The first tick at or after
    /// the end of each accounting period (one slice, 30 ms) redistributes
    /// credit by weight and applies caps (`csched_acct`), parking units of
    /// capped domains that overran and unparking those back in credit.
    /// Returns other CPUs to IPI; check [`need_resched`](Self::need_resched)
    /// for `cpu` itself.
    pub fn tick(&mut self, cpu: usize, now: u64) -> CpuMask {
        if cpu >= CPUS || !self.pcpus[cpu].online {
            return CpuMask::EMPTY;
        }
        let mut mask = self.mark_saved(cpu);
        let cur = self.pcpus[cpu].curr;
        if cur != NONE {
            let c = usize::from(cur);
            if self.units[c].pri == Priority::Boost {
                self.units[c].pri = Priority::Under;
            }
            self.burn(c, now);
            self.account_runtime(c, now);
            if !self.units[c].active {
                self.acct_start(c);
            }
            if now >= self.pcpus[cpu].slice_end {
                self.pcpus[cpu].need_resched = true;
            }
        } else if self.local_pick(cpu).is_some()
            || self.find_steal(cpu, Priority::Idle, now).is_some()
        {
            self.pcpus[cpu].need_resched = true;
            self.idlers &= !bit(cpu);
        }
        match self.next_acct {
            None => self.next_acct = Some(now.saturating_add(self.tslice_ns)),
            Some(t) if now >= t => {
                mask |= self.acct();
                let mut next = t.saturating_add(self.tslice_ns);
                if next <= now {
                    next = now.saturating_add(self.tslice_ns);
                }
                self.next_acct = Some(next);
            }
            Some(_) => {}
        }
        mask.0 &= !bit(cpu);
        mask
    }

    /// Picks what `cpu` runs next (`csched_schedule`). The current unit is
    /// charged for its run time; if it is still runnable and ran less than
    /// the rate limit it simply continues (unless it yielded). Otherwise it
    /// goes back on a run queue and the CPU takes the head of its own queue;
    /// if that is OVER (or there is nothing), it first tries to steal a
    /// higher-priority unit from a busy peer whose affinity allows this CPU
    /// (load balancing). An invalid or offline CPU gets an idle decision.
    pub fn do_schedule(&mut self, cpu: usize, now: u64) -> Decision {
        if cpu >= CPUS {
            return Decision::IDLE;
        }
        let mut tickle = self.mark_saved(cpu);
        self.pcpus[cpu].need_resched = false;
        let online = self.pcpus[cpu].online;
        let cur = self.pcpus[cpu].curr;

        if cur != NONE {
            let c = usize::from(cur);
            let runtime = now.saturating_sub(self.units[c].run_start);
            self.burn(c, now);
            self.account_runtime(c, now);
            self.units[c].last_sched = now;
            let u = &self.units[c];
            if online
                && !u.yielding
                && self.ratelimit_ns != 0
                && u.runnable()
                && u.affinity & bit(cpu) != 0
                && runtime < self.ratelimit_ns
            {
                let slice = (self.ratelimit_ns - runtime).max(MIN_TIMER_NS);
                self.pcpus[cpu].slice_end = now.saturating_add(slice);
                tickle.0 &= !bit(cpu);
                return Decision {
                    prev: None,
                    next: Some(UnitId(cur)),
                    timeslice_ns: Some(slice),
                    migrated: false,
                    tickle,
                };
            }
            self.units[c].running = false;
            self.pcpus[cpu].curr = NONE;
            if self.units[c].runnable() {
                if online && self.units[c].affinity & bit(cpu) != 0 {
                    self.runq_insert(cur);
                } else {
                    tickle |= self.enqueue(cur);
                }
            }
            self.units[c].yielding = false;
        }

        let mut next = NONE;
        let mut stolen = false;
        if online {
            let local = self.local_pick(cpu);
            let local_pri = local.map_or(Priority::Idle, |u| self.units[usize::from(u)].pri);
            if local_pri <= Priority::Over {
                if let Some((peer, u)) = self.find_steal(cpu, local_pri, now) {
                    self.runq_remove(u);
                    self.balance_bias = peer;
                    next = u;
                    stolen = true;
                }
            }
            if !stolen {
                if let Some(u) = local {
                    self.runq_remove(u);
                    next = u;
                }
            }
        }

        let mut d = Decision {
            tickle,
            ..Decision::IDLE
        };
        if next == NONE {
            if online {
                self.idlers |= bit(cpu);
            }
            self.pcpus[cpu].slice_end = u64::MAX;
        } else {
            self.idlers &= !bit(cpu);
            let n = usize::from(next);
            let u = &mut self.units[n];
            if next != cur {
                d.migrated = u.ctx_cpu != NO_CPU && usize::from(u.ctx_cpu) != cpu;
                u.migrations += u64::from(d.migrated);
                u.run_start = now;
                u.burn_stamp = now;
                u.stat_stamp = now;
            }
            u.cpu = cpu as u8;
            u.ctx_cpu = cpu as u8;
            u.running = true;
            self.pcpus[cpu].curr = next;
            self.pcpus[cpu].slice_end = now.saturating_add(self.tslice_ns);
            d.next = Some(UnitId(next));
            d.timeslice_ns = Some(self.tslice_ns);
        }
        if cur != NONE && next != cur {
            d.prev = Some(UnitId(cur));
            if self.units[usize::from(cur)].used {
                self.pcpus[cpu].unsaved = cur;
            }
        }
        d.tickle.0 &= !bit(cpu);
        d
    }

    // ----- statistics ----------------------------------------------------

    /// A snapshot of `unit`, with run time up to `now`.
    pub fn unit_info(&self, unit: UnitId, now: u64) -> Option<UnitInfo> {
        let i = self.idx(unit).ok()?;
        let u = &self.units[i];
        let state = if u.running {
            UnitState::Running {
                cpu: usize::from(u.cpu),
            }
        } else if u.on_runq {
            UnitState::Runnable {
                cpu: usize::from(u.cpu),
            }
        } else if u.block & B_DOWN != 0 {
            UnitState::Offline
        } else if u.pause != 0 {
            UnitState::Paused
        } else if u.block & B_BLOCKED != 0 {
            UnitState::Blocked
        } else {
            UnitState::Parked
        };
        Some(UnitInfo {
            domid: self.doms[usize::from(u.dom)].domid,
            state,
            cpu: usize::from(u.cpu),
            affinity: CpuMask(u.affinity),
            priority: u.pri,
            credit: u.credit,
            runtime_ns: self.runtime_of(i, now),
            migrations: u.migrations,
        })
    }

    /// Total run time of `unit` up to `now`, in ns.
    pub fn unit_runtime_ns(&self, unit: UnitId, now: u64) -> Option<u64> {
        self.idx(unit).ok().map(|i| self.runtime_of(i, now))
    }

    /// Total run time of all of `domid`'s units up to `now`, in ns.
    pub fn domain_runtime_ns(&self, domid: DomId, now: u64) -> Option<u64> {
        let d = self.find_dom(domid)?;
        Some(
            (0..UNITS)
                .filter(|&i| self.units[i].used && usize::from(self.units[i].dom) == d)
                .map(|i| self.runtime_of(i, now))
                .sum(),
        )
    }

    /// Number of accounting periods run so far.
    pub fn accounting_periods(&self) -> u64 {
        self.nr_acct
    }

    // ----- internals -------------------------------------------------------

    fn idx(&self, unit: UnitId) -> Result<usize, Errno> {
        let i = usize::from(unit.0);
        match self.units.get(i) {
            Some(u) if u.used => Ok(i),
            Some(_) => Err(Errno::ESRCH),
            None => Err(Errno::EINVAL),
        }
    }

    fn find_dom(&self, domid: DomId) -> Option<usize> {
        self.doms.iter().position(|d| d.used && d.domid == domid)
    }

    fn runtime_of(&self, i: usize, now: u64) -> u64 {
        let u = &self.units[i];
        let live = if u.running {
            now.saturating_sub(u.stat_stamp)
        } else {
            0
        };
        u.run_ns + live
    }

    fn account_runtime(&mut self, i: usize, now: u64) {
        let u = &mut self.units[i];
        u.run_ns += now.saturating_sub(u.stat_stamp);
        u.stat_stamp = u.stat_stamp.max(now);
    }

    /// `burn_credits`: 10 credits per ms since the last burn.
    fn burn(&mut self, i: usize, now: u64) {
        let cap = self.credits_per_tslice;
        let u = &mut self.units[i];
        let delta = now.saturating_sub(u.burn_stamp);
        u.burn_stamp = u.burn_stamp.max(now);
        let val = u128::from(delta) * CREDITS_PER_MSEC as u128 + u128::from(u.residual);
        let credits = val / u128::from(NS_PER_MS);
        u.residual = (val % u128::from(NS_PER_MS)) as u64;
        // Bound the debt so a glue that never ticks cannot overflow it;
        // accounting clamps at -credits_per_tslice anyway.
        let credits = credits.min(u128::from(u32::MAX)) as i64;
        u.credit = (u.credit - credits).max(-cap.saturating_mul(64));
    }

    /// Raises "need resched" on `cpu`.
    fn raise(&mut self, cpu: usize) -> CpuMask {
        match self.pcpus.get_mut(cpu) {
            Some(p) if p.online => {
                p.need_resched = true;
                self.idlers &= !bit(cpu);
                CpuMask::single(cpu)
            }
            _ => CpuMask::EMPTY,
        }
    }

    /// The state of `cpu`'s last switched-away unit is saved: let other
    /// CPUs have it.
    fn mark_saved(&mut self, cpu: usize) -> CpuMask {
        let u = self.pcpus[cpu].unsaved;
        if u == NONE {
            return CpuMask::EMPTY;
        }
        self.pcpus[cpu].unsaved = NONE;
        let unit = &self.units[usize::from(u)];
        if unit.on_runq && usize::from(unit.cpu) != cpu {
            self.tickle(u)
        } else {
            CpuMask::EMPTY
        }
    }

    /// Whether `u` may start running on `cpu` now.
    fn available_on(&self, u: u16, cpu: usize) -> bool {
        let unit = &self.units[usize::from(u)];
        if unit.running || unit.affinity & bit(cpu) == 0 {
            return false;
        }
        let ctx = usize::from(unit.ctx_cpu);
        ctx == cpu || self.pcpus.get(ctx).is_none_or(|p| p.unsaved != u)
    }

    fn make_runnable(&mut self, i: usize, boost: bool) -> CpuMask {
        let u = &mut self.units[i];
        if !u.runnable() || u.running || u.on_runq {
            return CpuMask::EMPTY;
        }
        if boost && u.pri == Priority::Under && u.block & B_PARKED == 0 {
            u.pri = Priority::Boost;
        }
        self.enqueue(i as u16)
    }

    fn make_unrunnable(&mut self, i: usize) -> CpuMask {
        if self.units[i].runnable() {
            return CpuMask::EMPTY;
        }
        if self.units[i].running {
            return self.raise(usize::from(self.units[i].cpu));
        }
        if self.units[i].on_runq {
            self.runq_remove(i as u16);
        }
        CpuMask::EMPTY
    }

    /// Puts a runnable, idle-handed unit on a run queue allowed by its
    /// affinity (its own CPU if possible) and tickles.
    fn enqueue(&mut self, u: u16) -> CpuMask {
        let i = usize::from(u);
        let mut eff = self.units[i].affinity & self.online;
        if eff == 0 {
            if self.online == 0 {
                return CpuMask::EMPTY;
            }
            // Cannot happen (affinity is checked and broken on CPU removal),
            // but never strand a unit.
            self.units[i].affinity = Self::ALL_CPUS;
            eff = self.online;
        }
        let home = usize::from(self.units[i].cpu);
        if eff & bit(home) == 0 {
            let idle = eff & self.idlers;
            let to = cycle(home, if idle != 0 { idle } else { eff }).unwrap_or(home);
            self.units[i].cpu = to as u8;
        }
        self.runq_insert(u);
        self.tickle(u)
    }

    /// `__runq_tickle`.
    fn tickle(&mut self, u: u16) -> CpuMask {
        let unit = self.units[usize::from(u)];
        let cpu = usize::from(unit.cpu);
        let cur = self.pcpus[cpu].curr;
        let cur_pri = if cur == NONE {
            Priority::Idle
        } else {
            self.units[usize::from(cur)].pri
        };
        let idle = self.idlers & self.online;
        let mut mask = 0;
        if cur_pri == Priority::Idle || (idle == 0 && unit.pri > cur_pri) {
            mask = bit(cpu);
        } else if idle != 0 {
            let cand = idle & unit.affinity;
            if let Some(c) = cycle(self.last_tickle, cand) {
                self.last_tickle = c;
                mask = bit(c);
            } else if unit.pri > cur_pri {
                mask = bit(cpu);
            }
        }
        let mut out = CpuMask::EMPTY;
        for c in CpuMask(mask).iter() {
            out |= self.raise(c);
        }
        out
    }

    /// The first unit on `cpu`'s queue that may run there now.
    fn local_pick(&self, cpu: usize) -> Option<u16> {
        let mut it = self.pcpus[cpu].head;
        while it != NONE {
            if self.available_on(it, cpu) {
                return Some(it);
            }
            it = self.units[usize::from(it)].next;
        }
        None
    }

    /// `csched_load_balance` + `csched_runq_steal` without the removal: a
    /// unit of priority above `pri` on a busy peer's queue that may run on
    /// `cpu`.
    fn find_steal(&self, cpu: usize, pri: Priority, now: u64) -> Option<(usize, u16)> {
        let workers = self.online & !self.idlers & !bit(cpu);
        let first = cycle(self.balance_bias, workers)?;
        let mut peer = first;
        loop {
            let p = &self.pcpus[peer];
            let nr_runnable = usize::from(p.len) + usize::from(p.curr != NONE);
            if p.curr != NONE && nr_runnable > 1 {
                let mut it = p.head;
                while it != NONE {
                    let u = &self.units[usize::from(it)];
                    if u.pri <= pri {
                        break;
                    }
                    let hot = self.migr_delay_ns != 0
                        && now.saturating_sub(u.last_sched) < self.migr_delay_ns;
                    if !hot && self.available_on(it, cpu) {
                        return Some((peer, it));
                    }
                    it = u.next;
                }
            }
            peer = cycle(peer, workers)?;
            if peer == first {
                return None;
            }
        }
    }

    /// `__runq_insert`: after every unit of equal or higher priority; a
    /// yielding unit also goes behind the first lower-priority one.
    fn runq_insert(&mut self, u: u16) {
        let i = usize::from(u);
        let cpu = usize::from(self.units[i].cpu);
        let pri = self.units[i].pri;
        let mut pos = self.pcpus[cpu].head;
        while pos != NONE && self.units[usize::from(pos)].pri >= pri {
            pos = self.units[usize::from(pos)].next;
        }
        if self.units[i].yielding && pos != NONE {
            pos = self.units[usize::from(pos)].next;
        }
        // Insert before `pos` (at the tail if NONE).
        let prev = if pos == NONE {
            self.pcpus[cpu].tail
        } else {
            self.units[usize::from(pos)].prev
        };
        self.units[i].prev = prev;
        self.units[i].next = pos;
        if prev == NONE {
            self.pcpus[cpu].head = u;
        } else {
            self.units[usize::from(prev)].next = u;
        }
        if pos == NONE {
            self.pcpus[cpu].tail = u;
        } else {
            self.units[usize::from(pos)].prev = u;
        }
        self.pcpus[cpu].len += 1;
        self.units[i].on_runq = true;
    }

    fn runq_remove(&mut self, u: u16) {
        let i = usize::from(u);
        if !self.units[i].on_runq {
            return;
        }
        let cpu = usize::from(self.units[i].cpu);
        let (prev, next) = (self.units[i].prev, self.units[i].next);
        if prev == NONE {
            self.pcpus[cpu].head = next;
        } else {
            self.units[usize::from(prev)].next = next;
        }
        if next == NONE {
            self.pcpus[cpu].tail = prev;
        } else {
            self.units[usize::from(next)].prev = prev;
        }
        self.pcpus[cpu].len -= 1;
        let u = &mut self.units[i];
        u.prev = NONE;
        u.next = NONE;
        u.on_runq = false;
    }

    /// Stable sort of `cpu`'s queue by priority (after accounting).
    fn runq_sort(&mut self, cpu: usize) {
        const CLASSES: [Priority; 4] = [
            Priority::Boost,
            Priority::Under,
            Priority::Over,
            Priority::Idle,
        ];
        let mut heads = [NONE; 4];
        let mut tails = [NONE; 4];
        let mut it = self.pcpus[cpu].head;
        while it != NONE {
            let next = self.units[usize::from(it)].next;
            let k = CLASSES
                .iter()
                .position(|&p| p == self.units[usize::from(it)].pri)
                .unwrap_or(3);
            self.units[usize::from(it)].next = NONE;
            if tails[k] == NONE {
                heads[k] = it;
            } else {
                self.units[usize::from(tails[k])].next = it;
            }
            tails[k] = it;
            it = next;
        }
        let mut prev = NONE;
        self.pcpus[cpu].head = NONE;
        for &head in &heads {
            let mut it = head;
            while it != NONE {
                self.units[usize::from(it)].prev = prev;
                if prev == NONE {
                    self.pcpus[cpu].head = it;
                } else {
                    self.units[usize::from(prev)].next = it;
                }
                prev = it;
                it = self.units[usize::from(it)].next;
            }
        }
        self.pcpus[cpu].tail = prev;
    }

    /// `__csched_unit_acct_start`.
    fn acct_start(&mut self, i: usize) {
        let d = usize::from(self.units[i].dom);
        self.units[i].active = true;
        self.doms[d].active_units += 1;
        self.weight_total += u64::from(self.doms[d].weight);
        if self.doms[d].active_units == 1 {
            // list_add: at the head.
            let n = self.nr_active_doms;
            self.active_doms.copy_within(0..n, 1);
            self.active_doms[0] = d as u16;
            self.nr_active_doms += 1;
        }
    }

    /// `__csched_unit_acct_stop_locked`.
    fn acct_stop(&mut self, i: usize) {
        let d = usize::from(self.units[i].dom);
        self.units[i].active = false;
        self.doms[d].active_units -= 1;
        self.weight_total -= u64::from(self.doms[d].weight);
        if self.doms[d].active_units == 0 {
            let n = self.nr_active_doms;
            if let Some(pos) = self.active_doms[..n]
                .iter()
                .position(|&x| usize::from(x) == d)
            {
                self.active_doms.copy_within(pos + 1..n, pos);
                self.nr_active_doms -= 1;
                self.active_doms[self.nr_active_doms] = NONE;
            }
        }
    }

    fn move_active_dom_to_head(&mut self, d: u16) {
        let n = self.nr_active_doms;
        if let Some(pos) = self.active_doms[..n].iter().position(|&x| x == d) {
            self.active_doms.copy_within(0..pos, 1);
            self.active_doms[0] = d;
        }
    }

    /// `csched_acct`: hand out one period's credit by weight, apply caps,
    /// recompute priorities, park/unpark, and re-sort the run queues.
    fn acct(&mut self) -> CpuMask {
        self.nr_acct += 1;
        let cpt = self.credits_per_tslice;
        let weight_total = self.weight_total as i64;
        let mut credit_total = cpt * i64::from(self.ncpus);
        let balance = self.credit_balance;
        if balance < 0 {
            credit_total -= balance;
        }
        if weight_total == 0 {
            self.credit_balance = 0;
            return CpuMask::EMPTY;
        }

        // Pass 1, per domain (in active_sdom order): its per-unit share.
        let mut weight_left = weight_total;
        let mut credit_xtra = false;
        let order = self.active_doms;
        for &d in &order[..self.nr_active_doms] {
            let dom = self.doms[usize::from(d)];
            let count = i64::from(dom.active_units);
            let w = i64::from(dom.weight);
            weight_left -= w * count;
            let mut peak = count * cpt;
            if balance < 0 {
                peak += div_ceil(-balance * w * count, weight_total);
            }
            let mut cap_unit = 0;
            if dom.cap != 0 {
                let cap = div_ceil(i64::from(dom.cap) * cpt, 100);
                peak = peak.min(cap);
                cap_unit = div_ceil(cap, count);
            }
            let mut fair = div_ceil(credit_total * w * count, weight_total);
            if fair < peak {
                credit_xtra = true;
            } else {
                if weight_left > 0 {
                    credit_total += div_ceil((fair - peak) * weight_total, weight_left);
                }
                if credit_xtra {
                    self.move_active_dom_to_head(d);
                }
                fair = peak;
            }
            let slot = &mut self.doms[usize::from(d)];
            slot.credit_per_unit = div_ceil(fair, count);
            slot.cap_per_unit = cap_unit;
        }

        // Pass 2, per active unit.
        let mut mask = CpuMask::EMPTY;
        let mut new_balance = 0;
        for i in 0..UNITS {
            if !(self.units[i].used && self.units[i].active) {
                continue;
            }
            let dom = self.doms[usize::from(self.units[i].dom)];
            let u = &mut self.units[i];
            u.credit += dom.credit_per_unit;
            if u.credit < 0 {
                u.pri = Priority::Over;
                if dom.cap != 0 && u.credit < -dom.cap_per_unit && u.block & B_PARKED == 0 {
                    u.block |= B_PARKED;
                    mask |= self.make_unrunnable(i);
                }
                let u = &mut self.units[i];
                if u.credit < -cpt {
                    u.credit = -cpt;
                }
            } else {
                u.pri = Priority::Under;
                if u.block & B_PARKED != 0 {
                    u.block &= !B_PARKED;
                    mask |= self.make_runnable(i, false);
                }
                if self.units[i].credit > cpt {
                    self.acct_stop(i);
                    self.units[i].credit /= 2;
                }
            }
            new_balance += self.units[i].credit;
        }
        self.credit_balance = new_balance;

        for cpu in 0..CPUS {
            if self.pcpus[cpu].len > 1 {
                self.runq_sort(cpu);
            }
        }
        mask
    }
}
