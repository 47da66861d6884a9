//! Host tests for the credit scheduler: unit tests of each operation, a
//! deterministic multi-CPU simulation of workloads, and a randomized
//! property test of the safety invariants.

use super::*;
use std::format;
use std::println;
use std::string::String;
use std::vec::Vec;

type S = CreditScheduler<4, 16>;

const MS: u64 = 1_000_000;

fn u(n: u16) -> UnitId {
    UnitId(n)
}

impl<const CPUS: usize, const UNITS: usize> CreditScheduler<CPUS, UNITS> {
    /// Checks every structural invariant; `Err` describes the first breach.
    fn check_invariants(&self) -> Result<(), String> {
        let mut queued = [0u32; UNITS];
        for cpu in 0..CPUS {
            let p = &self.pcpus[cpu];
            if p.online != (self.online & bit(cpu) != 0) {
                return Err(format!("cpu{cpu}: online flag/mask mismatch"));
            }
            if !p.online && (p.head != NONE || p.curr != NONE) {
                return Err(format!("offline cpu{cpu} has work"));
            }
            let mut it = p.head;
            let mut prev = NONE;
            let mut len = 0;
            while it != NONE {
                let i = usize::from(it);
                let un = &self.units[i];
                if !un.used || !un.on_runq || usize::from(un.cpu) != cpu {
                    return Err(format!("cpu{cpu}: bad queued unit {i}"));
                }
                if un.prev != prev {
                    return Err(format!("cpu{cpu}: broken prev link at {i}"));
                }
                if !un.runnable() || un.running {
                    return Err(format!("unit {i} queued but not runnable/idle-handed"));
                }
                if un.affinity & bit(cpu) == 0 {
                    return Err(format!("unit {i} queued on cpu{cpu} outside affinity"));
                }
                queued[i] += 1;
                len += 1;
                if len > UNITS {
                    return Err(format!("cpu{cpu}: cycle in queue"));
                }
                prev = it;
                it = un.next;
            }
            if p.tail != prev || usize::from(p.len) != len {
                return Err(format!("cpu{cpu}: tail/len mismatch"));
            }
            if p.curr != NONE {
                let c = usize::from(p.curr);
                let un = &self.units[c];
                if !un.used || !un.running || usize::from(un.cpu) != cpu {
                    return Err(format!("cpu{cpu}: bad current {c}"));
                }
                if (!un.runnable() || un.affinity & bit(cpu) == 0) && !p.need_resched {
                    return Err(format!("cpu{cpu}: current {c} may not run and no resched"));
                }
                if self.idlers & bit(cpu) != 0 {
                    return Err(format!("cpu{cpu}: busy but in idlers"));
                }
            }
        }
        if self.idlers & !self.online != 0 {
            return Err("offline CPU in idlers".into());
        }
        let mut weight = 0u64;
        let mut nr_units = [0u16; UNITS];
        let mut nr_active = [0u16; UNITS];
        for (i, un) in self.units.iter().enumerate() {
            if !un.used {
                continue;
            }
            let runs = (0..CPUS)
                .filter(|&c| self.pcpus[c].curr == i as u16)
                .count();
            if runs != usize::from(un.running) {
                return Err(format!("unit {i}: running flag vs {runs} CPUs"));
            }
            if u32::from(un.on_runq) != queued[i] {
                return Err(format!("unit {i}: on_runq vs queued {} times", queued[i]));
            }
            if un.runnable() && !un.running && !un.on_runq && self.online != 0 {
                return Err(format!("unit {i}: runnable but nowhere"));
            }
            if un.affinity & self.online == 0 {
                return Err(format!("unit {i}: affinity has no online CPU"));
            }
            let d = usize::from(un.dom);
            if !self.doms[d].used {
                return Err(format!("unit {i}: dead domain"));
            }
            nr_units[d] += 1;
            if un.active {
                nr_active[d] += 1;
                weight += u64::from(self.doms[d].weight);
            }
        }
        for (d, dom) in self.doms.iter().enumerate() {
            if dom.used && (dom.nr_units != nr_units[d] || dom.active_units != nr_active[d]) {
                return Err(format!("dom slot {d}: unit counts"));
            }
            let listed = self.active_doms[..self.nr_active_doms]
                .iter()
                .filter(|&&x| usize::from(x) == d)
                .count();
            if listed != usize::from(dom.used && dom.active_units > 0) {
                return Err(format!("dom slot {d}: active list"));
            }
        }
        if weight != self.weight_total {
            return Err(format!("weight_total {} != {weight}", self.weight_total));
        }
        Ok(())
    }
}

#[track_caller]
fn check<const C: usize, const U: usize>(s: &CreditScheduler<C, U>) {
    if let Err(e) = s.check_invariants() {
        panic!("invariant broken: {e}");
    }
}

/// A scheduler with `ncpus` CPUs and units `0..n` of domain `dom(i)`, online.
fn setup(ncpus: usize, n: u16, dom: impl Fn(u16) -> DomId) -> S {
    let mut s = S::new();
    for c in 0..ncpus {
        s.add_cpu(c).unwrap();
    }
    for i in 0..n {
        s.insert_unit(u(i), dom(i), 0).unwrap();
        s.online(u(i), 0).unwrap();
    }
    check(&s);
    s
}

// ----- basics -------------------------------------------------------------

#[test]
fn cpumask_and_cycle() {
    let m = CpuMask(0b1011_0000);
    assert_eq!(m.iter().collect::<Vec<_>>(), [4, 5, 7]);
    assert_eq!(m.count(), 3);
    assert!(m.contains(5) && !m.contains(6) && !m.contains(200));
    assert!(CpuMask::single(99).is_empty());
    assert_eq!(cycle(4, m.0), Some(5));
    assert_eq!(cycle(7, m.0), Some(4));
    assert_eq!(cycle(63, 1), Some(0));
    assert_eq!(cycle(0, 1), Some(0));
    assert_eq!(cycle(0, 0), None);
    assert_eq!(cycle(10, 1 << 63), Some(63));
}

#[test]
fn defaults_match_xen() {
    let s = Credit::new();
    assert_eq!(
        s.global(),
        GlobalParams {
            tslice_ms: 30,
            ratelimit_us: 1000,
            vcpu_migr_delay_us: 0
        }
    );
    assert_eq!(s.tick_period_ns(), 10 * MS);
    assert_eq!(s.credits_per_tslice, 300);
    assert_eq!(Priority::Boost.xen_value(), 0);
    assert_eq!(Priority::Under.xen_value(), -1);
    assert_eq!(Priority::Over.xen_value(), -2);
    assert_eq!(Priority::Idle.xen_value(), -64);
    assert!(Priority::Boost > Priority::Under && Priority::Under > Priority::Over);
    assert!(Priority::Over > Priority::Idle);
}

