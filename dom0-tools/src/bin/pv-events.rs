//! Test Dom0: event channels and timers against Xen 4.17.
//!
//! A loopback interdomain channel (alloc_unbound + bind_interdomain to
//! ourselves), sends in both directions until the upcall runs the port's
//! handler, masking and EVTCHNOP_unmask, an IPI port, bind_vcpu, close and
//! status in every state, the negative cases with Xen's errors,
//! `VIRQ_TIMER` from `set_timer_op` within tolerance, the single-shot and
//! periodic vCPU timers, the clock and the wallclock, and finally
//! EVTCHNOP_reset. Every wait has a timeout that fails the check.

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
mod kernel {
    use core::sync::atomic::{AtomicU64, Ordering};

    use dom0_tools::pvtest::{want, Checks};
    use hypercall_abi::event_channel::EvtchnStat;
    use hypercall_abi::vcpu::VCPU_SSHOTTMR_FUTURE;
    use hypercall_abi::xen::{Virq, DOMID_SELF};
    use pv_guest_lib::events::{self, Port};
    use pv_guest_lib::time::{self, Wake, NS_PER_MS};
    use pv_guest_lib::{println, shared, trap, xen, StartInfo};

    pv_guest_lib::entry!(main);

    /// How long any single wait may take before the check fails.
    const WAIT_NS: u64 = 2_000 * NS_PER_MS;
    /// Timer tolerance: early by at most this much (Xen's timer slop is
    /// 50 µs) ...
    const EARLY_NS: u64 = NS_PER_MS / 10;
    /// ... and late by at most this much (QEMU TCG on a loaded host).
    const LATE_NS: u64 = 250 * NS_PER_MS;
    const NOT_BOUND: u64 = u64::MAX;

