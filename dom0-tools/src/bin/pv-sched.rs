//! Test Dom0: the scheduler with more vCPUs than CPUs.
//!
//! Boot it with more vCPUs than the machine has CPUs (`dom0_max_vcpus=4` on
//! `-smp 2`). It only uses hypercalls that need no page-table or
//! event-channel support: `vcpu_op` (initialise, up, down, is_up,
//! register_vcpu_info, runstate info and area, stop_periodic_timer),
//! `sched_op` (yield, poll with a timeout), `set_trap_table` and the
//! console. Each vCPU's `vcpu_info` is moved into a page of this kernel
//! (`VCPUOP_register_vcpu_info`), which gives every vCPU a PV clock without
//! mapping the shared info page.
//!
//! Phases, each ended by vCPU 0:
//! 1. spin: every vCPU (vCPU 0 too) counts as fast as it can for
//!    [`SPIN_NS`], checking that its clock never goes backwards, also
//!    against the others' (the hypervisor moves vCPUs between CPUs and
//!    refreshes their time records). Then: every vCPU ran, the CPU time was
//!    shared fairly (hypervisor runstate figures, generous tolerance), and
//!    the runstate figures add up.
//! 2. sleep: vCPUs 1.. sleep [`SLEEPS`] times for 2 ms each
//!    (`SCHEDOP_poll` with no ports and a timeout) while vCPU 0 spins:
//!    each must wake after its deadline, within a generous bound.
//! 3. yield: every vCPU yields [`YIELDS`] times.
//! 4. down/up: vCPUs 1.. take themselves down; they must show as down and
//!    offline; brought up again they carry on where they stopped.
//!
//! Timings are reported, and only checked against bounds a loaded, emulated
//! machine meets with room to spare.

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
mod kernel {
    use core::cell::UnsafeCell;
    use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

    use dom0_tools::pvtest::Checks;
    use pv_guest_lib::abi::hypercall::Hypercall;
    use pv_guest_lib::abi::sched::{SchedOp, SchedPoll};
    use pv_guest_lib::abi::vcpu::{
        VcpuOp, VcpuRegisterRunstateMemoryArea, VcpuRegisterVcpuInfo, VcpuRunstateInfo,
    };
    use pv_guest_lib::error::{check, Errno};
    use pv_guest_lib::hypercall::{hypercall2, hypercall3};
    use pv_guest_lib::shared::VcpuInfoView;
    use pv_guest_lib::{percpu, println, smp, time, trap, xen, StartInfo};

    pv_guest_lib::entry!(main);

    /// vCPUs this test drives (more stay down).
    const MAX: usize = 8;
    const MS: u64 = 1_000_000;
    /// How long phase 1 spins (system time).
    const SPIN_NS: u64 = 1500 * MS;
    /// Sleeps per vCPU in phase 2, and how long each.
    const SLEEPS: u64 = 20;
    const SLEEP_NS: u64 = 2 * MS;
    /// Yields per vCPU in phase 3.
    const YIELDS: u64 = 200;
    /// Give up waiting for the other vCPUs after this long.
    const WAIT_NS: u64 = 20_000 * MS;
    /// A wake-up later than this after its deadline fails (generous).
    const MAX_LATE_NS: u64 = 1000 * MS;
    /// Fairness: the least CPU time a spinning vCPU got, over the most.
    const MIN_FAIR_RATIO: f64 = 0.3;

    const PHASE_SPIN: u32 = 1;
    const PHASE_SLEEP: u32 = 2;
    const PHASE_YIELD: u32 = 3;
    const PHASE_DOWN: u32 = 4;

    static PHASE: AtomicU32 = AtomicU32::new(0);
    /// The last phase each vCPU finished.
    static DONE: [AtomicU32; MAX] = [const { AtomicU32::new(0) }; MAX];
    static COUNT: [AtomicU64; MAX] = [const { AtomicU64::new(0) }; MAX];
    static BACKWARDS: [AtomicU64; MAX] = [const { AtomicU64::new(0) }; MAX];
    static CROSS_BACKWARDS: [AtomicU64; MAX] = [const { AtomicU64::new(0) }; MAX];
    static WORST_CROSS_NS: AtomicU64 = AtomicU64::new(0);
    static LATEST: AtomicU64 = AtomicU64::new(0);
    static SLEPT: [AtomicU64; MAX] = [const { AtomicU64::new(0) }; MAX];
    static EARLY: [AtomicU64; MAX] = [const { AtomicU64::new(0) }; MAX];
    static MAX_LATE: [AtomicU64; MAX] = [const { AtomicU64::new(0) }; MAX];
    static SUM_LATE: [AtomicU64; MAX] = [const { AtomicU64::new(0) }; MAX];
    static YIELDED: [AtomicU64; MAX] = [const { AtomicU64::new(0) }; MAX];
    static RESUMED: [AtomicU64; MAX] = [const { AtomicU64::new(0) }; MAX];