#[test]
fn default_instance_is_const_and_small_enough() {
    static SCHED: spin::Mutex<Credit> = spin::Mutex::new(Credit::new());
    let mut s = SCHED.lock();
    s.add_cpu(31).unwrap();
    s.insert_unit(u(255), 0, 31).unwrap();
    assert_eq!(s.insert_unit(u(256), 0, 31), Err(Errno::EINVAL));
    assert_eq!(s.add_cpu(32), Err(Errno::EINVAL));
    assert!(core::mem::size_of::<Credit>() < 64 * 1024);
    check(&*s);
}

#[test]
fn cpu_add_remove_errors() {
    let mut s = S::new();
    assert_eq!(s.add_cpu(4), Err(Errno::EINVAL));
    s.add_cpu(0).unwrap();
    assert_eq!(s.add_cpu(0), Err(Errno::EEXIST));
    assert_eq!(s.remove_cpu(1), Err(Errno::ENOENT));
    assert_eq!(s.remove_cpu(9), Err(Errno::EINVAL));
    s.insert_unit(u(0), 1, 0).unwrap();
    // Last CPU while units exist.
    assert_eq!(s.remove_cpu(0), Err(Errno::EBUSY));
    s.add_cpu(1).unwrap();
    s.online(u(0), 0).unwrap();
    let d = s.do_schedule(0, 0);
    assert_eq!(d.next, Some(u(0)));
    assert_eq!(s.remove_cpu(0), Err(Errno::EBUSY));
    check(&s);
}

#[test]
fn insert_remove_validation() {
    let mut s = setup(2, 0, |_| 0);
    assert_eq!(s.insert_unit(u(16), 1, 0), Err(Errno::EINVAL));
    assert_eq!(s.insert_unit(u(0), 1, 2), Err(Errno::EINVAL)); // offline CPU
    assert_eq!(
        s.insert_unit(u(0), DOMID_FIRST_RESERVED, 0),
        Err(Errno::EINVAL)
    );
    s.insert_unit(u(0), 1, 1).unwrap();
    assert_eq!(s.insert_unit(u(0), 1, 0), Err(Errno::EEXIST));
    assert_eq!(s.unit_info(u(0), 0).unwrap().state, UnitState::Offline);
    assert_eq!(s.wake(u(3), 0), Err(Errno::ESRCH));
    assert_eq!(s.sleep(u(99)), Err(Errno::EINVAL));
    assert_eq!(s.remove_unit(u(3)), Err(Errno::ESRCH));
    s.online(u(0), 0).unwrap();
    assert_eq!(
        s.unit_info(u(0), 0).unwrap().state,
        UnitState::Runnable { cpu: 1 }
    );
    assert_eq!(s.do_schedule(1, 0).next, Some(u(0)));
    assert_eq!(s.remove_unit(u(0)), Err(Errno::EBUSY));
    s.pause(u(0)).unwrap();
    assert!(s.need_resched(1));
    let d = s.do_schedule(1, MS);
    assert_eq!((d.prev, d.next), (Some(u(0)), None));
    s.remove_unit(u(0)).unwrap();
    assert_eq!(s.get_params(1), Err(Errno::ESRCH)); // domain went with its last unit
    assert_eq!(s.context_saved(u(0)), CpuMask::EMPTY);
    check(&s);
}

#[test]
fn params_putinfo_semantics() {
    let mut s = setup(1, 2, |_| 7);
    assert_eq!(
        s.get_params(7),
        Ok(CreditParams {
            weight: 256,
            cap: 0
        })
    );
    assert_eq!(s.set_params(8, 512, 0), Err(Errno::ESRCH));
    s.set_params(7, 512, CAP_UNCHANGED).unwrap();
    assert_eq!(
        s.get_params(7),
        Ok(CreditParams {
            weight: 512,
            cap: 0
        })
    );
    s.set_params(7, WEIGHT_UNCHANGED, 150).unwrap();
    assert_eq!(
        s.get_params(7),
        Ok(CreditParams {
            weight: 512,
            cap: 150
        })
    );
    // Two units: cap may go up to 200, not beyond; a failed call changes nothing.
    s.set_params(7, 100, 200).unwrap();
    assert_eq!(s.set_params(7, 1, 201), Err(Errno::EINVAL));
    assert_eq!(
        s.get_params(7),
        Ok(CreditParams {
            weight: 100,
            cap: 200
        })
    );
    s.set_params(7, 65535, 0).unwrap();
    assert_eq!(
        s.get_params(7),
        Ok(CreditParams {
            weight: 65535,
            cap: 0
        })
    );
    // Weight changes keep the active weight sum right.
    let d = s.do_schedule(0, 0);
    assert!(d.next.is_some());
    s.tick(0, 10 * MS);
    assert_eq!(s.weight_total, 65535);
    s.set_params(7, 10, CAP_UNCHANGED).unwrap();
    assert_eq!(s.weight_total, 10);
    check(&s);
}

#[test]
fn global_params_validation() {
    let mut s = S::new();
    let ok = GlobalParams {
        tslice_ms: 5,
        ratelimit_us: 500,
        vcpu_migr_delay_us: 0,
    };
    s.set_global(ok).unwrap();
    assert_eq!(s.global(), ok);
    assert_eq!(s.tick_period_ns(), 5 * MS / 3);
    assert_eq!(s.credits_per_tslice, 50);
    s.set_global(GlobalParams {
        tslice_ms: 2,
        ratelimit_us: 0,
        vcpu_migr_delay_us: 0,
    })
    .unwrap();
    assert_eq!(s.tick_period_ns(), 2 * MS); // one tick per slice below 3 ms
    for bad in [
        GlobalParams { tslice_ms: 0, ..ok },
        GlobalParams {
            tslice_ms: 1001,
            ..ok
        },
        GlobalParams {
            ratelimit_us: 99,
            ..ok
        },
        GlobalParams {
            ratelimit_us: 500_001,
            tslice_ms: 1000,
            ..ok
        },
        GlobalParams {
            ratelimit_us: 5001,
            ..ok
        }, // longer than the slice
        GlobalParams {
            vcpu_migr_delay_us: 100_001,
            ..ok
        },
    ] {
        assert_eq!(s.set_global(bad), Err(Errno::EINVAL), "{bad:?}");
    }
    assert_eq!(s.global().tslice_ms, 2);
}

// ----- run queue, wake, sleep, yield, rate limit ----------------------------