    static HITS: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];
    static PORTS: [AtomicU64; 4] = [const { AtomicU64::new(NOT_BOUND) }; 4];

    fn on_event(_port: Port, which: usize) {
        HITS[which].fetch_add(1, Ordering::SeqCst);
    }

    fn hits(which: usize) -> u64 {
        HITS[which].load(Ordering::SeqCst)
    }

    /// Waits (blocking) until `cond` or the timeout.
    fn wait(cond: impl FnMut() -> bool) -> bool {
        time::block_until(time::now_ns() + WAIT_NS, cond) == Wake::Ready
    }

    /// Waits by yielding (for timer tests, where blocking would re-arm the
    /// very timer under test).
    fn poll(mut cond: impl FnMut() -> bool) -> bool {
        let end = time::now_ns() + WAIT_NS;
        while time::now_ns() < end {
            if cond() {
                return true;
            }
            let _ = xen::sched_yield();
        }
        cond()
    }

    fn stat_of(p: Port) -> Option<EvtchnStat> {
        events::status(p).ok().as_ref().and_then(events::stat)
    }

    fn main(si: &'static StartInfo) -> ! {
        println!("pv-events: Oxen PV event channel and timer test (Xen 4.17 semantics)");
        let mut c = Checks::new("pv-events");
        c.ok("map shared_info", shared::map(si.shared_info).map(|_| ()));
        c.ok("install traps and the event callback", trap::install());
        events::irq_enable();

        let t0 = time::now_ns();
        let t1 = time::now_ns();
        c.check(
            "system time runs and is monotonic",
            t0 > 0 && t1 >= t0,
            format_args!("{t0} -> {t1} ns"),
        );
        if let Some((sec, ns)) = time::wallclock() {
            c.check(
                "wallclock is after 2020",
                sec > 1_577_836_800,
                format_args!("{sec}.{ns:09}"),
            );
        }

        // A loopback interdomain channel.
        let a = c.ok(
            "EVTCHNOP_alloc_unbound (remote DOMID_SELF)",
            events::alloc_unbound(DOMID_SELF, DOMID_SELF),
        );
        if let Some(a) = a {
            if let Some(s) = c.ok("EVTCHNOP_status of the unbound port", events::status(a)) {
                c.check(
                    "it is unbound, for domain 0",
                    events::stat(&s) == Some(EvtchnStat::Unbound) && s.unbound_dom() == 0,
                    format_args!("status {} dom {}", s.status, s.unbound_dom()),
                );
            }
            let b = c.ok(
                "EVTCHNOP_bind_interdomain to it",
                events::bind_interdomain(DOMID_SELF, a),
            );
            if let Some(b) = b {
                if let Some(s) = c.ok("status of the bound end", events::status(a)) {
                    c.check(
                        "interdomain, peer is the other port",
                        events::stat(&s) == Some(EvtchnStat::Interdomain) && s.u.port == b,
                        format_args!("status {} peer {}", s.status, s.u.port),
                    );
                }
                let _ = events::set_handler(a, on_event, 0);
                let _ = events::set_handler(b, on_event, 1);
                c.ok("EVTCHNOP_send on one end", events::send(b));
                c.check(
                    "the upcall ran the other end's handler",
                    wait(|| hits(0) == 1),
                    format_args!("{} hits", hits(0)),
                );
                c.ok("send the other way", events::send(a));
                c.check(
                    "delivered on the first end",
                    wait(|| hits(1) == 1),
                    format_args!("{} hits", hits(1)),
                );

                events::mask(a);
                c.ok("send to a masked port", events::send(b));
                for _ in 0..20 {
                    let _ = xen::sched_yield();
                }
                c.check(
                    "masked: pending, no upcall",
                    events::is_pending(a) && hits(0) == 1,
                    format_args!("pending {} hits {}", events::is_pending(a), hits(0)),
                );
                c.ok("EVTCHNOP_unmask", events::unmask(a));
                c.check(
                    "unmask re-raised the pending event",
                    wait(|| hits(0) == 2),
                    format_args!("{} hits", hits(0)),
                );
                c.check(
                    "and cleared the mask",
                    !events::is_masked(a),
                    format_args!("masked {}", events::is_masked(a)),
                );

                c.ok("close one end", events::close(b));
                c.check(
                    "the other end is unbound again",
                    stat_of(a) == Some(EvtchnStat::Unbound),
                    format_args!("{:?}", stat_of(a)),
                );
                c.check(
                    "the closed end is closed",
                    stat_of(b) == Some(EvtchnStat::Closed),
                    format_args!("{:?}", stat_of(b)),
                );
                c.err(
                    "send on a closed port",
                    events::send(b),
                    want::EVTCHN_BAD_PORT,
                );
            }
            c.ok("EVTCHNOP_close", events::close(a));
            c.check(
                "closed",
                stat_of(a) == Some(EvtchnStat::Closed),
                format_args!("{:?}", stat_of(a)),
            );
        }

        // IPI to ourselves.
        let ipi = c.ok("EVTCHNOP_bind_ipi (vCPU 0)", events::bind_ipi(0));
        if let Some(i) = ipi {
            let _ = events::set_handler(i, on_event, 2);
            PORTS[2].store(u64::from(i), Ordering::SeqCst);
            c.ok("send on the IPI port", events::send(i));
            c.check(
                "IPI delivered",
                wait(|| hits(2) == 1),
                format_args!("{} hits", hits(2)),
            );
            if let Some(s) = c.ok("status of the IPI port", events::status(i)) {
                c.check(
                    "ipi, vCPU 0",
                    events::stat(&s) == Some(EvtchnStat::Ipi) && s.vcpu == 0,
                    format_args!("status {} vcpu {}", s.status, s.vcpu),
                );
            }
            // Xen's evtchn_bind_vcpu moves unbound, interdomain, PIRQ and
            // global-VIRQ ports only: an IPI port stays on its vCPU.
            c.err(
                "EVTCHNOP_bind_vcpu of an IPI port",
                events::bind_vcpu(i, 0),
                want::EVTCHN_BIND_VCPU_FIXED,
            );
            c.err(
                "bind_vcpu to a vCPU that does not exist",
                events::bind_vcpu(i, 1000),
                want::EVTCHN_BAD_VCPU,
            );
            c.err(
                "bind_interdomain to a port that is not unbound",
                events::bind_interdomain(DOMID_SELF, i),
                want::EVTCHN_BIND_NOT_UNBOUND,
            );
        }

        // bind_vcpu moves an unbound port's notifications.
        if let Some(u) = c.ok(
            "alloc_unbound for bind_vcpu",
            events::alloc_unbound(DOMID_SELF, DOMID_SELF),
        ) {
            let last = pv_guest_lib::smp::count().saturating_sub(1);
            c.ok(
                "EVTCHNOP_bind_vcpu of an unbound port (to the last vCPU)",
                events::bind_vcpu(u, last),
            );
            c.check(
                "status names the new vCPU",
                events::status(u).is_ok_and(|s| s.vcpu == last),
                format_args!("{:?}", events::status(u).map(|s| s.vcpu)),
            );
            let _ = events::close(u);
        }

        // Negative cases.
        c.err(
            "send on port 0 (reserved)",
            events::send(0),
            want::EVTCHN_BAD_PORT,
        );
        c.err(
            "send on port 4000 (never allocated)",
            events::send(4000),
            want::EVTCHN_BAD_PORT,
        );
        c.err("close port 0", events::close(0), want::EVTCHN_BAD_PORT);
        c.err(
            "status of port 4000",
            events::status(4000),
            want::EVTCHN_BAD_PORT,
        );
        c.err(
            "bind_virq 99",
            events::bind_virq_raw(99, 0),
            want::EVTCHN_BAD_VIRQ,
        );
        c.err(
            "bind_virq TIMER on vCPU 1000",
            events::bind_virq(Virq::Timer, 1000),
            want::EVTCHN_BAD_VCPU,
        );
        c.err(
            "bind_virq VIRQ_CONSOLE (global) on vCPU 1",
            events::bind_virq(Virq::Console, 1),
            want::EVTCHN_BAD_VIRQ,
        );
        if let Some(p) = c.ok(
            "bind_virq VIRQ_CONSOLE on vCPU 0",
            events::bind_virq(Virq::Console, 0),
        ) {
            c.err(
                "bind VIRQ_CONSOLE twice",
                events::bind_virq(Virq::Console, 0),
                want::EVTCHN_VIRQ_TWICE,
            );
            c.ok("close the VIRQ_CONSOLE port", events::close(p));
        }
        c.err(
            "bind_ipi to vCPU 1000",
            events::bind_ipi(1000),
            want::EVTCHN_BAD_VCPU,
        );
        c.err(
            "alloc_unbound in domain 0x1234",
            events::alloc_unbound(0x1234, DOMID_SELF),
            want::EVTCHN_NO_DOMAIN,
        );

        // VIRQ_TIMER from set_timer_op.
        let tp = c.ok(
            "bind VIRQ_TIMER on vCPU 0 (and stop the periodic timer)",
            time::init_vcpu_timer(0),
        );
        if tp.is_some() {
            c.err(
                "bind VIRQ_TIMER twice",
                events::bind_virq(Virq::Timer, 0),
                want::EVTCHN_VIRQ_TWICE,
            );
            let before = time::ticks(0);
            let deadline = time::now_ns() + 10 * NS_PER_MS;
            time::arm(deadline); // set_timer_op(deadline)
            let fired = wait(|| time::ticks(0) > before);
            let at = time::now_ns();
            c.check(
                "VIRQ_TIMER from set_timer_op fired within tolerance",
                fired && at + EARLY_NS >= deadline && at <= deadline + LATE_NS,
                format_args!(
                    "fired {fired}, {} µs after the deadline",
                    (at as i64 - deadline as i64) / 1000
                ),
            );
            let t = time::now_ns();
            time::sleep_ns(20 * NS_PER_MS);
            let slept = time::now_ns() - t;
            c.check(
                "sleep 20 ms (block until the timer)",
                (20 * NS_PER_MS..20 * NS_PER_MS + LATE_NS).contains(&slept),
                format_args!("{} µs", slept / 1000),
            );

            let before = time::ticks(0);
            let deadline = time::now_ns() + 10 * NS_PER_MS;
            c.ok(
                "VCPUOP_set_singleshot_timer",
                time::set_singleshot_timer(0, deadline, 0),
            );
            let fired = poll(|| time::ticks(0) > before);
            let at = time::now_ns();
            c.check(
                "single-shot timer fired within tolerance",
                fired && at + EARLY_NS >= deadline && at <= deadline + LATE_NS,
                format_args!(
                    "fired {fired}, {} µs after",
                    (at as i64 - deadline as i64) / 1000
                ),
            );
            // Xen ignores VCPU_SSHOTTMR_future since 4.17.3 (no -ETIME):
            // a deadline in the past is accepted and fires at once.
            let before = time::ticks(0);
            c.ok(
                "single-shot timer in the past with VCPU_SSHOTTMR_future (flag ignored, as Xen 4.17.3+)",
                time::set_singleshot_timer(
                    0,
                    time::now_ns().saturating_sub(NS_PER_MS),
                    VCPU_SSHOTTMR_FUTURE,
                ),
            );
            let fired = poll(|| time::ticks(0) > before);
            c.check(
                "a single-shot timer in the past fires",
                fired,
                format_args!("ticks {} -> {}", before, time::ticks(0)),
            );
            c.ok(
                "VCPUOP_stop_singleshot_timer",
                time::stop_singleshot_timer(0),
            );

            let before = time::ticks(0);
            let start = time::now_ns();
            c.ok(
                "VCPUOP_set_periodic_timer 10 ms",
                time::set_periodic_timer(0, 10 * NS_PER_MS),
            );
            let at_once = time::ticks(0);
            let fired = poll(|| time::ticks(0) >= before + 3);
            let took = time::now_ns() - start;
            c.ok("VCPUOP_stop_periodic_timer", time::stop_periodic_timer(0));
            c.check(
                "the first periodic tick came on set_periodic_timer's return, as in Xen",
                at_once > before,
                format_args!("ticks {before} -> {at_once}"),
            );
            // As in Xen (vcpu_set_periodic_timer): the first tick at once
            // (none came in the last period), then one every 10 ms.
            c.check(
                "three periodic ticks in about 20 ms (the first at once)",
                fired && took + EARLY_NS >= 20 * NS_PER_MS && took <= 20 * NS_PER_MS + 3 * LATE_NS,
                format_args!("{} ticks in {} µs", time::ticks(0) - before, took / 1000),
            );
            c.err(
                "periodic timer under 1 ms",
                time::set_periodic_timer(0, 1000),
                hypercall_abi::errno::Errno::EINVAL,
            );
        }

        // SCHEDOP_poll (Xen's do_poll): a masked port wakes its poller
        // without an upcall.
        if let Some(q) = c.ok("bind_ipi for SCHEDOP_poll", events::bind_ipi(0)) {
            events::mask(q);
            let t = time::now_ns();
            c.ok(
                "SCHEDOP_poll of a quiet port, 20 ms timeout",
                xen::sched_poll(&[q], t + 20 * NS_PER_MS),
            );
            let took = time::now_ns() - t;
            c.check(
                "it slept until the timeout",
                took + EARLY_NS >= 20 * NS_PER_MS && took <= 20 * NS_PER_MS + LATE_NS,
                format_args!("{} µs", took / 1000),
            );
            c.ok("send to the masked port", events::send(q));
            let t = time::now_ns();
            c.ok(
                "SCHEDOP_poll of a pending port",
                xen::sched_poll(&[q], t + WAIT_NS),
            );
            let took = time::now_ns() - t;
            c.check(
                "it returned at once",
                took < LATE_NS,
                format_args!("{} µs", took / 1000),
            );
            events::clear_pending(q);
            c.err(
                "SCHEDOP_poll of port 4000",
                xen::sched_poll(&[4000], 0),
                want::EVTCHN_BAD_PORT,
            );
            if let Some(tport) = time::timer_port(0) {
                let before = time::ticks(0);
                events::mask(tport);
                let t = time::now_ns();
                let _ = time::set_timer_op(t + 10 * NS_PER_MS);
                c.ok(
                    "SCHEDOP_poll of the masked VIRQ_TIMER port",
                    xen::sched_poll(&[tport], t + WAIT_NS),
                );
                let took = time::now_ns() - t;
                c.check(
                    "the timer woke the poller, no upcall",
                    took + EARLY_NS >= 10 * NS_PER_MS
                        && took <= 10 * NS_PER_MS + LATE_NS
                        && events::is_pending(tport)
                        && time::ticks(0) == before,
                    format_args!(
                        "{} µs, pending {}, ticks +{}",
                        took / 1000,
                        events::is_pending(tport),
                        time::ticks(0) - before
                    ),
                );
                c.ok("unmask the timer port", events::unmask(tport));
                c.check(
                    "and the tick is delivered",
                    wait(|| time::ticks(0) > before),
                    format_args!("ticks +{}", time::ticks(0) - before),
                );
            }
            let _ = events::close(q);
        }

        let (upcalls, unhandled) = events::stats();
        c.note(format_args!(
            "{upcalls} upcalls, {unhandled} events without a handler"
        ));

        // EVTCHNOP_reset closes everything.
        c.ok("EVTCHNOP_reset", events::reset(DOMID_SELF));
        if let Some(i) = ipi {
            c.check(
                "the IPI port is closed",
                stat_of(i) == Some(EvtchnStat::Closed),
                format_args!("{:?}", stat_of(i)),
            );
        }
        c.finish()
    }
}