    /// A 64 KiB stack per vCPU (vCPU 0 keeps its boot stack), aligned so
    /// that `percpu` finds its header.
    #[repr(C, align(65536))]
    struct Stacks(UnsafeCell<[[u8; 65536]; MAX]>);
    // SAFETY: each stack is used by one vCPU only, set up before it starts.
    unsafe impl Sync for Stacks {}
    static STACKS: Stacks = Stacks(UnsafeCell::new([[0; 65536]; MAX]));

    /// One page holding every vCPU's `vcpu_info` (64 bytes each).
    #[repr(C, align(4096))]
    struct InfoPage([AtomicU64; 512]);
    static INFO: InfoPage = InfoPage([const { AtomicU64::new(0) }; 512]);

    /// Each vCPU's registered runstate area (48 bytes: the hypervisor
    /// writes a `vcpu_runstate_info` there at context switches).
    #[repr(C, align(64))]
    struct Area([AtomicU64; 8]);
    static AREAS: [Area; MAX] = [const { Area([const { AtomicU64::new(0) }; 8]) }; MAX];

    /// `f(k)` for k in `range`, as a fixed array (the first `len` used).
    fn collect(range: core::ops::Range<usize>, f: impl Fn(usize) -> u64) -> ([u64; MAX], usize) {
        let mut out = [0; MAX];
        let mut len = 0;
        for k in range.take(MAX) {
            out[len] = f(k);
            len += 1;
        }
        (out, len)
    }