#[test]
fn online_tickles_idle_cpu_and_runs() {
    let mut s = S::new();
    s.add_cpu(0).unwrap();
    s.insert_unit(u(0), 0, 0).unwrap();
    assert!(!s.need_resched(0));
    assert_eq!(s.online(u(0), 0), Ok(CpuMask::single(0)));
    assert!(s.need_resched(0));
    let d = s.do_schedule(0, 0);
    assert_eq!(
        d,
        Decision {
            prev: None,
            next: Some(u(0)),
            timeslice_ns: Some(30 * MS),
            migrated: false,
            tickle: CpuMask::EMPTY,
        }
    );
    assert!(!s.need_resched(0));
    assert_eq!(s.current(0), Some(u(0)));
    assert_eq!(s.unit_info(u(0), 0).unwrap().priority, Priority::Under); // online: no boost
    check(&s);
}

#[test]
fn runq_priority_then_fifo_and_yield() {
    let mut s = setup(1, 0, |_| 0);
    for i in 0..4 {
        s.insert_unit(u(i), 0, 0).unwrap();
    }
    s.units[3].pri = Priority::Over;
    for i in [3, 0, 1, 2] {
        s.online(u(i), 0).unwrap();
    }
    let order = |s: &S| {
        let mut v = Vec::new();
        let mut it = s.pcpus[0].head;
        while it != NONE {
            v.push(it);
            it = s.units[usize::from(it)].next;
        }
        v
    };
    assert_eq!(order(&s), [0, 1, 2, 3]);
    // Run 0, then let it yield: it goes behind the first lower-priority unit (3).
    assert_eq!(s.do_schedule(0, 0).next, Some(u(0)));
    assert_eq!(s.yield_unit(u(0)), Ok(CpuMask::single(0)));
    let d = s.do_schedule(0, 100_000); // yield ignores the rate limit
    assert_eq!((d.prev, d.next), (Some(u(0)), Some(u(1))));
    assert_eq!(order(&s), [2, 3, 0]);
    // Yield with no lower-priority unit: just the end of its class.
    assert_eq!(s.yield_unit(u(2)), Ok(CpuMask::EMPTY)); // not running
    s.yield_unit(u(1)).unwrap();
    let d = s.do_schedule(0, 200_000);
    assert_eq!(d.next, Some(u(2)));
    // Behind exactly one lower-priority unit: 3 gets its turn (as in Xen).
    assert_eq!(order(&s), [3, 1, 0]);
    check(&s);
}

#[test]
fn ratelimit_keeps_current_briefly() {
    let mut s = setup(1, 2, |i| i);
    assert_eq!(s.do_schedule(0, 0).next, Some(u(0)));
    // 0.4 ms later something asks for a resched: current keeps the CPU for
    // the rest of its 1 ms.
    let d = s.do_schedule(0, 400_000);
    assert_eq!(
        (d.prev, d.next, d.timeslice_ns),
        (None, Some(u(0)), Some(600_000))
    );
    // Near the end, never a timer below 100 µs.
    let d = s.do_schedule(0, 950_000);
    assert_eq!(d.timeslice_ns, Some(MIN_TIMER_NS));
    // After 1 ms it is a normal decision: round robin among UNDER units.
    let d = s.do_schedule(0, MS);
    assert_eq!((d.prev, d.next), (Some(u(0)), Some(u(1))));
    // With the rate limit off, preemption is immediate.
    s.set_global(GlobalParams {
        tslice_ms: 30,
        ratelimit_us: 0,
        vcpu_migr_delay_us: 0,
    })
    .unwrap();
    let d = s.do_schedule(0, MS + 1000);
    assert_eq!(d.next, Some(u(0)));
    check(&s);
}

#[test]
fn wake_boosts_blocked_unit_only() {
    let mut s = setup(1, 2, |i| i);
    s.sleep(u(1)).unwrap();
    assert_eq!(s.unit_info(u(1), 0).unwrap().state, UnitState::Blocked);
    assert_eq!(s.do_schedule(0, 0).next, Some(u(0)));
    // Wake while 0 (UNDER) runs: BOOST beats UNDER, CPU 0 is tickled.
    assert_eq!(s.wake(u(1), 5 * MS), Ok(CpuMask::single(0)));
    assert_eq!(s.unit_info(u(1), 0).unwrap().priority, Priority::Boost);
    let d = s.do_schedule(0, 5 * MS);
    assert_eq!(d.next, Some(u(1)));
    // Waking a unit that is not blocked changes nothing.
    assert_eq!(s.wake(u(0), 5 * MS), Ok(CpuMask::EMPTY));
    assert_eq!(s.unit_info(u(0), 0).unwrap().priority, Priority::Under);
    // The tick ends BOOST.
    s.tick(0, 10 * MS);
    assert_eq!(s.unit_info(u(1), 0).unwrap().priority, Priority::Under);
    // Pause/unpause does not boost.
    s.pause(u(0)).unwrap();
    assert_eq!(s.unit_info(u(0), 0).unwrap().state, UnitState::Paused);
    s.unpause(u(0), 11 * MS).unwrap();
    assert_eq!(s.unit_info(u(0), 0).unwrap().priority, Priority::Under);
    assert_eq!(s.unpause(u(0), 11 * MS), Err(Errno::EINVAL));
    // An OVER unit waking stays OVER (no boost without credit).
    s.sleep(u(0)).unwrap();
    s.units[0].pri = Priority::Over;
    s.wake(u(0), 12 * MS).unwrap();
    assert_eq!(s.unit_info(u(0), 0).unwrap().priority, Priority::Over);
    check(&s);
}

#[test]
fn sleep_of_running_unit_deschedules_it() {
    let mut s = setup(2, 1, |_| 0);
    let d = s.do_schedule(0, 0);
    assert_eq!(d.next, Some(u(0)));
    assert_eq!(s.sleep(u(0)), Ok(CpuMask::single(0)));
    assert!(s.need_resched(0));
    check(&s);
    // Wake before the CPU reschedules: it just keeps running, no boost.
    assert_eq!(s.wake(u(0), MS), Ok(CpuMask::EMPTY));
    assert_eq!(s.unit_info(u(0), MS).unwrap().priority, Priority::Under);
    s.sleep(u(0)).unwrap();
    let d = s.do_schedule(0, 2 * MS);
    assert_eq!((d.prev, d.next, d.timeslice_ns), (Some(u(0)), None, None));
    assert_eq!(s.unit_info(u(0), 2 * MS).unwrap().runtime_ns, 2 * MS);
    assert_eq!(s.idlers & 1, 1);
    // Offline/online.
    s.offline(u(0)).unwrap();
    s.wake(u(0), 3 * MS).unwrap();
    assert_eq!(s.unit_info(u(0), 0).unwrap().state, UnitState::Offline);
    s.online(u(0), 3 * MS).unwrap();
    assert!(matches!(
        s.unit_info(u(0), 0).unwrap().state,
        UnitState::Runnable { .. }
    ));
    check(&s);
}

// ----- affinity, tickling, stealing ------------------------------------------

#[test]
fn affinity_moves_queued_and_running_units() {
    let mut s = setup(4, 2, |_| 0);
    assert_eq!(s.set_affinity(u(0), CpuMask(1 << 5)), Err(Errno::EINVAL)); // no such CPU
    assert_eq!(s.set_affinity(u(0), CpuMask::EMPTY), Err(Errno::EINVAL));
    // Both queued on CPU 0; move 1 to CPU 2 (bits above CPU 3 dropped).
    s.set_affinity(u(1), CpuMask(0xf0 | 1 << 2)).unwrap();
    assert_eq!(s.affinity(u(1)), Ok(CpuMask(1 << 2)));
    assert_eq!(
        s.unit_info(u(1), 0).unwrap().state,
        UnitState::Runnable { cpu: 2 }
    );
    assert_eq!(s.do_schedule(2, 0).next, Some(u(1)));
    assert_eq!(s.do_schedule(0, 0).next, Some(u(0)));
    // Pin the running unit 0 elsewhere: its CPU must reschedule and it moves.
    assert_eq!(
        s.set_affinity(u(0), CpuMask(1 << 3)),
        Ok(CpuMask::single(0))
    );
    check(&s);
    let d = s.do_schedule(0, 5 * MS); // past the rate limit
    assert_eq!((d.prev, d.next), (Some(u(0)), None));
    assert_eq!(d.tickle, CpuMask::single(3));
    // Not before CPU 0 saved its state...
    assert_eq!(s.do_schedule(3, 5 * MS).next, None);
    // ...then CPU 3 is tickled and runs it.
    assert_eq!(s.context_saved(u(0)), CpuMask::single(3));
    let d = s.do_schedule(3, 6 * MS);
    assert_eq!(d.next, Some(u(0)));
    assert!(d.migrated);
    assert_eq!(s.unit_info(u(0), 0).unwrap().migrations, 1);
    check(&s);
}

#[test]
fn idle_cpu_steals_from_busy_peer() {
    let mut s = setup(2, 0, |_| 0);
    for i in 0..2 {
        s.insert_unit(u(i), 0, 0).unwrap();
    }
    s.online(u(0), 0).unwrap();
    assert_eq!(s.do_schedule(0, 0).next, Some(u(0)));
    // Unit 1 comes up on CPU 0, which is busy: the idle CPU 1 is tickled...
    assert_eq!(s.online(u(1), MS), Ok(CpuMask::single(1)));
    // ...and steals it.
    let d = s.do_schedule(1, MS);
    assert_eq!(d.next, Some(u(1)));
    assert_eq!(
        s.unit_info(u(1), MS).unwrap().state,
        UnitState::Running { cpu: 1 }
    );
    assert_eq!(s.balance_bias, 0);
    check(&s);
}

#[test]
fn no_steal_outside_affinity_or_when_hot() {
    let mut s = setup(2, 0, |_| 0);
    for i in 0..2 {
        s.insert_unit(u(i), 0, 0).unwrap();
        s.set_affinity(u(i), CpuMask(1)).unwrap();
    }
    s.online(u(0), 0).unwrap();
    s.do_schedule(0, 0);
    // Pinned to CPU 0: nobody else is tickled, CPU 1 finds nothing.
    assert_eq!(s.online(u(1), 0), Ok(CpuMask::EMPTY));
    assert_eq!(s.do_schedule(1, 0).next, None);
    s.tick(1, 10 * MS);
    assert!(!s.need_resched(1));
    // Allow CPU 1 but with a migration delay: 1 was never descheduled...
    s.set_global(GlobalParams {
        tslice_ms: 30,
        ratelimit_us: 1000,
        vcpu_migr_delay_us: 5000,
    })
    .unwrap();
    s.set_affinity(u(1), CpuMask(3)).unwrap();
    s.units[1].last_sched = 9 * MS;
    assert_eq!(s.do_schedule(1, 10 * MS).next, None); // cache-hot for 5 ms
    assert_eq!(s.do_schedule(1, 15 * MS).next, Some(u(1)));
    check(&s);
}

#[test]
fn tickle_prefers_idle_cpu_in_affinity() {
    let mut s = setup(3, 3, |_| 0);
    s.do_schedule(0, 0);
    s.do_schedule(1, 0);
    assert_eq!(s.current(0), Some(u(0)));
    assert_eq!(s.current(1), Some(u(1)));
    // Unit 2 stayed queued on CPU 0 while CPU 2 is idle.
    assert_eq!(s.idlers, 1 << 2);
    s.sleep(u(2)).unwrap();
    s.do_schedule(2, 0);
    let t = s.wake(u(2), MS).unwrap();
    assert_eq!(t, CpuMask::single(2));
    assert_eq!(s.do_schedule(2, MS).next, Some(u(2)));
    // Nothing idle, BOOST waking on a CPU running UNDER: that CPU.
    s.sleep(u(2)).unwrap();
    s.do_schedule(2, 2 * MS);
    s.set_affinity(u(2), CpuMask(1)).unwrap();
    s.tick(0, 10 * MS); // 0 loses nothing, just ends up UNDER
    s.units[2].cpu = 0;
    let t = s.wake(u(2), 11 * MS).unwrap();
    assert_eq!(t, CpuMask::single(0));
    check(&s);
}

#[test]
fn deferred_context_save_blocks_other_cpus_only() {
    let mut s = setup(2, 2, |_| 0);
    s.do_schedule(0, 0); // runs 0, queue: [1]
    let d = s.do_schedule(0, 2 * MS);
    assert_eq!((d.prev, d.next), (Some(u(0)), Some(u(1))));
    // 0 is queued on CPU 0, its state still in flight: CPU 1 must not take it.
    assert_eq!(s.do_schedule(1, 2 * MS).next, None);
    // The next tick on CPU 0 proves the switch finished.
    s.tick(0, 3 * MS);
    assert!(s.need_resched(1) || s.find_steal(1, Priority::Idle, 3 * MS).is_some());
    assert_eq!(s.do_schedule(1, 3 * MS).next, Some(u(0)));
    check(&s);
}

// ----- accounting --------------------------------------------------------------

#[test]
fn accounting_shares_by_weight() {
    let mut s = setup(1, 2, |i| i);
    s.set_params(1, 512, CAP_UNCHANGED).unwrap();
    // Make both active: run each for a tick.
    s.do_schedule(0, 0);
    s.tick(0, 10 * MS);
    s.do_schedule(0, 10 * MS);
    s.tick(0, 20 * MS);
    assert_eq!(s.weight_total, 768);
    let (c0, c1) = (s.units[0].credit, s.units[1].credit);
    assert_eq!((c0, c1), (-100, -100));
    s.tick(0, 30 * MS); // period end (first tick armed it at 10 ms → 40 ms)
    s.tick(0, 40 * MS);
    assert_eq!(s.accounting_periods(), 1);
    // 300 credits split 1:2 (rounded up): +100 and +200.
    assert_eq!(s.units[0].credit, c0 + 100);
    assert_eq!(s.units[1].credit, c1 - 200 + 200);
    check(&s);
}