    fn vcpu_info(k: usize) -> &'static VcpuInfoView {
        let p = INFO.0.as_ptr().wrapping_add(k * 8) as *const VcpuInfoView;
        // SAFETY: `k < MAX` (8 × 64 bytes ≤ 4096): a 64-byte, 8-aligned
        // slice of the page, which lives forever; VcpuInfoView is all
        // atomics with vcpu_info's layout, so any bytes are a valid value.
        unsafe { &*p }
    }

    /// This vCPU's clock (its time record in our page).
    fn now(k: usize) -> u64 {
        let (snap, tsc) = time::read(&vcpu_info(k).time, pv_guest_lib::arch::rdtsc);
        snap.at(tsc)
    }

    fn vcpu_op<T>(cmd: VcpuOp, vcpu: u32, arg: Option<&T>) -> Result<u64, Errno> {
        let a = arg.map_or(0, |r| r as *const T as u64);
        // SAFETY: `arg` is a live value of the type `cmd` reads or writes
        // (the hypervisor checks the address anyway).
        check(unsafe { hypercall3(Hypercall::VcpuOp, cmd as u64, u64::from(vcpu), a) })
    }

    fn runstate(k: usize) -> Result<VcpuRunstateInfo, Errno> {
        let mut r = VcpuRunstateInfo::default();
        let a = &mut r as *mut VcpuRunstateInfo as u64;
        // SAFETY: the hypervisor writes one vcpu_runstate_info at `a`.
        check(unsafe {
            hypercall3(
                Hypercall::VcpuOp,
                VcpuOp::GetRunstateInfo as u64,
                k as u64,
                a,
            )
        })?;
        Ok(r)
    }

    /// Sleeps until system time `deadline` (`SCHEDOP_poll`, no ports).
    fn poll_until(deadline: u64) -> Result<u64, Errno> {
        let p = SchedPoll {
            ports: 0,
            nr_ports: 0,
            _pad12: 0,
            timeout: deadline,
        };
        // SAFETY: the hypervisor reads one sched_poll at the address.
        check(unsafe {
            hypercall2(
                Hypercall::SchedOp,
                SchedOp::Poll as u64,
                &p as *const SchedPoll as u64,
            )
        })
    }

    fn machine_frame(va: u64) -> Option<u64> {
        let pfn = pv_guest_lib::layout()?.va_to_pfn(va)?;
        pv_guest_lib::frame::pfn_to_mfn(pfn)
    }

    /// Reads the clock, checking it against this vCPU's last reading and
    /// against the latest any vCPU saw before.
    fn clock_check(k: usize, last: &mut u64) {
        let before = LATEST.load(Ordering::Acquire);
        let t = now(k);
        if t < *last {
            BACKWARDS[k].fetch_add(1, Ordering::Relaxed);
        }
        if t < before {
            CROSS_BACKWARDS[k].fetch_add(1, Ordering::Relaxed);
            WORST_CROSS_NS.fetch_max(before - t, Ordering::Relaxed);
        }
        *last = t;
        LATEST.fetch_max(t, Ordering::AcqRel);
    }

    /// Phase 1 on vCPU `k`: count until vCPU 0 ends the phase.
    fn spin(k: usize) {
        let mut last = 0;
        while PHASE.load(Ordering::Acquire) == PHASE_SPIN {
            for _ in 0..256 {
                COUNT[k].fetch_add(1, Ordering::Relaxed);
            }
            clock_check(k, &mut last);
        }
    }

    /// Waits (yielding) for vCPU 0 to start `phase`.
    fn wait_phase(phase: u32) {
        while PHASE.load(Ordering::Acquire) < phase {
            let _ = xen::sched_yield();
        }
    }

    extern "C" fn secondary(k: u64) -> ! {
        let k = k as usize % MAX;
        let _ = time::stop_periodic_timer(k as u32);
        wait_phase(PHASE_SPIN);
        spin(k);
        DONE[k].store(PHASE_SPIN, Ordering::Release);

        wait_phase(PHASE_SLEEP);
        for _ in 0..SLEEPS {
            let deadline = now(k) + SLEEP_NS;
            let mut t = now(k);
            let mut tries = 0;
            while t < deadline && tries < 1000 {
                let _ = poll_until(deadline);
                t = now(k);
                if t < deadline {
                    EARLY[k].fetch_add(1, Ordering::Relaxed);
                }
                tries += 1;
            }
            let late = t.saturating_sub(deadline);
            MAX_LATE[k].fetch_max(late, Ordering::Relaxed);
            SUM_LATE[k].fetch_add(late, Ordering::Relaxed);
            SLEPT[k].fetch_add(1, Ordering::Release);
        }
        DONE[k].store(PHASE_SLEEP, Ordering::Release);

        wait_phase(PHASE_YIELD);
        for _ in 0..YIELDS {
            let _ = xen::sched_yield();
            YIELDED[k].fetch_add(1, Ordering::Relaxed);
        }
        DONE[k].store(PHASE_YIELD, Ordering::Release);

        wait_phase(PHASE_DOWN);
        DONE[k].store(PHASE_DOWN, Ordering::Release);
        loop {
            // Down until vCPU 0 brings us up again, then carry on here.
            let _ = smp::down(k as u32);
            RESUMED[k].fetch_add(1, Ordering::Release);
        }
    }

    /// Waits until every vCPU 1..n finished `phase` (vCPU 0 keeps yielding
    /// so they get the CPU); false on a timeout.
    fn wait_done(n: usize, phase: u32) -> bool {
        let end = now(0) + WAIT_NS;
        loop {
            if (1..n).all(|k| DONE[k].load(Ordering::Acquire) >= phase) {
                return true;
            }
            if now(0) > end {
                return false;
            }
            let _ = xen::sched_yield();
        }
    }

    fn snapshot(n: usize) -> [VcpuRunstateInfo; MAX] {
        let mut out = [VcpuRunstateInfo::default(); MAX];
        for (k, slot) in out.iter_mut().enumerate().take(n) {
            if let Ok(r) = runstate(k) {
                *slot = r;
            }
        }
        out
    }

    fn main(_si: &'static StartInfo) -> ! {
        println!("pv-sched: Oxen scheduler test: more vCPUs than CPUs (Xen 4.17 semantics)");
        let mut c = Checks::new("pv-sched");
        c.ok("set_trap_table", trap::install_trap_table());
        let n = (smp::count() as usize).min(MAX);
        c.note(format_args!(
            "{} vCPUs (testing {n}); boot with dom0_max_vcpus above the CPU count",
            smp::count()
        ));
        c.check("more than one vCPU", n > 1, format_args!("{n}"));
        if n < 2 {
            c.finish()
        }

        // Every vCPU's vcpu_info into our page: a clock without shared_info.
        let info_mfn = machine_frame(INFO.0.as_ptr() as u64);
        c.check(
            "the vcpu_info page's machine frame",
            info_mfn.is_some(),
            format_args!("{info_mfn:x?}"),
        );
        let info_mfn = info_mfn.unwrap_or(0);
        for k in 0..n {
            let r = VcpuRegisterVcpuInfo {
                mfn: info_mfn,
                offset: (k * 64) as u32,
                rsvd: 0,
            };
            if let Err(e) = vcpu_op(VcpuOp::RegisterVcpuInfo, k as u32, Some(&r)) {
                c.check(
                    "VCPUOP_register_vcpu_info",
                    false,
                    format_args!("vCPU {k}: {e}"),
                );
            }
        }
        let t0 = now(0);
        c.check(
            "vCPU 0's clock runs in its registered vcpu_info",
            t0 > 0 && now(0) >= t0,
            format_args!("{} ms", t0 / MS),
        );
        let _ = time::stop_periodic_timer(0);

        // Runstate areas, registered while the vCPUs are down.
        for (k, area) in AREAS.iter().enumerate().take(n) {
            let r = VcpuRegisterRunstateMemoryArea {
                addr: area.0.as_ptr() as u64,
            };
            if let Err(e) = vcpu_op(VcpuOp::RegisterRunstateMemoryArea, k as u32, Some(&r)) {
                c.check(
                    "VCPUOP_register_runstate_memory_area",
                    false,
                    format_args!("vCPU {k}: {e}"),
                );
            }
        }
        let a1 = AREAS[1].0[0].load(Ordering::Acquire) & 0xffff_ffff;
        c.check(
            "a down vCPU's runstate area says offline at once",
            a1 == 3,
            format_args!("state {a1}"),
        );
        let bad = VcpuRegisterRunstateMemoryArea {
            addr: 0xffff_8000_0000_0000,
        };
        c.err(
            "VCPUOP_register_runstate_memory_area in the hypervisor's range",
            vcpu_op(VcpuOp::RegisterRunstateMemoryArea, 0, Some(&bad)),
            hypercall_abi::errno::Errno::EFAULT,
        );

        // Start vCPUs 1.. on our stacks.
        let Some(l4) = pv_guest_lib::start_info().and_then(|si| machine_frame(si.pt_base)) else {
            c.check(
                "the kernel L4's machine frame",
                false,
                format_args!("unknown"),
            );
            c.finish()
        };
        let traps = trap::trap_ctxt();
        for k in 1..n {
            let base = STACKS.0.get() as u64 + (k as u64) * 65536;
            // SAFETY: `base` is the 64 KiB-aligned bottom of stack k, which
            // only vCPU k will use, and it has not started yet.
            unsafe { percpu::init_stack(base, k as u32) };
            let mut ctx = smp::context(
                secondary as *const () as u64,
                base + 65536 - 8,
                l4,
                &traps,
                (0, 0, 0),
            );
            ctx.user_regs.rdi = k as u64;
            let started = smp::initialise(k as u32, &ctx).and_then(|()| smp::up(k as u32));
            if let Err(e) = started {
                c.check(
                    "VCPUOP_initialise + VCPUOP_up",
                    false,
                    format_args!("vCPU {k}: {e}"),
                );
            }
        }
        let up = (1..n).all(|k| smp::is_up(k as u32) == Ok(true));
        c.check("every vCPU is up", up, format_args!("{n} vCPUs"));

        // Phase 1: everybody spins.
        let before = snapshot(n);
        let start = now(0);
        PHASE.store(PHASE_SPIN, Ordering::Release);
        {
            let mut last = 0;
            while now(0) < start + SPIN_NS {
                for _ in 0..256 {
                    COUNT[0].fetch_add(1, Ordering::Relaxed);
                }
                clock_check(0, &mut last);
            }
        }
        let elapsed = now(0) - start;
        let after = snapshot(n);
        PHASE.store(PHASE_SLEEP, Ordering::Release);
        let spun = wait_done(n, PHASE_SPIN);
        c.check(
            "every vCPU finished spinning",
            spun,
            format_args!("{n} vCPUs"),
        );
        spin_report(&mut c, n, elapsed, &before, &after);

        // Phase 2: vCPUs 1.. sleep 2 ms at a time while vCPU 0 spins.
        let before = snapshot(n);
        let end = now(0) + WAIT_NS;
        while (1..n).any(|k| DONE[k].load(Ordering::Acquire) < PHASE_SLEEP) && now(0) < end {
            for _ in 0..256 {
                COUNT[0].fetch_add(1, Ordering::Relaxed);
            }
        }
        let after = snapshot(n);
        PHASE.store(PHASE_YIELD, Ordering::Release);
        sleep_report(&mut c, n, &before, &after);

        // Phase 3: yields.
        for _ in 0..YIELDS {
            let _ = xen::sched_yield();
            YIELDED[0].fetch_add(1, Ordering::Relaxed);
        }
        let yielded = wait_done(n, PHASE_YIELD);
        let (counts, len) = collect(0..n, |k| YIELDED[k].load(Ordering::Relaxed));
        let counts = &counts[..len];
        c.check(
            "every vCPU yielded and got the CPU back",
            yielded && counts.iter().all(|&y| y == YIELDS),
            format_args!("yields {counts:?}"),
        );

        // Phase 4: down and up again.
        PHASE.store(PHASE_DOWN, Ordering::Release);
        let end = now(0) + WAIT_NS;
        let all_down = || (1..n).all(|k| smp::is_up(k as u32) == Ok(false));
        while !all_down() && now(0) < end {
            let _ = xen::sched_yield();
        }
        c.check(
            "VCPUOP_down by each vCPU itself",
            all_down(),
            format_args!(
                "{} of {} down",
                (1..n)
                    .filter(|&k| smp::is_up(k as u32) == Ok(false))
                    .count(),
                n - 1
            ),
        );
        let (states, len) = collect(1..n, |k| runstate(k).map_or(99, |r| u64::from(r.state)));
        let states = &states[..len];
        c.check(
            "a vCPU that went down while running is offline (runstate)",
            states.iter().all(|&s| s == 3),
            format_args!("states {states:?}"),
        );
        for k in 1..n {
            if let Err(e) = smp::up(k as u32) {
                c.check("VCPUOP_up again", false, format_args!("vCPU {k}: {e}"));
            }
        }
        let end = now(0) + WAIT_NS;
        let resumed = || (1..n).all(|k| RESUMED[k].load(Ordering::Acquire) >= 1);
        while !(resumed() && all_down()) && now(0) < end {
            let _ = xen::sched_yield();
        }
        c.check(
            "brought up again, each vCPU carried on after its VCPUOP_down (and went down again)",
            resumed() && all_down(),
            format_args!(
                "resumed {:?}",
                &collect(1..n, |k| RESUMED[k].load(Ordering::Relaxed)).0[..n - 1]
            ),
        );
        c.finish()
    }

    fn spin_report(
        c: &mut Checks,
        n: usize,
        elapsed: u64,
        before: &[VcpuRunstateInfo; MAX],
        after: &[VcpuRunstateInfo; MAX],
    ) {
        let d = |k: usize, s: usize| after[k].time[s].saturating_sub(before[k].time[s]);
        let run = &collect(0..n, |k| d(k, 0)).0[..n];
        let counts = &collect(0..n, |k| COUNT[k].load(Ordering::Relaxed)).0[..n];
        let total_run: u64 = run.iter().sum();
        c.note(format_args!(
            "spun {} ms; running time per vCPU (ms): {:?}; runnable (ms): {:?}; CPUs' worth of running time: {:.2}",
            elapsed / MS,
            &collect(0..n, |k| d(k, 0) / MS).0[..n],
            &collect(0..n, |k| d(k, 1) / MS).0[..n],
            total_run as f64 / elapsed.max(1) as f64
        ));
        c.note(format_args!("progress counts: {counts:?}"));
        c.check(
            "every vCPU ran and made progress",
            run.iter().all(|&r| r > 0) && counts.iter().all(|&x| x > 0),
            format_args!("{n} vCPUs"),
        );
        let (min, max) = (
            run.iter().copied().min().unwrap_or(0),
            run.iter().copied().max().unwrap_or(0),
        );
        let ratio = min as f64 / max.max(1) as f64;
        c.check(
            "CPU time shared fairly (least/most running time)",
            ratio >= MIN_FAIR_RATIO,
            format_args!("{ratio:.2}, want >= {MIN_FAIR_RATIO}"),
        );
        // Runstate accounting: every vCPU was busy (running or waiting for a
        // CPU) the whole time, and its four times add up to the time passed
        // (the snapshots are a few hypercalls, and maybe a wait for a CPU,
        // away from the clock readings: a generous slack).
        let slack = elapsed / 10 + 150 * MS;
        let mut ok = true;
        for k in 0..n {
            let sum: u64 = (0..4).map(|s| d(k, s)).sum();
            let idle = d(k, 2) + d(k, 3);
            if sum.abs_diff(elapsed) > slack || idle > sum / 20 + 20 * MS {
                ok = false;
                c.note(format_args!(
                    "vCPU {k}: runstate deltas {:?} ms over {} ms",
                    &collect(0..4, |s| d(k, s) / MS).0[..4],
                    elapsed / MS
                ));
            }
        }
        c.check(
            "runstate times add up (running + runnable = the time spun)",
            ok,
            format_args!("within {} ms", slack / MS),
        );
        // An area holds the figures of the vCPU's last switch: more than
        // before the phase, never more than the running total now.
        let areas_ok = (0..n).all(|k| {
            let a_run = AREAS[k].0[2].load(Ordering::Acquire);
            let now_run = runstate(k).map_or(0, |r| r.time[0]);
            a_run > before[k].time[0] && a_run <= now_run
        });
        c.check(
            "runstate areas updated at context switches",
            areas_ok,
            format_args!(
                "running ms {:?}",
                &collect(0..n, |k| AREAS[k].0[2].load(Ordering::Acquire) / MS).0[..n]
            ),
        );
        let back: u64 = (0..n).map(|k| BACKWARDS[k].load(Ordering::Relaxed)).sum();
        let cross: u64 = (0..n)
            .map(|k| CROSS_BACKWARDS[k].load(Ordering::Relaxed))
            .sum();
        c.check(
            "each vCPU's clock is monotonic, across CPU moves too",
            back == 0,
            format_args!("{back} steps back"),
        );
        let worst = WORST_CROSS_NS.load(Ordering::Relaxed);
        c.check(
            "clocks agree across vCPUs (no reading behind another vCPU's earlier one by 1 ms)",
            worst < MS,
            format_args!("{cross} readings behind, worst by {worst} ns"),
        );
    }

    fn sleep_report(
        c: &mut Checks,
        n: usize,
        before: &[VcpuRunstateInfo; MAX],
        after: &[VcpuRunstateInfo; MAX],
    ) {
        let slept = &collect(1..n, |k| SLEPT[k].load(Ordering::Acquire)).0[..n - 1];
        c.check(
            "every vCPU slept and woke up (SCHEDOP_poll with a timeout)",
            slept.iter().all(|&s| s == SLEEPS),
            format_args!("{slept:?} of {SLEEPS}"),
        );
        let max_late = (1..n)
            .map(|k| MAX_LATE[k].load(Ordering::Relaxed))
            .max()
            .unwrap_or(0);
        let avg_late = (1..n)
            .map(|k| SUM_LATE[k].load(Ordering::Relaxed))
            .sum::<u64>()
            / ((n as u64 - 1) * SLEEPS).max(1);
        let early: u64 = (1..n).map(|k| EARLY[k].load(Ordering::Relaxed)).sum();
        c.note(format_args!(
            "wake-up after the deadline: average {} us, worst {} us; {early} early wake-ups",
            avg_late / 1000,
            max_late / 1000
        ));
        c.check(
            "woken vCPUs got a CPU back within the bound",
            max_late < MAX_LATE_NS,
            format_args!("worst {} ms, bound {} ms", max_late / MS, MAX_LATE_NS / MS),
        );
        let blocked =
            &collect(1..n, |k| after[k].time[2].saturating_sub(before[k].time[2])).0[..n - 1];
        c.check(
            "sleeping shows as blocked time (runstate)",
            blocked.iter().all(|&b| b >= SLEEPS * SLEEP_NS / 2),
            format_args!(
                "blocked ms {:?}",
                &collect(1..n, |k| blocked[k - 1] / MS).0[..n - 1]
            ),
        );
    }
}