#[test]
fn idle_units_stop_earning_and_halve() {
    let mut s = setup(1, 1, |_| 0);
    s.do_schedule(0, 0);
    s.tick(0, 0); // arm accounting at 30 ms; active
    s.sleep(u(0)).unwrap();
    s.do_schedule(0, 0);
    for p in 1..=3 {
        s.tick(0, p * 30 * MS);
    }
    // 300, 600 → inactive, halved to 300.
    assert!(!s.units[0].active);
    assert_eq!(s.units[0].credit, 300);
    assert_eq!(s.weight_total, 0);
    check(&s);
}

#[test]
fn cap_parks_and_unparks() {
    let mut s = setup(1, 1, |_| 0);
    s.set_params(0, WEIGHT_UNCHANGED, 10).unwrap(); // 30 credits per period
    s.do_schedule(0, 0);
    s.tick(0, 0); // active; accounting every 30 ms from now
                  // First period: burnt 300, earned 30: below -30 → parked, CPU told to resched.
    for t in [10, 20] {
        s.tick(0, t * MS);
    }
    assert_eq!(s.units[0].block & B_PARKED, 0);
    s.tick(0, 30 * MS);
    assert_eq!(s.units[0].credit, -270);
    assert_ne!(s.units[0].block & B_PARKED, 0);
    assert!(s.need_resched(0));
    check(&s);
    let d = s.do_schedule(0, 30 * MS);
    assert_eq!((d.prev, d.next), (Some(u(0)), None));
    assert_eq!(s.unit_info(u(0), 30 * MS).unwrap().state, UnitState::Parked);
    // Waking a parked unit does not make it run.
    s.sleep(u(0)).unwrap();
    s.wake(u(0), 31 * MS).unwrap();
    assert_eq!(s.unit_info(u(0), 31 * MS).unwrap().state, UnitState::Parked);
    // +30 per period: back to 0 after nine more periods, then unparked
    // (without BOOST) and the idle CPU is told.
    let mut t = 30 * MS;
    for _ in 0..8 {
        t += 30 * MS;
        s.tick(0, t);
        assert!(!s.need_resched(0), "at {t}");
    }
    assert_eq!(s.units[0].credit, -30);
    t += 30 * MS;
    s.tick(0, t);
    assert_eq!(s.units[0].block & B_PARKED, 0);
    assert_eq!(s.units[0].pri, Priority::Under);
    assert!(s.need_resched(0));
    assert_eq!(s.do_schedule(0, t).next, Some(u(0)));
    check(&s);
}

#[test]
fn remove_cpu_evacuates_and_breaks_affinity() {
    let mut s = setup(3, 3, |_| 0);
    s.set_affinity(u(2), CpuMask(1 << 2)).unwrap();
    s.set_affinity(u(1), CpuMask(1 << 2)).unwrap();
    s.sleep(u(1)).unwrap();
    assert_eq!(
        s.unit_info(u(2), 0).unwrap().state,
        UnitState::Runnable { cpu: 2 }
    );
    let t = s.remove_cpu(2).unwrap();
    assert!(!t.is_empty());
    assert_eq!(s.affinity(u(2)), Ok(CpuMask(0b1111)));
    assert_eq!(s.affinity(u(1)), Ok(CpuMask(0b1111)));
    assert!(matches!(
        s.unit_info(u(2), 0).unwrap().state,
        UnitState::Runnable { cpu: 0 | 1 }
    ));
    check(&s);
    assert_eq!(s.do_schedule(2, 0), Decision::IDLE);
    assert_eq!(s.do_schedule(7, 0), Decision::IDLE);
    assert_eq!(s.tick(7, 0), CpuMask::EMPTY);
    assert!(!s.need_resched(7));
    assert_eq!(s.current(7), None);
}

#[test]
fn runtime_stats_per_unit_and_domain() {
    let mut s = setup(2, 3, |i| if i < 2 { 5 } else { 6 });
    s.do_schedule(0, 0);
    s.do_schedule(1, 0);
    s.tick(0, 10 * MS);
    assert_eq!(s.unit_runtime_ns(u(0), 15 * MS), Some(15 * MS));
    assert_eq!(s.domain_runtime_ns(5, 20 * MS), Some(40 * MS));
    assert_eq!(s.domain_runtime_ns(6, 20 * MS), Some(0));
    assert_eq!(s.domain_runtime_ns(9, 20 * MS), None);
    let info = s.unit_info(u(2), 0).unwrap();
    assert_eq!(info.domid, 6);
    assert_eq!(info.affinity, CpuMask(0b1111));
    assert_eq!(s.unit_runtime_ns(u(9), 0), None);
}

// ----- deterministic simulation ----------------------------------------------

#[derive(Clone, Copy)]
enum Work {
    /// Never blocks.
    Hog,
    /// Runs `run` ns, then blocks for `sleep` ns.
    Io { run: u64, sleep: u64 },
}

/// A model of the glue: fixed time steps, per-CPU ticks, slice timers,
/// resched on request, synchronous context saves.
struct Sim<const C: usize, const U: usize> {
    s: CreditScheduler<C, U>,
    ncpus: usize,
    now: u64,
    step: u64,
    work: [Option<Work>; U],
    burst: [u64; U],
    wake_at: [Option<u64>; U],
    running: [Option<UnitId>; C],
    deadline: [u64; C],
    next_tick: [u64; C],
    ran: [u64; U],
    idle: [u64; C],
    /// (unit, wake time, first run time after it, priority of what CPU 0
    /// was running at the wake, priority the woken unit got)
    latencies: Vec<(u16, u64, u64, Priority, Priority)>,
}

impl<const C: usize, const U: usize> Sim<C, U> {
    fn new(ncpus: usize) -> Self {
        let mut s = CreditScheduler::new();
        for c in 0..ncpus {
            s.add_cpu(c).unwrap();
        }
        Self {
            s,
            ncpus,
            now: 0,
            step: 100_000,
            work: [None; U],
            burst: [0; U],
            wake_at: [None; U],
            running: [None; C],
            deadline: [0; C],
            next_tick: core::array::from_fn(|c| c as u64 * 1_700_000),
            ran: [0; U],
            idle: [0; C],
            latencies: Vec::new(),
        }
    }

    fn add(&mut self, unit: u16, domid: DomId, cpu: usize, work: Work) {
        self.s.insert_unit(u(unit), domid, cpu).unwrap();
        self.s.online(u(unit), self.now).unwrap();
        self.work[usize::from(unit)] = Some(work);
    }

    fn schedule(&mut self, cpu: usize) {
        let d = self.s.do_schedule(cpu, self.now);
        if let Some(n) = d.next {
            for (c, r) in self.running.iter().enumerate() {
                assert!(c == cpu || *r != Some(n), "unit {n:?} on two CPUs");
            }
            assert!(self.s.affinity(n).unwrap().contains(cpu));
            let i = usize::from(n.0);
            if let Some(l) = self.latencies.iter_mut().rev().find(|l| l.0 == n.0) {
                if l.2 == u64::MAX {
                    l.2 = self.now;
                }
            }
            assert!(self.s.units[i].runnable());
        }
        self.running[cpu] = d.next;
        self.deadline[cpu] = d.timeslice_ns.map_or(u64::MAX, |t| self.now + t);
        if let Some(p) = d.prev {
            self.s.context_saved(p);
        }
    }

    fn run(&mut self, duration: u64) {
        let end = self.now + duration;
        while self.now < end {
            // Account the step that just elapsed.
            for c in 0..self.ncpus {
                match self.running[c] {
                    Some(r) => {
                        let i = usize::from(r.0);
                        self.ran[i] += self.step;
                        self.burst[i] += self.step;
                    }
                    None => self.idle[c] += self.step,
                }
            }
            self.now += self.step;
            // Workload: I/O units block after their burst, wake later.
            for c in 0..self.ncpus {
                if let Some(r) = self.running[c] {
                    let i = usize::from(r.0);
                    if let Some(Work::Io { run, sleep }) = self.work[i] {
                        if self.burst[i] >= run && self.wake_at[i].is_none() {
                            self.s.sleep(r).unwrap();
                            self.burst[i] = 0;
                            self.wake_at[i] = Some(self.now + sleep);
                        }
                    }
                }
            }
            for i in 0..U {
                if self.wake_at[i].is_some_and(|t| t <= self.now) {
                    self.wake_at[i] = None;
                    let victim = self.running[0]
                        .map_or(Priority::Idle, |r| self.s.units[usize::from(r.0)].pri);
                    self.s.wake(u(i as u16), self.now).unwrap();
                    let got = self.s.units[i].pri;
                    self.latencies
                        .push((i as u16, self.now, u64::MAX, victim, got));
                }
            }
            for c in 0..self.ncpus {
                if self.now >= self.next_tick[c] {
                    self.s.tick(c, self.now);
                    self.next_tick[c] += self.s.tick_period_ns();
                }
            }
            for c in 0..self.ncpus {
                if self.s.need_resched(c) || self.now >= self.deadline[c] {
                    self.schedule(c);
                }
            }
            if (self.now / self.step).is_multiple_of(97) {
                check(&self.s);
            }
        }
        check(&self.s);
    }

    /// Sim-measured vs scheduler-recorded run time agree (to one step per switch).
    fn cross_check(&self, unit: u16) {
        let rec = self.s.unit_runtime_ns(u(unit), self.now).unwrap();
        let sim = self.ran[usize::from(unit)];
        assert!(
            rec.abs_diff(sim) <= self.step,
            "unit {unit}: recorded {rec} vs sim {sim}"
        );
    }
}

#[test]
fn sim_weights_256_vs_512_share_one_cpu_1_to_2() {
    let mut sim: Sim<1, 4> = Sim::new(1);
    sim.add(0, 1, 0, Work::Hog);
    sim.add(1, 2, 0, Work::Hog);
    sim.s.set_params(2, 512, CAP_UNCHANGED).unwrap();
    sim.run(10_000 * MS);
    let (a, b) = (sim.ran[0], sim.ran[1]);
    let ratio = b as f64 / a as f64;
    println!(
        "weights 256:512 on 1 CPU for 10 s: {a} ns vs {b} ns, ratio 1:{ratio:.3}, idle {}",
        sim.idle[0]
    );
    assert!((ratio - 2.0).abs() <= 0.2, "ratio {ratio}");
    assert!(sim.idle[0] < 10 * MS);
    sim.cross_check(0);
    sim.cross_check(1);
    let dom = sim.s.domain_runtime_ns(2, sim.now).unwrap();
    assert_eq!(dom, sim.s.unit_runtime_ns(u(1), sim.now).unwrap());
}

#[test]
fn sim_three_hogs_keep_two_cpus_busy() {
    let mut sim: Sim<2, 4> = Sim::new(2);
    for i in 0..3 {
        sim.add(i, i, 0, Work::Hog);
    }
    sim.run(10_000 * MS);
    let total: u64 = sim.ran.iter().sum();
    let shares: Vec<f64> = sim.ran[..3]
        .iter()
        .map(|&r| r as f64 / sim.now as f64)
        .collect();
    println!(
        "3 hogs on 2 CPUs for 10 s: idle cpu0 {} ns cpu1 {} ns, CPU shares {:.3} {:.3} {:.3}",
        sim.idle[0], sim.idle[1], shares[0], shares[1], shares[2]
    );
    // Both CPUs busy (a few ms of start-up idling at most).
    assert!(sim.idle[0] <= 20 * MS && sim.idle[1] <= 20 * MS);
    assert!(total >= 2 * sim.now - 40 * MS);
    // And roughly fair: each about 2/3 of a CPU.
    for s in &shares {
        assert!((s - 2.0 / 3.0).abs() < 0.1, "{shares:?}");
    }
    for i in 0..3 {
        sim.cross_check(i);
    }
}

#[test]
fn sim_cap_50_gets_half_a_cpu() {
    let mut sim: Sim<1, 4> = Sim::new(1);
    sim.add(0, 1, 0, Work::Hog);
    sim.s.set_params(1, WEIGHT_UNCHANGED, 50).unwrap();
    sim.run(10_000 * MS);
    let share = sim.ran[0] as f64 / sim.now as f64;
    println!("cap 50 alone on 1 CPU for 10 s: share {share:.3}");
    assert!((share - 0.5).abs() <= 0.05, "share {share}");
    sim.cross_check(0);

    // Capped next to an uncapped hog: the cap still binds, the rest goes to
    // the other domain.
    let mut sim: Sim<1, 4> = Sim::new(1);
    sim.add(0, 1, 0, Work::Hog);
    sim.add(1, 2, 0, Work::Hog);
    sim.s.set_params(1, 1000, 25).unwrap();
    sim.run(10_000 * MS);
    let share = sim.ran[0] as f64 / sim.now as f64;
    let other = sim.ran[1] as f64 / sim.now as f64;
    println!("cap 25 (weight 1000) vs hog (256): shares {share:.3} / {other:.3}");
    assert!((share - 0.25).abs() <= 0.025, "share {share}");
    assert!(other > 0.7);
}

#[test]
fn sim_woken_unit_preempts_over_hog_within_a_tick() {
    // Two hogs of unequal weight on one CPU, so that each is OVER part of
    // the time. An I/O unit runs 0.3 ms and sleeps 25 ms; then it runs
    // 0.1 ms and sleeps 0.9 ms, so that wakes also land inside the 1 ms rate
    // limit (still below its fair share, 1/6 of the CPU).
    for (run, sleep, name) in [
        (300_000, 25 * MS, "0.3/25 ms"),
        (100_000, 900_000, "0.1/0.9 ms"),
    ] {
        let mut sim: Sim<1, 4> = Sim::new(1);
        sim.add(0, 1, 0, Work::Hog);
        sim.add(1, 2, 0, Work::Hog);
        sim.s.set_params(2, 1024, CAP_UNCHANGED).unwrap();
        sim.run(200 * MS);
        sim.add(2, 3, 0, Work::Io { run, sleep });
        sim.run(3_000 * MS);
        let done: Vec<_> = sim.latencies.iter().filter(|l| l.2 != u64::MAX).collect();
        let lat = |victim: Priority| -> Vec<u64> {
            done.iter()
                .filter(|l| l.4 == Priority::Boost && l.3 == victim)
                .map(|l| l.2 - l.1)
                .collect()
        };
        let (over, under) = (lat(Priority::Over), lat(Priority::Under));
        let boosted: Vec<u64> = done
            .iter()
            .filter(|l| l.4 == Priority::Boost)
            .map(|l| l.2 - l.1)
            .collect();
        let unboosted: Vec<u64> = done
            .iter()
            .filter(|l| l.4 != Priority::Boost)
            .map(|l| l.2 - l.1)
            .collect();
        let worst = boosted.iter().copied().max().unwrap();
        println!(
            "BOOST, I/O unit running/sleeping {name}: {} wakes, {} boosted ({} onto an OVER hog, {} onto \
             UNDER): worst wake-to-run {} us (onto OVER: {} us), mean {} us; {} wakes unboosted \
             (unit was OVER after its first accounting): worst {} us; I/O unit ran {:.1}%",
            done.len(),
            boosted.len(),
            over.len(),
            under.len(),
            worst / 1000,
            over.iter().max().unwrap() / 1000,
            boosted.iter().sum::<u64>() / boosted.len() as u64 / 1000,
            unboosted.len(),
            unboosted.iter().max().unwrap_or(&0) / 1000,
            sim.ran[2] as f64 * 100.0 / (sim.now - 200 * MS) as f64,
        );
        assert!(over.len() >= 10 && under.len() >= 10);
        assert!(unboosted.len() * 20 <= done.len());
        // Within one tick; in fact the 1 ms rate limit is the only delay.
        assert!(worst <= 10 * MS, "worst latency {worst}");
        assert!(worst <= MS + sim.step, "worst latency {worst}");
        assert!(sim.latencies.iter().filter(|l| l.2 == u64::MAX).count() <= 1);
    }
}

/// The same, step by step: an OVER hog is preempted at the very next
/// `do_schedule` after the wake, which the wake itself requests.
#[test]
fn woken_unit_preempts_over_hog_directly() {
    let mut s = setup(1, 2, |i| i);
    s.sleep(u(1)).unwrap();
    assert_eq!(s.do_schedule(0, 0).next, Some(u(0)));
    // Make 0 active, then let accounting find it in debt: cap it hard.
    s.tick(0, 0);
    s.set_params(0, WEIGHT_UNCHANGED, 1).unwrap();
    s.units[0].credit = -10; // in debt, but not below the park threshold
    s.set_params(0, WEIGHT_UNCHANGED, 0).unwrap();
    s.units[0].credit = -400;
    s.tick(0, 30 * MS);
    assert_eq!(s.units[0].pri, Priority::Over);
    assert!(s.units[0].block & B_PARKED == 0);
    let t = s.wake(u(1), 35 * MS).unwrap();
    assert_eq!(t, CpuMask::single(0));
    let d = s.do_schedule(0, 35 * MS);
    assert_eq!((d.prev, d.next), (Some(u(0)), Some(u(1))));
    check(&s);
}

// ----- the hypervisor's glue cadence (xen-core's sched.rs) ---------------------
//
// sched.rs looks at the clock on every 1 kHz APIC interrupt: slice ends are
// seen to the millisecond, credit's tick runs on the first interrupt at or
// after each 10 ms period. These sims use that 1 ms step.

fn glue_sim<const C: usize, const U: usize>(ncpus: usize) -> Sim<C, U> {
    let mut sim = Sim::new(ncpus);
    sim.step = MS;
    sim.next_tick = [0; C];
    sim
}

#[test]
fn glue_dom0_four_vcpus_on_two_cpus_share_fairly() {
    let mut sim: Sim<2, 8> = glue_sim(2);
    for i in 0..4 {
        sim.add(i, 0, usize::from(i) % 2, Work::Hog);
    }
    sim.run(10_000 * MS);
    let shares: Vec<f64> = sim.ran[..4]
        .iter()
        .map(|&r| r as f64 / sim.now as f64)
        .collect();
    let migrations: Vec<u64> = (0..4)
        .map(|i| sim.s.unit_info(u(i), sim.now).unwrap().migrations)
        .collect();
    println!(
        "dom0 with 4 vCPUs on 2 CPUs, 1 ms glue steps, 10 s: shares {shares:.3?}, idle {:?}, migrations {migrations:?}",
        sim.idle
    );
    assert!(sim.idle.iter().all(|&i| i <= 20 * MS));
    for s in &shares {
        assert!((s - 0.5).abs() < 0.05, "{shares:?}");
    }
    for i in 0..4 {
        sim.cross_check(i);
    }
}

#[test]
fn glue_weights_256_vs_512_on_two_cpus() {
    // Two domains of two hogs each on two CPUs: the 512 domain gets about
    // twice the CPU time of the 256 one.
    let mut sim: Sim<2, 8> = glue_sim(2);
    for i in 0..4 {
        sim.add(i, DomId::from(i / 2 + 1), usize::from(i) % 2, Work::Hog);
    }
    sim.s.set_params(2, 512, CAP_UNCHANGED).unwrap();
    assert_eq!(
        sim.s.get_params(2).unwrap(),
        CreditParams {
            weight: 512,
            cap: 0
        }
    );
    sim.run(20_000 * MS);
    let a = sim.s.domain_runtime_ns(1, sim.now).unwrap();
    let b = sim.s.domain_runtime_ns(2, sim.now).unwrap();
    let ratio = b as f64 / a as f64;
    println!(
        "weights 256:512, 2 vCPUs each on 2 CPUs, 1 ms glue steps, 20 s: {} ms vs {} ms, ratio 1:{ratio:.3}; per vCPU {:?} ms",
        a / MS,
        b / MS,
        sim.ran[..4].iter().map(|r| r / MS).collect::<Vec<_>>()
    );
    assert!((ratio - 2.0).abs() <= 0.3, "ratio {ratio}");
    assert!(sim.idle.iter().all(|&i| i <= 20 * MS));
}

#[test]
fn glue_sleepers_wake_promptly_next_to_hogs() {
    // Four hogs of Dom0 and two I/O vCPUs (1 ms of work, 10 ms asleep) on
    // two CPUs: woken vCPUs with credit get BOOST and a CPU within the
    // 1 ms rate limit plus one glue step.
    let mut sim: Sim<2, 8> = glue_sim(2);
    for i in 0..4 {
        sim.add(i, 0, usize::from(i) % 2, Work::Hog);
    }
    for i in 4..6 {
        sim.add(
            i,
            1,
            usize::from(i) % 2,
            Work::Io {
                run: MS,
                sleep: 10 * MS,
            },
        );
    }
    sim.run(5_000 * MS);
    let boosted: Vec<u64> = sim
        .latencies
        .iter()
        .filter(|l| l.2 != u64::MAX && l.4 == Priority::Boost)
        .map(|l| l.2 - l.1)
        .collect();
    let worst = boosted.iter().copied().max().unwrap_or(0);
    println!(
        "2 sleepers next to 4 hogs on 2 CPUs: {} wakes, {} boosted, worst boosted wake-to-run {} us",
        sim.latencies.len(),
        boosted.len(),
        worst / 1000
    );
    assert!(boosted.len() * 10 >= sim.latencies.len() * 9);
    assert!(worst <= 2 * MS, "worst {worst}");
}

// ----- randomized property test ----------------------------------------------

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Random operation sequences against a 4-CPU scheduler with 12 units, a
/// glue model that delays context saves, and checks after every step: the
/// structure is consistent, a unit never runs on two CPUs at once (including
/// a unit whose state is still being saved elsewhere), never outside its
/// affinity, never while blocked/paused/parked/offline once its CPU has
/// rescheduled.
#[test]
fn property_random_ops_keep_invariants() {
    const C: usize = 4;
    const N: u16 = 12;
    for seed in 1..=40u64 {
        let mut rng = XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let mut s = CreditScheduler::<C, 16>::new();
        for c in 0..C {
            s.add_cpu(c).unwrap();
        }
        for i in 0..N {
            s.insert_unit(u(i), DomId::from(i % 4), rng.below(C as u64) as usize)
                .unwrap();
        }
        let mut present = [true; N as usize];
        // Glue model: what each CPU runs, and units whose save is pending (cpu).
        let mut running: [Option<u16>; C] = [None; C];
        let mut saving: [Option<u16>; C] = [None; C];
        let mut now = 0u64;
        for step in 0..3000 {
            now += rng.below(3 * MS);
            let unit = u(rng.below(u64::from(N)) as u16);
            let i = usize::from(unit.0);
            let cpu = rng.below(C as u64) as usize;
            let op = rng.below(20);
            let res: Result<CpuMask, Errno> = match op {
                0 => s.wake(unit, now),
                1 => s.sleep(unit),
                2 => s.yield_unit(unit),
                3 => s.set_affinity(unit, CpuMask(rng.below(1 << C))),
                4 => s.pause(unit),
                5 => s.unpause(unit, now),
                6 => s.online(unit, now),
                7 if rng.below(4) == 0 => s.offline(unit),
                8 => {
                    let w = rng.below(3) as u16 * 300;
                    let cap = [0, 30, 100, CAP_UNCHANGED][rng.below(4) as usize];
                    s.set_params(DomId::from(unit.0 % 4), w, cap)
                        .map(|_| CpuMask::EMPTY)
                }
                9 if rng.below(8) == 0 => {
                    let r = s.remove_unit(unit);
                    if r.is_ok() {
                        present[i] = false;
                        assert!(!running.contains(&Some(unit.0)), "removed a running unit");
                        for sv in saving.iter_mut() {
                            if *sv == Some(unit.0) {
                                *sv = None;
                            }
                        }
                    }
                    r.map(|_| CpuMask::EMPTY)
                }
                10 if !present[i] => {
                    let r = s.insert_unit(unit, DomId::from(unit.0 % 4), cpu);
                    if r.is_ok() {
                        present[i] = true;
                    }
                    r.map(|_| CpuMask::EMPTY)
                }
                11 => {
                    // The glue finishes a pending save on some CPU.
                    if let Some(p) = saving[cpu].take() {
                        Ok(s.context_saved(u(p)))
                    } else {
                        Ok(CpuMask::EMPTY)
                    }
                }
                14 if rng.below(4) == 0 => {
                    let r = s.remove_cpu(cpu);
                    if r.is_ok() {
                        assert!(running[cpu].is_none());
                        saving[cpu] = None;
                    }
                    r
                }
                15 => s.add_cpu(cpu).map(|_| CpuMask::EMPTY),
                12 | 13 => {
                    // Ticking implies the CPU finished its switch.
                    saving[cpu] = None;
                    Ok(s.tick(cpu, now))
                }
                _ => {
                    saving[cpu] = None; // do_schedule also implies it
                    let d = s.do_schedule(cpu, now);
                    if let Some(n) = d.next {
                        for c in 0..C {
                            assert!(
                                c == cpu || (running[c] != Some(n.0) && saving[c] != Some(n.0)),
                                "seed {seed} step {step}: unit {n:?} picked on cpu{cpu} while live on cpu{c}"
                            );
                        }
                        let un = &s.units[usize::from(n.0)];
                        assert!(
                            un.runnable(),
                            "seed {seed} step {step}: picked non-runnable {n:?}"
                        );
                        assert!(
                            un.affinity & bit(cpu) != 0,
                            "seed {seed}: picked outside affinity"
                        );
                    }
                    if let Some(p) = d.prev {
                        assert_eq!(running[cpu], Some(p.0));
                        saving[cpu] = Some(p.0);
                    } else if d.next.is_some() {
                        assert!(running[cpu].is_none() || running[cpu] == d.next.map(|n| n.0));
                    }
                    running[cpu] = d.next.map(|n| n.0);
                    Ok(d.tickle)
                }
            };
            if let Ok(mask) = res {
                assert!(mask.0 < 1 << C, "tickled a CPU that does not exist");
            }
            if let Err(e) = s.check_invariants() {
                panic!("seed {seed} step {step} op {op}: {e}");
            }
            for (c, r) in running.iter().enumerate() {
                assert_eq!(
                    *r,
                    s.current(c).map(|x| x.0),
                    "seed {seed}: glue/scheduler disagree"
                );
            }
        }
    }
}
